//! [`Config`]: the broker's one configuration struct. Defaults are stated on each field and
//! gathered in [`Config::default`]; a TOML file (`--config`) sets any subset of fields and
//! command-line flags override the file. `config/strom.example.toml` documents every field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strom_log::{FlushPolicy, LogConfig};

use crate::error::{Error, Result};

/// Default listen address: loopback only, Kafka's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9092";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./strom-data";
/// Default broker id.
pub const DEFAULT_NODE_ID: i32 = 1;
/// Default address of the metrics endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9644";
/// Default largest request frame accepted: 100 MiB, as Kafka's `socket.request.max.bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Broker configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the Kafka listener binds. Port 0 picks a free port (tests use it).
    /// Default: `127.0.0.1:9092`.
    pub listen: String,
    /// `host:port` returned to clients in Metadata and DescribeCluster, for when clients reach
    /// the broker through another address than it binds. Default: the bound address.
    pub advertised_address: Option<String>,
    /// Address of the HTTP endpoint serving Prometheus metrics at `/metrics` and readiness at
    /// `/health`; an empty string turns it off. Port 0 picks a free port.
    /// Default: `127.0.0.1:9644`.
    pub metrics_listen: String,
    /// Directory holding the partition logs, the topic registry and the producer-id block.
    /// Default: `./strom-data`.
    pub data_dir: PathBuf,
    /// This broker's id in Metadata responses (`node.id`). Default: 1.
    pub node_id: i32,
    /// Create a topic when a client asks Metadata about a topic that does not exist and the
    /// request allows it (Kafka's `auto.create.topics.enable`). Default: true.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of a CreateTopics request that leaves the count
    /// to the broker (`num.partitions`). Default: 1.
    pub num_partitions: i32,
    /// Largest request frame accepted, checked before anything is allocated; a larger size
    /// closes the connection (`socket.request.max.bytes`). Default: 104857600 (100 MiB).
    pub max_request_bytes: usize,
    /// Requests one connection may have in flight (read but not yet answered) before the broker
    /// stops reading from it: the backpressure bound of pipelining. Default: 256.
    pub max_inflight_requests: usize,
    /// How long a graceful shutdown waits for in-flight requests before closing connections
    /// anyway. Default: 10000 ms.
    pub shutdown_timeout_ms: u64,
    /// Largest fetch response (and partition share of one) the broker builds, whatever the
    /// client asks (Kafka's `fetch.max.bytes`). Default: 57671680 (55 MiB).
    pub fetch_max_bytes: usize,
    /// A follower not caught up with its leader for this long leaves the ISR (Kafka's
    /// `replica.lag.time.max.ms`). A follower that stops altogether leaves sooner: its broker
    /// is fenced after the cluster's session timeout. Default: 30000.
    pub replica_lag_time_max_ms: u64,
    /// How many bytes a follower asks for per partition in one fetch from its leader (Kafka's
    /// `replica.fetch.max.bytes`). Default: 1048576.
    pub replica_fetch_max_bytes: usize,
    /// Fsyncs of different partitions that may run at once: the flusher threads that serve
    /// `interval`/`never` and, with `journal = false`, the per-partition group commit.
    /// Default: 4.
    pub flush_threads: usize,
    /// Acknowledge `always` appends through the node journal: one `fdatasync` per round
    /// covers every partition appended since the last round, so a produce to many partitions
    /// costs about one fsync, not one per partition (docs/ARCHITECTURE.md). `false` fsyncs
    /// each partition's segment instead (for comparison). Default: true.
    pub journal: bool,
    /// Size of one journal file; a checkpoint (an fsync of each partition journaled since
    /// the last one) runs each time one fills, and a restart after a crash replays at most
    /// about two. Default: 134217728 (128 MiB).
    pub journal_file_bytes: u64,
    /// Zero-filled space kept ahead of a busy partition's active segment so an append's
    /// fsync has no block allocation to commit through the filesystem journal (about half
    /// the fsync time on ext4); 0 turns it off. See `strom_log::ManagerConfig`. Default:
    /// 524288 (512 KiB).
    pub preallocate_bytes: u64,
    /// At most this many sealed segment files stay open across all partitions; colder ones
    /// are closed and reopened on demand. Default: 512.
    pub max_open_sealed_segments: usize,
    /// An idempotent producer's state in a partition is dropped once its last batch is this
    /// old (`producer.id.expiration.ms`), checked with each retention run. Default:
    /// 86400000 (one day).
    pub producer_id_expiration_ms: u64,
    /// How often retention (`retention.ms`, `retention.bytes`) deletes old segments
    /// (`log.retention.check.interval.ms`). Default: 300000 (5 minutes).
    pub retention_check_interval_ms: u64,
    /// Defaults of the topic configs; each topic may override them.
    pub log: LogDefaults,
    /// The group coordinator: session timeouts, rebalance delay, offset retention.
    pub groups: crate::groups::GroupConfig,
    /// Membership of a Strom cluster (`[cluster]`, see [`crate::ClusterSettings`]). Default:
    /// none, a cluster of one with its metadata in the data directory.
    pub cluster: Option<crate::cluster_config::ClusterSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            advertised_address: None,
            metrics_listen: DEFAULT_METRICS_LISTEN.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            node_id: DEFAULT_NODE_ID,
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_inflight_requests: 256,
            shutdown_timeout_ms: 10_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_max_bytes: 1024 * 1024,
            flush_threads: 4,
            journal: true,
            journal_file_bytes: 128 * 1024 * 1024,
            preallocate_bytes: 512 * 1024,
            max_open_sealed_segments: 512,
            producer_id_expiration_ms: 86_400_000,
            retention_check_interval_ms: 300_000,
            log: LogDefaults::default(),
            groups: crate::groups::GroupConfig::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// Reads a TOML file; fields it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
        Config::from_toml(&text).map_err(|source| Error::ConfigFile { path: path.to_path_buf(), source })
    }

    /// Parses TOML text; fields it does not set keep their defaults.
    pub fn from_toml(text: &str) -> std::result::Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks the values and that they work together.
    pub fn validate(self) -> Result<Config> {
        self.listen_addr()?;
        if let Some(adv) = &self.advertised_address {
            parse_host_port(adv).ok_or_else(|| Error::Config {
                field: "advertised_address",
                reason: format!("{adv:?} is not host:port"),
            })?;
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(Error::Config {
                field: "metrics_listen",
                reason: format!("{:?} is not ip:port (use \"\" to turn metrics off)", self.metrics_listen),
            });
        }
        if self.node_id < 0 {
            return Err(Error::Config { field: "node_id", reason: format!("{} is negative", self.node_id) });
        }
        if self.num_partitions < 1 {
            return Err(Error::Config {
                field: "num_partitions",
                reason: format!("{} is below 1", self.num_partitions),
            });
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > i32::MAX as usize {
            return Err(Error::Config {
                field: "max_request_bytes",
                reason: format!("{} is outside 1024..={}", self.max_request_bytes, i32::MAX),
            });
        }
        if self.max_inflight_requests == 0 {
            return Err(Error::Config { field: "max_inflight_requests", reason: "must be at least 1".into() });
        }
        if self.fetch_max_bytes < 1024 {
            return Err(Error::Config {
                field: "fetch_max_bytes",
                reason: format!("{} is below 1024", self.fetch_max_bytes),
            });
        }
        if self.flush_threads == 0 || self.flush_threads > 256 {
            return Err(Error::Config {
                field: "flush_threads",
                reason: format!("{} is outside 1..=256", self.flush_threads),
            });
        }
        if self.journal_file_bytes < 1024 * 1024 {
            return Err(Error::Config {
                field: "journal_file_bytes",
                reason: format!("{} is below 1048576 (1 MiB)", self.journal_file_bytes),
            });
        }
        if self.max_open_sealed_segments == 0 {
            return Err(Error::Config { field: "max_open_sealed_segments", reason: "must be at least 1".into() });
        }
        if self.producer_id_expiration_ms == 0 {
            return Err(Error::Config { field: "producer_id_expiration_ms", reason: "must be at least 1".into() });
        }
        if self.retention_check_interval_ms == 0 {
            return Err(Error::Config { field: "retention_check_interval_ms", reason: "must be at least 1".into() });
        }
        self.log.to_log_config()?;
        self.groups.clone().validate()?;
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        Ok(self)
    }

    /// The listen address as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen
            .parse()
            .map_err(|e| Error::Config { field: "listen", reason: format!("{:?} is not ip:port ({e})", self.listen) })
    }

    /// The graceful-shutdown deadline.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// Splits `host:port` (the host may be a bracketed IPv6 address).
