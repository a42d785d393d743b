//! [`Report`]: what a run measured, with the hardware and parameters that produced it,
//! as JSON (serde) for scripts and as a short text summary for people.

use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::BenchConfig;

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples: every measured message, none dropped.
    pub samples: u64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// 99.99th percentile.
    pub p9999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microsecond samples; `None` when it is empty.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            samples: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            p9999_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        })
    }
}

/// Messages and bytes over a measured interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages counted (acknowledged for producers, received for consumers).
    pub messages: u64,
    /// Payload bytes counted.
    pub bytes: u64,
    /// The measured interval in seconds.
    pub seconds: f64,
    /// `messages / seconds`.
    pub msgs_per_sec: f64,
    /// `bytes / seconds / 1e6` (decimal megabytes).
    pub mb_per_sec: f64,
}

impl Throughput {
    /// Computes the rates; a zero interval gives zero rates rather than infinity.
    pub fn new(messages: u64, bytes: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        let per_sec = |x: u64| if seconds > 0.0 { x as f64 / seconds } else { 0.0 };
        Self { messages, bytes, seconds, msgs_per_sec: per_sec(messages), mb_per_sec: per_sec(bytes) / 1e6 }
    }
}

/// One partition's high watermark before and after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWatermarks {
    /// Partition id.
    pub partition: i32,
    /// High watermark before the first send.
    pub before: i64,
    /// High watermark after the last delivery report.
    pub after: i64,
}

/// Did the broker keep what it acknowledged? Compares the sum of high-watermark deltas
/// with the number of acknowledged messages (warmup included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Messages whose delivery report said success.
    pub acknowledged: u64,
    /// Sum over partitions of `after - before`.
    pub stored: u64,
    /// `stored == acknowledged`. False when records were lost (`stored` smaller) or
    /// appeared without acknowledgement (retries after errors, or another writer).
    pub consistent: bool,
    /// The per-partition figures behind `stored`.
    pub partitions: Vec<PartitionWatermarks>,
}

/// The machine the run happened on, so figures are comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// Host name.
    pub hostname: String,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical cores available to this process.
    pub logical_cores: usize,
    /// Total memory in bytes from `/proc/meminfo`.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// librdkafka version string.
    pub librdkafka: String,
}

impl Hardware {
    /// Reads what Linux exposes; unknown fields are empty or zero, never an error.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Self {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model,
            logical_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            librdkafka: rdkafka::util::get_rdkafka_version().1,
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `strom-bench` and its version.
    pub tool: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The machine.
    pub hardware: Hardware,
    /// The exact parameters.
    pub params: BenchConfig,
    /// Partitions the topic had during the run (`params.partitions` only applies when
    /// the run creates the topic).
    pub topic_partitions: i32,
    /// Acknowledged messages over the measured interval (produce and roundtrip modes).
    pub produce: Option<Throughput>,
    /// Received messages over the measured interval (consume and roundtrip modes).
    pub consume: Option<Throughput>,
    /// Send to delivery report; with a fixed rate, from the intended send time.
    pub produce_latency: Option<LatencySummary>,
    /// Roundtrip mode: from the (intended) send time to receipt by a consumer.
    pub end_to_end_latency: Option<LatencySummary>,
    /// Messages sent during the warmup (not in the figures above, but in the check).
    pub warmup_messages: u64,
    /// Messages acknowledged in the whole run, warmup included.
    pub acknowledged: u64,
    /// Failed deliveries and consumer errors.
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    /// Whether the broker holds what it acknowledged (producing modes).
    pub verification: Option<Verification>,
}

impl Report {
    /// A run succeeded when nothing failed and the broker holds exactly what it
    /// acknowledged.
    pub fn is_success(&self) -> bool {
        self.errors == 0 && self.verification.as_ref().is_none_or(|v| v.consistent)
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "strom bench: mode={:?} topic={} ({} partitions) size={} B concurrency={} producers={} consumers={} acks={} compression={}{}{}",
            p.mode,
            p.topic,
            self.topic_partitions,
            p.message_size,
            p.concurrency,
            p.producers,
            p.consumers,
            p.acks,
            p.compression,
            p.linger_ms.map(|l| format!(" linger={l}ms")).unwrap_or_default(),
            p.rate.map(|r| format!(" rate={r}/s")).unwrap_or_default(),
        )?;
        let throughput = |f: &mut fmt::Formatter<'_>, name: &str, t: &Throughput| {
            writeln!(
                f,
                "  {name:<9} {:>12.0} msg/s  {:>9.2} MB/s  ({} messages in {:.2} s)",
                t.msgs_per_sec, t.mb_per_sec, t.messages, t.seconds
            )
        };
        if let Some(t) = &self.produce {
            throughput(f, "produce", t)?;
        }
        if let Some(t) = &self.consume {
            throughput(f, "consume", t)?;
        }
        for (name, l) in [("produce", &self.produce_latency), ("e2e", &self.end_to_end_latency)] {
            if let Some(l) = l {
                writeln!(f, "  {name:<9} latency ms: {}", latency_line(l))?;
            }
        }
        if let Some(v) = &self.verification {
            writeln!(
                f,
                "  stored    {} of {} acknowledged messages: {}",
                v.stored,
                v.acknowledged,
                if v.consistent { "consistent" } else { "MISMATCH" }
            )?;
        }
        write!(f, "  errors    {}", self.errors)?;
        for e in &self.error_samples {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

fn latency_line(l: &LatencySummary) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, {} samples)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_known_samples() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for us in 1..=1000u64 {
            h.record(us * 10).expect("record"); // 10 us .. 10 ms
        }
        let l = LatencySummary::from_micros(&h).expect("non-empty");
        assert_eq!(l.samples, 1000);
        assert!((l.p50_ms - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p90_ms - 9.0).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 10.0).abs() < 0.01, "{l:?}");
        assert!(l.min_ms <= l.p50_ms && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms);
        assert!(LatencySummary::from_micros(&Histogram::new(3).expect("h")).is_none());
    }

    #[test]
    fn throughput_math() {
        let t = Throughput::new(1_000, 256_000, Duration::from_millis(500));
        assert_eq!(t.msgs_per_sec, 2000.0);
        assert!((t.mb_per_sec - 0.512).abs() < 1e-9);
        assert_eq!(Throughput::new(5, 5, Duration::ZERO).msgs_per_sec, 0.0);
    }

    #[test]
    fn hardware_is_detected_on_linux() {
        let h = Hardware::detect();
        assert!(h.logical_cores >= 1);
        assert!(h.memory_bytes > 0);
        assert!(!h.librdkafka.is_empty());
    }
}
