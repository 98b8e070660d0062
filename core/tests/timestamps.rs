//! Batch timestamps on the produce path, in retention and in recovery: a header's max timestamp
//! as a client sent it (-1, or wrong) never decides what retention deletes or where a time
//! lookup lands; the records do.

use proptest::prelude::*;
use skein_core::batch::{self, build, Compression};
use skein_core::config::{LogConfig, TimestampType};
use skein_core::log::{AppendError, PartitionLog, SegmentScan};
use skein_core::{compression, records};

const DAY_MS: i64 = 24 * 3600 * 1000;
const NOW: u64 = 1_800_000_000_000;

fn records_at(stamps: &[i64]) -> Vec<build::SimpleRecord> {
    stamps
        .iter()
        .map(|t| build::SimpleRecord {
            timestamp: *t,
            key: Some(b"k".to_vec()),
            value: Some(vec![1; 100]),
            headers: vec![],
        })
        .collect()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400, // about one batch a segment
        retention_ms: DAY_MS,
        ..LogConfig::default()
    }
}

/// Appends `b` and returns the batch as stored (stamped header + the produced records).
fn append(log: &mut PartitionLog, now: u64, b: &[u8]) -> Result<Vec<u8>, AppendError> {
    let (_, head) = log.append_split(now, b)?;
    let mut stored = head.to_vec();
    stored.extend_from_slice(&b[batch::HEADER_LEN..]);
    Ok(stored)
}

#[test]
fn an_unset_max_timestamp_survives_retention() {
    let mut log = PartitionLog::new(config(), NOW);
    let t = NOW as i64;
    for i in 0..4 {
        let b = build::with_max_timestamp(build::batch(&records_at(&[t, t + i]), None), -1);
        let stored = append(&mut log, NOW, &b).unwrap();
        let h = batch::verify_stored(&stored).unwrap();
        assert_eq!(
            h.max_timestamp,
            t + i,
            "the stored header carries the records' max"
        );
    }
    assert!(log.segments().count() >= 3);
    let r = log.retention(NOW + 3_600_000);
    assert!(
        r.deleted.is_empty(),
        "an hour-old segment of a 7-day topic was deleted"
    );
    assert!(log.segments().all(|s| s.max_timestamp >= t));
    let r = log.retention(NOW + 2 * DAY_MS as u64);
    assert!(!r.deleted.is_empty(), "expired segments go");
}

#[test]
fn a_wrong_max_is_rewritten_for_every_codec() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        for wrong in [-1, 5, NOW as i64 + 1000] {
            let mut log = PartitionLog::new(config(), NOW);
            let t = NOW as i64 - 50;
            let sent = compression::encode(&records_at(&[t, t + 20, t + 7]), None, codec);
            let sent = build::with_max_timestamp(sent, wrong);
            let stored = append(&mut log, NOW, &sent).unwrap();
            let h = batch::verify_stored(&stored).unwrap();
            assert_eq!(h.max_timestamp, t + 20, "{codec:?} {wrong}");
            assert!(!h.is_log_append_time());
            assert_eq!(log.segments().last().unwrap().max_timestamp, t + 20);
        }
    }
}

#[test]
fn a_right_header_is_stored_as_sent() {
    let mut log = PartitionLog::new(config(), NOW);
    let t = NOW as i64;
    let sent = compression::encode(&records_at(&[t, t + 3]), None, Compression::Lz4);
    let stored = append(&mut log, NOW, &sent).unwrap();
    // Only the base offset and leader epoch (outside the CRC) change.
    assert_eq!(stored[16..], sent[16..]);
}

#[test]
fn log_append_time_overrides_the_records() {
    let mut log = PartitionLog::new(
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..config()
        },
        NOW,
    );
    let sent = build::with_max_timestamp(build::batch(&records_at(&[5, 9]), None), -1);
    let h = batch::verify_stored(&append(&mut log, NOW, &sent).unwrap()).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, NOW as i64);
}

