//! One request frame into an in-process broker (a real `BrokerState` on a temp directory,
//! served through the real connection code over an in-memory pipe): it answers or closes that
//! connection, never panics or aborts, and afterwards still answers an ApiVersions request on
//! a new connection.
//!
//! [`CountingAlloc`] lets a target binary also check what one input may allocate: no more
//! than the frame itself (a few times over, for decoding) plus a bounded constant.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strom_broker::connection::{AnyStream, serve};
use strom_broker::state::BrokerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long one exchange may take before its connection is dropped (a fetch may long-poll).
const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(300);
/// Topics the fuzzer created are deleted after this many inputs (bounds disk and memory).
const CLEANUP_EVERY: u64 = 200;

struct Harness {
    rt: tokio::runtime::Runtime,
    state: std::sync::Arc<BrokerState>,
    _dir: tempfile::TempDir,
    inputs: AtomicU64,
    connections: AtomicU64,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = strom_broker::Config {
            listen: "127.0.0.1:0".into(),
            metrics_listen: String::new(),
            data_dir: dir.path().to_path_buf(),
            ..strom_broker::Config::default()
        };
        let broker =
            rt.block_on(strom_broker::Broker::bind(config, CancellationToken::new())).expect("an in-process broker");
        let state = broker.state().clone();
        // The broker is served through `serve` directly; the bound listener stays unused.
        std::mem::forget(broker);
        Harness { rt, state, _dir: dir, inputs: AtomicU64::new(0), connections: AtomicU64::new(0) }
    })
}

/// Writes `frame` (without its size prefix) on a new connection and reads until the broker
/// closes it or [`EXCHANGE_TIMEOUT`] passes; returns what the broker wrote.
async fn exchange(h: &Harness, frame: &[u8]) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    let id = h.connections.fetch_add(1, Ordering::Relaxed);
    let peer = "127.0.0.1:1".parse().expect("addr");
    let task = tokio::spawn(serve(h.state.clone(), AnyStream(server), peer, id, CancellationToken::new()));
    let mut out = Vec::new();
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if client.write_all(&len.to_be_bytes()).await.is_err() || client.write_all(frame).await.is_err() {
            return;
        }
        let _ = client.shutdown().await;
        let _ = client.read_to_end(&mut out).await;
    })
    .await;
    task.abort();
    let _ = task.await;
    out
}

fn api_versions_frame() -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(3)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("strom-fuzz")));
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strom-fuzz"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 2).expect("header");
    body.encode(&mut buf, 3).expect("body");
    buf.to_vec()
}

/// See the crate docs.
pub fn request_frame(data: &[u8]) {
    let h = harness();
    h.rt.block_on(async {
        let _ = exchange(h, data).await;
        let reply = exchange(h, &api_versions_frame()).await;
        let mut buf = &reply[..];
        assert!(buf.len() >= 4, "the broker still answers ApiVersions after {} input bytes", data.len());
        let len = buf.get_u32() as usize;
        assert_eq!(len, buf.len(), "one whole response");
        let header = ResponseHeader::decode(&mut buf, 0).expect("response header");
        assert_eq!(header.correlation_id, 7);
        let body = ApiVersionsResponse::decode(&mut buf, 3).expect("ApiVersions response");
        assert_eq!(body.error_code, 0);
        if h.inputs.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            for t in h.state.metadata.topics() {
                if !t.name.starts_with("__") {
                    let _ = h.state.delete_topic(&t.name).await;
                }
            }
        }
    });
}

/// A global allocator that counts live bytes and their peak, so a target can check what one
/// input allocates ([`CountingAlloc::reset_peak`] before, [`CountingAlloc::peak_above`] after).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl CountingAlloc {
    /// Starts a new measurement; returns the live bytes now.
    pub fn reset_peak() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }

    /// The highest live byte count since [`CountingAlloc::reset_peak`], above `base`.
    pub fn peak_above(base: usize) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(base)
    }
}

// SAFETY of this impl: every call forwards to the system allocator unchanged; the counters
// are plain atomics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What one input may allocate above what was live before it: the frame four times over (the
/// frame, its decoded form, the response, a copy the handler makes) plus 96 MiB, of which 64
/// MiB is the most a produce's batch may expand to when the broker recompresses it.
pub fn allocation_bound(frame_len: usize) -> usize {
    4 * frame_len + 96 * 1024 * 1024
}
