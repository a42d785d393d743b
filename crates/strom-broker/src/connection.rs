//! One client connection: size-prefixed frames in, pipelined handling, responses out strictly
//! in request order.
//!
//! The reader takes one frame at a time, checks the 4-byte size before allocating, decodes the
//! header and runs the handler (so appends happen in arrival order), then queues the reply;
//! the writer awaits each queued reply in turn and writes it. The queue is bounded
//! ([`crate::Config::max_inflight_requests`]): a client that does not read its responses stops
//! being read. Bad input closes only this connection, logged with the peer address.
//!
//! An idle connection holds no buffers: the reader allocates only once the socket is readable
//! and drops its buffer when it has nothing pending, and the writer builds each write from the
//! responses at hand.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api;
use crate::dispatch::{self, DispatchError, Reply, RequestContext};
use crate::state::BrokerState;

/// Bytes requested from the socket per read when no larger frame is pending.
const READ_CHUNK: usize = 16 * 1024;
/// Responses smaller than this are gathered into one write with their neighbours.
const GATHER_LIMIT: usize = 64 * 1024;

/// A byte source that can wait until data (or EOF) is available without reading it, so the
/// reader allocates its buffer only when there is something to put in it.
pub trait WaitReadable: AsyncRead + Unpin {
    /// Resolves when a read would not block (at once where the source cannot tell).
    fn wait_readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl WaitReadable for tokio::net::tcp::OwnedReadHalf {
    fn wait_readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }
}

/// A stream the broker can serve a client on, split into its reading and writing halves.
/// TCP ([`TcpStream`]) keeps idle connections free of buffers; any other byte stream (TLS,
/// an in-memory pipe in tests) is served through [`AnyStream`], by the same code.
pub trait Transport: Send + 'static {
    /// The reading half.
    type Reader: WaitReadable + Send + 'static;
    /// The writing half.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// Splits the stream.
    fn split(self) -> (Self::Reader, Self::Writer);
}

impl Transport for TcpStream {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;
    fn split(self) -> (Self::Reader, Self::Writer) {
        self.into_split()
    }
}

/// Any `AsyncRead + AsyncWrite` stream as a [`Transport`] (its reader cannot wait without
/// reading, so an idle connection keeps one read buffer).
#[derive(Debug)]
pub struct AnyStream<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for AnyStream<S> {
    type Reader = ReadHalf<S>;
    type Writer = WriteHalf<S>;
    fn split(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self.0)
    }
}

impl<S: AsyncRead + Send + Unpin> WaitReadable for ReadHalf<S> {
    fn wait_readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// The API name of a frame for metric labels (`"unknown"` for keys Kafka does not define).
fn api_name(frame: &Bytes) -> &'static str {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    match ApiKey::try_from(raw_key) {
        Ok(key) => crate::metrics::api_label(key),
        Err(()) => "unknown",
    }
}

#[cfg(test)]
impl WaitReadable for &[u8] {
    fn wait_readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame ({0} bytes of a frame received)")]
    Truncated(usize),
    /// The size prefix is negative, too small for a request header, or above the maximum.
    #[error("impossible frame size {size} (maximum {max})")]
    BadSize {
        /// The size as sent.
        size: i32,
        /// The configured maximum.
        max: usize,
    },
    /// Reading the socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads size-prefixed frames from a socket into one growing buffer; each frame is split off
/// and frozen, so request fields (produce records) are slices of it, never copies.
struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
}

impl<R: WaitReadable> FrameReader<R> {
    fn new(rd: R, max: usize) -> Self {
        FrameReader { rd, buf: BytesMut::new(), max }
    }

    /// The next frame without its size prefix; `None` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if self.buf.len() >= 4 {
                let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                // Every request header holds at least api key, version and correlation id.
                if size < 8 || size as usize > self.max {
                    return Err(FrameError::BadSize { size, max: self.max });
                }
                let total = 4 + size as usize;
                if self.buf.len() >= total {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(size as usize).freeze()));
                }
                // The size was checked above, so this allocation is bounded.
                self.buf.reserve(total - self.buf.len());
            } else if self.buf.is_empty() {
                // Nothing pending: release the buffer while idle, allocate once data arrives.
                self.buf = BytesMut::new();
                self.rd.wait_readable().await?;
                self.buf.reserve(READ_CHUNK);
            } else {
                self.buf.reserve(READ_CHUNK);
            }
            let n = self.rd.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(FrameError::Truncated(self.buf.len())) };
            }
        }
    }
}

/// Serves one connection until the client closes it, it misbehaves, or the broker shuts down
/// (then in-flight requests are finished and answered first). Socket options (TCP_NODELAY)
/// are the caller's to set.
pub async fn serve(
    state: Arc<BrokerState>,
    stream: impl Transport,
    peer: SocketAddr,
    connection_id: u64,
    shutdown: CancellationToken,
) {
    let (rd, wr) = stream.split();
    let (tx, rx) = mpsc::channel::<Reply>(state.config.max_inflight_requests);
    let reader = read_loop(state.clone(), rd, peer, connection_id, tx, shutdown);
    let writer = write_loop(wr, rx, peer);
    metrics::gauge!("strom_active_connections").increment(1.0);
    tokio::join!(reader, writer);
    metrics::gauge!("strom_active_connections").decrement(1.0);
    debug!(%peer, connection_id, "connection closed");
}

