//! File contents: each regular file's live bytes sit in a backing file `<data>/<ino>`; every
//! change since the file's last fsync has an undo entry, so a power cut can revert it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Ino;
use crate::error::{FsError, FsResult};
use crate::rng::SplitMix64;

/// Largest offset or size accepted (the kernel's `loff_t` is signed).
const MAX_SIZE: u64 = i64::MAX as u64;

/// How many backing files are kept open at once.
const OPEN_FILES: usize = 128;

/// One unsynced change to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// `len` (> 0) bytes written at `offset`.
    Write { offset: u64, len: u64 },
    /// The size was set to `new_len` (truncate, ftruncate, set_len).
    SetLen { new_len: u64 },
}

/// Undo entry: the change, the size before it, and the old bytes it overwrote or cut off
/// (only those that lay inside the old size), starting at `saved_at`.
#[derive(Debug)]
struct Undo {
    change: Change,
    old_size: u64,
    saved_at: u64,
    saved: Vec<u8>,
}

impl Undo {
    /// Bytes this change affected: written bytes, or the size difference.
    fn bytes(&self) -> u64 {
        match self.change {
            Change::Write { len, .. } => len,
            Change::SetLen { new_len } => new_len.abs_diff(self.old_size),
        }
    }
}

/// A regular file's size and pending (unsynced) changes, oldest first.
#[derive(Debug, Default)]
struct FileContent {
    size: u64,
    pending: Vec<Undo>,
}

/// What a cut did to one file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileCut {
    /// Changes reverted (a torn write counts as one).
    pub(crate) changes_dropped: usize,
    /// Bytes of those changes that were lost.
    pub(crate) bytes_dropped: u64,
    /// Whether the last kept write was torn.
    pub(crate) torn: bool,
}

/// How one file's pending changes are cut.
#[derive(Debug)]
pub(crate) enum FileCutMode<'a> {
    /// Revert every pending change.
    DropAll,
    /// Keep a random prefix of the pending changes, the last kept write perhaps torn.
    KeepPrefix(&'a mut SplitMix64),
}

/// All regular files' contents.
#[derive(Debug)]
pub(crate) struct Contents {
    dir: PathBuf,
    files: BTreeMap<Ino, FileContent>,
    cache: HashMap<Ino, File>,
}

impl Contents {
    /// Contents kept in `dir`, which must exist and hold no files named like inode numbers in use.
    pub(crate) fn new(dir: &Path) -> Self {
        Contents { dir: dir.to_path_buf(), files: BTreeMap::new(), cache: HashMap::new() }
    }

    fn path(&self, ino: Ino) -> PathBuf {
        self.dir.join(ino.to_string())
    }

    /// The open backing file of `ino` (which must be known).
    fn file(&mut self, ino: Ino) -> io::Result<&File> {
        if !self.cache.contains_key(&ino) {
            if self.cache.len() >= OPEN_FILES {
                // Evict an arbitrary entry: the cache only saves open(2) calls.
                if let Some(&victim) = self.cache.keys().next() {
                    self.cache.remove(&victim);
                }
            }
            let file = OpenOptions::new().read(true).write(true).open(self.path(ino))?;
            self.cache.insert(ino, file);
        }
        self.cache.get(&ino).ok_or_else(|| io::Error::other("backing file cache lost an entry"))
    }

