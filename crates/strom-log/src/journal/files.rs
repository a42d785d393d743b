//! The journal's files: listing and scanning them at startup, the checkpoint file, and the
//! writer that appends rounds and recycles files once a checkpoint has passed them.
//!
//! Files are named `<n:08>.wal`; the order that matters is their header's `first_jsn`. A file
//! freed by a checkpoint is reused rather than deleted: its blocks stay allocated, so a round
//! written over them commits no size or extent change and its `fdatasync` is a data flush
//! only (on ext4, about half the time of one that grows the file).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, HEADER_LEN, Record, Stop};
use crate::dirs::sync_dir;
use crate::error::{Error, Result};

const CHECKPOINT_FILE: &str = "checkpoint";
/// In a file's first use, blocks are allocated (zeros written) this far ahead of the write
/// position, so that most rounds' `fdatasync` has no size or extent change to commit.
const ZERO_AHEAD: u64 = 4 * 1024 * 1024;
/// Zeros for [`ZERO_AHEAD`], written in pieces of this size (`.bss`, no allocation).
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];
/// Freed files kept for reuse; more are deleted.
const MAX_FREE_FILES: usize = 2;

/// A journal file found at startup.
#[derive(Debug)]
pub(crate) struct FoundFile {
    pub(crate) path: PathBuf,
    /// `None` when the header is torn or missing (a file created by a round that never
    /// became durable): nothing in it counts.
    pub(crate) first_jsn: Option<u64>,
}

/// The number in a `<n:08>.wal` name.
fn file_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".wal")?.parse().ok()
}

/// The journal files in `dir`, ordered by their header's `first_jsn` (files without an
/// intact header first).
pub(crate) fn list(dir: &Path) -> Result<Vec<FoundFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if file_number(&path).is_none() {
            continue;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        let first_jsn = File::open(&path)
            .and_then(|mut f| f.read_exact(&mut header))
            .ok()
            .and_then(|()| format::decode_header(&header));
        out.push(FoundFile { path, first_jsn });
    }
    out.sort_by_key(|f| (f.first_jsn, file_number(&f.path)));
    Ok(out)
}

