//! skein-client: a Kafka client library on tokio, for skein or any Kafka-protocol broker.
//!
//! The layers, bottom up:
//! - [`Client`] (`connection`): one connection to one broker; ApiVersions negotiation, one
//!   request in flight, framing that nothing the broker sends can make panic.
//! - [`Cluster`] (`cluster`): the bootstrap connection, connections to other brokers opened on
//!   first use, the metadata cache ([`TopicInfo`], [`PartitionInfo`]), and the retry policy
//!   for lookups and controller-only requests; [`coordinator`] finds group coordinators and
//!   [`assignment`] reads what a group gave each member.
//! - [`Producer`] (`producer`) over an [`Accumulator`] (`accumulator`, no I/O): partitioning
//!   as the Java client does ([`partition_for_key`]), batching, idempotence, retries.
//! - [`Consumer`] (`consumer`): fetching from partition leaders, following leader changes;
//!   [`list_offsets`] for log start, end and offsets by time.
//! - `batch`: RecordBatch v2 encoding and decoding.
//!
//! - [`admin`]: topics (create, delete, configs) and the metadata quorum; [`group_admin`]:
//!   consumer groups from the outside (list, describe, offsets, delete).
//!
//! Errors are [`ClientError`]s; a Kafka error code stays a code and is shown the way Kafka
//! names it. Every retry loop is bounded by [`ATTEMPTS_MAX`].
//!
//! Invariants: the library never panics on what a broker sends; it never creates a topic by
//! accident (Metadata asks with `allow_auto_topic_creation` false); an idempotent producer's
//! retry resends the same batch with the same sequence numbers.
//!
//! # Example
//!
//! Produce one record and read it back:
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use skein_client::{Cluster, Consumer, Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn run() -> Result<(), skein_client::ClientError> {
//! let cluster = Cluster::connect("127.0.0.1:9092").await?;
//! let mut producer = Producer::new(cluster, "events", ProducerConfig::default()).await?;
//! producer.add(ProducerRecord {
//!     key: Some(Bytes::from_static(b"user-1")),
//!     value: Bytes::from_static(b"signed up"),
//! });
//! producer.flush().await?; // acknowledged by all in-sync replicas (acks=-1)
//!
//! let cluster = producer.into_cluster();
//! let mut consumer = Consumer::new(cluster, "events", None).await?;
//! consumer.seek_to_beginning().await?;
//! let mut records = Vec::new();
//! while records.is_empty() {
//!     consumer.poll(Duration::from_millis(500), &mut records).await?;
//! }
//! assert_eq!(records[0].value.as_deref(), Some(&b"signed up"[..]));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod accumulator;
pub mod admin;
pub mod assignment;
pub mod batch;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod coordinator;
pub mod error;
#[cfg(test)]
mod fake_broker;
pub mod group_admin;
pub mod offsets;
pub mod partitioner;
pub mod producer;

pub use accumulator::{increment_sequence, Accumulator, PendingBatch};
pub use batch::{
    decode_batch, encode_batch, parse_fetched_records, FetchedRecord, ProducerIdentity,
    ProducerRecord,
};
pub use cluster::{
    backoff, host_port, metadata_request, topic_info, topic_name, Cluster, PartitionInfo,
    TopicInfo, ATTEMPTS_MAX, RETRY_BACKOFF_MS,
};
pub use connection::{
    api_name, api_versions_fallback, decode_response_frame, encode_request_frame,
    negotiate_version, Client, API_VERSIONS_VERSION_MAX, CLIENT_ID_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, RESPONSE_BYTES_MAX,
};
pub use consumer::Consumer;
pub use error::{
    check_error_code, code, describe_error_code, error_code_is_retriable, error_code_name,
    is_leadership_error, is_transient_metadata_error, ClientError,
};
pub use offsets::{list_offsets, OFFSET_EARLIEST, OFFSET_LATEST};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{init_producer_id, Producer, ProducerConfig};