pub fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), i32::from(port)))
}

/// Broker-wide defaults of the topic configs, in Kafka's units (`-1` means "no limit" where
/// Kafka allows it). A topic's own configs override these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    /// `flush.policy`: `always` (fsync before acknowledging), `interval:<ms>` or `never`.
    /// Default: `always`.
    pub flush_policy: String,
    /// `segment.bytes`: roll the active segment at this size. Default: 134217728 (128 MiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment this old. Default: 604800000 (7 days).
    pub segment_ms: u64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps them forever.
    /// Default: 604800000 (7 days).
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while a partition is larger; -1 means no
    /// size limit. Default: -1.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch a producer may send. Default: 1048588.
    pub max_message_bytes: usize,
    /// `min.insync.replicas`: an `acks=all` produce is refused (`NOT_ENOUGH_REPLICAS`) while
    /// a partition has fewer in-sync replicas, and the high watermark does not advance.
    /// Default: 1.
    pub min_insync_replicas: i32,
}

impl Default for LogDefaults {
    fn default() -> Self {
        let d = LogConfig::default();
        LogDefaults {
            flush_policy: d.flush_policy.to_string(),
            segment_bytes: d.segment_bytes,
            segment_ms: d.segment_ms.unwrap_or(0),
            retention_ms: d.retention_ms.unwrap_or(-1),
            retention_bytes: d.retention_bytes.map_or(-1, |b| b as i64),
            max_message_bytes: d.max_message_bytes,
            min_insync_replicas: 1,
        }
    }
}

