//! Prometheus metrics: one process-wide recorder (the `metrics` facade with
//! `metrics-exporter-prometheus`), rendered in the Prometheus text format at `/metrics` by
//! [`serve_http`], next to a `/health` readiness check.
//!
//! Code anywhere in Strom records through the `metrics` macros (`strom-log` records its
//! flushes that way without knowing about Prometheus). Per-partition gauges (log size, log
//! end, high watermark) and group lag are computed at scrape time by the hook passed to
//! [`serve_http`], so the hot paths pay nothing for them.
//!
//! Names follow Prometheus conventions: `strom_..._total` counters, `_seconds` and `_bytes`
//! units.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dispatch::BoxFuture;
use crate::state::BrokerState;

/// Latency buckets (seconds): 50 µs to 10 s, dense where fsync and loopback round trips live.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// `strom sink`'s record lag (seconds): fine around its 1 s default flush interval.
const SINK_LAG_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0];
/// Appends covered by one fsync.
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and
/// describes every metric Strom records.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("strom_log_appends_per_flush".into()), COUNT_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("strom_sink_record_lag_seconds".into()), SINK_LAG_BUCKETS)
                })
                .map(|b| b.build_recorder());
            let recorder = match recorder {
                Ok(r) => r,
                // Only reachable with an empty bucket list, which the constants above are not.
                Err(e) => unreachable!("static bucket configuration rejected: {e}"),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "strom_requests_total",
        "Kafka requests read, by API and outcome (handled, bad_request, closed)."
    );
    describe_counter!(
        "strom_errors_total",
        "Non-zero error codes in responses (every level: request, topic, partition, group), by API and code."
    );
    describe_histogram!(
        "strom_request_duration_seconds",
        Unit::Seconds,
        "Time the handler takes to decide a request's answer, by API (not counting waits for durability or long polls)."
    );
    describe_histogram!(
        "strom_produce_ack_duration_seconds",
        Unit::Seconds,
        "Broker-side produce latency (acks=1/all): from the decoded request to its answer being ready, appends and the fsync wait included."
    );
    describe_counter!("strom_produced_bytes_total", Unit::Bytes, "Record-batch bytes appended, by topic.");
    describe_counter!("strom_produced_records_total", "Records appended, by topic.");
    describe_counter!("strom_fetched_bytes_total", Unit::Bytes, "Record-batch bytes returned to fetchers, by topic.");
    describe_gauge!("strom_active_connections", "Client connections open now.");
    describe_gauge!("strom_partitions", "Partition logs held by this broker.");
    describe_gauge!("strom_partition_log_size_bytes", Unit::Bytes, "Bytes held by a partition's segments.");
    describe_gauge!("strom_partition_log_end_offset", "Next offset a partition will assign.");
    describe_gauge!("strom_partition_high_watermark", "Offsets below this are visible to consumers.");
    describe_gauge!("strom_partition_log_start_offset", "First offset a partition still holds.");
    describe_gauge!(
        "strom_under_replicated_partitions",
        "Partitions with fewer in-sync replicas than replicas (0 until replication exists)."
    );
    describe_gauge!(
        "strom_consumer_group_lag",
        "High watermark minus committed offset, by group, topic and partition."
    );
    describe_counter!("strom_log_flushes_total", "Group-commit fsyncs run by the flusher.");
    describe_histogram!("strom_log_flush_duration_seconds", Unit::Seconds, "Duration of one group-commit fdatasync.");
    describe_histogram!("strom_log_appends_per_flush", "Appends made durable by one fsync (group-commit efficiency).");
    describe_counter!("strom_log_fsync_failures_total", "Fsync failures (each latches its partition failed).");
    describe_counter!(
        "strom_log_preallocated_bytes_total",
        Unit::Bytes,
        "Zeros written (and fsynced) ahead of busy active segments."
    );
}

/// The metric label of an API key: its name as Kafka spells it in the enum (`Produce`).
pub fn api_label(key: kafka_protocol::messages::ApiKey) -> &'static str {
    use std::collections::HashMap;
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    // Built once from the finite set of keys, so each name is allocated exactly once.
    let names = NAMES.get_or_init(|| {
        kafka_protocol::messages::ApiKey::iter()
            .map(|k| (k as i16, &*Box::leak(format!("{k:?}").into_boxed_str())))
            .collect()
    });
    names.get(&(key as i16)).copied().unwrap_or("unknown")
}

