//! The topic registry: which topics exist, their ids, partition counts and config overrides.
//!
//! Handlers see it only through the [`MetadataStore`] trait, so the Raft-replicated cluster
//! metadata (`strom-cluster`) can replace [`LocalMetadataStore`], which keeps the registry in
//! one JSON file in the data directory (`topics.json`, replaced atomically and fsynced).
//!
//! The registry is the source of truth: at startup the broker creates partition logs the
//! registry lists but the disk lacks, and deletes logs the registry does not list (left over by
//! a crash between the two steps of a create or delete).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::topic_config::TopicConfigs;

/// Name of the registry file in the data directory.
pub const TOPICS_FILE: &str = "topics.json";

/// Longest legal topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// One topic as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (Metadata v10+, Fetch v13+, DeleteTopics v6).
    pub id: Uuid,
    /// Number of partitions, numbered `0..partitions`.
    pub partitions: i32,
    /// Config overrides; unset configs take the broker defaults.
    #[serde(default)]
    pub configs: TopicConfigs,
}

/// A boxed future returned by the registry's mutating operations: a replicated store must wait
/// for its log to commit a change, so these are asynchronous even when the local store is not.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The topic registry as handlers use it.
///
/// Implementors guarantee:
/// - reads ([`topics`](Self::topics), [`topic`](Self::topic), ...) return the state after
///   every mutation whose future has resolved `Ok` (read-your-writes on this broker);
/// - a mutation that resolves `Ok` is durable: it survives a crash of this process;
/// - a mutation that resolves `Err` changed nothing;
/// - topic ids are unique and never reused, and a topic keeps its id until deleted.
///
/// Callers serialize mutations of the same topic (the broker holds one admin lock), so
/// implementors need not handle racing creates of one name beyond returning `TopicExists`.
pub trait MetadataStore: Send + Sync + 'static {
    /// The cluster id, stable for the life of the data directory (cluster).
    fn cluster_id(&self) -> String;
    /// Every topic, ordered by name.
    fn topics(&self) -> Vec<TopicMeta>;
    /// One topic by name.
    fn topic(&self, name: &str) -> Option<TopicMeta>;
    /// One topic by id.
    fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta>;
    /// Records a new topic. `Err(TopicExists)` if the name is taken.
    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta>;
    /// Removes a topic and returns what it was. `Err(UnknownTopic)` if absent.
    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta>;
    /// Raises a topic's partition count. `Err(InvalidPartitions)` unless `count` is larger.
    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta>;
    /// Replaces a topic's config overrides.
    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta>;
}

/// Checks a topic name against Kafka's rules: 1..=249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "'.' and '..' are not allowed"
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "longer than 249 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopic { name: name.to_string(), reason })
}

/// What `topics.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Registry {
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
}

/// The single-node registry: one JSON file in the data directory, rewritten atomically
/// (temporary file, fsync, rename, fsync of the directory) on every change.
#[derive(Debug)]
pub struct LocalMetadataStore {
    path: PathBuf,
    registry: Mutex<Registry>,
}

impl LocalMetadataStore {
    /// Opens the registry in `data_dir`, or creates an empty one with a fresh cluster id.
    /// Returns the store and whether it was newly created.
    pub fn open(data_dir: &Path) -> Result<(LocalMetadataStore, bool)> {
        let path = data_dir.join(TOPICS_FILE);
        let (registry, created) = match std::fs::read(&path) {
            Ok(bytes) => {
                let registry: Registry = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::CorruptMetadata { path: path.clone(), reason: e.to_string() })?;
                (registry, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let registry = Registry { cluster_id: new_cluster_id(), topics: BTreeMap::new() };
                write_atomically(&path, &registry)?;
                (registry, true)
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok((LocalMetadataStore { path, registry: Mutex::new(registry) }, created))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the registry half-changed: every
        // mutation works on a copy and swaps it in only after the file is written.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to a copy of the registry, persists the copy, then swaps it in.
    fn mutate(&self, change: impl FnOnce(&mut Registry) -> Result<TopicMeta>) -> Result<TopicMeta> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let result = change(&mut next)?;
        write_atomically(&self.path, &next)?;
        *guard = next;
        Ok(result)
    }
}

impl MetadataStore for LocalMetadataStore {
    fn cluster_id(&self) -> String {
        self.lock().cluster_id.clone()
    }

    fn topics(&self) -> Vec<TopicMeta> {
        self.lock().topics.values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.lock().topics.get(name).cloned()
    }

    fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.lock().topics.values().find(|t| t.id == id).cloned()
    }

    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move {
            self.mutate(|r| {
                if r.topics.contains_key(&name) {
                    return Err(Error::TopicExists(name.clone()));
                }
                let id = loop {
                    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
                    if !r.topics.values().any(|t| t.id == id) {
                        break id;
                    }
                };
                let meta = TopicMeta { name: name.clone(), id, partitions, configs };
                r.topics.insert(name.clone(), meta.clone());
                Ok(meta)
            })
        })
    }

    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(
            async move { self.mutate(|r| r.topics.remove(&name).ok_or_else(|| Error::UnknownTopic(name.clone()))) },
        )
    }

    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move {
            self.mutate(|r| {
                let t = r.topics.get_mut(&name).ok_or_else(|| Error::UnknownTopic(name.clone()))?;
                if count <= t.partitions {
                    return Err(Error::InvalidPartitions {
                        topic: name.clone(),
                        reason: format!("topic has {} partitions; the new count {count} must be larger", t.partitions),
                    });
                }
                t.partitions = count;
                Ok(t.clone())
            })
        })
    }

    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move {
            self.mutate(|r| {
                let t = r.topics.get_mut(&name).ok_or_else(|| Error::UnknownTopic(name.clone()))?;
                t.configs = configs;
                Ok(t.clone())
            })
        })
    }
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

/// Writes `value` as JSON to `path` so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::io(format!("encoding {}", path.display()), std::io::Error::other(e)))?;
    write_file_atomically(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file: write, fsync, rename, fsync the directory.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(ctx("creating"), e))?;
    f.write_all(bytes).map_err(|e| Error::io(ctx("writing"), e))?;
    f.sync_all().map_err(|e| Error::io(ctx("fsyncing"), e))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), path.display()), e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let d = std::fs::File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    d.sync_all().map_err(|e| Error::io(format!("fsyncing {}", dir.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registry_survives_reopen_and_keeps_cluster_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, created) = LocalMetadataStore::open(dir.path()).expect("open");
        assert!(created);
        let cluster = store.cluster_id();
        assert_eq!(cluster.len(), 22);
        let t = store.create_topic("a", 3, TopicConfigs::new()).await.expect("create");
        assert!(matches!(store.create_topic("a", 1, TopicConfigs::new()).await, Err(Error::TopicExists(_))));
        store.set_partitions("a", 5).await.expect("grow");
        assert!(store.set_partitions("a", 5).await.is_err());
        store.create_topic("b", 1, TopicConfigs::new()).await.expect("create b");
        store.delete_topic("b").await.expect("delete b");
        drop(store);

        let (store, created) = LocalMetadataStore::open(dir.path()).expect("reopen");
        assert!(!created);
        assert_eq!(store.cluster_id(), cluster);
        let a = store.topic("a").expect("a survives");
        assert_eq!((a.id, a.partitions), (t.id, 5));
        assert_eq!(store.topic_by_id(t.id).map(|t| t.name), Some("a".to_string()));
        assert!(store.topic("b").is_none());
    }

    #[test]
    fn topic_names() {
        for ok in ["a", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok).expect(ok);
        }
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