impl LogDefaults {
    /// The storage engine's config for a topic without overrides.
    pub fn to_log_config(&self) -> Result<LogConfig> {
        let flush_policy: FlushPolicy = self
            .flush_policy
            .parse()
            .map_err(|e: strom_log::Error| Error::Config { field: "log.flush_policy", reason: e.to_string() })?;
        let cfg = LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: (self.segment_ms > 0).then_some(self.segment_ms),
            retention_ms: (self.retention_ms >= 0).then_some(self.retention_ms),
            retention_bytes: u64::try_from(self.retention_bytes).ok(),
            max_message_bytes: self.max_message_bytes,
            flush_policy,
            ..LogConfig::default()
        };
        cfg.validate().map_err(|e| Error::Config { field: "log", reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_toml_overrides_a_subset() {
        let c = Config::default().validate().expect("defaults are valid");
        assert_eq!(c.listen, "127.0.0.1:9092");
        let c = Config::from_toml("node_id = 7\n[log]\nflush_policy = \"interval:50\"\n").expect("parses");
        assert_eq!(c.node_id, 7);
        assert_eq!(c.log.flush_policy, "interval:50");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(Config::from_toml("nodeid = 7").is_err(), "unknown fields are rejected");
        let bad = Config { num_partitions: 0, ..Config::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../../config/strom.example.toml");
        let c = Config::from_toml(text).expect("example parses").validate().expect("valid");
        assert_eq!(c, Config::default(), "the example file states the defaults");
    }

    #[test]
    fn cluster_node_example_parses_and_builds_a_node_config() {
        let text = include_str!("../../../config/cluster-node.example.toml");
        let c = Config::from_toml(text).expect("example parses").validate().expect("valid");
        let cluster = c.cluster.as_ref().expect("a [cluster] section");
        let defaults = crate::ClusterSettings::default();
        assert_eq!(cluster.heartbeat_interval_ms, defaults.heartbeat_interval_ms, "states the defaults");
        assert_eq!(cluster.session_timeout_ms, defaults.session_timeout_ms, "states the defaults");
        let node = cluster.node_config(c.node_id, &c.data_dir).expect("node config");
        assert_eq!(node.voters.len(), 3);
        assert_eq!(node.dir, c.data_dir.join("raft"));
    }

    #[test]
    fn cluster_settings_are_checked() {
        let bad = [
            ("id = \"\"\nvoters = [\"1@a:1\"]", "id is required"),
            ("id = \"x\"\nvoters = [\"1@a:1\", \"2@b:1\"]", "odd number"),
            ("id = \"x\"\nvoters = [\"one@a:1\"]", "not a node id"),
            ("id = \"x\"\nvoters = [\"1@a:1\", \"1@b:1\", \"3@c:1\"]", "listed twice"),
            ("id = \"x\"\nvoters = [\"1@a:1\"]\nsession_timeout_ms = 300", "at least twice"),
            ("id = \"x\"\nvoters = [\"1@a:1\"]\nplacement = \"random\"", "round-robin, range or sticky"),
        ];
        for (section, why) in bad {
            let c = Config::from_toml(&format!("[cluster]\n{section}\n")).expect("parses");
            let err = c.validate().expect_err(section).to_string();
            assert!(err.contains(why), "{section}: {err}");
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("localhost:9092"), Some(("localhost".into(), 9092)));
        assert_eq!(parse_host_port("[::1]:1"), Some(("::1".into(), 1)));
        assert_eq!(parse_host_port("nope"), None);
    }
}
