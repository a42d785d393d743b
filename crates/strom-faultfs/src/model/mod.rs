//! The filesystem model, independent of FUSE: namespace + contents + faults + counters.

mod content;
mod namespace;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use content::{Contents, FileCutMode};
use namespace::Namespace;

use crate::error::{FsError, FsResult};
use crate::rng::SplitMix64;

/// Inode number.
pub(crate) type Ino = u64;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub(crate) const ROOT: Ino = 1;

/// How a power cut treats unsynced state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Every unsynced content change and every uncommitted namespace op is lost: each file
    /// reverts to its content as of its last fsync, the namespace to its last synced state.
    DropAll,
    /// Like a disk that had written some of the unsynced state back before the power went
    /// (LazyFS-style): each file keeps a random prefix of its own unsynced writes and size
    /// changes, in order, where the last kept write may be torn (only a prefix of its bytes
    /// kept); the namespace keeps a random prefix of its unsynced op log (committed ops are
    /// always kept). The same seed on the same history gives the same result.
    KeepPrefix {
        /// Seed of the deterministic RNG that picks the prefixes.
        seed: u64,
    },
}

/// What a power cut dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Unsynced namespace ops kept (committed, or inside the kept prefix).
    pub ns_ops_kept: usize,
    /// Unsynced namespace ops dropped.
    pub ns_ops_dropped: usize,
    /// Kept namespace ops skipped because they no longer applied (e.g. their source name was
    /// created by a dropped op).
    pub ns_ops_skipped: usize,
    /// Unsynced content changes (writes, size changes) reverted in surviving files; a torn write
    /// counts as one.
    pub changes_dropped: usize,
    /// Bytes of those changes lost (written bytes; the size difference of a size change).
    pub bytes_dropped: u64,
    /// Surviving files that lost at least one change.
    pub files_reverted: usize,
    /// Surviving files whose last kept write was torn.
    pub files_torn: usize,
    /// Inodes (files, directories, others) not in the namespace after the cut, now deleted.
    pub inodes_deleted: usize,
}

/// Counters and gauges for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `fsync`/`fdatasync` requests on non-directories received (including failed ones).
    pub file_fsyncs: u64,
    /// `fsync` requests on directories received (including failed ones).
    pub dir_fsyncs: u64,
    /// fsyncs (of files or directories) failed with `EIO` by `fail_fsync`.
    pub failed_fsyncs: u64,
    /// Writes and size changes failed with `ENOSPC` by `fail_writes_enospc`.
    pub enospc_errors: u64,
    /// Bytes in unsynced content changes of all files (written bytes, plus the size difference
    /// of each unsynced size change); counts a byte twice if it was written twice.
    pub unsynced_bytes: u64,
    /// Files with unsynced content changes.
    pub unsynced_files: u64,
    /// Namespace ops not yet durable (not committed, or committed after an uncommitted one).
    pub unsynced_ns_ops: u64,
    /// Power cuts applied so far.
    pub power_cuts: u64,
}

/// Node types (hard links and symlinks are not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A node's attributes as FUSE needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) ino: Ino,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) perm: u16,
    pub(crate) nlink: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    pub(crate) crtime: SystemTime,
}

/// Metadata kept per inode; not part of the durability model (survives cuts as it is live).
#[derive(Debug, Clone, Copy)]
struct Meta {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    rdev: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    crtime: SystemTime,
}

/// Who creates a node, with which permission bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Changes to a node's attributes other than its size.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttrChange {
    pub(crate) perm: Option<u16>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) atime: Option<SystemTime>,
    pub(crate) mtime: Option<SystemTime>,
}

/// A directory entry for readdir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub(crate) ino: Ino,
    pub(crate) kind: Kind,
    pub(crate) name: OsString,
}

/// The whole filesystem state behind the FUSE server.
#[derive(Debug)]
pub(crate) struct Model {
    ns: Namespace,
    contents: Contents,
    meta: HashMap<Ino, Meta>,
    /// Open handles per inode (files and directories).
    open: HashMap<Ino, u32>,
    /// Inodes no longer in the live tree but kept (open, or may come back at a cut).
    detached: BTreeSet<Ino>,
    next_ino: Ino,
    fail_fsync: Option<String>,
    enospc_budget: Option<u64>,
    stats: Stats,
}

