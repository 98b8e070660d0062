//! Kafka API handlers, one file per API family (the group APIs are in [`crate::groups`]):
//! decoded kafka-protocol requests in, responses out. Core errors become Kafka codes through
//! `skein_proto::errors`; `crate::server` dispatches to the functions re-exported here.
//!
//! Every handler answers every topic and partition it was asked about, in request order, with
//! the protocol's error code for what went wrong; none of them panics on client input.

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;
use skein_proto::errors;
use skein_storage::partition::StorageError;

mod configs;
mod coordinator;
mod fetch;
mod metadata;
mod offsets;
mod produce;
mod producer_ids;
mod quorum;
mod records;
mod topics;

pub use configs::{alter_configs, describe_configs, incremental_alter_configs};
pub use coordinator::find_coordinator;
pub use fetch::fetch;
pub use metadata::{describe_cluster, metadata};
pub use offsets::{list_offsets, offset_for_leader_epoch};
pub use produce::produce;
pub use producer_ids::init_producer_id;
pub use quorum::{
    describe_quorum, describe_quorum_from_any, METADATA_TOPIC, QUORUM_RELAY_CLIENT_ID,
};
pub use records::delete_records;
pub use topics::{create_partitions, create_topics, delete_topics};

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// The client's view of the leader epoch against ours (-1: the client does not say).
fn leader_epoch_check(current: i32, ours: i32) -> Option<E> {
    match current {
        -1 => None,
        e if e > ours => Some(E::UnknownLeaderEpoch),
        e if e < ours => Some(E::FencedLeaderEpoch),
        _ => None,
    }
}

fn topic_id_uuid(id: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id)
}

fn storage_error(e: &StorageError) -> E {
    match e {
        StorageError::Append(a) => errors::append_error(a),
        StorageError::Io { .. } => E::KafkaStorageError,
    }
}
