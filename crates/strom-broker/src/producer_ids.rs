//! Producer-id allocation for InitProducerId, unique across restarts.
//!
//! Ids are handed out from blocks of [`BLOCK_SIZE`]. Before the first id of a block is handed
//! out, the end of that block is written to `<data>/producer-ids` and fsynced; after a restart
//! (clean or not) allocation resumes at the persisted end, so no id is ever handed out twice.
//! A crash wastes at most the rest of one block.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::metadata::write_file_atomically;

/// Name of the allocation file in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";

/// Ids reserved per fsync of the allocation file.
pub const BLOCK_SIZE: i64 = 1000;

/// Hands out unique producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// `(next id to hand out, end of the persisted block)`; `next == end` means a new block
    /// must be persisted first.
    state: Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    /// Opens (or creates) the allocation file in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ProducerIdAllocator> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| Error::CorruptMetadata {
                path: path.clone(),
                reason: format!("expected a non-negative integer, found {text:?}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(ProducerIdAllocator { path, state: Mutex::new((start, start)) })
    }

    /// The next unused producer id. Blocks for one fsync every [`BLOCK_SIZE`] ids.
    pub fn allocate(&self) -> Result<i64> {
        // The guard is held across the (rare) fsync so that two callers cannot both extend the
        // block; no code under this lock can panic, and a poisoned lock still holds a
        // consistent pair because it is only assigned after the write succeeded.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (next, end) = *state;
        if next >= end {
            let new_end =
                next.checked_add(BLOCK_SIZE).ok_or_else(|| Error::InvalidRequest("producer ids exhausted".into()))?;
            write_file_atomically(&self.path, format!("{new_end}\n").as_bytes())?;
            *state = (next, new_end);
        }
        state.0 += 1;
        debug_assert!(state.0 <= state.1, "ids beyond the persisted block are never handed out");
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let a = ProducerIdAllocator::open(dir.path()).expect("open");
            for _ in 0..(BLOCK_SIZE + 5) {
                assert!(seen.insert(a.allocate().expect("allocate")), "duplicate id");
            }
        }
        assert_eq!(seen.len() as i64, 3 * (BLOCK_SIZE + 5));
    }
}
