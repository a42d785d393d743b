//! The group-commit flusher: one thread per data directory that takes every partition with
//! unflushed appends, fsyncs each dirty file once, then wakes all of that partition's
//! waiters. Appends that arrive while an fsync runs are picked up by the next round, so
//! under load one fsync covers many appends (the point of group commit).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Something the flusher can make durable: a partition log.
pub(crate) trait Flush: Send + Sync {
    /// Fsyncs whatever is unflushed and completes the waiters it covers. Must not panic.
    fn flush(&self);
}

type Item = Arc<dyn Flush>;

#[derive(Default)]
struct Queue {
    now: Vec<Item>,
    timed: Vec<(Instant, Item)>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    threads: usize,
}

/// Handle to the flusher thread.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").field("threads", &self.shared.threads).finish()
    }
}

impl Flusher {
    /// Starts the flusher; fsyncs of different files in one round use up to `threads` threads.
    pub(crate) fn start(threads: usize) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), wake: Condvar::new(), threads: threads.max(1) });
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("strom-flusher".into()).spawn(move || run(&s))?;
        Ok(Flusher { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Asks for `item` to be flushed as soon as possible.
    pub(crate) fn request(&self, item: Item) {
        let mut q = lock(&self.shared.queue);
        q.now.push(item);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Asks for `item` to be flushed at `due` (flush policy `interval`).
    pub(crate) fn request_at(&self, item: Item, due: Instant) {
        let mut q = lock(&self.shared.queue);
        q.timed.push((due, item));
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Flushes everything still queued (timed requests included), then stops the thread.
    pub(crate) fn stop(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                tracing::error!("flusher thread panicked");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Queue updates are single pushes/drains; a poisoned lock leaves nothing half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(shared: &Shared) {
    loop {
        let (round, stopping) = {
            let mut q = lock(&shared.queue);
            loop {
                let now = Instant::now();
                if q.stop {
                    let mut all = std::mem::take(&mut q.now);
                    all.extend(q.timed.drain(..).map(|(_, i)| i));
                    break (all, true);
                }
                let mut round = std::mem::take(&mut q.now);
                let mut i = 0;
                while i < q.timed.len() {
                    if q.timed[i].0 <= now {
                        round.push(q.timed.swap_remove(i).1);
                    } else {
                        i += 1;
                    }
                }
                if !round.is_empty() {
                    break (round, false);
                }
                q = match q.timed.iter().map(|t| t.0).min() {
                    Some(due) => shared.wake.wait_timeout(q, due.saturating_duration_since(now)).map(|r| r.0).unwrap_or_else(|p| p.into_inner().0),
                    None => shared.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
                };
            }
        };
        flush_round(&round, shared.threads);
        if stopping {
            return;
        }
    }
}

/// Flushes each item once, on up to `threads` threads: fsyncs of different files on one
/// disk overlap in the device queue instead of waiting for each other.
fn flush_round(round: &[Item], threads: usize) {
    let workers = threads.min(round.len());
    if workers <= 1 {
        round.iter().for_each(|i| i.flush());
        return;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(item) = round.get(next.fetch_add(1, Ordering::Relaxed)) {
                    item.flush();
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    struct Counter(AtomicU64);
    impl Flush for Counter {
        fn flush(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn stop_drains_timed_requests() {
        let f = Flusher::start(2).unwrap();
        let c = Arc::new(Counter(AtomicU64::new(0)));
        f.request(c.clone());
        f.request_at(c.clone(), Instant::now() + Duration::from_secs(3600));
        f.stop();
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
    }
}
