//! [`BenchConfig`]: every parameter of one benchmark run, with documented defaults.
//!
//! The whole struct is copied into the [`Report`](crate::Report) so a result always
//! carries the exact settings that produced it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only: throughput and latency from send to delivery report.
    Produce,
    /// Consumers only: read what the topic already holds, from the beginning.
    Consume,
    /// Producers and consumers at once: end-to-end latency from produce to consume.
    Roundtrip,
}

impl Mode {
    /// Whether this mode runs producers.
    pub fn produces(self) -> bool {
        matches!(self, Mode::Produce | Mode::Roundtrip)
    }

    /// Whether this mode runs consumers.
    pub fn consumes(self) -> bool {
        matches!(self, Mode::Consume | Mode::Roundtrip)
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Stop starting new sends (or reads) once this much measured time has passed.
    Duration(#[serde(with = "duration_secs")] Duration),
    /// Stop after this many measured messages (warmup messages come on top).
    Messages(u64),
}

/// Every parameter of one run. Build it with [`BenchConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Comma-separated `host:port` list handed to librdkafka. Default: `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Topic to write to and read from. Default: `strom-bench`.
    pub topic: String,
    /// Create the topic (with [`partitions`](Self::partitions)) if it does not exist.
    /// Default: false.
    pub create_topic: bool,
    /// Partition count used when creating the topic. Default: 1.
    pub partitions: i32,
    /// Replication factor used when creating the topic. Default: 1.
    pub replication_factor: i32,
    /// What to measure. Default: produce.
    pub mode: Mode,
    /// Closed loop: the number of sends in flight at once, across all producers; each
    /// in-flight slot awaits its delivery report before sending the next message.
    /// Default: 16.
    pub concurrency: u32,
    /// Number of producer client instances; the concurrency slots are spread over them
    /// round-robin. Default: 1.
    pub producers: u32,
    /// Number of consumer client instances; partitions are spread over them. Default: 1.
    pub consumers: u32,
    /// When the run stops. Default: 10 seconds.
    pub limit: Limit,
    /// Payload size in bytes (random, incompressible). Default: 256.
    pub message_size: usize,
    /// librdkafka `acks`: `0`, `1` or `all`. Default: `all`.
    pub acks: String,
    /// librdkafka `compression.type`: none, gzip, snappy, lz4, zstd. Default: none.
    pub compression: String,
    /// librdkafka `linger.ms` (fractions allowed, as librdkafka takes them); `None` keeps
    /// librdkafka's default (5 ms).
    pub linger_ms: Option<f64>,
    /// librdkafka `batch.size` in bytes; `None` keeps librdkafka's default (1,000,000).
    pub batch_size: Option<u64>,
    /// librdkafka `enable.idempotence`. Default: false.
    pub idempotent: bool,
    /// Further librdkafka settings (`key`, `value`) for every client of the run, applied
    /// after the ones above, as kcat's `-X`. Default: none.
    #[serde(default)]
    pub client_config: Vec<(String, String)>,
    /// Fixed target rate in messages per second across all producers. Latency is then
    /// measured from each message's intended send time, so a stall that delays later
    /// sends shows in their latency (no coordinated omission). `None`: as fast as the
    /// closed loop allows.
    pub rate: Option<f64>,
    /// Time run before measuring starts; its messages are sent but not measured.
    /// Default: 0.
    #[serde(with = "duration_secs")]
    pub warmup: Duration,
    /// How long to wait for the broker's metadata, admin answers and watermarks.
    /// Default: 10 seconds.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
}

/// librdkafka's upper bound for `linger.ms` (15 minutes).
pub const MAX_LINGER_MS: f64 = 900_000.0;

impl BenchConfig {
    /// A configuration with every default, against `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: "strom-bench".to_owned(),
            create_topic: false,
            partitions: 1,
            replication_factor: 1,
            mode: Mode::Produce,
            concurrency: 16,
            producers: 1,
            consumers: 1,
            limit: Limit::Duration(Duration::from_secs(10)),
            message_size: 256,
            acks: "all".to_owned(),
            compression: "none".to_owned(),
            linger_ms: None,
            batch_size: None,
            idempotent: false,
            client_config: Vec::new(),
            rate: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }

