//! What the client commands (`topic`, `produce`, `consume`, `cluster`, `bench`) share:
//! the global connection flags, librdkafka settings, a context that keeps librdkafka's
//! own log lines out of the user's terminal, the "is a broker there?" check with its
//! one-line error, and table/JSON output.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use serde::Serialize;

/// Connection and output flags of every client command. They are global, so they may
/// come before or after a nested subcommand (`strom topic --output json list`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(
        long,
        short = 'b',
        env = "STROM_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap_servers: String,

    /// Output format: `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,

    /// How long to wait for the broker before giving up (e.g. `5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts (one document, or one object per line for streams).
    Json,
}

/// A client context whose librdkafka log lines and background errors go to `tracing` at
/// debug level (`RUST_LOG=librdkafka=debug` shows them). Failures that matter come back
/// as results and are reported once, in one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for QuietContext {}

impl ClientArgs {
    /// librdkafka settings shared by every client this command creates.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "strom-cli")
            // Listing or describing a topic must never create it.
            .set("allow.auto.create.topics", "false")
            .set("socket.connection.setup.timeout.ms", millis(self.timeout).max(1000).to_string())
            .set_log_level(RDKafkaLogLevel::Warning);
        c
    }

    /// An admin client (create/delete/alter); its requests time out after `--timeout`.
    pub fn admin(&self) -> anyhow::Result<AdminClient<QuietContext>> {
        self.config().create_with_context(QuietContext).context("cannot create the Kafka admin client")
    }

    /// Options for admin requests: wait at most `--timeout`.
    pub fn admin_options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// Fetches metadata (of one topic, or all), turning "no broker answered" into one
    /// readable line.
    pub fn metadata<C: ClientContext>(&self, client: &Client<C>, topic: Option<&str>) -> anyhow::Result<Metadata> {
        client.fetch_metadata(topic, self.timeout).map_err(|e| self.unreachable(e))
    }

    /// The error for "no broker answered within the timeout".
    pub fn unreachable(&self, e: KafkaError) -> anyhow::Error {
        anyhow!(
            "cannot reach a broker at {} within {}: {}",
            self.bootstrap_servers,
            humantime::format_duration(self.timeout),
            short_error(&e)
        )
    }
}

/// librdkafka's error without the Rust enum wrapping, e.g. "Local: Broker transport failure".
pub fn short_error(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => describe_code(code),
        None => e.to_string(),
    }
}

/// librdkafka's description of an error code, e.g. "Broker: Topic already exists"
/// (the code's `Display` is "TopicAlreadyExists (Broker: Topic already exists)").
pub fn describe_code(code: RDKafkaErrorCode) -> String {
    let full = code.to_string();
    let prefix = format!("{code:?} (");
    match full.strip_prefix(&prefix).and_then(|r| r.strip_suffix(')')) {
        Some(description) => description.to_owned(),
        None => full,
    }
}

/// A current-thread runtime to drive admin futures (their work happens on librdkafka's
/// threads; this only waits for the answers).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Parses `key=value`, for `--config` and `--header` style flags.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Prints one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("cannot write JSON")?;
    writeln!(out).context("cannot write to stdout")?;
    Ok(())
}

/// Prints rows as aligned, borderless columns with an upper-case header.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header(header.iter().map(|h| h.to_uppercase())).add_rows(rows);
    // comfy-table pads cells with one space on each side; trim the line ends.
    let mut out = std::io::stdout().lock();
    for line in t.to_string().lines() {
        writeln!(out, "{}", line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end()))
            .context("cannot write to stdout")?;
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn error_codes_read_as_sentences() {
        assert_eq!(describe_code(RDKafkaErrorCode::TopicAlreadyExists), "Broker: Topic already exists");
        assert_eq!(
            short_error(&KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure)),
            "Local: Broker transport failure"
        );
    }
}
