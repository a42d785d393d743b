//! Benchmark payloads: fresh random bytes for every message, so neither compression nor
//! any deduplicating layer gains from repeated data; in roundtrip mode the first
//! [`STAMP_LEN`] bytes carry the intended send time for the end-to-end latency.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// Bytes at the start of a roundtrip payload holding the send time (big-endian
/// nanoseconds since the run's clock base).
pub const STAMP_LEN: usize = 8;

/// Produces payloads into one reusable buffer (librdkafka copies on send).
#[derive(Debug)]
pub struct PayloadGen {
    rng: SmallRng,
    buf: Vec<u8>,
}

impl PayloadGen {
    /// A generator of `size`-byte payloads, seeded from the OS.
    pub fn new(size: usize) -> Self {
        Self { rng: SmallRng::from_os_rng(), buf: vec![0; size] }
    }

    /// Fills the buffer with fresh random bytes and returns it.
    pub fn fresh(&mut self) -> &[u8] {
        self.rng.fill_bytes(&mut self.buf);
        &self.buf
    }

    /// Like [`fresh`](Self::fresh), then writes `sent_at` (relative to `base`) into the
    /// first [`STAMP_LEN`] bytes. The buffer must be at least that long (checked by
    /// [`BenchConfig::validate`](crate::BenchConfig::validate)).
    pub fn stamped(&mut self, base: Instant, sent_at: Instant) -> &[u8] {
        self.rng.fill_bytes(&mut self.buf);
        if let Some(head) = self.buf.get_mut(..STAMP_LEN) {
            head.copy_from_slice(&stamp(base, sent_at).to_be_bytes());
        }
        &self.buf
    }
}

/// Nanoseconds from `base` to `at`, saturating (a u64 holds 584 years).
fn stamp(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// Reads the send time back out of a roundtrip payload; `None` if it is too short.
pub fn read_stamp(base: Instant, payload: &[u8]) -> Option<Instant> {
    let head: [u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    base.checked_add(Duration::from_nanos(u64::from_be_bytes(head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_fresh_and_sized() {
        let mut g = PayloadGen::new(256);
        let a = g.fresh().to_vec();
        let b = g.fresh().to_vec();
        assert_eq!(a.len(), 256);
        assert_ne!(a, b, "each message gets new random bytes");
    }

    #[test]
    fn random_payloads_do_not_compress() {
        // A cheap incompressibility check: no byte value dominates a 64 KiB sample.
        let mut g = PayloadGen::new(64 * 1024);
        let mut counts = [0usize; 256];
        for &b in g.fresh() {
            counts[usize::from(b)] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        assert!(max < 400, "byte distribution is skewed: {max} of one value");
    }

    #[test]
    fn stamp_round_trips() {
        let base = Instant::now();
        let at = base + Duration::from_micros(1234);
        let mut g = PayloadGen::new(32);
        let p = g.stamped(base, at).to_vec();
        assert_eq!(read_stamp(base, &p), Some(at));
        assert_eq!(read_stamp(base, &p[..4]), None);
    }
}
