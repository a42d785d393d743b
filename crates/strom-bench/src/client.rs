//! librdkafka client setup shared by the producers, consumers and the admin client of a
//! run: one config builder and a context that routes librdkafka's logs to `tracing` at
//! debug level, so a benchmark's terminal shows its results, not the client's chatter.

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use crate::BenchConfig;

/// A client context whose librdkafka logs and errors go to `tracing` at debug level.
/// Failures that matter surface through results (delivery reports, admin results), so
/// the log lines would only repeat them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for LogContext {}

/// Settings every client of a run shares.
pub(crate) fn base_config(cfg: &BenchConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        // A benchmark must not create topics by accident through metadata requests.
        .set("allow.auto.create.topics", "false")
        .set("socket.connection.setup.timeout.ms", millis(cfg.timeout).to_string())
        .set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// Applies the run's `client_config` overrides last, so they win.
fn with_overrides(mut c: ClientConfig, cfg: &BenchConfig) -> ClientConfig {
    for (key, value) in &cfg.client_config {
        c.set(key, value);
    }
    c
}

/// Producer settings from the run's parameters.
pub(crate) fn producer_config(cfg: &BenchConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("acks", &cfg.acks)
        .set("compression.type", &cfg.compression)
        .set("enable.idempotence", cfg.idempotent.to_string())
        // A message not delivered within the run's timeout is an error of the run, not
        // something to wait five minutes (librdkafka's default) for.
        .set("message.timeout.ms", millis(cfg.timeout).max(1000).to_string())
        .set("queue.buffering.max.messages", "1000000");
    if let Some(linger) = cfg.linger_ms {
        c.set("linger.ms", linger.to_string());
    }
    if let Some(batch) = cfg.batch_size {
        c.set("batch.size", batch.to_string());
    }
    with_overrides(c, cfg)
}

/// Consumer settings: partitions are assigned at explicit offsets and nothing is
/// committed (librdkafka's `assign` still wants a `group.id`, but never joins the group).
pub(crate) fn consumer_config(cfg: &BenchConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", "strom-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100");
    with_overrides(c, cfg)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