    /// Checks combinations that cannot work, naming the offending value.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, reason: String| Err(Error::Config { field, reason });
        if self.topic.is_empty() {
            return bad("topic", "must not be empty".into());
        }
        if self.partitions < 1 {
            return bad("partitions", format!("{} is not a positive count", self.partitions));
        }
        if self.replication_factor < 1 {
            return bad("replication_factor", format!("{} is not a positive count", self.replication_factor));
        }
        if self.mode.produces() && (self.concurrency == 0 || self.producers == 0) {
            return bad("concurrency", "concurrency and producers must be at least 1".into());
        }
        if self.mode.produces() && self.concurrency < self.producers {
            return bad(
                "concurrency",
                format!(
                    "{} in flight cannot keep {} producers busy; use --concurrency >= --producers",
                    self.concurrency, self.producers
                ),
            );
        }
        if self.mode.consumes() && self.consumers == 0 {
            return bad("consumers", "must be at least 1".into());
        }
        if self.mode == Mode::Roundtrip && self.message_size < crate::payload::STAMP_LEN {
            return bad(
                "message_size",
                format!(
                    "{} bytes cannot carry the {}-byte send timestamp of roundtrip mode",
                    self.message_size,
                    crate::payload::STAMP_LEN
                ),
            );
        }
        match self.limit {
            Limit::Duration(d) if d.is_zero() => return bad("duration", "must be positive".into()),
            Limit::Messages(0) => return bad("messages", "must be at least 1".into()),
            _ => {}
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad("rate", format!("{rate} is not a positive number of messages/s"));
        }
        if let Some(linger) = self.linger_ms
            && !(linger.is_finite() && (0.0..=MAX_LINGER_MS).contains(&linger))
        {
            return bad("linger_ms", format!("{linger} is outside librdkafka's 0..={MAX_LINGER_MS} ms"));
        }
        if !matches!(self.acks.as_str(), "0" | "1" | "all" | "-1") {
            return bad("acks", format!("{:?} is not one of 0, 1, all", self.acks));
        }
        if !matches!(self.compression.as_str(), "none" | "gzip" | "snappy" | "lz4" | "zstd") {
            return bad("compression", format!("{:?} is not one of none, gzip, snappy, lz4, zstd", self.compression));
        }
        Ok(())
    }
}

/// Durations are written as fractional seconds in JSON, which every tool can read.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BenchConfig::new("127.0.0.1:9092").validate().expect("defaults must validate");
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut c = BenchConfig::new("x:1");
        c.acks = "2".into();
        assert!(matches!(c.validate(), Err(Error::Config { field: "acks", .. })));

        let mut c = BenchConfig::new("x:1");
        c.mode = Mode::Roundtrip;
        c.message_size = 4;
        assert!(matches!(c.validate(), Err(Error::Config { field: "message_size", .. })));

        let mut c = BenchConfig::new("x:1");
        c.rate = Some(0.0);
        assert!(matches!(c.validate(), Err(Error::Config { field: "rate", .. })));

        let mut c = BenchConfig::new("x:1");
        c.concurrency = 2;
        c.producers = 4;
        assert!(matches!(c.validate(), Err(Error::Config { field: "concurrency", .. })));

        let mut c = BenchConfig::new("x:1");
        c.limit = Limit::Messages(0);
        assert!(matches!(c.validate(), Err(Error::Config { field: "messages", .. })));

        for linger in [-0.5, f64::NAN, MAX_LINGER_MS + 1.0] {
            let mut c = BenchConfig::new("x:1");
            c.linger_ms = Some(linger);
            assert!(matches!(c.validate(), Err(Error::Config { field: "linger_ms", .. })), "{linger}");
        }
        let mut c = BenchConfig::new("x:1");
        c.linger_ms = Some(0.05);
        c.validate().expect("a fractional linger is valid");
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut c = BenchConfig::new("127.0.0.1:1");
        c.limit = Limit::Messages(1000);
        c.warmup = Duration::from_millis(1500);
        c.rate = Some(5000.0);
        c.linger_ms = Some(0.05);
        let text = serde_json::to_string(&c).expect("serialize");
        assert!(text.contains("\"warmup\":1.5"), "{text}");
        assert!(text.contains("\"limit\":{\"messages\":1000}"), "{text}");
        let back: BenchConfig = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, c);
    }
}
