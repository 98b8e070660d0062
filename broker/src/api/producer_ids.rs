//! InitProducerId: producer ids from the broker's block, for idempotent producers.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::warn;

use crate::broker::{quorum_error, Broker};

/// InitProducerId (idempotent producers; transactions are refused).
pub async fn init_producer_id(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = (-1).into();
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        warn!("InitProducerId with a transactional id: transactions are not supported");
        r.error_code = E::TransactionalIdAuthorizationFailed.code();
        return r;
    }
    // Kafka gives a non-transactional producer a fresh id at epoch 0 on every call.
    match b.next_producer_id().await {
        Ok(id) => {
            r.producer_id = id.into();
            r.producer_epoch = 0;
        }
        Err(e) => {
            warn!(error = %e, "allocating a producer id failed");
            r.error_code = quorum_error(&e).code();
        }
    }
    r
}
