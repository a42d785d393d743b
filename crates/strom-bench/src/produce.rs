//! Producer side of a run: `concurrency` closed-loop slots spread over `producers`
//! librdkafka clients. Each slot sends one message, awaits its delivery report, records
//! the latency, and only then sends the next.
//!
//! With a fixed `rate`, a pacer thread releases send permits on schedule: permit `k` is
//! due at `start + k / rate`. A slot takes the next permit and measures latency from
//! that intended time, so when the broker stalls and permits queue up, the wait shows
//! in the latency of every delayed message (no coordinated omission). The pacer runs
//! on an OS thread because tokio's timer only has millisecond resolution.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::Semaphore;

use crate::client::LogContext;
use crate::payload::PayloadGen;
use crate::runner::{Live, Window, new_histogram, record_micros};
use crate::{BenchConfig, Limit, Mode};

/// How many distinct error messages a report keeps.
pub(crate) const MAX_ERROR_SAMPLES: usize = 5;

/// State shared by all producer slots of a run.
pub(crate) struct ProduceShared {
    pub cfg: Arc<BenchConfig>,
    pub window: Window,
    pub live: Arc<Live>,
    /// Fixed-rate permits; `None` runs flat out.
    pub pace: Option<Arc<Pace>>,
    /// Measured sends started so far (for a message limit).
    started: AtomicU64,
    /// Set when any slot decides the run is over.
    stop: AtomicBool,
}

impl ProduceShared {
    pub(crate) fn new(cfg: Arc<BenchConfig>, window: Window, live: Arc<Live>) -> Self {
        let pace = cfg.rate.map(|rate| Arc::new(Pace::new(rate, window.start)));
        Self { cfg, window, live, pace, started: AtomicU64::new(0), stop: AtomicBool::new(false) }
    }

    fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = &self.pace {
            p.permits.close();
        }
    }
}

/// What one slot measured.
#[derive(Debug)]
pub(crate) struct SlotOutcome {
    pub latency: Histogram<u64>,
    /// Acknowledged messages sent after the warmup.
    pub measured: u64,
    /// Acknowledged messages sent during the warmup.
    pub warmup: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// When the slot's last measured delivery report arrived.
    pub last_ack: Option<Instant>,
}

/// One closed-loop slot: send, await the delivery report, repeat.
pub(crate) async fn slot(producer: Arc<FutureProducer<LogContext>>, shared: Arc<ProduceShared>) -> SlotOutcome {
    let cfg = &shared.cfg;
    let w = &shared.window;
    let mut payloads = PayloadGen::new(cfg.message_size);
    let mut out = SlotOutcome {
        latency: new_histogram(),
        measured: 0,
        warmup: 0,
        errors: 0,
        error_samples: Vec::new(),
        last_ack: None,
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let sent_at = match &shared.pace {
            Some(pace) => match pace.next().await {
                Some(intended) => intended,
                None => break,
            },
            None => Instant::now(),
        };
        if let Some(deadline) = w.deadline
            && sent_at >= deadline
        {
            shared.finish();
            break;
        }
        let measured = sent_at >= w.warmup_end;
        if measured
            && let Limit::Messages(n) = cfg.limit
            && shared.started.fetch_add(1, Ordering::Relaxed) >= n
        {
            shared.finish();
            break;
        }
        let payload = if cfg.mode == Mode::Roundtrip { payloads.stamped(w.start, sent_at) } else { payloads.fresh() };
        let record = FutureRecord::<(), [u8]>::to(&cfg.topic).payload(payload);
        shared.live.sent.fetch_add(1, Ordering::Relaxed);
        let result = producer.send(record, Timeout::Never).await;
        let done = Instant::now();
        match result {
            Ok(_) => {
                shared.live.acked.fetch_add(1, Ordering::Relaxed);
                if measured {
                    record_micros(&mut out.latency, done.saturating_duration_since(sent_at));
                    out.measured += 1;
                    out.last_ack = Some(done);
                } else {
                    out.warmup += 1;
                }
            }
            Err((e, _)) => {
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                out.errors += 1;
                let msg = format!("delivery failed: {}", crate::error::describe(&e));
                if out.error_samples.len() < MAX_ERROR_SAMPLES && !out.error_samples.contains(&msg) {
                    out.error_samples.push(msg);
                }
            }
        }
    }
    out
}

