//! [`ReplicaFetchers`]: how a follower keeps its replicas up to date. One task per leader
//! broker fetches every partition this broker follows from it in one Kafka Fetch (v12, with
//! this broker's id as `replica_id`), appends the leader's batches unchanged, waits until
//! they are durable here (one journal round for all of them), and only then fetches again —
//! so the fetch offset a follower sends is always a durable end, which is what lets the
//! leader count it toward the high watermark. The same loop does catch-up and steady state.
//! A leader that answers `DivergingEpoch` makes the follower truncate first (KIP-320).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::BrokerClient;
use crate::partition::Partition;

/// The Fetch version followers send: the newest this broker serves, which carries
/// `LastFetchedEpoch` and `DivergingEpoch` (v12+).
pub const REPLICA_FETCH_VERSION: i16 = 12;

/// How a follower fetches.
#[derive(Debug, Clone, Copy)]
pub struct FetcherConfig {
    /// This broker's id (the fetch's `replica_id`).
    pub me: i32,
    /// How long the leader may hold a fetch that finds nothing new (Kafka's
    /// `replica.fetch.wait.max.ms`).
    pub max_wait: Duration,
    /// Bytes per partition per fetch (`replica.fetch.max.bytes`).
    pub partition_max_bytes: usize,
    /// Bytes per fetch response.
    pub response_max_bytes: usize,
    /// Most bytes per second fetched for replicas a reassignment is adding (0: no limit):
    /// Kafka's replication throttle. In-sync followers are never throttled.
    pub reassignment_throttle_bytes_per_sec: u64,
}

/// A token bucket over the bytes fetched for throttled partitions, one second of burst.
/// While it is empty those partitions are left out of the fetch (as Kafka's follower-side
/// throttle does), so the others keep fetching at full speed.
#[derive(Debug)]
struct Throttle {
    rate: f64,
    available: f64,
    at: std::time::Instant,
}

impl Throttle {
    fn new(rate: u64) -> Option<Throttle> {
        (rate > 0).then(|| Throttle { rate: rate as f64, available: rate as f64, at: std::time::Instant::now() })
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        self.available = (self.available + self.rate * (now - self.at).as_secs_f64()).min(self.rate);
        self.at = now;
    }

    /// Whether throttled partitions may be fetched now.
    fn open(&mut self) -> bool {
        self.refill();
        self.available > 0.0
    }

    fn spend(&mut self, bytes: usize) {
        self.available -= bytes as f64;
    }

    /// Bytes the bucket holds now (at least 1: a fetch asks for something).
    fn budget(&self) -> usize {
        (self.available.max(1.0)) as usize
    }

    /// How long until throttled partitions may be fetched again.
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.available > 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.available / self.rate) }
    }
}

/// The partitions one leader serves this follower, keyed by (topic, index).
type Followed = BTreeMap<(String, i32), Arc<Partition>>;

struct Fetcher {
    partitions: watch::Sender<Followed>,
    address: watch::Sender<Option<String>>,
    cancel: CancellationToken,
}

/// Every fetcher task of this broker, one per leader it follows partitions of.
pub struct ReplicaFetchers {
    config: FetcherConfig,
    /// The node's logs, to make one journal round of a response's appends.
    logs: strom_log::LogManager,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for ReplicaFetchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFetchers").field("me", &self.config.me).finish_non_exhaustive()
    }
}

impl ReplicaFetchers {
    /// No fetchers yet; they append to `logs`' partitions and stop when `shutdown` is
    /// cancelled.
    pub fn new(config: FetcherConfig, logs: strom_log::LogManager, shutdown: CancellationToken) -> ReplicaFetchers {
        ReplicaFetchers { config, logs, fetchers: Mutex::new(HashMap::new()), shutdown }
    }

