//! Request dispatch: API key -> handler, and the version table ApiVersions advertises.
//!
//! Both come from ONE list, `api_table!` below: each line names an API key, its handler and
//! the version range we have implemented and tested. Adding an API is adding a line (and the
//! handler in `api::<family>`).
//!
//! A handler is `async fn handle(ctx: &RequestContext, req: XRequest) -> R` where `R` is the
//! response type or [`Handled<Response>`]. The connection's reader runs it to completion
//! before it reads the next request, so side effects (appends) happen in arrival order;
//! anything that waits (the fsync of a produce, a fetch long-poll, a group rebalance) belongs in
//! a [`Handled::Later`] future, which the connection's writer awaits in request order while the
//! reader goes on.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, VersionRange};

use crate::api;
use crate::response_errors::{self, ErrorCodes};
use crate::state::BrokerState;

/// A boxed, sendable future (what deferred work returns).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the connection knows about one request, passed to its handler.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The broker.
    pub state: Arc<BrokerState>,
    /// The request's API key.
    pub api_key: ApiKey,
    /// The request's API version (already checked against the table).
    pub version: i16,
    /// The decoded request header.
    pub header: RequestHeader,
    /// The client's address.
    pub peer: SocketAddr,
    /// A number unique to this connection within the broker's life.
    pub connection_id: u64,
}

impl RequestContext {
    /// The client id from the request header, or `""`.
    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

/// A handler's outcome.
pub enum Handled<R> {
    /// The response is ready.
    Now(R),
    /// The response is ready once this future resolves (awaited by the writer, in order).
    Later(BoxFuture<R>),
    /// Send nothing back (Produce with `acks=0`).
    NoResponse,
    /// Send nothing back and close the connection once earlier responses are written: how
    /// Kafka tells an `acks=0` producer that a write failed (it then refreshes metadata).
    Close(String),
}

impl<R> From<R> for Handled<R> {
    fn from(r: R) -> Self {
        Handled::Now(r)
    }
}

/// What a handler may return: a response, or a [`Handled`] response.
pub trait IntoHandled {
    /// The response type.
    type Response: Encodable + ErrorCodes + Send + 'static;
    /// Converts into a [`Handled`].
    fn into_handled(self) -> Handled<Self::Response>;
}

impl<R: Encodable + ErrorCodes + Send + 'static> IntoHandled for Handled<R> {
    type Response = R;
    fn into_handled(self) -> Handled<R> {
        self
    }
}

impl<R: Encodable + ErrorCodes + Send + 'static> IntoHandled for R {
    type Response = R;
    fn into_handled(self) -> Handled<R> {
        Handled::Now(self)
    }
}

/// An encoded response frame (size prefix included), now or later.
pub enum Reply {
    /// Ready to write.
    Ready(Bytes),
    /// Ready once the future resolves; an `Err` closes the connection.
    Later(BoxFuture<Result<Bytes, DispatchError>>),
    /// Nothing to write for this request.
    None,
}

/// Why a request could not be answered; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The request body does not decode at the given version.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        /// API key.
        api_key: ApiKey,
        /// API version.
        version: i16,
        /// Decoder message.
        reason: String,
    },
    /// The API key is known to the protocol but not served here, or the version is outside the
    /// advertised range.
    #[error("unsupported request {api_key:?} v{version}")]
    Unsupported {
        /// API key.
        api_key: ApiKey,
        /// API version.
        version: i16,
    },
    /// The handler asked for the connection to be closed.
    #[error("{api_key:?}: {reason}")]
    Close {
        /// API key.
        api_key: ApiKey,
        /// Why.
        reason: String,
    },
    /// A response could not be encoded at the request's version.
    #[error("encoding {api_key:?} v{version} response: {reason}")]
    Encode {
        /// API key.
        api_key: ApiKey,
        /// API version.
        version: i16,
        /// Encoder message.
        reason: String,
    },
}

/// Generates [`supported_versions`] and [`call`] from one list.
macro_rules! api_table {
    ($( $key:ident => $handler:path, $min:literal ..= $max:literal; )*) => {
        /// The versions served for `key`, or `None` when the key is not served at all.
        pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
            match key {
                $( ApiKey::$key => Some(VersionRange { min: $min, max: $max }), )*
                _ => None,
            }
        }

        /// Decodes the body for `ctx.api_key`, runs its handler and encodes the response.
        pub async fn call(ctx: RequestContext, mut body: Bytes) -> Result<Reply, DispatchError> {
            match ctx.api_key {
                $( ApiKey::$key => {
                    let req = decode(&ctx, &mut body)?;
                    let handled = $handler(&ctx, req).await;
                    finish(&ctx, IntoHandled::into_handled(handled))
                } )*
                _ => Err(DispatchError::Unsupported { api_key: ctx.api_key, version: ctx.version }),
            }
        }
    };
}