/// Called right before each scrape renders, to refresh gauges derived from broker state.
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>;

/// The scrape hook of a running broker: partition count, per-partition log size, log
/// start/end offsets and high watermark; for the partitions this broker leads, the ISR size,
/// the under-replicated and (cluster-wide, from metadata) offline partition counts, and each
/// follower's replication lag in offsets and in seconds since it was last caught up; and
/// consumer-group lag (high watermark minus committed offset) for every committed partition.
pub fn broker_scrape_hook(state: Arc<BrokerState>) -> ScrapeHook {
    Arc::new(move || {
        let state = state.clone();
        Box::pin(async move {
            let logs = state.logs.list();
            metrics::gauge!("strom_partitions").set(logs.len() as f64);
            let now = std::time::Instant::now();
            let mut under_replicated = 0u64;
            for topic in state.partitions.topic_names() {
                for p in state.partitions.topic(&topic).into_iter().flatten() {
                    let l = p.leadership();
                    if !l.is_leader() {
                        continue;
                    }
                    let labels = [("topic", topic.clone()), ("partition", p.index().to_string())];
                    metrics::gauge!("strom_partition_isr_size", &labels).set(l.isr.len() as f64);
                    if l.isr.len() < l.replicas.len() {
                        under_replicated += 1;
                    }
                    for (replica, offsets, since) in p.follower_lag(now) {
                        let labels = [
                            ("topic", topic.clone()),
                            ("partition", p.index().to_string()),
                            ("replica", replica.to_string()),
                        ];
                        if let Some(offsets) = offsets {
                            metrics::gauge!("strom_replica_lag_offsets", &labels).set(offsets as f64);
                        }
                        metrics::gauge!("strom_replica_lag_seconds", &labels).set(since.as_secs_f64());
                    }
                }
            }
            metrics::gauge!("strom_under_replicated_partitions").set(under_replicated as f64);
            let offline: usize = state
                .metadata
                .topics()
                .iter()
                .map(|t| state.metadata.partitions(&t.name).iter().filter(|p| p.leader.is_none()).count())
                .sum();
            metrics::gauge!("strom_offline_partitions").set(offline as f64);
            for log in &logs {
                let labels = [("topic", log.topic().to_string()), ("partition", log.partition().to_string())];
                metrics::gauge!("strom_partition_log_size_bytes", &labels).set(log.size_bytes() as f64);
                metrics::gauge!("strom_partition_log_end_offset", &labels).set(log.log_end_offset() as f64);
                metrics::gauge!("strom_partition_log_start_offset", &labels).set(log.log_start_offset() as f64);
                metrics::gauge!("strom_partition_high_watermark", &labels).set(log.high_watermark() as f64);
            }
            for (group, _) in state.groups.list() {
                let Ok(committed) = state.groups.fetch_offsets(&group, None).await else { continue };
                for ((topic, partition), value) in committed {
                    let (Some(value), Some(log)) = (value, state.logs.get(&topic, partition)) else { continue };
                    let lag = (log.high_watermark() - value.offset).max(0);
                    let labels = [("group", group.clone()), ("topic", topic), ("partition", partition.to_string())];
                    metrics::gauge!("strom_consumer_group_lag", &labels).set(lag as f64);
                }
            }
        })
    })
}

/// Serves `GET /metrics` (Prometheus text format) and `GET /health` (200 "ready" once
/// `ready` is true, 503 before) on `listener` until `shutdown` is cancelled.
pub async fn serve_http(
    listener: TcpListener,
    handle: PrometheusHandle,
    ready: Arc<AtomicBool>,
    hook: ScrapeHook,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (handle, ready, hook) = (handle.clone(), ready.clone(), hook.clone());
        let service = service_fn(move |req: Request<Incoming>| {
            let (handle, ready, hook) = (handle.clone(), ready.clone(), hook.clone());
            async move { Ok::<_, Infallible>(respond(req, handle, ready, hook).await) }
        });
        tokio::spawn(async move {
            // A client that never finishes its request headers is dropped after 10 s, so idle
            // or hostile scrapers cannot pile up connections.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    handle: PrometheusHandle,
    ready: Arc<AtomicBool>,
    hook: ScrapeHook,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
        r
    };
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET is served\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            hook().await;
            text(StatusCode::OK, "text/plain; version=0.0.4", handle.render())
        }
        "/health" if ready.load(Ordering::Acquire) => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/health" => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".into()),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics or /health\n".into()),
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
