//! The durable stores openraft runs on: [`LogStore`] (log and vote, one checksummed file with
//! group-committed `fdatasync`s) and [`StateMachineStore`] (the metadata in memory, persisted
//! as atomic snapshots). Both live in one directory (`<data_dir>/raft/`).

pub mod log_file;
mod log_store;
mod state_machine;
#[cfg(test)]
mod tests;

pub use log_store::LogStore;
pub use state_machine::{AppliedState, SNAPSHOT_FILE, SharedState, StateMachineStore};

/// Opens both stores in `dir` (created if missing).
pub fn open(dir: &std::path::Path) -> std::io::Result<(LogStore, StateMachineStore)> {
    let log = LogStore::open(dir)?;
    let sm = StateMachineStore::open(dir)?;
    Ok((log, sm))
}
