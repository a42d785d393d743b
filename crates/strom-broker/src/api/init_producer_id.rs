//! InitProducerId for idempotent (non-transactional) producers: a new, never reused producer id
//! with epoch 0, or (KIP-360, v3+) the same id with the next epoch when the client asks to bump
//! the epoch of the id it has. Transactional ids are refused: transactions are not supported.

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
    // A client that already has an id asks for the next epoch of it (epoch bump after an
    // error); the log then expects sequence 0 from the new epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        debug!(producer_id = req.producer_id.0, epoch = req.producer_epoch + 1, "bumped producer epoch");
        return r.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.state.producer_ids.allocate() {
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
