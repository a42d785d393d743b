//! Before and after a run: make sure the topic exists with leaders, and read the high
//! watermarks that the end-of-run check compares with the acknowledged count.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;

use crate::client::{LogContext, base_config};
use crate::{BenchConfig, Error};

/// How often metadata and watermarks are re-read while waiting for them to settle.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Checks that a broker answers, creates the topic if asked to, and waits until every
/// partition has a leader. Returns the partition count.
pub(crate) async fn ensure_topic(cfg: &BenchConfig) -> Result<i32, Error> {
    let admin: AdminClient<LogContext> =
        base_config(cfg).create_with_context(LogContext).map_err(Error::kafka("cannot create the admin client"))?;
    let known = partition_count(admin.inner(), cfg).await?;
    if known.is_none() {
        if !cfg.create_topic {
            return Err(Error::UnknownTopic { topic: cfg.topic.clone() });
        }
        create(&admin, cfg).await?;
    }
    wait_for_leaders(admin.inner(), cfg).await
}

/// The topic's partition count, or `None` when the broker does not know the topic. The
/// first request of a run, so its failure means no broker answered.
async fn partition_count(client: &Client<LogContext>, cfg: &BenchConfig) -> Result<Option<i32>, Error> {
    // librdkafka's metadata call blocks; the runtime is multi-threaded (see `Runner`).
    tokio::task::block_in_place(|| client.fetch_metadata(Some(&cfg.topic), cfg.timeout))
        .map(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == cfg.topic && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
        })
        .map_err(|cause| Error::Unreachable { bootstrap: cfg.bootstrap_servers.clone(), timeout: cfg.timeout, cause })
}

async fn create(admin: &AdminClient<LogContext>, cfg: &BenchConfig) -> Result<(), Error> {
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor));
    let opts = AdminOptions::new().request_timeout(Some(cfg.timeout));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|e| Error::CreateTopic { topic: cfg.topic.clone(), reason: crate::error::describe(&e) })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                let reason = crate::error::describe(&rdkafka::error::KafkaError::AdminOp(code));
                return Err(Error::CreateTopic { topic: cfg.topic.clone(), reason });
            }
        }
    }
    tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, "created topic");
    Ok(())
}

/// Polls metadata until every partition has a leader, within the run's timeout.
async fn wait_for_leaders(client: &Client<LogContext>, cfg: &BenchConfig) -> Result<i32, Error> {
    let start = Instant::now();
    loop {
        let leaderless = tokio::task::block_in_place(|| {
            let md = client
                .fetch_metadata(Some(&cfg.topic), cfg.timeout)
                .map_err(Error::kafka(format!("reading metadata of {:?}", cfg.topic)))?;
            let topic = md.topics().iter().find(|t| t.name() == cfg.topic && t.error().is_none());
            Ok::<_, Error>(match topic {
                Some(t) if !t.partitions().is_empty() => (
                    i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                    t.partitions().iter().find(|p| p.leader() < 0).map(|p| p.id()),
                ),
                _ => (0, Some(0)),
            })
        })?;
        match leaderless {
            (n, None) => return Ok(n),
            (_, Some(partition)) if start.elapsed() >= cfg.timeout => {
                return Err(Error::NoLeader { topic: cfg.topic.clone(), partition, waited: start.elapsed() });
            }
            _ => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// High watermarks of partitions `0..partitions`.
pub(crate) fn high_watermarks<C: rdkafka::client::ClientContext>(
    client: &Client<C>,
    cfg: &BenchConfig,
    partitions: i32,
) -> Result<Vec<i64>, Error> {
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(&cfg.topic, p, cfg.timeout)
                .map(|(_, high)| high)
                .map_err(Error::kafka(format!("reading the watermarks of {}/{p}", cfg.topic)))
        })
        .collect()
}
