//! `[cluster]`: how a broker joins a Strom cluster. Absent, the broker is a cluster of one
//! with its metadata in the data directory (`strom serve` with no config).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strom_cluster::ClusterConfig;
use strom_cluster::placement::Strategy;

use crate::error::{Error, Result};

/// The `[cluster]` section of the broker config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The cluster id; every node of one cluster names the same one, and a node refuses
    /// peers (and a data directory) of another. Required.
    pub id: String,
    /// The voters of the metadata quorum as `node_id@host:port` (their internal listeners):
    /// 1, 3 or 5 of them. A node whose `node_id` is not listed joins as a broker only.
    /// Required.
    pub voters: Vec<String>,
    /// Address the internal listener (Raft, forwarding, heartbeats) binds. Default:
    /// `127.0.0.1:9093`.
    pub internal_listen: String,
    /// `host:port` other nodes reach the internal listener at. Default: the bound address.
    pub internal_advertised: Option<String>,
    /// This broker's rack, for rack-aware placement. Default: none.
    pub rack: Option<String>,
    /// Most replicas placement may put on this broker (new topics, partitions, automatic
    /// rebalancing): a creation that would need more fails with INVALID_PARTITIONS or
    /// INVALID_REPLICATION_FACTOR. Replicas it already holds stay. Default: no limit.
    pub max_replicas: Option<u32>,
    /// How often the broker heartbeats the controller. Default: 250 ms.
    pub heartbeat_interval_ms: u64,
    /// A broker silent for this long is fenced: it leaves Metadata and every ISR, and its
    /// leaderships move. Default: 1500 ms.
    pub session_timeout_ms: u64,
    /// Raft election timeout, lower bound. A follower that last heard the leader longer ago
    /// than `election_timeout_max_ms` (openraft's leader lease) plus a random time in
    /// min..max starts an election. Default: 300 ms.
    pub election_timeout_min_ms: u64,
    /// Raft election timeout, upper bound (and the leader lease). Default: 600 ms.
    pub election_timeout_max_ms: u64,
    /// A metadata snapshot every this many log entries. Default: 1000.
    pub snapshot_every: u64,
    /// How replicas of new partitions are placed: `round-robin`, `range` or `sticky`
    /// (each rack-aware). Default: `round-robin`.
    pub placement: String,
    /// Replicas per partition of a topic created without a replication factor (Kafka's
    /// `default.replication.factor`), capped at the live brokers. Default: 1.
    pub default_replication_factor: i16,
    /// Whether the controller moves leaderships back to each partition's preferred replica
    /// (its first) by itself, as Kafka's `auto.leader.rebalance.enable`. Default: true.
    pub auto_leader_rebalance: bool,
    /// How often it checks (Kafka's `leader.imbalance.check.interval.seconds`). Default: 300.
    pub leader_imbalance_check_interval_s: u64,
    /// It acts for a broker that does not lead more than this percentage of the partitions
    /// it is the preferred replica of (`leader.imbalance.per.broker.percentage`). Default: 10.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Whether the controller moves replicas by itself: when the live brokers' replica counts
    /// differ by `rebalance_threshold` or more (a broker joined), or a broker has been fenced
    /// for `fenced_broker_rebalance_delay_s` (its replicas move to live brokers). Default: true.
    pub auto_rebalance: bool,
    /// Least seconds between two automatic rebalance checks. Default: 300.
    pub rebalance_interval_s: u64,
    /// Replica-count spread over the live brokers that starts an automatic rebalance.
    /// Default: 2.
    pub rebalance_threshold: u32,
    /// Seconds a broker stays fenced before its replicas are moved away (shorter absences,
    /// such as a restart, move nothing). Default: 300.
    pub fenced_broker_rebalance_delay_s: u64,
    /// Most bytes per second a replica being added by a reassignment fetches from its leader
    /// (Kafka's replication throttle), so catch-up traffic cannot starve produce and the
    /// followers already in sync; 0: no limit. Followers already in the replica set are never
    /// throttled. Default: 20 MiB/s (docs/PERFORMANCE.md: faster catch-up stalled acks=all
    /// produce on the test machine's one disk).
    pub reassignment_throttle_bytes_per_sec: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            id: String::new(),
            voters: Vec::new(),
            internal_listen: "127.0.0.1:9093".to_string(),
            internal_advertised: None,
            rack: None,
            max_replicas: None,
            heartbeat_interval_ms: 250,
            session_timeout_ms: 1500,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every: 1000,
            placement: "round-robin".to_string(),
            default_replication_factor: 1,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_s: 300,
            leader_imbalance_per_broker_percentage: 10,
            reassignment_throttle_bytes_per_sec: 20 << 20,
            auto_rebalance: true,
            rebalance_interval_s: 300,
            rebalance_threshold: 2,
            fenced_broker_rebalance_delay_s: 300,
        }
    }
}

fn invalid(reason: String) -> Error {
    Error::Config { field: "cluster", reason }
}

