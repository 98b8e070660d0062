//! Micro-benchmarks for skein-core's hot paths: record-batch validation (CRC-32C and record walk)
//! and sparse offset-index lookups, on a single segment and through `PartitionLog::plan_read`.
//!
//! Run with `cargo bench -p skein-core --bench hot_paths` (add `-- --quick` for a short run).
//! Inputs are built deterministically; random offsets come from the seeded `SplitMix64`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use skein_core::batch::build::SimpleRecord;
use skein_core::batch::{self as b};
use skein_core::config::LogConfig;
use skein_core::log::{PartitionLog, ReadPlan, Segment, OFFSET_INDEX_ENTRY, TIME_INDEX_ENTRY};
use skein_core::rng::SplitMix64;

/// An uncompressed batch of `n` records, each with an 8-byte key and a `value_len`-byte value.
fn records_batch(n: usize, value_len: usize) -> Vec<u8> {
    records_batch_with(n, value_len, b::Compression::None)
}

/// [`records_batch`] with its records compressed by `codec`.
fn records_batch_with(n: usize, value_len: usize, codec: b::Compression) -> Vec<u8> {
    let records: Vec<SimpleRecord> = (0..n)
        .map(|i| SimpleRecord {
            key: Some(format!("key{i:05}").into_bytes()),
            value: Some((0..value_len).map(|j| (i + j) as u8).collect()),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    skein_core::compression::encode(&records, None, codec)
}

fn bench_batches(c: &mut Criterion) {
    let cases = [
        ("100x100B", records_batch(100, 100)),
        ("1x1KiB", records_batch(1, 1024)),
        // Compressed batches are decompressed (as a stream) to read their records' timestamps.
        (
            "100x100B-lz4",
            records_batch_with(100, 100, b::Compression::Lz4),
        ),
        (
            "100x100B-zstd",
            records_batch_with(100, 100, b::Compression::Zstd),
        ),
        (
            "100x100B-gzip",
            records_batch_with(100, 100, b::Compression::Gzip),
        ),
        (
            "1000x100B-lz4",
            records_batch_with(1000, 100, b::Compression::Lz4),
        ),
    ];
    let mut g = c.benchmark_group("batch");
    for (name, bytes) in &cases {
        skein_core::records::validate_produced(bytes).expect("bench batch is valid");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("validate_produced", name),
            bytes,
            |bn, x| bn.iter(|| skein_core::records::validate_produced(black_box(x)).unwrap()),
        );
        g.bench_with_input(BenchmarkId::new("verify_stored", name), bytes, |bn, x| {
            bn.iter(|| b::verify_stored(black_box(x)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("crc32c_only", name), bytes, |bn, x| {
            bn.iter(|| b::compute_crc(black_box(x)))
        });
        if b::parse_header(bytes).unwrap().compression().unwrap() != b::Compression::None {
            continue;
        }
        g.bench_with_input(
            BenchmarkId::new("walk_records_only", name),
            bytes,
            |bn, x| {
                bn.iter(|| skein_core::records::walk_plain(black_box(&x[b::HEADER_LEN..])).unwrap())
            },
        );
    }
    g.finish();
}

/// Index points in the synthetic segment.
const POINTS: u32 = 100_000;
/// Offsets between consecutive index points.
const OFFSETS_PER_POINT: u32 = 10;
/// Lookups per measured iteration.
const LOOKUPS: usize = 1024;

/// A sealed segment with `POINTS` index points, loaded from its encoded index files.
fn big_segment() -> Segment {
    let mut offset_index = Vec::with_capacity(POINTS as usize * OFFSET_INDEX_ENTRY);
    let mut time_index = Vec::with_capacity(POINTS as usize * TIME_INDEX_ENTRY);
    for i in 1..=POINTS {
        let rel = i * OFFSETS_PER_POINT;
        offset_index.extend_from_slice(&rel.to_be_bytes());
        offset_index.extend_from_slice(&(i * 4096).to_be_bytes());
        time_index.extend_from_slice(&(1_700_000_000_000i64 + i64::from(i)).to_be_bytes());
        time_index.extend_from_slice(&rel.to_be_bytes());
    }
    let size = u64::from(POINTS + 1) * 4096;
    Segment::from_indexes(0, size, &offset_index, &time_index, 0).expect("well-formed index")
}

/// `LOOKUPS` seeded random offsets in `[lo, hi)`.
fn random_offsets(seed: u64, lo: i64, hi: i64) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed);
    (0..LOOKUPS)
        .map(|_| lo + rng.below((hi - lo) as u64) as i64)
        .collect()
}

fn bench_index(c: &mut Criterion) {
    let seg = big_segment();
    assert_eq!(seg.points().len(), POINTS as usize);
    let offsets = random_offsets(1, 0, i64::from(POINTS * OFFSETS_PER_POINT) + 10);
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    g.bench_function("position_for_offset/100k_points", |bn| {
        bn.iter(|| {
            let mut acc = 0u64;
            for &o in black_box(&offsets) {
                acc = acc.wrapping_add(seg.position_for_offset(o));
            }
            acc
        })
    });

    // A log of 100k one-record batches over ~10 segments, an index point at every batch.
    let config = LogConfig {
        index_interval_bytes: 1,
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    // The records' timestamps (see `records_batch_with`) are the log's now.
    let now_ms = 1_700_000_000_000;
    let mut log = PartitionLog::new(config, now_ms);
    let template = records_batch(1, 32);
    for _ in 0..100_000 {
        let mut bytes = template.clone();
        log.append(now_ms, &mut bytes).expect("append");
    }
    let segments = log.segments().count();
    let points: usize = log.segments().map(|s| s.points().len()).sum();
    eprintln!("plan_read log: {segments} segments, {points} index points");
    let offsets = random_offsets(2, log.log_start_offset(), log.log_end_offset());
    g.bench_function("plan_read/100k_batches", |bn| {
        bn.iter(|| {
            let mut acc = 0u64;
            for &o in black_box(&offsets) {
                if let Ok(ReadPlan::Range { position, len, .. }) = log.plan_read(o, 1 << 20) {
                    acc = acc.wrapping_add(position ^ len);
                }
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench_batches, bench_index);
criterion_main!(benches);
