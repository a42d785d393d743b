//! The stores against openraft's own conformance suite, and across restarts of the files.

use std::io::Write;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload};

use super::log_file::LOG_FILE;
use super::{LogStore, StateMachineStore};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = super::open(dir.path()).expect("open stores");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite passes");
}

fn entry(term: u64, index: u64) -> Entry {
    Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    log.blocking_append(entries).await.expect("append and flush");
}

#[tokio::test]
async fn the_log_and_vote_survive_a_reopen_with_truncation_and_purge_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        log.save_vote(&Vote::new(3, 2)).await.expect("vote");
        append(&mut log, (1..=10).map(|i| entry(1, i)).collect()).await;
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 8)).await.expect("truncate");
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 3)).await.expect("purge");
        append(&mut log, vec![entry(2, 8)]).await;
    }
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 2)));
    let ids: Vec<(u64, u64)> = log
        .try_get_log_entries(0..100)
        .await
        .expect("read")
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect();
    assert_eq!(ids, vec![(1, 4), (1, 5), (1, 6), (1, 7), (2, 8)]);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
}

#[tokio::test]
async fn a_torn_last_record_is_cut_and_damage_before_valid_records_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        append(&mut log, (1..=3).map(|i| entry(1, i)).collect()).await;
    }
    let path = dir.path().join(LOG_FILE);
    let good = std::fs::read(&path).expect("read");
    // A half-written fourth record: cut, the three stay.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(&[0, 0, 0, 40, 1, 2, 3])
        .expect("write");
    {
        let mut log = LogStore::open(dir.path()).expect("reopen after a torn tail");
        assert_eq!(log.try_get_log_entries(0..10).await.expect("read").len(), 3);
    }
    assert_eq!(std::fs::read(&path).expect("read"), good, "the torn tail was cut off the file");
    // A flipped byte inside the first record, with valid records after it: refused.
    let mut bad = good.clone();
    bad[12] ^= 0xff;
    std::fs::write(&path, &bad).expect("write");
    let err = LogStore::open(dir.path()).expect_err("damage before valid records is refused");
    assert!(err.to_string().contains("damaged"), "{err}");
}
