//! Record batches as a producer sends them: header parse and validation, the topic rules the
//! leader applies (`strom_broker::ingest`), and a real partition log as the model's store.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use strom_broker::ingest::{Codec, IngestPolicy, TimestampType, codec, prepare};
use strom_log::{FlushPolicy, HEADER_LEN, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound, batch};

/// The broker clock the rules see (fixed, so a run is reproducible).
const NOW: i64 = 1_700_000_000_000;
/// A fresh log once the current one holds this much (bounds the disk a long run uses).
const MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;

struct Store {
    _dir: tempfile::TempDir,
    manager: LogManager,
    log: PartitionLog,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let manager = LogManager::open(ManagerConfig::new(dir.path())).expect("log manager");
        let log = manager.create("fuzz", 0, config()).expect("log");
        Mutex::new(Store { _dir: dir, manager, log })
    })
}

fn config() -> LogConfig {
    // No fsync per append: the property is about bytes, not durability.
    LogConfig { flush_policy: FlushPolicy::Never, max_message_bytes: 8 * 1024 * 1024, ..LogConfig::default() }
}

fn policies() -> [IngestPolicy; 4] {
    let open = IngestPolicy { before_max_ms: i64::MAX, after_max_ms: i64::MAX, ..IngestPolicy::default() };
    [
        IngestPolicy { compression: Some(Codec::Zstd), ..open },
        IngestPolicy { compression: Some(Codec::None), ..open },
        IngestPolicy { compression: Some(Codec::Snappy), ..open },
        IngestPolicy { timestamp_type: TimestampType::LogAppendTime, ..IngestPolicy::default() },
    ]
}

/// The uncompressed records section of a valid batch.
fn records_of(b: &[u8]) -> Vec<u8> {
    let h = strom_log::BatchHeader::parse(b).expect("a valid batch has a header");
    let c = Codec::from_id(h.compression()).expect("a valid codec");
    codec::decompress(c, &b[HEADER_LEN..], strom_broker::ingest::MAX_DECOMPRESSED_BYTES).expect("decompresses")
}

/// Recomputes the CRC of every batch whose header and length fit in `buf`, so the fuzzer can
/// reach past the CRC check (which it cannot satisfy by mutation alone).
pub fn fix_crcs(buf: &mut [u8]) {
    let mut at = 0usize;
    while let Some(h) = strom_log::BatchHeader::parse(&buf[at..]) {
        let end = at + h.total_len();
        if h.batch_length < 49 || end > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[at + batch::CRC_START..end]);
        buf[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}

/// See the crate docs. The first byte is flags: bit 0 recomputes the CRCs of the rest
/// ([`fix_crcs`]) before it is used.
pub fn record_batch(data: &[u8]) {
    let Some((flags, rest)) = data.split_first() else { return };
    let mut owned = rest.to_vec();
    if flags & 1 == 1 {
        fix_crcs(&mut owned);
    }
    let input = Bytes::from(owned);
    let valid = strom_log::validate_batches(&input);
    for policy in policies() {
        let Ok(out) = prepare(input.clone(), &policy, NOW) else { continue };
        let Ok(batches) = &valid else { continue };
        if batches.len() != 1 || out.records == input {
            continue;
        }
        // A rewritten batch is valid and carries the same records.
        let rewritten = strom_log::validate_batches(&out.records).expect("a rewrite of a valid batch is valid");
        assert_eq!(rewritten.len(), 1);
        let (a, b) = (batches[0].header, rewritten[0].header);
        assert_eq!(
            (a.producer_id, a.producer_epoch, a.base_sequence, a.record_count, a.base_timestamp),
            (b.producer_id, b.producer_epoch, b.base_sequence, b.record_count, b.base_timestamp),
            "the header fields the rules keep"
        );
        if policy.compression.is_some() {
            assert_eq!(records_of(&input), records_of(&out.records), "the same records");
        }
    }

    let mut store = store().lock().unwrap_or_else(|p| p.into_inner());
    if store.log.size_bytes() > MAX_LOG_BYTES {
        store.manager.delete("fuzz", 0).expect("delete the full log");
        store.log = store.manager.create("fuzz", 0, config()).expect("a fresh log");
    }
    let Ok(info) = store.log.append(input.clone(), 5) else { return };
    let batches = valid.expect("the log accepts only what validates");
    if info.duplicate {
        return;
    }
    // What was acknowledged reads back byte for byte, but for the offset and epoch prefix.
    let read = store.log.read(info.base_offset, input.len(), ReadBound::LogEnd).expect("read back");
    let mut at = 0usize;
    let mut offset = info.base_offset;
    for b in &batches {
        let stored = &read.records[at..at + b.bytes.len()];
        assert_eq!(&stored[batch::REWRITTEN_PREFIX_LEN..], &b.bytes[batch::REWRITTEN_PREFIX_LEN..], "stored as sent");
        let h = strom_log::BatchHeader::parse(stored).expect("header");
        assert_eq!((h.base_offset, h.partition_leader_epoch), (offset, 5), "offset and epoch assigned");
        offset = h.last_offset() + 1;
        at += b.bytes.len();
    }
    assert_eq!(offset, info.last_offset + 1);
}
