//! [`LocalMetadataStore`]: the metadata of a cluster of one, in one JSON file in the data
//! directory (`topics.json`), replaced atomically (temporary file, fsync, rename, fsync of the
//! directory) on every change.
//!
//! Locking: readers take the registry lock only to clone what they return. A mutation runs
//! on a blocking thread: under the writer lock (which only mutations take) it copies the
//! registry, applies the change, writes and fsyncs the file, and only then swaps the copy in
//! under the registry lock, briefly. So no async thread waits on a lock held across an fsync,
//! and a mutation whose caller stopped waiting still finishes or fails as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{MetaError, Result};
use crate::fs::write_file_atomically;
use crate::store::{MetadataStore, StoreFuture};
use crate::types::{BrokerConfigs, BrokerInfo, PartitionMeta, TopicConfigs, TopicMeta};

/// Name of the registry file in the data directory.
pub const TOPICS_FILE: &str = "topics.json";

/// What `topics.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Registry {
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    /// Dynamic broker configs (absent from registries written before they existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    broker_configs: BrokerConfigs,
}

/// The single-node store: this broker is the only one, the controller, and the leader and
/// only in-sync replica of every partition.
#[derive(Debug)]
pub struct LocalMetadataStore {
    node: BrokerInfo,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    registry: Mutex<Registry>,
    /// Serializes mutations; held only on blocking threads, never by readers.
    writer: Mutex<()>,
}

impl LocalMetadataStore {
    /// Opens the registry in `data_dir` (which must exist), or creates an empty one with a
    /// fresh cluster id. `node` is this broker as clients reach it. Returns the store and
    /// whether the registry was newly created (so the caller may adopt logs it finds).
    pub fn open(data_dir: &Path, node: BrokerInfo) -> Result<(LocalMetadataStore, bool)> {
        let path = data_dir.join(TOPICS_FILE);
        let (registry, created) = match std::fs::read(&path) {
            Ok(bytes) => {
                let registry: Registry = serde_json::from_slice(&bytes)
                    .map_err(|e| MetaError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                (registry, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let registry = Registry {
                    cluster_id: new_cluster_id(),
                    topics: BTreeMap::new(),
                    broker_configs: BrokerConfigs::new(),
                };
                write_file_atomically(&path, &encode(&path, &registry)?)?;
                (registry, true)
            }
            Err(e) => return Err(MetaError::io(format!("reading {}", path.display()), e)),
        };
        let inner = Inner { path, registry: Mutex::new(registry), writer: Mutex::new(()) };
        Ok((LocalMetadataStore { node, inner: Arc::new(inner) }, created))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.registry()
    }

    /// Applies `change` to a copy of the registry on a blocking thread, persists the copy,
    /// then swaps it in (see the module docs). An error before the rename changed nothing;
    /// after it (the directory fsync failed) memory already matches the file.
    fn mutate<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Registry) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let _writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                let mut next = inner.registry().clone();
                let result = change(&mut next)?;
                let tmp = crate::fs::write_temp(&inner.path, &encode(&inner.path, &next)?)?;
                crate::fs::rename_temp(&tmp, &inner.path)?;
                // The file holds `next` from here on: memory must follow it even if the
                // directory fsync fails (then the change is reported as failed although it
                // may survive; memory and file never disagree).
                *inner.registry() = next;
                crate::fs::sync_parent(&inner.path)?;
                Ok(result)
            })
            .await
            .map_err(|e| MetaError::Unavailable(format!("registry update did not finish: {e}")))?
        })
    }

    fn partition_meta(&self, topic: &TopicMeta, partition: i32) -> PartitionMeta {
        let me = self.node.node_id;
        PartitionMeta {
            partition,
            leader: Some(me),
            leader_epoch: topic.leader_epoch(partition),
            replicas: vec![me],
            isr: vec![me],
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the registry half-changed: every
        // mutation works on a copy and swaps it in only after the file is written.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MetadataStore for LocalMetadataStore {
    fn cluster_id(&self) -> String {
        self.registry().cluster_id.clone()
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        vec![self.node.clone()]
    }

    fn controller_id(&self) -> Option<i32> {
        Some(self.node.node_id)
    }

    fn topics(&self) -> Vec<TopicMeta> {
        self.registry().topics.values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.registry().topics.get(name).cloned()
    }

    fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.registry().topics.values().find(|t| t.id == id).cloned()
    }

    fn partitions(&self, topic: &str) -> Vec<PartitionMeta> {
        let Some(t) = self.topic(topic) else { return Vec::new() };
        (0..t.partitions).map(|p| self.partition_meta(&t, p)).collect()
    }

    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        self.mutate(move |r| {
            if r.topics.contains_key(&name) {
                return Err(MetaError::TopicExists(name));
            }
            let id = loop {
                let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
                if !r.topics.values().any(|t| t.id == id) {
                    break id;
                }
            };
            let meta = TopicMeta { name: name.clone(), id, partitions, configs, leader_epochs: BTreeMap::new() };
            r.topics.insert(name, meta.clone());
            Ok(meta)
        })
    }

    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        self.mutate(move |r| r.topics.remove(&name).ok_or(MetaError::UnknownTopic(name)))
    }

    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        self.mutate(move |r| {
            let t = r.topics.get_mut(&name).ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
            if count <= t.partitions {
                return Err(MetaError::InvalidPartitions {
                    topic: name,
                    reason: format!("topic has {} partitions; the new count {count} must be larger", t.partitions),
                });
            }
            t.partitions = count;
            Ok(t.clone())
        })
    }

    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        self.mutate(move |r| {
            let t = r.topics.get_mut(&name).ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
            t.configs = configs;
            Ok(t.clone())
        })
    }

    fn broker_configs(&self) -> BrokerConfigs {
        self.registry().broker_configs.clone()
    }

    fn set_broker_configs(&self, resource: &str, configs: TopicConfigs) -> StoreFuture<'_, ()> {
        let resource = resource.to_string();
        self.mutate(move |r| {
            if configs.is_empty() {
                r.broker_configs.remove(&resource);
            } else {
                r.broker_configs.insert(resource, configs);
            }
            Ok(())
        })
    }
}

