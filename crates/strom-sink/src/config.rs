//! The sink's settings: a TOML file ([`FileConfig`], every field optional) and flags merged
//! into one validated [`SinkConfig`] with the defaults applied.
//!
//! ```toml
//! to = "postgres://sink@127.0.0.1:5432/app"   # or "sqlite:///var/lib/app/events.db"
//! bootstrap_servers = "127.0.0.1:9092"
//! group = "strom-sink"
//! on_error = "dead-letter"                     # stop | skip | dead-letter
//! max_buffered_records = 100000
//! max_buffered_bytes = 67108864
//! flush_interval = "1s"
//! batch_size = 10000
//! workers = 2
//! max_retries = 0                              # 0: retry transient errors forever
//! retry_backoff = "100ms"
//! max_retry_backoff = "30s"
//!
//! [[route]]
//! topic = "events"
//! table = "events"
//! mapping = "raw"                              # raw | json
//! create_table = true
//!
//! [consumer]                                   # any librdkafka consumer property
//! "auto.offset.reset" = "earliest"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::SinkError;

/// Default maximum of records held in the sink's buffer before consumption pauses.
pub const DEFAULT_MAX_BUFFERED_RECORDS: usize = 100_000;
/// Default maximum of record bytes (keys, values, headers) held in the buffer.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;
/// Default age of the oldest buffered record that triggers a flush.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of rows per database transaction.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;
/// Default number of flush workers (each with its own database connection).
pub const DEFAULT_WORKERS: usize = 2;
/// Default first retry delay; it doubles per retry, with jitter, up to the maximum.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Default cap on the retry delay.
pub const DEFAULT_MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// Default consumer group.
pub const DEFAULT_GROUP: &str = "strom-sink";
/// Default broker.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A libpq-style URL (`postgres://user:password@host:port/dbname?...`), passed to the
    /// `postgres` crate as given.
    Postgres(String),
    /// An SQLite database file (created if missing; its directory must exist).
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// Parses `postgres://…`, `postgresql://…`, `sqlite:///abs/path.db`, `sqlite://rel.db` or
    /// `sqlite:rel.db`.
    pub fn parse(url: &str) -> Result<DatabaseUrl, SinkError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(SinkError::Config(format!(
                    "{url:?} names no database file (e.g. sqlite:///var/lib/app.db)"
                )));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(SinkError::Config(format!(
            "unsupported database URL {url:?}: use postgres://user@host:port/db or sqlite:///path/to/file.db"
        )))
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let userinfo = &u[s + 3..at];
                    match userinfo.split_once(':') {
                        Some((user, _)) => format!("{}{user}:***{}", &u[..s + 3], &u[at..]),
                        None => u.clone(),
                    }
                }
                _ => u.clone(),
            },
        }
    }
}

/// How a record becomes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// The raw layout: `topic, partition, offset, timestamp` (ms since the epoch), `key`,
    /// `value` (bytes as stored), `headers` (a JSON array of `{"key", "value"}`).
    Raw,
    /// The value is a JSON object; each column of the existing table takes the field of the
    /// same name (columns with a database default are left to the database).
    Json,
}

impl std::str::FromStr for Mapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Mapping::Raw),
            "json" => Ok(Mapping::Json),
            _ => Err(format!("unknown mapping {s:?} (raw or json)")),
        }
    }
}

/// What happens to a record that cannot be written (a value that is not JSON, a field of the
/// wrong type, a constraint violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop the sink with an error naming the record; nothing of its batch is written.
    Stop,
    /// Leave the record out, log it and count it (`strom_sink_records_skipped_total`).
    Skip,
    /// Write the record and the reason into `strom_sink_dead_letters`, in the same
    /// transaction as the batch (so dead letters are exactly once too).
    DeadLetter,
}

impl std::str::FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stop" => Ok(OnError::Stop),
            "skip" => Ok(OnError::Skip),
            "dead-letter" => Ok(OnError::DeadLetter),
            _ => Err(format!("unknown error policy {s:?} (stop, skip or dead-letter)")),
        }
    }
}