async fn read_loop(
    state: Arc<BrokerState>,
    rd: impl WaitReadable + Send,
    peer: SocketAddr,
    connection_id: u64,
    tx: mpsc::Sender<Reply>,
    shutdown: CancellationToken,
) {
    let mut frames = FrameReader::new(rd, state.config.max_request_bytes);
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            f = frames.next() => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                debug!(%peer, error = %e, "read failed; closing connection");
                return;
            }
            Err(e) => {
                warn!(%peer, error = %e, "bad frame; closing connection");
                return;
            }
        };
        let api = api_name(&frame);
        let started = std::time::Instant::now();
        let reply = match handle_frame(&state, frame, peer, connection_id).await {
            Ok(r) => r,
            Err(Closing::Requested(reason)) => {
                debug!(%peer, %reason, "closing connection as the protocol requires");
                metrics::counter!("strom_requests_total", "api" => api, "outcome" => "closed").increment(1);
                return;
            }
            Err(Closing::BadRequest(reason)) => {
                warn!(%peer, %reason, "bad request; closing connection");
                metrics::counter!("strom_requests_total", "api" => api, "outcome" => "bad_request").increment(1);
                return;
            }
        };
        // Time to the handler's decision; deferred work (fsync waits, long polls) is timed
        // by the log's flush histogram and not counted twice here.
        metrics::counter!("strom_requests_total", "api" => api, "outcome" => "handled").increment(1);
        metrics::histogram!("strom_request_duration_seconds", "api" => api).record(started.elapsed().as_secs_f64());
        if tx.send(reply).await.is_err() {
            return; // The writer failed: the peer is gone.
        }
    }
}

/// Why the reader closes the connection after a request.
enum Closing {
    /// The request is malformed or unsupported.
    BadRequest(String),
    /// The handler asked for it (an `acks=0` produce failed).
    Requested(String),
}

impl From<String> for Closing {
    fn from(reason: String) -> Self {
        Closing::BadRequest(reason)
    }
}

