//! The buffer limit: records and bytes held between the consumer and the database. The
//! consumer adds what it hands to a worker; the worker releases it once written (or dropped).
//! The consumer pauses its partitions while the budget is full and resumes them below 3/4,
//! so memory stays bounded whatever the backlog on the broker.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shared record and byte counters with their limits.
#[derive(Debug)]
pub struct Budget {
    records: AtomicUsize,
    bytes: AtomicUsize,
    max_records: usize,
    max_bytes: usize,
}

impl Budget {
    /// An empty budget with these limits.
    pub fn new(max_records: usize, max_bytes: usize) -> Budget {
        Budget { records: AtomicUsize::new(0), bytes: AtomicUsize::new(0), max_records, max_bytes }
    }

    /// Counts one record of `bytes` into the buffer.
    pub fn add(&self, bytes: usize) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Releases `records` records of `bytes` in total.
    pub fn release(&self, records: usize, bytes: usize) {
        self.records.fetch_sub(records, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Records buffered now.
    pub fn records(&self) -> usize {
        self.records.load(Ordering::Relaxed)
    }

    /// Bytes buffered now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// At or over either limit: consumption must pause.
    pub fn is_full(&self) -> bool {
        self.records() >= self.max_records || self.bytes() >= self.max_bytes
    }

    /// Below 3/4 of both limits: paused consumption may resume.
    pub fn has_room(&self) -> bool {
        self.records() * 4 < self.max_records * 3 && self.bytes() * 4 < self.max_bytes * 3
    }

    /// The fuller of the two, as a fraction of its limit.
    pub fn fill(&self) -> f64 {
        (self.records() as f64 / self.max_records as f64).max(self.bytes() as f64 / self.max_bytes as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_at_the_limit_with_room_below_three_quarters() {
        let b = Budget::new(4, 1000);
        for _ in 0..4 {
            assert!(!b.is_full());
            b.add(10);
        }
        assert!(b.is_full());
        b.release(1, 10);
        assert!(!b.is_full() && !b.has_room());
        b.release(1, 10);
        assert!(b.has_room());
        b.add(2000);
        assert!(b.is_full(), "bytes count too");
    }
}