    /// Makes the fetchers match `partitions` (every partition this broker holds) and
    /// `addresses` (each live broker's client address): a task for each leader this broker
    /// follows a partition of, fetching exactly those; tasks of leaders with none stop.
    pub fn update(&self, partitions: &[Arc<Partition>], addresses: &HashMap<i32, String>) {
        let mut wanted: HashMap<i32, Followed> = HashMap::new();
        for p in partitions {
            let l = p.leadership();
            if let Some(leader) = l.leader {
                if leader != l.me && l.replicas.contains(&l.me) {
                    wanted.entry(leader).or_default().insert((p.topic().to_string(), p.index()), p.clone());
                }
            }
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        fetchers.retain(|leader, f| {
            let keep = wanted.contains_key(leader);
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
        for (leader, set) in wanted {
            let address = addresses.get(&leader).cloned();
            match fetchers.get(&leader) {
                Some(f) => {
                    f.partitions.send_if_modified(|cur| {
                        let changed = !same_partitions(cur, &set);
                        if changed {
                            *cur = set;
                        }
                        changed
                    });
                    f.address.send_if_modified(|cur| {
                        let changed = *cur != address;
                        if changed {
                            cur.clone_from(&address);
                        }
                        changed
                    });
                }
                None => {
                    let f = Fetcher {
                        partitions: watch::Sender::new(set),
                        address: watch::Sender::new(address),
                        cancel: self.shutdown.child_token(),
                    };
                    let task = FetchLoop {
                        behind: Default::default(),
                        throttle: Throttle::new(self.config.reassignment_throttle_bytes_per_sec),
                        config: self.config,
                        logs: self.logs.clone(),
                        followed_start: HashMap::new(),
                        leader,
                        partitions: f.partitions.subscribe(),
                        address: f.address.subscribe(),
                        cancel: f.cancel.clone(),
                    };
                    tokio::spawn(task.run());
                    info!(leader, "started fetching from a leader");
                    fetchers.insert(leader, f);
                }
            }
        }
    }
}

fn same_partitions(a: &Followed, b: &Followed) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, pa), (kb, pb))| ka == kb && Arc::ptr_eq(pa, pb))
}

/// One leader's fetch loop.
struct FetchLoop {
    config: FetcherConfig,
    /// The budget of the partitions this broker is being added to by a reassignment.
    throttle: Option<Throttle>,
    /// Throttled partitions still behind their leader's high watermark after their last
    /// fetch: held back while the budget is spent. One that has caught up keeps fetching
    /// (it asks for almost nothing, and must report its offset to join the ISR).
    behind: std::collections::HashSet<(String, i32)>,
    logs: strom_log::LogManager,
    /// The leader log start each partition last followed (so a start that falls inside one
    /// of our segments is not retried at every fetch).
    followed_start: HashMap<(String, i32), i64>,
    leader: i32,
    partitions: watch::Receiver<Followed>,
    address: watch::Receiver<Option<String>>,
    cancel: CancellationToken,
}

/// Waits before trying again after a failure: from 50 ms, doubling to 1 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        d
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