/// One topic → table route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The topic to read.
    pub topic: String,
    /// The table to write (`schema.table` for PostgreSQL); defaults to the topic name with
    /// every character other than letters, digits and `_` replaced by `_`.
    #[serde(default)]
    pub table: Option<String>,
    /// How records become rows (default: raw).
    #[serde(default)]
    pub mapping: Option<Mapping>,
    /// Create the table with the raw layout if it does not exist (raw mapping only).
    #[serde(default)]
    pub create_table: bool,
}

impl Route {
    /// The table this route writes.
    pub fn table_name(&self) -> String {
        self.table.clone().unwrap_or_else(|| {
            self.topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
        })
    }

    /// The mapping, raw unless set.
    pub fn mapping(&self) -> Mapping {
        self.mapping.unwrap_or(Mapping::Raw)
    }
}

/// The TOML file: every field optional; flags fill or override it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Database URL.
    pub to: Option<String>,
    /// Kafka bootstrap servers.
    pub bootstrap_servers: Option<String>,
    /// Consumer group id.
    pub group: Option<String>,
    /// Record error policy.
    pub on_error: Option<OnError>,
    /// Buffer limit, records.
    pub max_buffered_records: Option<usize>,
    /// Buffer limit, bytes.
    pub max_buffered_bytes: Option<usize>,
    /// Flush interval (humantime, e.g. "500ms").
    pub flush_interval: Option<String>,
    /// Rows per transaction.
    pub batch_size: Option<usize>,
    /// Flush workers.
    pub workers: Option<usize>,
    /// Retries of a transient error before giving up (0: forever).
    pub max_retries: Option<u32>,
    /// First retry delay (humantime).
    pub retry_backoff: Option<String>,
    /// Retry delay cap (humantime).
    pub max_retry_backoff: Option<String>,
    /// Routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Extra librdkafka consumer properties.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, SinkError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| SinkError::Config(format!("reading {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| SinkError::Config(format!("{}: {e}", path.display())))
    }
}

/// The resolved, validated settings the sink runs with.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// Consumer group id; also the key of this sink's rows in `strom_sink_offsets`.
    pub group: String,
    /// The target database.
    pub database: DatabaseUrl,
    /// Topic → table routes (at least one; topics distinct).
    pub routes: Vec<Route>,
    /// Consumption pauses when the buffer holds this many records...
    pub max_buffered_records: usize,
    /// ...or this many bytes.
    pub max_buffered_bytes: usize,
    /// A batch is flushed when its oldest record is this old...
    pub flush_interval: Duration,
    /// ...or when it holds this many rows.
    pub batch_size: usize,
    /// Flush workers.
    pub workers: usize,
    /// Retries of a transient database error before the sink gives up (`None`: forever).
    pub max_retries: Option<u32>,
    /// First retry delay.
    pub retry_backoff: Duration,
    /// Retry delay cap.
    pub max_retry_backoff: Duration,
    /// Record error policy.
    pub on_error: OnError,
    /// Extra librdkafka consumer properties (override the sink's own).
    pub consumer: BTreeMap<String, String>,
    /// How long shutdown may take to flush the buffer.
    pub shutdown_timeout: Duration,
}

fn duration(field: &str, value: &Option<String>, default: Duration) -> Result<Duration, SinkError> {
    match value {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v).map_err(|e| SinkError::Config(format!("{field} = {v:?}: {e}"))),
    }
}

