//! Producer-id allocation for InitProducerId, unique across restarts (and, in a cluster,
//! across brokers).
//!
//! Ids are handed out from blocks of [`BLOCK_SIZE`]. On a single node, before the first id of
//! a block is handed out, the end of that block is written to `<data>/producer-ids` and
//! fsynced; after a restart (clean or not) allocation resumes at the persisted end, so no id
//! is ever handed out twice. In a cluster each block comes from the controller (a committed
//! `AllocateProducerIds` command), so no two brokers hand out the same id: an idempotent
//! producer's id names it cluster-wide. A crash wastes at most the rest of one block.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strom_cluster::{Applied, ClusterNode, ControllerReply, ControllerRequest};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::metadata::write_file_atomically;

/// Name of the allocation file in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";

/// Ids reserved per fsync of the allocation file.
pub const BLOCK_SIZE: i64 = 1000;

/// The end of the last block a single node persisted in `data_dir` (0 without a file): no id
/// at or above it was handed out.
pub fn persisted_floor(data_dir: &Path) -> Result<i64> {
    read_persisted_end(&data_dir.join(PRODUCER_IDS_FILE))
}

fn read_persisted_end(path: &Path) -> Result<i64> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| Error::CorruptMetadata {
            path: path.to_path_buf(),
            reason: format!("expected a non-negative integer, found {text:?}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Hands out unique producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    source: BlockSource,
    /// `(next id to hand out, end of the current block)`; `next == end` means a new block
    /// must be obtained first. Held across obtaining one (rare), so two callers never both
    /// extend it.
    state: Mutex<(i64, i64)>,
}

/// Where blocks come from.
#[derive(Debug)]
enum BlockSource {
    /// The single node's allocation file.
    File(PathBuf),
    /// The cluster's controller.
    Cluster(Arc<ClusterNode>),
}

impl ProducerIdAllocator {
    /// Opens (or creates) the allocation file in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ProducerIdAllocator> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let start = read_persisted_end(&path)?;
        Ok(ProducerIdAllocator { source: BlockSource::File(path), state: Mutex::new((start, start)) })
    }

    /// An allocator whose blocks the cluster's controller hands out.
    pub fn cluster(node: Arc<ClusterNode>) -> ProducerIdAllocator {
        ProducerIdAllocator { source: BlockSource::Cluster(node), state: Mutex::new((0, 0)) }
    }

    /// The next unused producer id. Waits for one fsync (or one controller round trip) every
    /// [`BLOCK_SIZE`] ids.
    pub async fn allocate(&self) -> Result<i64> {
        let mut state = self.state.lock().await;
        let (next, end) = *state;
        if next >= end {
            *state = self.next_block(next).await?;
        }
        let id = state.0;
        state.0 += 1;
        debug_assert!(state.0 <= state.1, "ids beyond the obtained block are never handed out");
        Ok(id)
    }

    /// A new block `(first, end)`; `next` is where the used-up one ended.
    async fn next_block(&self, next: i64) -> Result<(i64, i64)> {
        match &self.source {
            BlockSource::File(path) => {
                let new_end = next
                    .checked_add(BLOCK_SIZE)
                    .ok_or_else(|| Error::InvalidRequest("producer ids exhausted".into()))?;
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_file_atomically(&path, format!("{new_end}\n").as_bytes()))
                    .await
                    .map_err(|e| Error::io("joining the producer-id write", std::io::Error::other(e)))??;
                Ok((next, new_end))
            }
            BlockSource::Cluster(node) => {
                let node_id = i32::try_from(node.node_id()).unwrap_or(i32::MAX);
                let request = ControllerRequest::AllocateProducerIds { node_id, count: BLOCK_SIZE };
                match node.submit(request, Duration::from_secs(10)).await {
                    Ok(ControllerReply::Committed { applied: Applied::ProducerIds { first, count }, .. }) => {
                        Ok((first, first + count))
                    }
                    Ok(other) => Err(Error::MetadataUnavailable(format!("unexpected controller reply {other:?}"))),
                    Err(e) => Err(Error::MetadataUnavailable(format!("no producer-id block: {e}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let a = ProducerIdAllocator::open(dir.path()).expect("open");
            for _ in 0..(BLOCK_SIZE + 5) {
                assert!(seen.insert(a.allocate().await.expect("allocate")), "duplicate id");
            }
        }
        assert_eq!(seen.len() as i64, 3 * (BLOCK_SIZE + 5));
    }
}
