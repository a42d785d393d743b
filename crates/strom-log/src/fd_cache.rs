//! Bounds the number of open sealed-segment files across all partitions.
//!
//! Active segments keep their file open (they are written all the time); sealed segments
//! are only read, mostly by consumers catching up, so their files are opened on demand and
//! the least recently used are closed once `capacity` are open. A reader holding an
//! `Arc<File>` keeps it usable even after eviction (the descriptor closes with the last Arc).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct FdCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    tick: u64,
    files: HashMap<PathBuf, (Arc<File>, u64)>,
}

impl FdCache {
    pub(crate) fn new(capacity: usize) -> Self {
        FdCache { capacity: capacity.max(1), inner: Mutex::new(Lru::default()) }
    }

    /// Returns an open handle for `path`, opening it (read-only) if needed.
    pub(crate) fn get(&self, path: &Path) -> Result<Arc<File>> {
        {
            let mut lru = self.lock();
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((f, used)) = lru.files.get_mut(path) {
                *used = tick;
                return Ok(f.clone());
            }
        }
        // Open outside the lock: a slow open must not stall every other reader.
        let file = Arc::new(File::open(path).map_err(|e| Error::io(path, e))?);
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        lru.files.insert(path.to_path_buf(), (file.clone(), tick));
        if lru.files.len() > self.capacity {
            // Evict the least recently used; O(n) over a bounded map, only on a miss.
            if let Some(oldest) = lru.files.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| p.clone()) {
                lru.files.remove(&oldest);
            }
        }
        Ok(file)
    }

    /// Forgets `path` (its segment was deleted or truncated away).
    pub(crate) fn remove(&self, path: &Path) {
        self.lock().files.remove(path);
    }

    /// Number of files currently held open.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.lock().files.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding this lock cannot leave the map inconsistent (every update
        // is a single insert/remove), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FdCache::new(2);
        for i in 0..5 {
            let p = dir.path().join(format!("{i}"));
            std::fs::write(&p, b"x").unwrap();
            cache.get(&p).unwrap();
        }
        assert_eq!(cache.open_count(), 2);
    }
}
