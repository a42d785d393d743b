//! ApiVersions: the list of served API keys and versions, derived from the dispatch table, and
//! the v0 `UNSUPPORTED_VERSION` fallback for clients that ask with a version we do not speak.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use crate::dispatch::{self, DispatchError, Reply, RequestContext};

/// Answers with every served API and its version range.
pub async fn handle(_ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    response(0)
}

/// The response body with `error_code`.
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = dispatch::supported_apis()
        .into_iter()
        .map(|(key, v)| ApiVersion::default().with_api_key(key as i16).with_min_version(v.min).with_max_version(v.max))
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

/// The v0 answer to an ApiVersions request whose version we do not support.
pub fn unsupported_version_reply(correlation_id: i32) -> Result<Reply, DispatchError> {
    let body = response(ResponseError::UnsupportedVersion.code());
    dispatch::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).map(Reply::Ready)
}
