//! An in-process broker whose metadata store is injected (the seam a cluster store uses):
//! the single-node store, reporting every partition at a leader epoch the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::{Broker, BrokerState, Config, MetadataSource};
use strom_meta::{BrokerInfo, LocalMetadataStore, MetadataStore, PartitionMeta, StoreFuture, TopicConfigs, TopicMeta};
use tokio_util::sync::CancellationToken;

use super::RawConn;

/// The epoch the store reports at first.
pub const EPOCH: i32 = 3;

/// The single-node store, reporting every partition at the leader epoch in `.1` ([`EPOCH`] at
/// first): what a cluster store says after leader changes, and proof that the broker takes
/// epochs from its store.
pub struct EpochStore(LocalMetadataStore, Arc<AtomicI32>);

impl MetadataStore for EpochStore {
    fn cluster_id(&self) -> String {
        self.0.cluster_id()
    }
    fn brokers(&self) -> Vec<BrokerInfo> {
        self.0.brokers()
    }
    fn controller_id(&self) -> Option<i32> {
        self.0.controller_id()
    }
    fn topics(&self) -> Vec<TopicMeta> {
        self.0.topics()
    }
    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.0.topic(name)
    }
    fn topic_by_id(&self, id: uuid::Uuid) -> Option<TopicMeta> {
        self.0.topic_by_id(id)
    }
    fn partitions(&self, topic: &str) -> Vec<PartitionMeta> {
        let epoch = self.1.load(Ordering::SeqCst);
        self.0.partitions(topic).into_iter().map(|p| PartitionMeta { leader_epoch: epoch, ..p }).collect()
    }
    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        self.0.create_topic(name, partitions, configs)
    }
    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta> {
        self.0.delete_topic(name)
    }
    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta> {
        self.0.set_partitions(name, count)
    }
    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        self.0.set_configs(name, configs)
    }
}

/// An in-process broker on an ephemeral port with the [`EpochStore`]; stops when dropped.
pub struct InProcess {
    /// The Kafka listener, `ip:port`.
    pub addr: String,
    /// The epoch the store reports.
    epoch: Arc<AtomicI32>,
    state: Arc<BrokerState>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts it on a fresh data directory.
    pub fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { listen: "127.0.0.1:0".into(), data_dir: dir.path().join("data"), ..Default::default() };
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let epoch = Arc::new(AtomicI32::new(EPOCH));
        let store_epoch = epoch.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let broker = Broker::bind_with_store(config, token, |cfg, me| {
                    std::fs::create_dir_all(&cfg.data_dir).expect("data dir");
                    let (store, created) = LocalMetadataStore::open(&cfg.data_dir, me)?;
                    Ok(MetadataSource {
                        store: Arc::new(EpochStore(store, store_epoch)),
                        adopt_found_logs: created,
                        cluster: None,
                    })
                })
                .await
                .expect("broker binds");
                tx.send((broker.local_addr().to_string(), broker.state().clone(), handle)).expect("report address");
                broker.run().await.expect("broker runs");
            });
        });
        let (addr, state, runtime) = rx.recv_timeout(Duration::from_secs(60)).expect("broker started");
        InProcess { addr, epoch, state, runtime, shutdown, thread: Some(thread), _dir: dir }
    }

    /// A leader change, as a cluster store reports it: the epoch rises and the broker applies it.
    pub fn bump_epoch(&self) -> i32 {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.runtime.block_on(self.state.apply_metadata()).expect("apply metadata");
        epoch
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A protocol topic name.
pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

/// OffsetForLeaderEpoch v4 for partition 0: `(error, epoch, end offset)`.
pub fn epoch_end(conn: &mut RawConn, topic: &str, current_leader_epoch: i32, leader_epoch: i32) -> (i16, i32, i64) {
    let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        OffsetForLeaderTopic::default().with_topic(name(topic)).with_partitions(vec![
            OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch),
        ]),
    ]);
    let resp = conn.call(4, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}