impl FetchLoop {
    async fn run(mut self) {
        let mut client: Option<BrokerClient> = None;
        let mut backoff = Backoff(Backoff::FIRST);
        let mut failures = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                debug!(leader = self.leader, "fetcher stopped");
                return;
            }
            let parts = self.partitions.borrow_and_update().clone();
            if parts.is_empty() {
                tokio::select! {
                    _ = self.partitions.changed() => continue,
                    _ = self.cancel.cancelled() => continue,
                }
            }
            let conn = match client.as_mut() {
                Some(c) => c,
                None => {
                    let Some(addr) = self.address.borrow_and_update().clone() else {
                        self.pause(backoff.next()).await;
                        continue;
                    };
                    let client_id = format!("strom-replica-{}", self.config.me);
                    let connect = BrokerClient::connect(&addr, &client_id, self.config.response_max_bytes + (1 << 20));
                    match tokio::time::timeout(Duration::from_secs(5), connect).await {
                        Ok(Ok(c)) => client.insert(c),
                        outcome => {
                            failures += 1;
                            let error = match outcome {
                                Ok(Err(e)) => e.to_string(),
                                _ => "connect timed out".to_string(),
                            };
                            if failures == 1 || failures.is_power_of_two() {
                                warn!(leader = self.leader, %addr, %error, failures, "cannot reach the leader to fetch from it");
                            }
                            self.pause(backoff.next()).await;
                            continue;
                        }
                    }
                }
            };
            let (request, sent, throttled) = self.request(&parts);
            if sent.is_empty() && throttled {
                // Only throttled partitions behind their leader, and their budget is spent.
                let wait = self.throttle.as_mut().map_or(Duration::ZERO, Throttle::wait);
                self.pause(wait.max(Duration::from_millis(1))).await;
                continue;
            }
            let response = tokio::select! {
                r = conn.call(&request, REPLICA_FETCH_VERSION) => r,
                _ = self.partitions.changed() => {
                    // The set changed under an in-flight fetch: drop the connection (its
                    // answer would be for the old set) and fetch the new set at once.
                    client = None;
                    continue;
                }
                _ = self.address.changed() => { client = None; continue; }
                _ = self.cancel.cancelled() => return,
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        warn!(leader = self.leader, error = %e, failures, "fetch from the leader failed; reconnecting");
                    }
                    client = None;
                    self.pause(backoff.next()).await;
                    continue;
                }
            };
            failures = 0;
            if response.error_code != 0 {
                debug!(leader = self.leader, code = response.error_code, "leader refused the fetch");
                self.pause(backoff.next()).await;
                continue;
            }
            if self.apply(&parts, &sent, response).await {
                backoff.reset();
            } else {
                // Nothing usable came back (every partition refused: metadata is moving).
                self.pause(backoff.next()).await;
            }
        }
    }

    /// Sleeps `d` unless cancelled or the partition set changes first.
    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.cancel.cancelled() => {}
            _ = self.partitions.changed() => {}
        }
    }

    /// The fetch for every partition of `parts` still following this leader, and the leader
    /// epoch each was fetched at.
    /// Also whether a throttled partition was left out (its budget is spent).
    fn request(&mut self, parts: &Followed) -> (FetchRequest, HashMap<(String, i32), i32>, bool) {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        let mut sent = HashMap::new();
        let mut held_back = false;
        let throttle_open = self.throttle.as_mut().is_none_or(Throttle::open);
        for ((topic, index), p) in parts {
            let (offset, last_epoch, epoch, leader) = p.follower_position();
            if leader != Some(self.leader) {
                continue;
            }
            let mut max_bytes = self.config.partition_max_bytes;
            if let Some(t) = self.throttle.as_ref().filter(|_| p.is_being_added()) {
                let behind = self.behind.contains(&(topic.clone(), *index));
                if !throttle_open && behind {
                    held_back = true;
                    continue;
                }
                max_bytes = max_bytes.min(if throttle_open { t.budget() } else { 1 });
            }
            sent.insert((topic.clone(), *index), epoch);
            topics.entry(topic).or_default().push(
                FetchPartition::default()
                    .with_partition(*index)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(offset)
                    .with_last_fetched_epoch(last_epoch)
                    .with_log_start_offset(p.log().log_start_offset())
                    .with_partition_max_bytes(i32::try_from(max_bytes).unwrap_or(i32::MAX)),
            );
        }
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions)
            })
            .collect();
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.config.me))
            .with_max_wait_ms(i32::try_from(self.config.max_wait.as_millis()).unwrap_or(500))
            .with_min_bytes(1)
            .with_max_bytes(i32::try_from(self.config.response_max_bytes).unwrap_or(i32::MAX))
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        (request, sent, held_back)
    }

    /// Applies a fetch response: truncations first, appends, then one wait until every
    /// append is durable here (they share the journal round), then the leader's high
    /// watermark. Returns whether any partition was served.
    async fn apply(
        &mut self,
        parts: &Followed,
        sent: &HashMap<(String, i32), i32>,
        response: kafka_protocol::messages::FetchResponse,
    ) -> bool {
        let mut served = false;
        let mut appended: Vec<(Arc<Partition>, i64, i64)> = Vec::new();
        // Partitions whose leader's log now starts after ours (its retention ran).
        let mut trimmed: Vec<(Arc<Partition>, i64)> = Vec::new();
        // Every partition's append joins one journal round (as a produce request's do).
        let mut hold = self.logs.hold_commits();
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for pd in topic.partitions {
                let key = (name.clone(), pd.partition_index);
                let (Some(p), Some(&epoch)) = (parts.get(&key), sent.get(&key)) else { continue };
                // Used only if this broker still follows this leader at the epoch it asked in.
                if !p.follows(self.leader, epoch) {
                    continue;
                }
                if pd.error_code != 0 {
                    if pd.error_code == ResponseError::OffsetOutOfRange.code()
                        && pd.log_start_offset > p.log().log_end_offset()
                    {
                        // What we would fetch next is gone from the leader: start over at
                        // its log start (a truncation journals a record: release the round).
                        hold = None;
                        let (p2, start) = (p.clone(), pd.log_start_offset);
                        match tokio::task::spawn_blocking(move || p2.restart_at(start)).await {
                            Ok(Ok(())) => served = true,
                            Ok(Err(e)) => {
                                warn!(topic = %name, partition = pd.partition_index, error = %e, "restarting the log at the leader's log start failed")
                            }
                            Err(e) => warn!(error = %e, "restart task failed"),
                        }
                    } else if pd.error_code == ResponseError::OffsetOutOfRange.code() {
                        warn!(topic = %name, partition = pd.partition_index, log_start = pd.log_start_offset,
                            "the leader does not hold this follower's fetch offset (past its log end)");
                    } else {
                        debug!(topic = %name, partition = pd.partition_index, code = pd.error_code, "fetch refused for a partition");
                    }
                    continue;
                }
                served = true;
                if pd.log_start_offset > p.log().log_start_offset()
                    && self.followed_start.get(&key) != Some(&pd.log_start_offset)
                {
                    self.followed_start.insert(key.clone(), pd.log_start_offset);
                    trimmed.push((p.clone(), pd.log_start_offset));
                }
                let d = &pd.diverging_epoch;
                if d.epoch >= 0 || d.end_offset >= 0 {
                    // A truncation journals a record of its own: release the round first.
                    hold = None;
                    let (p2, epoch, end) = (p.clone(), d.epoch, d.end_offset);
                    match tokio::task::spawn_blocking(move || p2.truncate_diverged(epoch, end)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            warn!(topic = %name, partition = pd.partition_index, error = %e, "truncating a diverged log failed")
                        }
                        Err(e) => warn!(error = %e, "truncation task failed"),
                    }
                    continue;
                }
                let throttled = self.throttle.is_some() && p.is_being_added();
                if let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) {
                    if let Some(t) = self.throttle.as_mut().filter(|_| throttled) {
                        t.spend(records.len());
                        metrics::counter!("strom_reassignment_fetched_bytes_total").increment(records.len() as u64);
                    }
                    let before = p.log().log_end_offset();
                    let appended_to = p.append_as_follower(records);
                    if throttled {
                        match &appended_to {
                            Ok(end) if *end >= pd.high_watermark => self.behind.remove(&key),
                            _ => self.behind.insert(key.clone()),
                        };
                    }
                    match appended_to {
                        Ok(end) if end > before => appended.push((p.clone(), end, pd.high_watermark)),
                        Ok(_) => p.set_follower_high_watermark(pd.high_watermark),
                        Err(e) => {
                            warn!(topic = %name, partition = pd.partition_index, error = %e, "could not append the leader's batches")
                        }
                    }
                } else {
                    if throttled {
                        self.behind.remove(&key); // nothing left to fetch: caught up
                    }
                    p.set_follower_high_watermark(pd.high_watermark);
                }
            }
        }
        drop(hold);
        if !trimmed.is_empty() {
            // The leader no longer holds what lies before its log start: neither need we
            // (whole segments only, as the leader's retention deletes them).
            let done = tokio::task::spawn_blocking(move || {
                for (p, start) in trimmed {
                    if let Err(e) = p.log().delete_segments_before(start) {
                        warn!(topic = p.topic(), partition = p.index(), error = %e, "could not follow the leader's log start");
                    }
                }
            });
            if let Err(e) = done.await {
                warn!(error = %e, "following the leader's log start did not finish");
            }
        }
        for (p, end, hw) in appended {
            if let Err(e) = p.log().wait_durable(end - 1).await {
                warn!(topic = p.topic(), partition = p.index(), error = %e, "replicated batches did not become durable");
                continue;
            }
            p.set_follower_high_watermark(hw);
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_back_once_a_second_of_budget_is_spent_and_reopens_as_it_refills() {
        assert!(Throttle::new(0).is_none(), "0 means no limit");
        let mut t = Throttle::new(1000).expect("a limit");
        assert!(t.open(), "a full bucket");
        t.spend(1500);
        assert!(!t.open(), "overspent by 500 bytes");
        let wait = t.wait();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        t.available = 0.0;
        t.at = std::time::Instant::now() - Duration::from_secs(10);
        assert!(t.open());
        assert!(t.available <= 1000.0, "the burst is capped at one second");
    }
}
