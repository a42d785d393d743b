//! Bad input to `append`: each defect is rejected with its own error variant, and the log is
//! unchanged afterwards — same log end, same bytes read back, before and after a crash and
//! reopen (so nothing of a rejected batch reached the file either).

mod common;

use bytes::{Bytes, BytesMut};
use strom_log::{BatchError, Error, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound};

use common::{make_batch, read_all};

const TOPIC: &str = "bad";

struct Fixture {
    dir: tempfile::TempDir,
    cfg: LogConfig,
    /// `None` only while reopening.
    open: Option<(LogManager, PartitionLog)>,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    /// A log holding three good batches, all durable.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig { max_message_bytes: 4096, segment_ms: None, ..LogConfig::default() };
        let mgr = open(&dir, &cfg);
        let log = mgr.create(TOPIC, 0, cfg.clone()).expect("create");
        let rt = common::runtime();
        let f = Fixture { dir, cfg, open: Some((mgr, log)), rt };
        for i in 0..3 {
            f.append_ok(make_batch(i, 3, 50, 100 + i as i64, None));
        }
        f
    }

    fn mgr(&self) -> &LogManager {
        &self.open.as_ref().expect("open").0
    }

    fn log(&self) -> &PartitionLog {
        &self.open.as_ref().expect("open").1
    }

    fn append_ok(&self, b: Bytes) -> i64 {
        let info = self.log().append(b, 0).expect("good append");
        self.rt.block_on(self.log().wait_durable(info.last_offset)).expect("wait_durable");
        info.base_offset
    }

    /// The whole log as bytes, for before/after comparisons.
    fn snapshot(&self) -> (i64, i64, Vec<u8>) {
        let bytes = read_all(self.log(), ReadBound::LogEnd, 1 << 20).iter().flat_map(|b| b.bytes.to_vec()).collect();
        (self.log().log_start_offset(), self.log().log_end_offset(), bytes)
    }

    /// Appends `bad`, returns the error, and checks that nothing changed.
    fn reject(&mut self, bad: Bytes, what: &str) -> Error {
        let before = self.snapshot();
        let err = match self.log().append(bad, 0) {
            Ok(info) => panic!("{what}: accepted as {info:?}"),
            Err(e) => e,
        };
        assert_eq!(self.snapshot(), before, "{what}: log changed by a rejected append");
        // And nothing of it reached the disk: crash (no shutdown) and recover.
        drop(self.open.take());
        let mgr = open(&self.dir, &self.cfg);
        let log = mgr.get(TOPIC, 0).expect("log after reopen");
        self.open = Some((mgr, log));
        assert_eq!(self.snapshot(), before, "{what}: log changed on disk by a rejected append");
        err
    }
}

fn open(dir: &tempfile::TempDir, cfg: &LogConfig) -> LogManager {
    let mut m = ManagerConfig::new(dir.path());
    m.default_log = cfg.clone();
    LogManager::open(m).expect("open")
}

fn good() -> Vec<u8> {
    make_batch(77, 4, 30, 5, None).to_vec()
}

/// Recomputes the CRC so that only the intended defect remains.
fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn batch_error(e: Error, what: &str) -> BatchError {
    match e {
        Error::InvalidBatch(b) => b,
        other => panic!("{what}: expected InvalidBatch, got {other:?}"),
    }
}

#[test]
fn each_defect_is_rejected_with_its_own_error_and_changes_nothing() {
    let mut f = Fixture::new();

    let mut crc = good();
    let last = crc.len() - 1;
    crc[last] ^= 0x01;
    assert!(matches!(batch_error(f.reject(crc.into(), "crc"), "crc"), BatchError::CrcMismatch { position: 0, .. }));

    let mut magic = good();
    magic[16] = 1;
    let e = batch_error(f.reject(magic.into(), "magic"), "magic");
    assert!(matches!(e, BatchError::UnsupportedMagic { magic: 1, position: 0 }), "{e:?}");

    let mut negative = good();
    negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    let e = batch_error(f.reject(negative.into(), "negative length"), "negative length");
    assert!(matches!(e, BatchError::InvalidLength { length: -1, .. }), "{e:?}");

    let mut small = good();
    small[8..12].copy_from_slice(&10i32.to_be_bytes());
    let e = batch_error(f.reject(small.into(), "length below header"), "length below header");
    assert!(matches!(e, BatchError::InvalidLength { length: 10, .. }), "{e:?}");

    let mut long = good();
    let claimed = long.len() as i32; // 12 bytes more than the buffer holds after the length field
    long[8..12].copy_from_slice(&claimed.to_be_bytes());
    let e = batch_error(f.reject(long.into(), "length past end"), "length past end");
    assert!(matches!(e, BatchError::LengthPastEnd { length, .. } if length == claimed), "{e:?}");

    let zero = strom_log::build_batch(0, None, &[]);
    let e = batch_error(f.reject(zero, "zero records"), "zero records");
    assert!(matches!(e, BatchError::InvalidRecordCount { count: 0, .. }), "{e:?}");

    let mut negative_count = good();
    negative_count[57..61].copy_from_slice(&(-3i32).to_be_bytes());
    fix_crc(&mut negative_count);
    let e = batch_error(f.reject(negative_count.into(), "negative count"), "negative count");
    assert!(matches!(e, BatchError::InvalidRecordCount { count: -3, .. }), "{e:?}");

    let mut delta = good();
    delta[23..27].copy_from_slice(&7i32.to_be_bytes());
    fix_crc(&mut delta);
    let e = batch_error(f.reject(delta.into(), "offset delta"), "offset delta");
    assert!(matches!(e, BatchError::OffsetDeltaMismatch { last_offset_delta: 7, count: 4, .. }), "{e:?}");

    // Four records claimed, five framed: an uncompressed batch's records must add up.
    let five = make_batch(78, 5, 30, 5, None).to_vec();
    let mut framing = five.clone();
    framing[57..61].copy_from_slice(&4i32.to_be_bytes());
    framing[23..27].copy_from_slice(&3i32.to_be_bytes());
    fix_crc(&mut framing);
    let e = batch_error(f.reject(framing.into(), "record framing"), "record framing");
    assert!(matches!(e, BatchError::MalformedRecords { .. }), "{e:?}");

    let header = good()[..40].to_vec();
    let e = batch_error(f.reject(header.into(), "truncated header"), "truncated header");
    assert!(matches!(e, BatchError::TruncatedHeader { position: 0, remaining: 40 }), "{e:?}");

    let e = batch_error(f.reject(Bytes::new(), "empty"), "empty");
    assert_eq!(e, BatchError::Empty);

    let too_big = make_batch(79, 10, 500, 5, None);
    let size = too_big.len();
    match f.reject(too_big, "too large") {
        Error::MessageTooLarge { size: s, max } => assert_eq!((s, max), (size, 4096)),
        other => panic!("too large: expected MessageTooLarge, got {other:?}"),
    }

    // The log still works, at the next offset.
    let end = f.log().log_end_offset();
    assert_eq!(f.append_ok(make_batch(80, 2, 10, 6, None)), end);
    f.mgr().shutdown().expect("shutdown");
}