    /// Creates the empty backing file of a new regular file `ino`.
    pub(crate) fn create(&mut self, ino: Ino) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(self.path(ino))?;
        self.files.insert(ino, FileContent::default());
        if self.cache.len() < OPEN_FILES {
            self.cache.insert(ino, file);
        }
        Ok(())
    }

    /// Deletes `ino`'s backing file and forgets it.
    pub(crate) fn remove(&mut self, ino: Ino) -> io::Result<()> {
        self.cache.remove(&ino);
        if self.files.remove(&ino).is_some() {
            match std::fs::remove_file(self.path(ino)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every regular file's inode number, ascending.
    pub(crate) fn inodes(&self) -> Vec<Ino> {
        self.files.keys().copied().collect()
    }

    fn content(&self, ino: Ino) -> FsResult<&FileContent> {
        self.files.get(&ino).ok_or(FsError::NotFound)
    }

    /// The live size of `ino`.
    pub(crate) fn size(&self, ino: Ino) -> FsResult<u64> {
        Ok(self.content(ino)?.size)
    }

    /// Reads up to `len` bytes at `offset` (fewer at end of file).
    pub(crate) fn read(&mut self, ino: Ino, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        let size = self.size(ino)?;
        let n = size.saturating_sub(offset).min(u64::from(len));
        let mut buf = vec![0; n as usize];
        if n > 0 {
            self.file(ino)?.read_exact_at(&mut buf, offset)?;
        }
        Ok(buf)
    }

    /// By how much writing `len` bytes at `offset` would grow the file.
    pub(crate) fn growth_of_write(&self, ino: Ino, offset: u64, len: u64) -> FsResult<u64> {
        let end = offset.checked_add(len).filter(|&e| e <= MAX_SIZE).ok_or(FsError::TooBig)?;
        let size = self.size(ino)?;
        Ok(if len == 0 { 0 } else { end.saturating_sub(size) })
    }

    /// Writes `data` at `offset` (a hole before it reads as zeros), recording an undo entry first.
    pub(crate) fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<()> {
        let len = data.len() as u64;
        let end = offset.checked_add(len).filter(|&e| e <= MAX_SIZE).ok_or(FsError::TooBig)?;
        let old_size = self.size(ino)?;
        if len == 0 {
            return Ok(());
        }
        let saved_end = end.min(old_size);
        let mut saved = vec![0; saved_end.saturating_sub(offset) as usize];
        let file = self.file(ino)?;
        if !saved.is_empty() {
            file.read_exact_at(&mut saved, offset)?;
        }
        if let Err(e) = file.write_all_at(data, offset) {
            // Put back what may have been partly written, so live content stays as it was.
            let _ = file.set_len(old_size);
            let _ = file.write_all_at(&saved, offset);
            return Err(e.into());
        }
        let undo = Undo { change: Change::Write { offset, len }, old_size, saved_at: offset, saved };
        let content = self.files.get_mut(&ino).ok_or(FsError::NotFound)?;
        content.size = old_size.max(end);
        content.pending.push(undo);
        Ok(())
    }

    /// Sets the size (shrinking or growing with zeros), recording an undo entry first.
    pub(crate) fn set_len(&mut self, ino: Ino, new_len: u64) -> FsResult<()> {
        if new_len > MAX_SIZE {
            return Err(FsError::TooBig);
        }
        let old_size = self.size(ino)?;
        if new_len == old_size {
            return Ok(());
        }
        let mut saved = vec![0; old_size.saturating_sub(new_len) as usize];
        let file = self.file(ino)?;
        if !saved.is_empty() {
            file.read_exact_at(&mut saved, new_len)?;
        }
        file.set_len(new_len)?;
        let undo = Undo { change: Change::SetLen { new_len }, old_size, saved_at: new_len, saved };
        let content = self.files.get_mut(&ino).ok_or(FsError::NotFound)?;
        content.size = new_len;
        content.pending.push(undo);
        Ok(())
    }

    /// Makes `ino`'s content and size durable: its undo list is cleared.
    pub(crate) fn sync(&mut self, ino: Ino) -> FsResult<()> {
        self.files.get_mut(&ino).ok_or(FsError::NotFound)?.pending.clear();
        Ok(())
    }

    /// Bytes changed by `ino`'s pending changes (0 for unknown inodes).
    pub(crate) fn unsynced_bytes(&self, ino: Ino) -> u64 {
        self.files.get(&ino).map_or(0, |c| c.pending.iter().map(Undo::bytes).sum())
    }

    /// Number of `ino`'s pending changes.
    pub(crate) fn pending_changes(&self, ino: Ino) -> usize {
        self.files.get(&ino).map_or(0, |c| c.pending.len())
    }

    /// Applies a power cut to one file: reverts all pending changes or a random suffix of them
    /// (newest first), perhaps tearing the last kept write. Afterwards nothing is pending.
    pub(crate) fn cut(&mut self, ino: Ino, mode: FileCutMode<'_>) -> FsResult<FileCut> {
        let pending = std::mem::take(&mut self.files.get_mut(&ino).ok_or(FsError::NotFound)?.pending);
        let n = pending.len();
        let (keep, tear) = match mode {
            FileCutMode::DropAll => (0, None),
            FileCutMode::KeepPrefix(rng) => {
                let keep = rng.below(n as u64 + 1) as usize;
                let tear = match keep.checked_sub(1).map(|i| pending[i].change) {
                    Some(Change::Write { len, .. }) if len > 1 && rng.coin() => Some(1 + rng.below(len - 1)),
                    _ => None,
                };
                (keep, tear)
            }
        };
        let mut report = FileCut::default();
        let mut size = self.size(ino)?;
        let file = self.file(ino)?;
        for undo in pending[keep..].iter().rev() {
            file.set_len(undo.old_size)?;
            if !undo.saved.is_empty() {
                file.write_all_at(&undo.saved, undo.saved_at)?;
            }
            size = undo.old_size;
            report.changes_dropped += 1;
            report.bytes_dropped += undo.bytes();
        }
        if let (Some(kept), Some(undo)) = (tear, keep.checked_sub(1).map(|i| &pending[i])) {
            if let Change::Write { offset, len } = undo.change {
                // Keep data[..kept]: restore the old bytes after it and the old size (or the kept end).
                let tail = (kept as usize).min(undo.saved.len());
                if tail < undo.saved.len() {
                    file.write_all_at(&undo.saved[tail..], offset + kept)?;
                }
                size = undo.old_size.max(offset + kept);
                file.set_len(size)?;
                report.changes_dropped += 1;
                report.bytes_dropped += len - kept;
                report.torn = true;
            }
        }
        self.files.get_mut(&ino).ok_or(FsError::NotFound)?.size = size;
        Ok(report)
    }
}