#[test]
fn timestamps_out_of_range_are_refused() {
    let t = NOW as i64;
    let cfg = LogConfig {
        timestamp_before_max_ms: 60_000,
        ..config()
    };
    let mut log = PartitionLog::new(cfg, NOW);
    let too_new = build::batch(&records_at(&[t, t + 3_600_001]), None);
    assert!(matches!(
        append(&mut log, NOW, &too_new),
        Err(AppendError::InvalidTimestamp { .. })
    ));
    let too_old = build::batch(&records_at(&[t - 60_001, t]), None);
    assert!(matches!(
        append(&mut log, NOW, &too_old),
        Err(AppendError::InvalidTimestamp { .. })
    ));
    // Records without a timestamp (-1) are not judged by either limit.
    let none = build::batch(&records_at(&[-1, -1]), None);
    append(&mut log, NOW, &none).unwrap();
    let edge = build::batch(&records_at(&[t - 60_000, t + 3_600_000]), None);
    append(&mut log, NOW, &edge).unwrap();
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn a_segment_without_timestamps_ages_from_its_last_append() {
    let mut log = PartitionLog::new(config(), NOW);
    for i in 0..3 {
        let b = build::batch(&records_at(&[-1, -1]), None);
        append(&mut log, NOW + i * 1000, &b).unwrap();
    }
    let first = log.segments().next().unwrap().clone();
    assert_eq!(first.max_timestamp, -1);
    assert_eq!(first.newest_ms(), NOW as i64);
    assert!(log.retention(NOW + DAY_MS as u64).deleted.is_empty());
    let r = log.retention(NOW + DAY_MS as u64 + 1);
    assert_eq!(r.deleted, vec![first.base_offset]);
}

/// Bytes as an older skein stored them: the producer's header, max timestamp -1, unchanged.
fn stored_unchecked(base_offset: i64, stamps: &[i64], codec: Compression) -> Vec<u8> {
    let b = compression::encode(&records_at(stamps), None, codec);
    let mut b = build::with_max_timestamp(b, -1);
    batch::assign_offset(&mut b, base_offset, 0);
    b
}

#[test]
fn recovery_judges_stored_batches_by_their_records() {
    let t = NOW as i64;
    let mut scan = SegmentScan::new(0, NOW, 1);
    let mut at = 0;
    for (i, codec) in [Compression::None, Compression::Zstd, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let b = stored_unchecked(at, &[t + i as i64, t + 10 * i as i64], codec);
        let h = scan.push(&b).unwrap();
        assert_eq!(h.max_timestamp, t + 10 * i as i64);
        at = h.next_offset();
    }
    let seg = scan.finish();
    assert_eq!(seg.max_timestamp, t + 20);
    // The time index points say the newest timestamp before them, from the records too.
    assert!(seg.points().iter().all(|p| p.max_ts_before >= t));
}

#[test]
fn a_follower_judges_an_unset_header_by_its_records() {
    let t = NOW as i64;
    let mut log = PartitionLog::new(config(), NOW);
    let b = stored_unchecked(0, &[t, t + 5], Compression::Snappy);
    log.append_replicated(NOW, &b).unwrap();
    assert_eq!(log.segments().last().unwrap().max_timestamp, t + 5);
}

#[test]
fn a_time_lookup_reads_the_records() {
    let t = NOW as i64;
    let b = stored_unchecked(100, &[t, t + 10, t + 20], Compression::Lz4);
    let h = batch::parse_header(&b).unwrap();
    assert_eq!(
        records::first_at_or_after(&b, &h, t + 5).unwrap(),
        Some((101, t + 10))
    );
}

fn header_max() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        Just(Some(-1)),
        (0i64..NOW as i64 * 2).prop_map(Some)
    ]
}

proptest! {
    /// Whatever max timestamp the producers' headers say, retention never deletes a segment
    /// holding a record younger than retention.ms.
    #[test]
    fn retention_never_deletes_a_young_record(
        batches in proptest::collection::vec(
            (proptest::collection::vec(-1i64..3000, 1..4), header_max(), 0u64..500),
            1..30,
        ),
        retention_ms in 1i64..4000,
        checks in proptest::collection::vec(0u64..6000, 1..5),
    ) {
        let cfg = LogConfig { retention_ms, timestamp_after_max_ms: i64::MAX, ..config() };
        let mut log = PartitionLog::new(cfg, 0);
        let mut now = 0u64;
        // (first offset, last offset, newest record timestamp or -1, append time)
        let mut appended: Vec<(i64, i64, i64, u64)> = Vec::new();
        for (stamps, max, pause) in batches {
            now += pause;
            let stamps: Vec<i64> = stamps.iter().map(|s| if *s < 0 { -1 } else { *s }).collect();
            let mut b = build::batch(&records_at(&stamps), None);
            if let Some(m) = max {
                b = build::with_max_timestamp(b, m);
            }
            let (a, _) = log.append_split(now, &b).unwrap();
            appended.push((a.base_offset, a.last_offset, *stamps.iter().max().unwrap(), now));
        }
        for c in checks {
            let at = now + c;
            let start_before = log.log_start_offset();
            log.retention(at);
            for (first, last, newest, when) in &appended {
                if *first < start_before || *first >= log.log_start_offset() {
                    continue;
                }
                // This batch was deleted now: its newest record must be older than retention.ms.
                // (A batch without timestamps is judged with its segment, by the segment's newest
                // timestamp or, if it has none, its last append: see the unit test above.)
                if *newest < 0 {
                    continue;
                }
                prop_assert!(at as i64 - newest > retention_ms,
                    "offsets {first}..={last} deleted at {at}: newest {newest} appended {when}, retention {retention_ms}");
            }
        }
    }
}