/// A record set whose first batch is good and second bad is rejected whole: no partial write.
#[test]
fn a_bad_batch_rejects_the_whole_record_set() {
    let mut f = Fixture::new();
    let ok = good();
    let mut bad = good();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    let set: Bytes = [ok.clone(), bad].concat().into();
    let e = batch_error(f.reject(set, "good then bad"), "good then bad");
    assert!(matches!(e, BatchError::CrcMismatch { position, .. } if position == ok.len()), "{e:?}");

    let mut set = BytesMut::from(&ok[..]);
    set.extend_from_slice(&[0u8; 20]);
    let e = batch_error(f.reject(set.freeze(), "good then trailing bytes"), "trailing bytes");
    assert!(matches!(e, BatchError::TruncatedHeader { position, remaining: 20 } if position == ok.len()), "{e:?}");

    let small = make_batch(81, 1, 10, 5, None);
    let large = make_batch(82, 10, 500, 5, None);
    let set: Bytes = [small.to_vec(), large.to_vec()].concat().into();
    assert!(matches!(f.reject(set, "small then too large"), Error::MessageTooLarge { .. }));
    f.mgr().shutdown().expect("shutdown");
}

/// Idempotent-producer violations are their own errors, and write nothing.
#[test]
fn producer_sequence_and_epoch_violations() {
    let mut f = Fixture::new();
    let pid = 4242;
    f.append_ok(make_batch(1, 3, 10, 1, Some((pid, 2, 0))));
    f.append_ok(make_batch(2, 3, 10, 1, Some((pid, 2, 3))));

    match f.reject(make_batch(3, 1, 10, 1, Some((pid, 2, 9))), "sequence gap") {
        Error::OutOfOrderSequence { producer_id, expected, received } => {
            assert_eq!((producer_id, expected, received), (pid, 6, 9));
        }
        other => panic!("sequence gap: expected OutOfOrderSequence, got {other:?}"),
    }
    match f.reject(make_batch(4, 1, 10, 1, Some((pid, 1, 6))), "old epoch") {
        Error::InvalidProducerEpoch { producer_id, received, current } => {
            assert_eq!((producer_id, received, current), (pid, 1, 2));
        }
        other => panic!("old epoch: expected InvalidProducerEpoch, got {other:?}"),
    }
    // The next in-order batch is still accepted.
    let end = f.log().log_end_offset();
    assert_eq!(f.append_ok(make_batch(5, 1, 10, 1, Some((pid, 2, 6)))), end);
    f.mgr().shutdown().expect("shutdown");
}

/// Reads outside [log start, log end] are OffsetOutOfRange; at the log end, empty.
#[test]
fn reads_out_of_range() {
    let f = Fixture::new();
    let end = f.log().log_end_offset();
    for bad in [-1, end + 1, i64::MAX] {
        match f.log().read(bad, 1024, ReadBound::LogEnd) {
            Err(Error::OffsetOutOfRange { requested, log_start, log_end }) => {
                assert_eq!((requested, log_start, log_end), (bad, 0, end));
            }
            other => panic!("read({bad}): expected OffsetOutOfRange, got {other:?}"),
        }
    }
    let r = f.log().read(end, 1024, ReadBound::HighWatermark).expect("read at log end");
    assert!(r.records.is_empty());
    assert_eq!((r.high_watermark, r.log_end_offset), (end, end));
    f.mgr().shutdown().expect("shutdown");
}