api_table! {
    Produce => api::produce::handle, 3..=11;
    Fetch => api::fetch::handle, 4..=12;
    ListOffsets => api::list_offsets::handle, 1..=6;
    OffsetForLeaderEpoch => api::offset_for_leader_epoch::handle, 2..=4;
    Metadata => api::metadata::handle, 0..=12;
    ApiVersions => api::api_versions::handle, 0..=3;
    CreateTopics => api::admin::create_topics, 2..=7;
    DeleteTopics => api::admin::delete_topics, 1..=6;
    CreatePartitions => api::admin::create_partitions, 0..=3;
    InitProducerId => api::init_producer_id::handle, 0..=4;
    DescribeConfigs => api::configs::describe_configs, 1..=4;
    AlterConfigs => api::configs::alter_configs, 0..=2;
    IncrementalAlterConfigs => api::configs::incremental_alter_configs, 0..=1;
    DescribeCluster => api::metadata::describe_cluster, 0..=1;
    FindCoordinator => api::groups::find_coordinator, 0..=6;
    JoinGroup => api::groups::join_group, 0..=9;
    SyncGroup => api::groups::sync_group, 0..=5;
    Heartbeat => api::groups::heartbeat, 0..=4;
    LeaveGroup => api::groups::leave_group, 0..=5;
    ListGroups => api::groups::list_groups, 0..=5;
    DescribeGroups => api::groups::describe_groups, 0..=6;
    DeleteGroups => api::groups::delete_groups, 0..=2;
    OffsetCommit => api::group_offsets::offset_commit, 2..=9;
    OffsetFetch => api::group_offsets::offset_fetch, 1..=9;
    OffsetDelete => api::group_offsets::offset_delete, 0..=0;
    ElectLeaders => api::reassignments::elect_leaders, 0..=2;
    AlterPartitionReassignments => api::reassignments::alter_partition_reassignments, 0..=1;
    ListPartitionReassignments => api::reassignments::list_partition_reassignments, 0..=0;
}

/// Every served API key with its version range, in key order (the ApiVersions list).
pub fn supported_apis() -> Vec<(ApiKey, VersionRange)> {
    ApiKey::iter().filter_map(|k| supported_versions(k).map(|v| (k, v))).collect()
}

fn decode<T: Decodable>(ctx: &RequestContext, body: &mut Bytes) -> Result<T, DispatchError> {
    T::decode(body, ctx.version).map_err(|e| DispatchError::Malformed {
        api_key: ctx.api_key,
        version: ctx.version,
        reason: format!("{e:#}"),
    })
}

fn finish<R: Encodable + ErrorCodes + Send + 'static>(
    ctx: &RequestContext,
    handled: Handled<R>,
) -> Result<Reply, DispatchError> {
    let (api_key, version, correlation_id) = (ctx.api_key, ctx.version, ctx.header.correlation_id);
    let api = crate::metrics::api_label(api_key);
    match handled {
        Handled::Now(r) => {
            response_errors::count(api, &r);
            encode_response(api_key, version, correlation_id, &r).map(Reply::Ready)
        }
        Handled::Later(fut) => Ok(Reply::Later(Box::pin(async move {
            let r = fut.await;
            response_errors::count(api, &r);
            encode_response(api_key, version, correlation_id, &r)
        }))),
        Handled::NoResponse => Ok(Reply::None),
        Handled::Close(reason) => Err(DispatchError::Close { api_key, reason }),
    }
}

/// Encodes a whole response frame: size, response header, body. ApiVersions always gets
/// response header v0 (clients parse it before they know which versions we speak).
pub fn encode_response<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, DispatchError> {
    let header_version = if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(version) };
    let err = |e: anyhow::Error| DispatchError::Encode { api_key, version, reason: format!("{e:#}") };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(err)? + body.compute_size(version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).map_err(|_| DispatchError::Encode {
        api_key,
        version,
        reason: format!("response of {size} bytes is too large"),
    })?);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(buf.len(), 4 + size, "compute_size agrees with encode");
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_what_the_codec_knows() {
        let apis = supported_apis();
        assert!(apis.iter().any(|(k, _)| *k == ApiKey::ApiVersions));
        for (key, range) in apis {
            let known = key.valid_versions();
            assert!(range.min <= range.max, "{key:?}");
            assert!(range.min >= known.min && range.max <= known.max, "{key:?} {range:?} outside {known:?}");
        }
    }

    #[test]
    fn api_versions_response_header_is_v0() {
        let body = kafka_protocol::messages::ApiVersionsResponse::default();
        let frame = encode_response(ApiKey::ApiVersions, 3, 42, &body).expect("encodes");
        // size(4) + correlation id(4), no tagged-field byte, then the v3 body.
        assert_eq!(&frame[4..8], &42i32.to_be_bytes());
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(size, 4 + body.compute_size(3).expect("size"));
    }
}