/// Decodes one frame's header, checks the API key and version, and dispatches it.
async fn handle_frame(
    state: &Arc<BrokerState>,
    frame: Bytes,
    peer: SocketAddr,
    connection_id: u64,
) -> Result<Reply, Closing> {
    // The size check guarantees at least 8 bytes: api key, api version, correlation id.
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| format!("unknown API key {raw_key}"))?;
    let Some(range) = dispatch::supported_versions(api_key) else {
        return Err(format!("{api_key:?} (key {raw_key}) is not supported by this broker").into());
    };
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            // The protocol's fallback: answer in v0 with UNSUPPORTED_VERSION and our versions,
            // so the client can retry with one we speak.
            debug!(%peer, version, "ApiVersions version unsupported; answering with v0");
            return api::api_versions::unsupported_version_reply(correlation_id).map_err(|e| e.to_string().into());
        }
        return Err(
            format!("{api_key:?} v{version} is outside the supported range {}..={}", range.min, range.max).into()
        );
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("malformed {api_key:?} v{version} request header: {e:#}"))?;
    let ctx = RequestContext { state: state.clone(), api_key, version, header, peer, connection_id };
    // Boxed: the handler futures are large, and inlining the largest into every connection's
    // task would make each idle connection pay for it.
    Box::pin(dispatch::call(ctx, body)).await.map_err(|e| match e {
        DispatchError::Close { .. } => Closing::Requested(e.to_string()),
        other => Closing::BadRequest(other.to_string()),
    })
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Reply>, peer: SocketAddr) {
    // Responses ready to write, in order. Small ones are gathered into one write.
    let mut batch: Vec<Bytes> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next.take() {
            match reply {
                Reply::Ready(b) => batch.push(b),
                Reply::None => {}
                Reply::Later(mut fut) => {
                    // Already answered (the fsync that covers it has finished, as it has for
                    // every produce it covered at once): gather it with the others into one
                    // write instead of one write (and one client wake-up) per response.
                    let answered =
                        match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
                            std::task::Poll::Ready(r) => Some(r),
                            std::task::Poll::Pending => None,
                        };
                    let result = match answered {
                        Some(r) => r,
                        None => {
                            // Send what is ready before waiting on something slow.
                            if write_batch(&mut w, &mut batch).await.is_err() {
                                return;
                            }
                            fut.await
                        }
                    };
                    match result {
                        Ok(b) => batch.push(b),
                        Err(e) => {
                            warn!(%peer, error = %e, "could not answer a request; closing connection");
                            let _ = write_batch(&mut w, &mut batch).await;
                            return;
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = write_batch(&mut w, &mut batch).await {
            debug!(%peer, error = %e, "write failed; closing connection");
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Writes and clears `batch`: consecutive small responses are copied into one buffer and
/// written together; large ones (fetch data) are written as they are.
async fn write_batch(w: &mut (impl AsyncWrite + Unpin), batch: &mut Vec<Bytes>) -> std::io::Result<()> {
    if batch.len() == 1 {
        let b = batch.pop().unwrap_or_default();
        return w.write_all(&b).await;
    }
    let mut gathered = BytesMut::new();
    for b in batch.drain(..) {
        if b.len() >= GATHER_LIMIT {
            if !gathered.is_empty() {
                w.write_all(&gathered).await?;
                gathered.clear();
            }
            w.write_all(&b).await?;
        } else {
            gathered.extend_from_slice(&b);
        }
    }
    if !gathered.is_empty() {
        w.write_all(&gathered).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write call separately.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn later(f: impl std::future::Future<Output = Bytes> + Send + 'static) -> Reply {
        Reply::Later(Box::pin(async move { Ok(f.await) }))
    }

    /// Responses whose futures are already resolved go out in one write, in request order;
    /// one still waiting is preceded by a write of everything before it.
    #[tokio::test]
    async fn answered_responses_are_gathered_in_order() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(later(async { Bytes::from_static(b"a") })).await.unwrap();
        tx.send(Reply::Ready(Bytes::from_static(b"b"))).await.unwrap();
        tx.send(later(async { Bytes::from_static(b"c") })).await.unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Bytes>();
        tx.send(later(async move { done_rx.await.unwrap() })).await.unwrap();
        tx.send(later(async { Bytes::from_static(b"e") })).await.unwrap();
        drop(tx);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let writer = tokio::spawn(async move {
            let mut w = Writes::default();
            write_loop(&mut w, rx, peer).await;
            w.0
        });
        tokio::task::yield_now().await;
        done_tx.send(Bytes::from_static(b"d")).unwrap();
        let writes = writer.await.unwrap();
        assert_eq!(writes, vec![b"abc".to_vec(), b"de".to_vec()]);
    }

    #[tokio::test]
    async fn frames_are_split_and_bad_sizes_rejected() {
        let mut input = Vec::new();
        for body in [&b"12345678"[..], &b"abcdefghij"[..]] {
            input.extend_from_slice(&(body.len() as i32).to_be_bytes());
            input.extend_from_slice(body);
        }
        let mut r = FrameReader::new(&input[..], 1024);
        assert_eq!(r.next().await.expect("ok").as_deref(), Some(&b"12345678"[..]));
        assert_eq!(r.next().await.expect("ok").as_deref(), Some(&b"abcdefghij"[..]));
        assert!(r.next().await.expect("ok").is_none());

        for size in [-1i32, 0, 7, 1025] {
            let bytes = size.to_be_bytes();
            let mut r = FrameReader::new(&bytes[..], 1024);
            assert!(matches!(r.next().await, Err(FrameError::BadSize { .. })), "{size}");
        }
        let truncated = [0u8, 0, 0, 20, 1, 2, 3];
        let mut r = FrameReader::new(&truncated[..], 1024);
        assert!(matches!(r.next().await, Err(FrameError::Truncated(7))));
    }

    /// The same `serve` that runs TCP connections serves an in-memory stream: a Metadata
    /// request that auto-creates a topic is answered over a `tokio::io::duplex` pipe.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_any_byte_stream() {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ResponseHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};

        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::Config { data_dir: dir.path().join("data"), ..Default::default() };
        let me = crate::metadata::BrokerInfo { node_id: 1, host: "memory".into(), port: 1, rack: None };
        let source = crate::state::MetadataSource::local(&config, me.clone()).expect("store");
        let shutdown = CancellationToken::new();
        let state = Arc::new(BrokerState::open(config, me, source, shutdown.clone()).await.expect("broker state"));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let served = tokio::spawn(serve(state.clone(), AnyStream(server), peer, 1, shutdown.clone()));

        let version = 12;
        let req = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("mem")))),
        ]));
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(42);
        let mut body = BytesMut::new();
        header.encode(&mut body, ApiKey::Metadata.request_header_version(version)).expect("header");
        req.encode(&mut body, version).expect("body");
        client.write_all(&(body.len() as i32).to_be_bytes()).await.expect("write size");
        client.write_all(&body).await.expect("write body");

        let mut size = [0u8; 4];
        client.read_exact(&mut size).await.expect("response size");
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        client.read_exact(&mut frame).await.expect("response");
        let mut frame = Bytes::from(frame);
        let header =
            ResponseHeader::decode(&mut frame, ApiKey::Metadata.response_header_version(version)).expect("hdr");
        assert_eq!(header.correlation_id, 42);
        let resp = MetadataResponse::decode(&mut frame, version).expect("metadata response");
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(resp.topics[0].error_code, 0, "auto-created over the in-memory stream");
        assert_eq!(resp.brokers[0].host.as_str(), "memory", "brokers come from the store");

        drop(client);
        served.await.expect("connection ends when the stream closes");
        state.logs.shutdown().expect("logs close");
    }
}
