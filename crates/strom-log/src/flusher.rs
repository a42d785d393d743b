//! The group-commit flusher: a small pool of threads per data directory. A partition with
//! unflushed appends is queued once (however many appends arrive); the first idle thread
//! takes it, snapshots what is written, fsyncs the file once and wakes every waiter that
//! fsync covers. Appends that arrive while an fsync runs queue the partition again and are
//! covered by the next one, so under load one fsync covers many appends (group commit).
//!
//! There are no rounds: each queued partition is picked up as soon as a thread is free, so
//! fsyncs of different files overlap in the device queue and a slow fsync of one partition
//! never holds back another's. The threads are started once, not per fsync.
//!
//! The same pool type, with one thread, runs segment preallocation (`partition.rs`): slow
//! zero-fills must not take turns with the fsyncs acknowledgements wait for.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Work a pool thread runs: for the flusher, a partition log to make durable.
pub(crate) trait Job: Send + Sync {
    /// Does the work (for a partition log: fsyncs whatever is unflushed and completes the
    /// waiters it covers). Must not panic. May run on two threads at once for the same item
    /// (an append after the first one's snapshot queues it again); each call covers at least
    /// what was written before it.
    fn run(&self);
}

type Item = Arc<dyn Job>;

#[derive(Default)]
struct Queue {
    now: VecDeque<Item>,
    timed: Vec<(Instant, Item)>,
    stop: bool,
}

impl Queue {
    /// The next item to flush: a queued one first, then one whose time has come; on stop,
    /// timed ones regardless of their time.
    fn take(&mut self, now: Instant) -> Option<Item> {
        if let Some(i) = self.now.pop_front() {
            return Some(i);
        }
        let pos = self.timed.iter().position(|t| self.stop || t.0 <= now)?;
        Some(self.timed.swap_remove(pos).1)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    threads: usize,
}

/// Handle to the flusher threads.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").field("threads", &self.shared.threads).finish()
    }
}

impl Flusher {
    /// Starts the pool: up to `threads` jobs (fsyncs of different files) run at once, on
    /// threads named `<name>-<i>`.
    pub(crate) fn start(threads: usize, name: &str) -> std::io::Result<Flusher> {
        let n = threads.max(1);
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), wake: Condvar::new(), threads: n });
        let flusher = Flusher { shared: shared.clone(), threads: Mutex::new(Vec::with_capacity(n)) };
        for i in 0..n {
            let s = shared.clone();
            match std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || run(&s)) {
                Ok(t) => lock(&flusher.threads).push(t),
                Err(e) => {
                    flusher.stop();
                    return Err(e);
                }
            }
        }
        Ok(flusher)
    }

    /// Asks for `item` to be flushed as soon as possible.
    pub(crate) fn request(&self, item: Item) {
        let mut q = lock(&self.shared.queue);
        q.now.push_back(item);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Whether items are waiting that no thread has taken yet: queued ones, and timed ones
    /// whose time has come.
    pub(crate) fn has_waiting(&self) -> bool {
        let q = lock(&self.shared.queue);
        let now = Instant::now();
        !q.now.is_empty() || q.timed.iter().any(|t| t.0 <= now)
    }

    /// How many timed requests are waiting (for tests: each partition should have at most one).
    #[cfg(test)]
    pub(crate) fn timed_len(&self) -> usize {
        lock(&self.shared.queue).timed.len()
    }

    /// Asks for `item` to be flushed at `due` (flush policy `interval`).
    pub(crate) fn request_at(&self, item: Item, due: Instant) {
        let mut q = lock(&self.shared.queue);
        q.timed.push((due, item));
        drop(q);
        // Every thread may be sleeping until a later due time: wake them all to re-plan.
        self.shared.wake.notify_all();
    }

    /// Flushes everything still queued (timed requests included), then stops the threads.
    pub(crate) fn stop(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_all();
        for t in lock(&self.threads).drain(..) {
            if t.join().is_err() {
                tracing::error!("flusher thread panicked");
            }
        }
    }
}

impl Drop for Flusher {
    /// Without a [`Flusher::stop`] (a manager dropped without shutdown: a crash test, or an
    /// embedder that forgot it) the threads must still end: they drain what is queued and
    /// exit. No join here: the last reference may be dropped on a flusher thread itself.
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Queue updates are single pushes/pops; a poisoned lock leaves nothing half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One flusher thread: take the next item, flush it, repeat; once stopped, drain the queue
/// and exit (the other threads drain with it, so `stop` returns with nothing left).
fn run(shared: &Shared) {
    loop {
        let item = {
            let mut q = lock(&shared.queue);
            loop {
                let now = Instant::now();
                if let Some(item) = q.take(now) {
                    break item;
                }
                if q.stop {
                    return;
                }
                q = match q.timed.iter().map(|t| t.0).min() {
                    Some(due) => shared
                        .wake
                        .wait_timeout(q, due.saturating_duration_since(now))
                        .map(|r| r.0)
                        .unwrap_or_else(|p| p.into_inner().0),
                    None => shared.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
                };
            }
        };
        item.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    struct Counter(AtomicU64);
    impl Job for Counter {
        fn run(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn stop_drains_timed_requests() {
        let f = Flusher::start(2, "test").unwrap();
        let c = Arc::new(Counter(AtomicU64::new(0)));
        f.request(c.clone());
        f.request_at(c.clone(), Instant::now() + Duration::from_secs(3600));
        f.stop();
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
    }

    /// A slow flush of one item does not hold back another's: they run on different
    /// threads at the same time.
    #[test]
    fn items_flush_in_parallel_without_rounds() {
        struct Slow(AtomicU64, Duration);
        impl Job for Slow {
            fn run(&self) {
                std::thread::sleep(self.1);
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let f = Flusher::start(2, "test").unwrap();
        let slow = Arc::new(Slow(AtomicU64::new(0), Duration::from_millis(500)));
        let fast = Arc::new(Slow(AtomicU64::new(0), Duration::ZERO));
        f.request(slow.clone());
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        f.request(fast.clone());
        while fast.0.load(Ordering::SeqCst) == 0 {
            assert!(t.elapsed() < Duration::from_millis(400), "fast item waited for the slow one");
            std::thread::sleep(Duration::from_millis(1));
        }
        f.stop();
        assert_eq!(slow.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn timed_request_runs_when_due() {
        let f = Flusher::start(1, "test").unwrap();
        let c = Arc::new(Counter(AtomicU64::new(0)));
        f.request_at(c.clone(), Instant::now() + Duration::from_millis(30));
        let t = Instant::now();
        while c.0.load(Ordering::SeqCst) == 0 {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(t.elapsed() >= Duration::from_millis(25));
        f.stop();
    }
}