impl SinkConfig {
    /// Applies defaults to `file` and validates the result.
    pub fn resolve(file: FileConfig) -> Result<SinkConfig, SinkError> {
        let to = file.to.as_deref().ok_or_else(|| {
            SinkError::Config("no database: pass --to postgres://… or sqlite:///path.db (or `to` in the file)".into())
        })?;
        let database = DatabaseUrl::parse(to)?;
        if file.routes.is_empty() {
            return Err(SinkError::Config("no topic: pass --topic T (or a [[route]] in the file)".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &file.routes {
            if r.topic.is_empty() {
                return Err(SinkError::Config("a route has an empty topic".into()));
            }
            if !seen.insert(r.topic.clone()) {
                return Err(SinkError::Config(format!("topic {:?} is routed twice", r.topic)));
            }
            if r.create_table && r.mapping() == Mapping::Json {
                return Err(SinkError::Config(format!(
                    "route {:?}: create_table only creates the raw layout; the json mapping writes into an existing table",
                    r.topic
                )));
            }
        }
        let positive = |name: &str, v: usize| {
            if v == 0 { Err(SinkError::Config(format!("{name} must be at least 1"))) } else { Ok(v) }
        };
        let workers = positive("workers", file.workers.unwrap_or(DEFAULT_WORKERS))?;
        let config = SinkConfig {
            bootstrap_servers: file.bootstrap_servers.unwrap_or_else(|| DEFAULT_BOOTSTRAP.into()),
            group: file.group.unwrap_or_else(|| DEFAULT_GROUP.into()),
            database,
            routes: file.routes,
            max_buffered_records: positive(
                "max_buffered_records",
                file.max_buffered_records.unwrap_or(DEFAULT_MAX_BUFFERED_RECORDS),
            )?,
            max_buffered_bytes: positive(
                "max_buffered_bytes",
                file.max_buffered_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BYTES),
            )?,
            flush_interval: duration("flush_interval", &file.flush_interval, DEFAULT_FLUSH_INTERVAL)?,
            batch_size: positive("batch_size", file.batch_size.unwrap_or(DEFAULT_BATCH_SIZE))?,
            workers,
            max_retries: match file.max_retries {
                None | Some(0) => None,
                Some(n) => Some(n),
            },
            retry_backoff: duration("retry_backoff", &file.retry_backoff, DEFAULT_RETRY_BACKOFF)?,
            max_retry_backoff: duration("max_retry_backoff", &file.max_retry_backoff, DEFAULT_MAX_RETRY_BACKOFF)?,
            on_error: file.on_error.unwrap_or(OnError::DeadLetter),
            consumer: file.consumer,
            shutdown_timeout: Duration::from_secs(30),
        };
        if config.group.is_empty() {
            return Err(SinkError::Config("the group id is empty".into()));
        }
        Ok(config)
    }

    /// The route of `topic`.
    pub fn route(&self, topic: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.topic == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        assert_eq!(DatabaseUrl::parse("sqlite:///tmp/a.db").ok(), Some(DatabaseUrl::Sqlite("/tmp/a.db".into())));
        assert_eq!(DatabaseUrl::parse("sqlite:a.db").ok(), Some(DatabaseUrl::Sqlite("a.db".into())));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        let pg = DatabaseUrl::parse("postgres://u:secret@h:5/db").expect("postgres url");
        assert_eq!(pg.redacted(), "postgres://u:***@h:5/db");
    }

    #[test]
    fn the_file_format_resolves_with_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            to = "sqlite:///tmp/x.db"
            flush_interval = "250ms"
            [[route]]
            topic = "a.b-c"
            [[route]]
            topic = "orders"
            table = "public.orders"
            mapping = "json"
            "#,
        )
        .expect("parses");
        let c = SinkConfig::resolve(file).expect("resolves");
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert_eq!(c.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(c.max_retries, None);
        assert_eq!(c.routes[0].table_name(), "a_b_c");
        assert_eq!(c.routes[1].mapping(), Mapping::Json);
        assert_eq!(c.on_error, OnError::DeadLetter);
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let no_db = SinkConfig::resolve(FileConfig::default()).expect_err("no db");
        assert!(no_db.to_string().contains("--to"), "{no_db}");
        let twice: FileConfig =
            toml::from_str("to = \"sqlite:x.db\"\n[[route]]\ntopic = \"t\"\n[[route]]\ntopic = \"t\"\n")
                .expect("parses");
        assert!(SinkConfig::resolve(twice).expect_err("dup").to_string().contains("routed twice"));
        let json_create: FileConfig =
            toml::from_str("to = \"sqlite:x.db\"\n[[route]]\ntopic = \"t\"\nmapping = \"json\"\ncreate_table = true\n")
                .expect("parses");
        assert!(SinkConfig::resolve(json_create).is_err());
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }
}