/// Fixed-rate send permits, released on schedule by [`Pace::run_pacer`].
pub(crate) struct Pace {
    rate: f64,
    start: Instant,
    permits: Semaphore,
    /// Index of the next permit a slot takes; its intended time is `start + k / rate`.
    taken: AtomicU64,
}

impl Pace {
    fn new(rate: f64, start: Instant) -> Self {
        Self { rate, start, permits: Semaphore::new(0), taken: AtomicU64::new(0) }
    }

    /// Waits for the next permit and returns its intended send time; `None` once the
    /// run is over.
    async fn next(&self) -> Option<Instant> {
        self.permits.acquire().await.ok()?.forget();
        let k = self.taken.fetch_add(1, Ordering::Relaxed);
        Some(self.intended(k))
    }

    fn intended(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// How many permits are due strictly before `t` (intended times are exact, the
    /// estimate from the rate is corrected for float rounding).
    fn due_before(&self, t: Instant) -> u64 {
        let mut n = (t.saturating_duration_since(self.start).as_secs_f64() * self.rate).ceil() as u64;
        while n > 0 && self.intended(n - 1) >= t {
            n -= 1;
        }
        while self.intended(n) < t {
            n += 1;
        }
        n
    }

    fn release_up_to(&self, released: &mut u64, due: u64) {
        if due > *released {
            let n = usize::try_from(due - *released).unwrap_or(usize::MAX);
            // A backlog near `MAX_PERMITS` (2^61) cannot happen in a real run; the cap
            // only keeps `add_permits` from panicking.
            let room = Semaphore::MAX_PERMITS.saturating_sub(self.permits.available_permits());
            self.permits.add_permits(n.min(room));
            *released = due;
        }
    }

    /// Releases every permit that is due (waking at most every millisecond, at least
    /// every 50 µs) until the semaphore is closed by a slot reaching the message limit,
    /// or until `deadline`, after which it closes it once the due permits are taken (or
    /// `drain` has passed). Returns how many due messages were never sent. Runs on its
    /// own OS thread.
    pub(crate) fn run_pacer(&self, deadline: Option<Instant>, drain: Duration) -> u64 {
        let mut released: u64 = 0;
        while !self.permits.is_closed() {
            let now = Instant::now();
            if let Some(d) = deadline
                && now >= d
            {
                // Everything intended before the deadline is due, even if this thread
                // overslept past it.
                self.release_up_to(&mut released, self.due_before(d));
                // Messages already due but not yet sent (the broker stalled) must still
                // be sent and measured, or their latency would be omitted: wait until
                // the slots have taken every released permit, then end the run. A broker
                // that stays stalled past `drain` ends it anyway; the rest are reported.
                let give_up = now + drain;
                while self.permits.available_permits() > 0 && !self.permits.is_closed() && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let unsent = self.permits.available_permits() as u64;
                self.permits.close();
                return unsent;
            }
            self.release_up_to(&mut released, self.due_before(now));
            let next_due = self.intended(released);
            let wait = next_due.saturating_duration_since(Instant::now());
            std::thread::sleep(wait.clamp(Duration::from_micros(50), Duration::from_millis(1)));
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pacer never releases a permit before its intended time, releases them in
    /// order at the configured rate, and stops at the deadline once all are taken.
    #[test]
    fn pacer_releases_permits_on_schedule() {
        let start = Instant::now();
        let pace = Arc::new(Pace::new(1000.0, start));
        let deadline = start + Duration::from_millis(100);
        let pacer = {
            let pace = Arc::clone(&pace);
            std::thread::spawn(move || pace.run_pacer(Some(deadline), Duration::from_secs(5)))
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let taken = rt.block_on(async {
            let mut taken = Vec::new();
            while let Some(intended) = pace.next().await {
                assert!(Instant::now() >= intended, "permit {} released early", taken.len());
                taken.push(intended);
            }
            taken
        });
        assert_eq!(pacer.join().expect("pacer"), 0, "every due permit was taken");
        assert_eq!(taken.len(), 100, "permits intended in the first 100 ms at 1000/s");
        for (k, t) in taken.iter().enumerate() {
            assert_eq!(*t, start + Duration::from_secs_f64(k as f64 / 1000.0));
            assert!(*t < deadline);
        }
    }
}
