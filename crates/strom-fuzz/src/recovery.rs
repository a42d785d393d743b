//! Recovery of a data directory made of arbitrary bytes (a partition's segment, its indexes
//! and producer snapshot; the node journal's file and checkpoint; the single-node topic
//! registry): opening never panics, whatever the log then serves passes its checks, and a
//! damaged registry is refused with an error rather than a panic.

use std::path::Path;

use strom_log::{LogManager, ManagerConfig, ReadBound};

/// The files of the data directory, in the order the input holds them.
pub const FILES: [&str; 7] = [
    "fuzz-0/00000000000000000000.log",
    "fuzz-0/00000000000000000000.index",
    "fuzz-0/00000000000000000000.timeindex",
    "fuzz-0/00000000000000000000.snapshot",
    ".journal/00000000.wal",
    ".journal/checkpoint",
    "topics.json",
];

/// The input: a flags byte (bit 0: recompute the segment's CRCs, to reach past the CRC
/// check), then each of [`FILES`] as a 4-byte big-endian length and its bytes. A file the
/// input ends before is absent; a length past the end takes what is left.
fn write_files(dir: &Path, data: &[u8]) {
    let Some((flags, mut rest)) = data.split_first() else { return };
    for (i, name) in FILES.iter().enumerate() {
        let Some(len) = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else { return };
        rest = &rest[4..];
        let (this, next) = rest.split_at(len.min(rest.len()));
        let mut bytes = this.to_vec();
        if i == 0 && flags & 1 == 1 {
            crate::batch::fix_crcs(&mut bytes);
        }
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
        std::fs::write(path, bytes).expect("write");
        rest = next;
    }
}

/// Encodes partition files as a [`recovery`] input (for seeding the corpus from real logs).
pub fn encode_input(files: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0u8];
    for f in files {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// See the crate docs.
pub fn recovery(data: &[u8]) {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("fuzz-0")).expect("partition dir");
    write_files(root.path(), data);
    if root.path().join("topics.json").exists() {
        let me = strom_broker::BrokerInfo { node_id: 1, host: "127.0.0.1".into(), port: 9092, rack: None };
        let _ = strom_broker::LocalMetadataStore::open(root.path(), me);
    }
    let Ok(manager) = LogManager::open(ManagerConfig::new(root.path())) else { return };
    for log in manager.list() {
        log.validate().unwrap_or_else(|e| panic!("recovered log is inconsistent: {e}"));
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let Ok(r) = log.read(offset, 1 << 20, ReadBound::LogEnd) else { break };
            if r.records.is_empty() {
                break;
            }
            let batches = strom_log::validate_batches(&r.records).expect("a served batch passes its checks");
            offset = batches.last().map_or(offset + 1, |b| b.header.last_offset() + 1);
        }
    }
    let _ = manager.shutdown();
}
