//! `strom-broker`: Strom's Kafka-protocol server. Unmodified Kafka clients connect to it and
//! cannot tell it is not Kafka; every produced batch goes through [`strom_log`] and is fsynced
//! (group-committed) before it is acknowledged.
//!
//! Module map:
//! - [`config`]: [`Config`], the broker's one configuration struct (TOML file + CLI overrides),
//!   and [`LogDefaults`], the topic-config defaults.
//! - [`cluster_config`]: [`ClusterSettings`], the `[cluster]` section: joining a Strom
//!   cluster whose metadata is replicated with Raft (`strom-cluster`).
//! - [`error`]: [`Error`], and the one place where errors become Kafka error codes.
//! - [`server`]: [`Broker`]: binds the listener, runs the accept loop, shuts down gracefully.
//! - [`connection`]: one client connection: size-prefixed frames, pipelined requests, responses
//!   written strictly in request order.
//! - [`dispatch`]: API key -> handler, and the ApiVersions table derived from it.
//! - [`state`]: [`BrokerState`], the context every handler gets (logs, metadata, config, ...).
//! - [`metadata`]: the cluster metadata seam from `strom-meta`: the [`MetadataStore`] trait the
//!   broker is given at startup, and [`LocalMetadataStore`], a cluster of one in the data
//!   directory.
//! - [`partition`]: the partition layer: each partition's log with its leadership (role,
//!   leader epoch, replicas, ISR) and epoch cache, found through one map; it answers the
//!   leadership and epoch errors so handlers never check them.
//! - [`topic_config`]: Kafka topic configs (`retention.ms`, ...) <-> [`strom_log::LogConfig`].
//! - [`producer_ids`]: InitProducerId allocation, durable across restarts.
//! - [`groups`]: the group coordinator: consumer groups and committed offsets, kept in the
//!   internal `__consumer_offsets` topic.
//! - [`response_errors`]: the error codes in each response type, for the errors metric.
//! - [`metrics`]: the Prometheus recorder and the `/metrics` + `/health` HTTP endpoint.
//! - [`api`]: one small module per API family: decode, execute, respond.

pub mod api;
pub mod broker_config;
pub mod cluster_config;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod error;
pub mod groups;
pub mod ingest;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod replication;
pub mod response_errors;
pub mod server;
pub mod state;
pub mod topic_config;

pub use cluster_config::ClusterSettings;
pub use config::{Config, LogDefaults};
pub use error::{Error, Result};
pub use metadata::{BrokerInfo, LocalMetadataStore, MetadataStore, PartitionMeta, TopicMeta};
pub use server::Broker;
pub use state::{BrokerState, MetadataSource};