impl Model {
    /// An empty filesystem (root directory owned by `owner`) whose file contents live in
    /// `data_dir`, which must exist and be empty.
    pub(crate) fn new(data_dir: &Path, owner: Owner) -> Self {
        let now = SystemTime::now();
        let root = Meta {
            kind: Kind::Dir,
            perm: owner.perm,
            uid: owner.uid,
            gid: owner.gid,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        };
        Model {
            ns: Namespace::new(),
            contents: Contents::new(data_dir),
            meta: HashMap::from([(ROOT, root)]),
            open: HashMap::new(),
            detached: BTreeSet::new(),
            next_ino: ROOT + 1,
            fail_fsync: None,
            enospc_budget: None,
            stats: Stats::default(),
        }
    }

    fn meta(&self, ino: Ino) -> FsResult<&Meta> {
        self.meta.get(&ino).ok_or(FsError::NotFound)
    }

    /// Attributes of a known inode (also of an unlinked but still open one).
    pub(crate) fn attr(&self, ino: Ino) -> FsResult<Attr> {
        let m = self.meta(ino)?;
        let live = self.ns.live();
        let (size, nlink) = match m.kind {
            Kind::Dir => {
                let subdirs = live.children(ino).map_or(0, |c| c.values().filter(|&&i| live.is_dir(i)).count());
                (0, if live.contains(ino) { 2 + subdirs as u32 } else { 0 })
            }
            Kind::File => (self.contents.size(ino)?, u32::from(live.contains(ino))),
            _ => (0, u32::from(live.contains(ino))),
        };
        Ok(Attr {
            ino,
            kind: m.kind,
            size,
            perm: m.perm,
            nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.crtime,
        })
    }

