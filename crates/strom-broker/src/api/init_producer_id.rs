//! InitProducerId for idempotent (non-transactional) producers: always a new, never reused
//! producer id with epoch 0, as Kafka does when there is no transactional id (also when a
//! KIP-360 client asks to bump the epoch of the id it has). Transactional ids are refused:
//! transactions are not supported yet.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};

use crate::dispatch::RequestContext;

/// Hands out a producer id and epoch.
pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        return r
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // Without a transactional id, Kafka always hands out a fresh id, even when the client
    // sends the id it has and asks for an epoch bump (KIP-360): bumping a client-named id
    // would let a client claim an id that was never issued to it, or one issued to another.
    if req.producer_id.0 >= 0 {
        debug!(
            producer_id = req.producer_id.0,
            epoch = req.producer_epoch,
            "epoch bump asked without a transactional id: issuing a new id"
        );
    }
    match ctx.state.producer_ids.allocate().await {
        Ok(id) => {
            debug!(producer_id = id, client = ctx.client_id(), "allocated producer id");
            r.with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Err(e) => {
            warn!(error = %e, "could not allocate a producer id");
            r.with_error_code(e.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        }
    }
}
