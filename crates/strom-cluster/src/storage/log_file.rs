//! The Raft log's one file, `raft-log`: an append-only sequence of checksummed records
//! (entries, votes, the committed id, truncations, purges), replayed in order at open.
//!
//! Record layout (big-endian): `u32 length | u32 crc32c(payload) | payload (JSON of
//! [`Record`])`. One file for entries *and* votes keeps Raft's rule that all log and vote
//! writes are ordered, with one `fdatasync` covering a whole group of them.
//!
//! A record cut short by a crash or failing its CRC is a torn tail only when nothing follows
//! it; it is cut and logged. Damage with valid records after it is refused: cutting there
//! could drop entries this node acknowledged, which Raft's safety depends on.
//!
//! When dead records (truncated or purged entries, old votes) outweigh the live ones, the file
//! is rewritten: live records to `raft-log.tmp`, fsync, rename over `raft-log`, fsync of the
//! directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, Vote};

/// The file's name in the Raft directory.
pub const LOG_FILE: &str = "raft-log";
/// Largest record accepted when reading (a length above it is damage, not an allocation).
pub const MAX_RECORD_BYTES: u32 = 64 << 20;
const HEADER: usize = 8;

/// One record of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Record {
    /// A log entry.
    Entry(Entry),
    /// The vote, replacing any earlier one.
    Vote(Vote),
    /// The committed log id, replacing any earlier one.
    Committed(Option<LogId>),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to and including this id are gone (they are in a snapshot).
    Purge(LogId),
}

/// What replaying the file found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Live entries by index.
    pub entries: BTreeMap<u64, Entry>,
    /// The last vote.
    pub vote: Option<Vote>,
    /// The last committed id.
    pub committed: Option<LogId>,
    /// The last purged id.
    pub purged: Option<LogId>,
    /// Bytes of the file.
    pub file_bytes: u64,
}

/// Encodes one record with its header.
pub fn encode(record: &Record) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("raft log record over 4 GiB"))?;
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::other(format!("raft log record of {len} bytes is over the {MAX_RECORD_BYTES} limit")));
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Replays `path` (creating it empty if missing), cutting a torn tail.
pub fn replay(path: &Path) -> io::Result<Replayed> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut out = Replayed::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = |why: &str| -> io::Result<()> {
            tracing::warn!(path = %path.display(), at = pos, why, "cutting a torn tail off the raft log");
            Ok(())
        };
        if rest.len() < HEADER {
            torn("short header")?;
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let end = HEADER + len as usize;
        if len > MAX_RECORD_BYTES || end > rest.len() {
            if len > MAX_RECORD_BYTES && rest.len() > HEADER + MAX_RECORD_BYTES as usize {
                return Err(corrupt(path, pos, "a record length over the limit with data after it"));
            }
            torn("record runs past the end of the file")?;
            break;
        }
        let payload = &rest[HEADER..end];
        if crc32c::crc32c(payload) != crc {
            if end < rest.len() {
                return Err(corrupt(path, pos, "a record fails its checksum and records follow it"));
            }
            torn("the last record fails its checksum")?;
            break;
        }
        let record: Record = serde_json::from_slice(payload)
            .map_err(|e| corrupt(path, pos, &format!("a checksummed record does not decode: {e}")))?;
        apply(&mut out, record);
        pos += end;
    }
    out.file_bytes = pos as u64;
    if pos < bytes.len() {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(pos as u64)?;
        f.sync_all()?;
    }
    Ok(out)
}

fn corrupt(path: &Path, at: usize, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("raft log {} is damaged at byte {at}: {why}", path.display()))
}

/// Applies one record to the replayed image (the same rules the writer's live set follows).
pub fn apply(out: &mut Replayed, record: Record) {
    match record {
        Record::Entry(e) => {
            out.entries.insert(e.log_id.index, e);
        }
        Record::Vote(v) => out.vote = Some(v),
        Record::Committed(c) => out.committed = c,
        Record::Truncate(from) => {
            out.entries.split_off(&from);
        }
        Record::Purge(upto) => {
            out.entries = out.entries.split_off(&(upto.index + 1));
            out.purged = Some(upto);
        }
    }
}

/// The open file: appends, syncs, and rewrites when mostly dead.
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    file: File,
    bytes: u64,
}

impl LogFile {
    /// Opens `dir/raft-log` for appending (after [`replay`]), `bytes` long. A file created
    /// here has its directory entry fsynced before anything is appended: otherwise a power
    /// cut could drop the whole file, every fsynced entry and vote in it with it (found by
    /// the fault harness's power cut of every node).
    pub fn open(dir: &Path, bytes: u64) -> io::Result<LogFile> {
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if !existed {
            File::open(dir)?.sync_all()?;
        }
        Ok(LogFile { dir: dir.to_path_buf(), file, bytes })
    }

    /// Size of the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends encoded records (not synced).
    pub fn append(&mut self, encoded: &[u8]) -> io::Result<()> {
        self.file.write_all(encoded)?;
        self.bytes += encoded.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Replaces the file with `live` (already encoded records), durably.
    pub fn rewrite(&mut self, live: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(live)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(self.dir.join(LOG_FILE))?;
        self.bytes = live.len() as u64;
        Ok(())
    }
}