/// The jsn of the last completed checkpoint: every record below it is durable in its
/// partition's segments. `None` when there is no checkpoint yet (a new journal).
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => format::decode_checkpoint(&bytes).map(Some).ok_or_else(|| Error::Corrupted {
            path,
            position: 0,
            reason: "journal checkpoint file is damaged".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Records durably that every record below `jsn` is in its segments: written to a temporary
/// file, fsynced, renamed over the checkpoint file, and the directory fsynced.
pub(crate) fn write_checkpoint(dir: &Path, jsn: u64) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join("checkpoint.tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&format::encode_checkpoint(jsn)).and_then(|()| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}

/// What a startup scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// The jsn after the last record replayed (the checkpoint when nothing was).
    pub(crate) next_jsn: u64,
    /// Records handed to the caller.
    pub(crate) records: u64,
    /// Where and why the scan stopped in the last file it read, when it did not simply run
    /// out of records (a torn tail of a round that was never acknowledged).
    pub(crate) stopped: Option<(PathBuf, u64, String)>,
}

/// Hands every record at or after `checkpoint` to `apply`, in jsn order, reading `files` (as
/// from [`list`]). Within a file the records must be consecutive from its `first_jsn`; the
/// scan of a file ends at the first torn, damaged or out-of-sequence record (a recycled file
/// holds older records after its newest ones), and goes on with the next file only if that
/// one starts at or after the next expected jsn (a gap is jsns burnt by a round that failed,
/// so never acknowledged). `max_record` bounds a believable record length.
pub(crate) fn scan(
    files: &[FoundFile],
    checkpoint: u64,
    max_record: usize,
    mut apply: impl FnMut(Record) -> Result<()>,
) -> Result<ScanEnd> {
    let mut end = ScanEnd { next_jsn: checkpoint, ..ScanEnd::default() };
    // Start with the last file that begins at or before the checkpoint (it may hold records
    // after it); earlier files hold only checkpointed records or are stale.
    let start = files.iter().rposition(|f| f.first_jsn.is_some_and(|j| j <= checkpoint)).unwrap_or(0);
    for f in &files[start..] {
        let Some(first) = f.first_jsn else { continue };
        if first < end.next_jsn && first != files[start].first_jsn.unwrap_or(u64::MAX) {
            continue; // stale: freed before the checkpoint
        }
        if first > end.next_jsn {
            tracing::info!(file = %f.path.display(), expected = end.next_jsn, first, "journal: skipping jsns burnt by a failed round");
            end.next_jsn = first;
        }
        let data = Bytes::from(std::fs::read(&f.path).map_err(|e| Error::io(&f.path, e))?);
        let mut pos = HEADER_LEN as usize;
        let mut jsn = first;
        end.stopped = None;
        while pos < data.len() {
            let rec = match format::decode_record(&data.slice(pos..), max_record) {
                // An intact record of an earlier lap of this recycled file (every jsn this lap
                // wrote is at least the file's first): the normal end of what this lap wrote,
                // which every clean restart meets, not damage.
                Ok((rec, _)) if rec.jsn < first => break,
                Ok((rec, _)) if rec.jsn != jsn => {
                    end.stopped = Some((f.path.clone(), pos as u64, format!("jsn {} where {jsn} was next", rec.jsn)));
                    break;
                }
                Ok((rec, len)) => {
                    pos += len;
                    rec
                }
                Err(Stop::Truncated) => break,
                Err(Stop::Invalid(why)) => {
                    // Zeros where nothing was written yet are the normal end of a new file.
                    if data[pos..].iter().take(64).any(|b| *b != 0) {
                        end.stopped = Some((f.path.clone(), pos as u64, why.to_string()));
                    }
                    break;
                }
            };
            jsn += 1;
            if rec.jsn >= end.next_jsn {
                end.next_jsn = rec.jsn + 1;
                end.records += 1;
                apply(rec)?;
            }
        }
    }
    Ok(end)
}

/// Writes zeros past the end of the active file when the next `len` bytes would not fit in
/// what is allocated: up to [`ZERO_AHEAD`] beyond them, within the file size. The round's
/// fdatasync then commits the allocation once per step rather than once per round. A failed
/// write of zeros (a full disk) is not an error here: the round's own write reports it.
fn allocate_ahead(a: &mut Active, len: u64, file_bytes: u64) {
    let need = a.pos + len;
    if need <= a.allocated {
        return;
    }
    let target = need.max((a.allocated + ZERO_AHEAD).min(file_bytes));
    while a.allocated < target {
        let n = (target - a.allocated).min(ZEROS.len() as u64) as usize;
        if let Err(e) = a.file.write_all_at(&ZEROS[..n], a.allocated) {
            tracing::debug!(file = %a.path.display(), error = %e, "journal: could not allocate ahead");
            return;
        }
        a.allocated += n as u64;
    }
}

/// The file rounds are being written to.
#[derive(Debug)]
struct Active {
    file: File,
    path: PathBuf,
    pos: u64,
    /// The file's length: bytes up to here are allocated (old records of a reused file, or
    /// zeros written ahead), so writing over them changes no metadata.
    allocated: u64,
}

/// Appends rounds of records to the journal files, one file at a time.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    file_bytes: u64,
    active: Option<Active>,
    /// Files holding records that no checkpoint covers yet, oldest first, by first jsn
    /// (the active one last).
    in_use: VecDeque<(u64, PathBuf)>,
    /// Files every record of which a checkpoint covers, ready for reuse.
    free: Vec<PathBuf>,
    next_jsn: u64,
    next_number: u64,
}

impl Writer {
    /// A writer whose first record gets `next_jsn`; `free` are existing files it may reuse
    /// (every record in them is covered by a checkpoint).
    pub(crate) fn new(dir: &Path, file_bytes: u64, next_jsn: u64, free: Vec<PathBuf>) -> Result<Writer> {
        let next_number = free.iter().filter_map(|p| file_number(p)).max().map_or(0, |n| n + 1);
        let mut w = Writer {
            dir: dir.to_path_buf(),
            file_bytes,
            active: None,
            in_use: VecDeque::new(),
            free: Vec::new(),
            next_jsn,
            next_number,
        };
        for p in free {
            w.add_free(p)?;
        }
        Ok(w)
    }

    /// The journal's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The jsn the next record gets.
    pub(crate) fn next_jsn(&self) -> u64 {
        self.next_jsn
    }

    /// Reserves `n` consecutive jsns for the next round and returns the first.
    pub(crate) fn take_jsns(&mut self, n: u64) -> u64 {
        let first = self.next_jsn;
        self.next_jsn += n;
        first
    }

    /// Makes sure a round of `len` bytes whose first record gets the next jsn can be written:
    /// switches to another file when the active one cannot hold it (a round larger than a
    /// file gets a file of its own). Returns the jsn a checkpoint must reach to free the
    /// files before the new one, when it switched.
    pub(crate) fn prepare(&mut self, len: u64) -> Result<Option<u64>> {
        if let Some(a) = &mut self.active {
            if a.pos == HEADER_LEN || a.pos + len <= self.file_bytes {
                allocate_ahead(a, len, self.file_bytes);
                return Ok(None);
            }
        }
        let had_files = !self.in_use.is_empty();
        let first_jsn = self.next_jsn;
        let (path, reused) = match self.free.pop() {
            Some(p) => (p, true),
            None => {
                let p = self.dir.join(format!("{:08}.wal", self.next_number));
                self.next_number += 1;
                (p, false)
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // The header goes with the first round's fdatasync; a torn one makes the file's
        // records void, and they were not acknowledged.
        file.write_all_at(&format::encode_header(first_jsn), 0).map_err(|e| Error::io(&path, e))?;
        let mut f = &file;
        f.seek(SeekFrom::Start(HEADER_LEN)).map_err(|e| Error::io(&path, e))?;
        if !reused {
            // The new file's entry must be durable before a record in it is acknowledged.
            sync_dir(&self.dir)?;
        }
        let allocated = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut active = Active { file, path: path.clone(), pos: HEADER_LEN, allocated };
        allocate_ahead(&mut active, len, self.file_bytes);
        self.active = Some(active);
        self.in_use.push_back((first_jsn, path));
        Ok(had_files.then_some(first_jsn))
    }

    /// Writes a prepared round (every slice, in order) at the end of the active file.
    pub(crate) fn write(&mut self, mut slices: &mut [IoSlice<'_>], len: u64) -> Result<()> {
        let a = self.active.as_mut().ok_or_else(|| Error::StorageFailed { path: self.dir.clone() })?;
        let mut f = &a.file;
        while !slices.is_empty() {
            match f.write_vectored(slices) {
                Ok(0) => return Err(Error::io(&a.path, std::io::Error::from(std::io::ErrorKind::WriteZero))),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&a.path, e)),
            }
        }
        a.pos += len;
        Ok(())
    }

    /// Makes everything written to the active file durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let a = self.active.as_ref().ok_or_else(|| Error::StorageFailed { path: self.dir.clone() })?;
        a.file.sync_data().map_err(|e| Error::io(&a.path, e))
    }

    /// Where the next round goes in the active file (tests).
    #[cfg(test)]
    fn position(&self) -> Option<(PathBuf, u64)> {
        self.active.as_ref().map(|a| (a.path.clone(), a.pos))
    }

    /// Stops using the active file after a failed write or fsync: what it holds from that
    /// round on cannot be trusted, so the next round starts a file of its own, and the jsns
    /// already taken are burnt (the scan at startup steps over the gap).
    pub(crate) fn abandon_active(&mut self) {
        if let Some(a) = self.active.take() {
            tracing::warn!(file = %a.path.display(), "journal: abandoning the active file after a failed round");
        }
    }

    /// Frees the files every record of which lies below `checkpoint`. The active file stays.
    pub(crate) fn release_below(&mut self, checkpoint: u64) -> Result<()> {
        while self.in_use.len() > 1 && self.in_use[1].0 <= checkpoint {
            let (_, path) = self.in_use.pop_front().expect("two files in use");
            self.add_free(path)?;
        }
        Ok(())
    }

    fn add_free(&mut self, path: PathBuf) -> Result<()> {
        if self.free.len() < MAX_FREE_FILES {
            self.free.push(path);
            return Ok(());
        }
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        // Not fsyncing the directory would be harmless (a stale file that comes back holds
        // only checkpointed records), but keep the directory's state plain.
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::{RecordBody, encode_record};

    fn round(w: &mut Writer, payloads: &[&[u8]]) -> Option<u64> {
        let recs: Vec<Vec<u8>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                encode_record(w.next_jsn() + i as u64, "t", 0, &RecordBody::Batches(Bytes::copy_from_slice(p)))
            })
            .collect();
        let len: u64 = recs.iter().map(|r| r.len() as u64).sum();
        let switched = w.prepare(len).expect("prepare");
        w.take_jsns(recs.len() as u64);
        let mut slices: Vec<IoSlice<'_>> = recs.iter().map(|r| IoSlice::new(r)).collect();
        w.write(&mut slices, len).expect("write");
        w.sync().expect("sync");
        switched
    }

    fn scan_all(dir: &Path, checkpoint: u64) -> (Vec<u64>, ScanEnd) {
        let mut seen = Vec::new();
        let end = scan(&list(dir).expect("list"), checkpoint, 1 << 20, |r| {
            seen.push(r.jsn);
            Ok(())
        })
        .expect("scan");
        (seen, end)
    }

    #[test]
    fn rounds_switch_files_recycle_and_scan_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Writer::new(dir.path(), 400, 0, Vec::new()).expect("writer");
        let mut switches = Vec::new();
        for i in 0..20u8 {
            if let Some(t) = round(&mut w, &[&[i; 50], &[i; 60]]) {
                switches.push(t);
            }
        }
        assert!(switches.len() >= 3, "400-byte files switch often: {switches:?}");
        let (seen, end) = scan_all(dir.path(), 0);
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        assert_eq!(end.next_jsn, 40);
        assert_eq!(end.stopped, None);
        // A checkpoint frees files; writing on reuses them, and a scan from the checkpoint
        // still sees exactly the records after it.
        w.release_below(switches[1]).expect("release");
        for i in 0..10u8 {
            round(&mut w, &[&[i; 70]]);
        }
        let (seen, end) = scan_all(dir.path(), switches[1]);
        assert_eq!(seen, (switches[1]..50).collect::<Vec<_>>());
        assert_eq!(end.next_jsn, 50);
        assert_eq!(end.stopped, None);
    }

    #[test]
    fn an_earlier_laps_records_in_a_reused_file_are_the_normal_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Writer::new(dir.path(), 400, 0, Vec::new()).expect("writer");
        let mut switches = Vec::new();
        while switches.len() < 3 {
            if let Some(t) = round(&mut w, &[&[7; 60]]) {
                switches.push(t);
            }
        }
        // Free the first files, then write until a freed one is reused and holds one new
        // record followed by the records of its earlier lap.
        w.release_below(switches[2]).expect("release");
        let reused = loop {
            if round(&mut w, &[&[8; 60]]).is_some() {
                break w.next_jsn();
            }
        };
        round(&mut w, &[&[9; 60]]);
        let (seen, end) = scan_all(dir.path(), switches[2]);
        assert_eq!(seen, (switches[2]..reused + 1).collect::<Vec<_>>());
        assert_eq!(end.stopped, None, "an earlier lap's intact records are not reported as damage");
    }

    #[test]
    fn a_torn_record_ends_the_scan_and_a_burnt_gap_is_crossed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Writer::new(dir.path(), 1 << 20, 10, Vec::new()).expect("writer");
        round(&mut w, &[b"one", b"two"]);
        // A failed round burns its jsns; the next file starts after them.
        w.take_jsns(3);
        w.abandon_active();
        round(&mut w, &[b"three"]);
        let (seen, _) = scan_all(dir.path(), 10);
        assert_eq!(seen, vec![10, 11, 15]);
        // Tear the last record of the second file: the scan stops there and reports it.
        let (last, end) = w.position().expect("an active file");
        let f = OpenOptions::new().write(true).open(&last).expect("open");
        f.write_all_at(&[0xff; 3], end - 3).expect("tear");
        let (seen, end) = scan_all(dir.path(), 10);
        assert_eq!(seen, vec![10, 11]);
        assert!(end.stopped.is_some(), "the damage is reported");
        assert_eq!(end.next_jsn, 15, "the burnt gap was crossed before the torn record");
    }
}