impl ClusterSettings {
    /// The voters as node id -> address.
    pub fn voter_map(&self) -> Result<BTreeMap<u64, String>> {
        let mut out = BTreeMap::new();
        for v in &self.voters {
            let (id, addr) =
                v.split_once('@').ok_or_else(|| invalid(format!("voter {v:?} is not node_id@host:port")))?;
            let id: u64 = id.trim().parse().map_err(|_| invalid(format!("voter {v:?}: {id:?} is not a node id")))?;
            if crate::config::parse_host_port(addr).is_none() {
                return Err(invalid(format!("voter {v:?}: {addr:?} is not host:port")));
            }
            if out.insert(id, addr.to_string()).is_some() {
                return Err(invalid(format!("voter id {id} is listed twice")));
            }
        }
        Ok(out)
    }

    /// The placement strategy.
    pub fn strategy(&self) -> Result<Strategy> {
        match self.placement.as_str() {
            "round-robin" => Ok(Strategy::RoundRobin),
            "range" => Ok(Strategy::Range),
            "sticky" => Ok(Strategy::Sticky),
            other => Err(invalid(format!("placement {other:?} is not round-robin, range or sticky"))),
        }
    }

    /// Checks the section; see each field.
    pub fn validate(&self) -> Result<()> {
        if self.id.trim().is_empty() {
            return Err(invalid("id is required (every node of the cluster names the same one)".to_string()));
        }
        let voters = self.voter_map()?;
        if voters.is_empty() || voters.len() % 2 == 0 {
            return Err(invalid(format!(
                "{} voters: name an odd number (1, 3 or 5) so a majority survives failures",
                voters.len()
            )));
        }
        self.internal_listen
            .parse::<SocketAddr>()
            .map_err(|_| invalid(format!("internal_listen {:?} is not ip:port", self.internal_listen)))?;
        if self.heartbeat_interval_ms == 0 || self.session_timeout_ms < 2 * self.heartbeat_interval_ms {
            return Err(invalid(format!(
                "session_timeout_ms ({}) must be at least twice heartbeat_interval_ms ({}, > 0)",
                self.session_timeout_ms, self.heartbeat_interval_ms
            )));
        }
        if self.election_timeout_min_ms == 0 || self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid("election_timeout_max_ms must be above election_timeout_min_ms (> 0)".to_string()));
        }
        if self.snapshot_every < 10 {
            return Err(invalid(format!("snapshot_every {} is below 10", self.snapshot_every)));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid(format!("default_replication_factor {} is below 1", self.default_replication_factor)));
        }
        if self.leader_imbalance_check_interval_s == 0 || self.leader_imbalance_per_broker_percentage > 100 {
            return Err(invalid(format!(
                "leader_imbalance_check_interval_s must be > 0 (is {}) and leader_imbalance_per_broker_percentage at most 100 (is {})",
                self.leader_imbalance_check_interval_s, self.leader_imbalance_per_broker_percentage
            )));
        }
        if self.rebalance_interval_s == 0 || self.rebalance_threshold == 0 {
            return Err(invalid("rebalance_interval_s and rebalance_threshold must be at least 1".to_string()));
        }
        self.strategy()?;
        Ok(())
    }

    /// The cluster node's config for broker `node_id` with data in `data_dir`.
    pub fn node_config(&self, node_id: i32, data_dir: &Path) -> Result<ClusterConfig> {
        let node = u64::try_from(node_id).map_err(|_| invalid(format!("node_id {node_id} is negative")))?;
        let mut c = ClusterConfig::new(self.id.trim(), node, data_dir.join("raft"), self.voter_map()?);
        c.internal_listener = self
            .internal_listen
            .parse()
            .map_err(|_| invalid(format!("internal_listen {:?} is not ip:port", self.internal_listen)))?;
        c.internal_advertised = self.internal_advertised.clone();
        c.heartbeat_interval = Duration::from_millis(self.heartbeat_interval_ms);
        c.session_timeout = Duration::from_millis(self.session_timeout_ms);
        c.election_timeout =
            (Duration::from_millis(self.election_timeout_min_ms), Duration::from_millis(self.election_timeout_max_ms));
        c.snapshot_every = self.snapshot_every;
        c.placement = self.strategy()?;
        c.default_replication_factor = self.default_replication_factor;
        c.auto_leader_rebalance = self.auto_leader_rebalance;
        c.leader_imbalance_check_interval = Duration::from_secs(self.leader_imbalance_check_interval_s);
        c.leader_imbalance_per_broker_percentage = self.leader_imbalance_per_broker_percentage;
        c.auto_rebalance = self.auto_rebalance.then(|| strom_cluster::AutoRebalance {
            interval: Duration::from_secs(self.rebalance_interval_s),
            threshold: self.rebalance_threshold,
            fenced_delay: Duration::from_secs(self.fenced_broker_rebalance_delay_s),
        });
        Ok(c)
    }
}
