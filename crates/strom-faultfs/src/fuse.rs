//! FUSE glue: translates kernel requests into model calls. Every reply tells the kernel to
//! cache nothing (zero TTLs, direct I/O), so what a program sees is always the model's state.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::error::{FsError, FsResult};
use crate::model::{Attr, AttrChange, DirEntry, Kind, Model, Owner};

/// Attribute and entry lifetime in the kernel: none, so nothing stale survives a cut.
const TTL: Duration = Duration::ZERO;

/// Locks the model, recovering it if a panicking thread poisoned the lock.
pub(crate) fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

/// The FUSE server: the shared model plus per-handle directory listings.
pub(crate) struct FaultFsServer {
    model: Arc<Mutex<Model>>,
    backing: PathBuf,
    next_fh: AtomicU64,
    /// Directory listings, snapshotted at `opendir` and refreshed by a `readdir` at offset 0,
    /// so deleting entries while listing does not make the listing skip entries.
    listings: Mutex<HashMap<u64, Vec<DirEntry>>>,
}

impl FaultFsServer {
    pub(crate) fn new(model: Arc<Mutex<Model>>, backing: PathBuf) -> Self {
        FaultFsServer { model, backing, next_fh: AtomicU64::new(1), listings: Mutex::new(HashMap::new()) }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn listings(&self) -> MutexGuard<'_, HashMap<u64, Vec<DirEntry>>> {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reply_entry(reply: ReplyEntry, result: FsResult<Attr>) {
        match result {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn reply_empty(reply: ReplyEmpty, result: FsResult<()>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn owner(req: &Request, mode: u32, umask: u32) -> Owner {
    Owner { perm: perm(mode, umask), uid: req.uid(), gid: req.gid() }
}

impl Filesystem for FaultFsServer {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        Self::reply_entry(reply, self.model().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let result = (|| {
            if let Some(size) = size {
                model.set_len(ino.0, size)?;
            }
            let change =
                AttrChange { perm: mode.map(|m| perm(m, 0)), uid, gid, atime: atime.map(time), mtime: mtime.map(time) };
            if mode.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some() {
                model.set_attrs(ino.0, change)?;
            }
            model.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let kind = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => return reply.error(Errno::EINVAL),
        };
        let result = self.model().make(parent.0, name, kind, owner(req, mode, umask), rdev);
        Self::reply_entry(reply, result);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let result = self.model().make(parent.0, name, Kind::Dir, owner(req, mode, umask), 0);
        Self::reply_entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(reply, self.model().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(reply, self.model().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        Self::reply_empty(reply, self.model().rename(parent.0, name, newparent.0, newname, no_replace));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(_) => reply.opened(FileHandle(self.fh()), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.model();
        let result = match model.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(FsError::Exists),
            Ok(attr) if attr.kind == Kind::Dir => Err(FsError::IsDir),
            Ok(attr) if flags & libc::O_TRUNC != 0 => model.set_len(attr.ino, 0).and_then(|()| model.attr(attr.ino)),
            Ok(attr) => Ok(attr),
            Err(FsError::NotFound) => model.make(parent.0, name, Kind::File, owner(req, mode, umask), 0),
            Err(e) => Err(e),
        };
        match result.and_then(|attr| model.open(attr.ino).map(|_| attr)) {
            Ok(attr) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(0),
                FileHandle(self.fh()),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(reply, self.model().release(ino.0));
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::reply_empty(reply, self.model().fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.model();
        let result = model.readdir(ino.0).and_then(|entries| model.open(ino.0).map(|_| entries));
        drop(model);
        match result {
            Ok(entries) => {
                let fh = self.fh();
                self.listings().insert(fh, entries);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut listings = self.listings();
        if offset == 0 || !listings.contains_key(&fh.0) {
            match self.model().readdir(ino.0) {
                Ok(entries) => {
                    listings.insert(fh.0, entries);
                }
                Err(e) => return reply.error(errno(&e)),
            }
        }
        let entries = listings.get(&fh.0).map(Vec::as_slice).unwrap_or_default();
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(entry.ino), i as u64 + 1, file_type(entry.kind), &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.listings().remove(&fh.0);
        Self::reply_empty(reply, self.model().release(ino.0));
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::reply_empty(reply, self.model().fsync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let budget = self.model().enospc_budget();
        match nix::sys::statvfs::statvfs(&self.backing) {
            Ok(s) => {
                let bsize = s.fragment_size().max(1);
                let limit = budget.map_or(u64::MAX, |b| b / bsize);
                reply.statfs(
                    s.blocks(),
                    s.blocks_free().min(limit),
                    s.blocks_available().min(limit),
                    s.files(),
                    s.files_free(),
                    s.block_size() as u32,
                    255,
                    bsize as u32,
                );
            }
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        Self::reply_empty(reply, self.model().attr(ino.0).map(|_| ()));
    }
}