fn encode(path: &Path, registry: &Registry) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(registry)
        .map_err(|e| MetaError::io(format!("encoding {}", path.display()), std::io::Error::other(e)))
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    // 22 base64 digits carry 132 bits; the top 4 are zero.
    let mut out = [0u8; 22];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(bits & 63) as usize];
        bits >>= 6;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> BrokerInfo {
        BrokerInfo { node_id: 7, host: "127.0.0.1".into(), port: 9092, rack: None }
    }

    #[tokio::test]
    async fn registry_survives_reopen_and_keeps_cluster_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, created) = LocalMetadataStore::open(dir.path(), node()).expect("open");
        assert!(created);
        let cluster = store.cluster_id();
        assert_eq!(cluster.len(), 22);
        let t = store.create_topic("a", 3, TopicConfigs::new()).await.expect("create");
        assert!(matches!(store.create_topic("a", 1, TopicConfigs::new()).await, Err(MetaError::TopicExists(_))));
        store.set_partitions("a", 5).await.expect("grow");
        assert!(store.set_partitions("a", 5).await.is_err());
        store.create_topic("b", 1, TopicConfigs::new()).await.expect("create b");
        store.delete_topic("b").await.expect("delete b");
        let dynamic: TopicConfigs = [("num.partitions".to_string(), "4".to_string())].into();
        store.set_broker_configs("", dynamic.clone()).await.expect("broker configs");
        drop(store);

        let (store, created) = LocalMetadataStore::open(dir.path(), node()).expect("reopen");
        assert!(!created);
        assert_eq!(store.cluster_id(), cluster);
        let a = store.topic("a").expect("a survives");
        assert_eq!((a.id, a.partitions), (t.id, 5));
        assert_eq!(store.topic_by_id(t.id).map(|t| t.name), Some("a".to_string()));
        assert!(store.topic("b").is_none());
        assert_eq!(store.broker_configs().get(""), Some(&dynamic), "dynamic broker configs survive");
    }

    #[tokio::test]
    async fn this_node_leads_every_partition_at_its_recorded_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = LocalMetadataStore::open(dir.path(), node()).expect("open");
        store.create_topic("a", 2, TopicConfigs::new()).await.expect("create");
        let parts = store.partitions("a");
        assert_eq!(parts.len(), 2);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.partition, i as i32);
            assert_eq!((p.leader, p.leader_epoch), (Some(7), 0));
            assert_eq!((p.replicas.as_slice(), p.isr.as_slice()), (&[7][..], &[7][..]));
        }
        assert!(store.partitions("missing").is_empty());
        assert_eq!(store.brokers(), vec![node()]);
        assert_eq!(store.controller_id(), Some(7));
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = LocalMetadataStore::open(dir.path(), node()).expect("open");
        // The temporary file's name is taken by a directory: the write fails.
        std::fs::create_dir(dir.path().join("topics.tmp")).expect("block the temp file");
        assert!(matches!(store.create_topic("a", 1, TopicConfigs::new()).await, Err(MetaError::Io { .. })));
        assert!(store.topic("a").is_none(), "memory matches the file");
    }
}
