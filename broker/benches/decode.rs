//! Micro-benchmarks for request decoding as the listener does it (`server::dispatch`): read the
//! api key and version, decode the `RequestHeader`, then the body, with `kafka-protocol`.
//!
//! Run with `cargo bench -p skein-broker --bench decode` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::{Buf, Bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use skein_client::encode_request_frame;
use skein_core::batch::build::{batch, SimpleRecord};

/// Partitions in each request.
const PARTITIONS: i32 = 6;

/// An uncompressed batch of 16 records with 1 KiB values (about 16.5 KiB).
fn batch_16k(partition: i32) -> Bytes {
    let records: Vec<SimpleRecord> = (0..16)
        .map(|i| SimpleRecord {
            key: Some(format!("p{partition}-k{i}").into_bytes()),
            value: Some(
                (0..1024)
                    .map(|j| (i + j + partition as usize) as u8)
                    .collect(),
            ),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    Bytes::from(batch(&records, None))
}

/// The frame body (after the 4-byte length) of `req` at `version`, as a client sends it.
fn frame_body<R: Request>(req: &R, version: i16) -> Bytes {
    let mut frame = encode_request_frame(req, version, 7, Some("bench-client")).expect("encodes");
    frame.advance(4);
    frame.freeze()
}

fn produce_v9() -> Bytes {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch_16k(p)))
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(partitions)]);
    frame_body(&req, 9)
}

fn fetch_v12() -> Bytes {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(3)
                .with_fetch_offset(1_000_000 + i64::from(p))
                .with_last_fetched_epoch(3)
                .with_log_start_offset(0)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partitions(partitions)]);
    frame_body(&req, 12)
}

/// Decodes a frame body the way `server::dispatch` does; returns the header and the body.
fn decode<R: Decodable>(mut body: Bytes) -> (RequestHeader, R) {
    let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).expect("known key");
    let version = i16::from_be_bytes([body[2], body[3]]);
    let header = RequestHeader::decode(&mut body, key.request_header_version(version)).unwrap();
    let req = R::decode(&mut body, version).unwrap();
    (header, req)
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let produce = produce_v9();
    let (_, p): (_, ProduceRequest) = decode(produce.clone());
    assert_eq!(p.topic_data[0].partition_data.len(), PARTITIONS as usize);
    g.throughput(Throughput::Bytes(produce.len() as u64));
    // `Bytes::clone` is a refcount bump: the records fields are zero-copy slices of the frame.
    g.bench_function("produce_v9/6x16KiB", |bn| {
        bn.iter(|| decode::<ProduceRequest>(black_box(produce.clone())))
    });
    let fetch = fetch_v12();
    let (_, f): (_, FetchRequest) = decode(fetch.clone());
    assert_eq!(f.topics[0].partitions.len(), PARTITIONS as usize);
    g.throughput(Throughput::Bytes(fetch.len() as u64));
    g.bench_function("fetch_v12/6_partitions", |bn| {
        bn.iter(|| decode::<FetchRequest>(black_box(fetch.clone())))
    });
    g.finish();
    eprintln!(
        "frame bodies: produce v9 {} bytes, fetch v12 {} bytes",
        produce.len(),
        fetch.len()
    );
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