    /// Looks `name` up in live directory `parent`.
    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let live = self.ns.live();
        if !live.contains(parent) {
            return Err(FsError::NotFound);
        }
        if !live.is_dir(parent) {
            return Err(FsError::NotDir);
        }
        let ino = live.lookup(parent, name).ok_or(FsError::NotFound)?;
        self.attr(ino)
    }

    /// Creates a node of `kind` at `parent/name` (unsynced until `parent` is fsynced).
    pub(crate) fn make(&mut self, parent: Ino, name: &OsStr, kind: Kind, owner: Owner, rdev: u32) -> FsResult<Attr> {
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
            return Err(FsError::Invalid);
        }
        let ino = self.next_ino;
        if kind == Kind::File {
            // Check first, so a failing create leaves no backing file behind.
            if self.lookup(parent, name).is_ok() {
                return Err(FsError::Exists);
            }
            self.contents.create(ino)?;
        }
        if let Err(e) = self.ns.create(parent, name, ino, kind == Kind::Dir) {
            if kind == Kind::File {
                let _ = self.contents.remove(ino);
            }
            return Err(e);
        }
        self.next_ino += 1;
        let now = SystemTime::now();
        let meta = Meta {
            kind,
            perm: owner.perm,
            uid: owner.uid,
            gid: owner.gid,
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        };
        self.meta.insert(ino, meta);
        self.touch_dir(parent, now);
        self.attr(ino)
    }

    fn touch_dir(&mut self, dir: Ino, now: SystemTime) {
        if let Some(m) = self.meta.get_mut(&dir) {
            m.mtime = now;
            m.ctime = now;
        }
    }

    /// Removes `parent/name`: `unlink` (`dir` false) or `rmdir` (`dir` true).
    pub(crate) fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<()> {
        let ino = self.ns.remove(parent, name, dir)?;
        self.touch_dir(parent, SystemTime::now());
        self.detached.insert(ino);
        self.collect(ino)
    }

    /// Renames `from/from_name` to `to/to_name`.
    pub(crate) fn rename(
        &mut self,
        from: Ino,
        from_name: &OsStr,
        to: Ino,
        to_name: &OsStr,
        no_replace: bool,
    ) -> FsResult<()> {
        if to_name.is_empty() || to_name == "." || to_name == ".." || to_name.as_encoded_bytes().contains(&b'/') {
            return Err(FsError::Invalid);
        }
        let replaced = self.ns.rename(from, from_name, to, to_name, no_replace)?;
        let now = SystemTime::now();
        self.touch_dir(from, now);
        self.touch_dir(to, now);
        if let Some(replaced) = replaced {
            self.detached.insert(replaced);
            self.collect(replaced)?;
        }
        Ok(())
    }

    /// Deletes `ino` if it is detached, not open, and no cut could bring it back.
    fn collect(&mut self, ino: Ino) -> FsResult<()> {
        if self.detached.contains(&ino)
            && !self.ns.live().contains(ino)
            && self.open.get(&ino).is_none_or(|&n| n == 0)
            && !self.ns.may_survive(ino)
        {
            self.detached.remove(&ino);
            self.meta.remove(&ino);
            self.open.remove(&ino);
            self.contents.remove(ino)?;
        }
        Ok(())
    }

    /// Registers an open handle on `ino` (file or directory).
    pub(crate) fn open(&mut self, ino: Ino) -> FsResult<Kind> {
        let kind = self.meta(ino)?.kind;
        *self.open.entry(ino).or_default() += 1;
        Ok(kind)
    }

    /// Releases an open handle on `ino`.
    pub(crate) fn release(&mut self, ino: Ino) -> FsResult<()> {
        if let Some(n) = self.open.get_mut(&ino) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&ino);
            }
        }
        self.collect(ino)
    }

    fn regular(&self, ino: Ino) -> FsResult<()> {
        match self.meta(ino)?.kind {
            Kind::File => Ok(()),
            Kind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// Reads up to `len` bytes of regular file `ino` at `offset`.
    pub(crate) fn read(&mut self, ino: Ino, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        self.regular(ino)?;
        self.contents.read(ino, offset, len)
    }

    /// Takes `growth` bytes from the ENOSPC budget, or fails without taking any.
    fn take_budget(&mut self, growth: u64) -> FsResult<()> {
        if let Some(budget) = self.enospc_budget.as_mut() {
            if growth > *budget {
                self.stats.enospc_errors += 1;
                return Err(FsError::NoSpace);
            }
            *budget -= growth;
        }
        Ok(())
    }

    /// Writes all of `data` at `offset` of regular file `ino` (unsynced until the file is fsynced).
    pub(crate) fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        self.regular(ino)?;
        let growth = self.contents.growth_of_write(ino, offset, data.len() as u64)?;
        self.take_budget(growth)?;
        if let Err(e) = self.contents.write(ino, offset, data) {
            if let Some(budget) = self.enospc_budget.as_mut() {
                *budget += growth;
            }
            return Err(e);
        }
        let now = SystemTime::now();
        if let Some(m) = self.meta.get_mut(&ino) {
            m.mtime = now;
            m.ctime = now;
        }
        Ok(data.len())
    }

    /// Sets the size of regular file `ino` (unsynced until the file is fsynced).
    pub(crate) fn set_len(&mut self, ino: Ino, len: u64) -> FsResult<()> {
        self.regular(ino)?;
        let growth = len.saturating_sub(self.contents.size(ino)?);
        self.take_budget(growth)?;
        if let Err(e) = self.contents.set_len(ino, len) {
            if let Some(budget) = self.enospc_budget.as_mut() {
                *budget += growth;
            }
            return Err(e);
        }
        let now = SystemTime::now();
        if let Some(m) = self.meta.get_mut(&ino) {
            m.mtime = now;
            m.ctime = now;
        }
        Ok(())
    }

    /// Changes attributes other than the size (not part of the durability model).
    pub(crate) fn set_attrs(&mut self, ino: Ino, change: AttrChange) -> FsResult<()> {
        let m = self.meta.get_mut(&ino).ok_or(FsError::NotFound)?;
        if let Some(perm) = change.perm {
            m.perm = perm;
        }
        if let Some(uid) = change.uid {
            m.uid = uid;
        }
        if let Some(gid) = change.gid {
            m.gid = gid;
        }
        if let Some(t) = change.atime {
            m.atime = t;
        }
        if let Some(t) = change.mtime {
            m.mtime = t;
        }
        m.ctime = SystemTime::now();
        Ok(())
    }

    /// The path `fail_fsync` matches against: live path, else durable path, else empty.
    fn path(&self, ino: Ino) -> String {
        self.ns.live().path(ino).or_else(|| self.ns.durable().path(ino)).unwrap_or_default()
    }

    fn fsync_fails(&mut self, ino: Ino) -> bool {
        let fails = self.fail_fsync.as_deref().is_some_and(|m| self.path(ino).contains(m));
        if fails {
            self.stats.failed_fsyncs += 1;
        }
        fails
    }

    /// fsync/fdatasync of `ino`: a file's content and size become durable (not its name).
    /// A directory is treated as `fsync_dir`.
    pub(crate) fn fsync(&mut self, ino: Ino) -> FsResult<()> {
        let kind = self.meta(ino)?.kind;
        if kind == Kind::Dir {
            return self.fsync_dir(ino);
        }
        self.stats.file_fsyncs += 1;
        if self.fsync_fails(ino) {
            return Err(FsError::InjectedIo);
        }
        if kind == Kind::File {
            self.contents.sync(ino)?;
        }
        Ok(())
    }

    /// fsync of directory `ino`: commits the namespace ops that changed it (a rename is
    /// committed by its destination directory).
    pub(crate) fn fsync_dir(&mut self, ino: Ino) -> FsResult<()> {
        if self.meta(ino)?.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        self.stats.dir_fsyncs += 1;
        if self.fsync_fails(ino) {
            return Err(FsError::InjectedIo);
        }
        if self.ns.fsync_dir(ino) > 0 {
            for detached in self.detached.clone() {
                self.collect(detached)?;
            }
        }
        Ok(())
    }

    /// Entries of live directory `ino`, starting with `.` and `..`.
    pub(crate) fn readdir(&self, ino: Ino) -> FsResult<Vec<DirEntry>> {
        let live = self.ns.live();
        let Some(children) = live.children(ino) else {
            return Err(if self.meta.contains_key(&ino) { FsError::NotDir } else { FsError::NotFound });
        };
        let parent = live.parent(ino).unwrap_or(ROOT);
        let mut entries = vec![
            DirEntry { ino, kind: Kind::Dir, name: ".".into() },
            DirEntry { ino: parent, kind: Kind::Dir, name: "..".into() },
        ];
        for (name, &child) in children {
            let kind = self.meta(child)?.kind;
            entries.push(DirEntry { ino: child, kind, name: name.clone() });
        }
        Ok(entries)
    }

    /// Sets (or clears) the substring of paths whose fsyncs fail with `EIO`.
    pub(crate) fn set_fail_fsync(&mut self, matching: Option<String>) {
        self.fail_fsync = matching;
    }

    /// Sets (or clears) how many more bytes of file growth are accepted before `ENOSPC`.
    pub(crate) fn set_enospc_budget(&mut self, budget: Option<u64>) {
        self.enospc_budget = budget;
    }

    /// The remaining ENOSPC budget, if one is set.
    pub(crate) fn enospc_budget(&self) -> Option<u64> {
        self.enospc_budget
    }

    /// Counters and gauges.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.stats;
        for ino in self.contents.inodes() {
            let bytes = self.contents.unsynced_bytes(ino);
            stats.unsynced_bytes += bytes;
            stats.unsynced_files += u64::from(self.contents.pending_changes(ino) > 0);
        }
        stats.unsynced_ns_ops = self.ns.unsynced_ops() as u64;
        stats
    }

    /// Cuts the power. Nothing may be open (the caller unmounted first).
    pub(crate) fn power_cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        let mut rng = match mode {
            CutMode::DropAll => None,
            CutMode::KeepPrefix { seed } => Some(SplitMix64::new(seed)),
        };
        let prefix = match rng.as_mut() {
            None => 0,
            Some(rng) => rng.below(self.ns.unsynced_ops() as u64 + 1) as usize,
        };
        let ns = self.ns.cut(prefix);
        let mut report = CutReport {
            ns_ops_kept: ns.kept,
            ns_ops_dropped: ns.dropped,
            ns_ops_skipped: ns.skipped,
            ..CutReport::default()
        };
        self.open.clear();
        self.detached.clear();
        let live = self.ns.live();
        let gone: Vec<Ino> = self.meta.keys().copied().filter(|&i| !live.contains(i)).collect();
        for ino in gone {
            self.meta.remove(&ino);
            self.contents.remove(ino)?;
            report.inodes_deleted += 1;
        }
        for ino in self.contents.inodes() {
            let file_mode = match rng.as_mut() {
                None => FileCutMode::DropAll,
                Some(rng) => FileCutMode::KeepPrefix(rng),
            };
            let cut = self.contents.cut(ino, file_mode).map_err(|e| match e {
                FsError::Backing(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            report.changes_dropped += cut.changes_dropped;
            report.bytes_dropped += cut.bytes_dropped;
            report.files_reverted += usize::from(cut.changes_dropped > 0);
            report.files_torn += usize::from(cut.torn);
        }
        self.stats.power_cuts += 1;
        Ok(report)
    }
}
