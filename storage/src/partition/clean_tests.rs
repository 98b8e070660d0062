//! Cleans on real files: the newest record of each key survives at its offset, reads and
//! restarts see the cleaned log, and an interrupted or overtaken clean leaves the old log or
//! the new one, never a mix.

use std::collections::BTreeMap;

use super::*;
use skein_core::batch::build::SimpleRecord;
use skein_core::cleaner::decode;
use skein_core::config::{CleanupPolicy, DirtyRatio, LogConfig};
use skein_core::fetch::Grant;

use super::super::read_range;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 200,
        cleanup_policy: CleanupPolicy::parse("compact").unwrap(),
        min_cleanable_dirty_ratio: DirtyRatio::new(0.01).unwrap(),
        ..LogConfig::default()
    }
}

/// Appends one record per batch: key `k<i % keys>`, a tombstone when `tomb(i)`.
fn fill(s: &mut PartitionStore, n: usize, keys: usize, tomb: impl Fn(usize) -> bool) {
    let t0 = s.log().log_end_offset() as usize;
    for i in t0..t0 + n {
        let r = SimpleRecord {
            key: Some(format!("k{}", i % keys).into_bytes()),
            value: (!tomb(i)).then(|| format!("v{i}").into_bytes()),
            headers: vec![],
            timestamp: 1_000 + i as i64,
        };
        let b = skein_core::compression::encode(&[r], None, batch::Compression::None);
        s.append(1_000 + i as u64, &b).unwrap();
    }
}

/// Every record the log holds: offset -> (key, tombstone), read through fetch plans.
fn records(s: &PartitionStore) -> BTreeMap<i64, (Vec<u8>, bool)> {
    let mut out = BTreeMap::new();
    let mut off = s.log().log_start_offset();
    while let Some(range) = s.plan_fetch(off, Grant::single(1 << 20)).unwrap() {
        let bytes = read_range(&range).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = batch::verify_stored(&bytes[at..]).unwrap();
            let d = decode::decode(&bytes[at..at + h.size], &h).unwrap();
            for r in &d.records {
                out.insert(r.offset, (d.key(r).unwrap().to_vec(), r.tombstone));
            }
            off = h.next_offset();
            at += h.size;
        }
    }
    out
}

/// Runs one clean to its end; what it said.
fn clean_once(s: &mut PartitionStore) -> CleanProgress {
    let range = s.cleanable(10_000, s.log().log_end_offset()).unwrap();
    assert!(range.should_clean, "{range:?}");
    let mut c = s.start_clean(&range, CleanerConfig::default());
    loop {
        match c.run(&mut |_| {}) {
            CleanProgress::Commit => assert!(s.commit_clean(&mut c).unwrap()),
            p => {
                if let (CleanProgress::Done(_), Some(d)) = (&p, c.first_dirty()) {
                    s.set_first_dirty(d);
                }
                return p;
            }
        }
    }
}

/// The records a clean that indexed the keys below `map_end` and rewrote the segments below
/// `rewritten` should leave of `before`: below `rewritten` the newest per key below `map_end`,
/// everything at or above it.
fn expected(
    before: &BTreeMap<i64, (Vec<u8>, bool)>,
    map_end: i64,
    rewritten: i64,
) -> BTreeMap<i64, (Vec<u8>, bool)> {
    let mut newest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (o, (k, _)) in before.range(..map_end) {
        newest.insert(k.clone(), *o);
    }
    before
        .iter()
        .filter(|(o, (k, _))| **o >= rewritten || newest[k] == **o)
        .map(|(o, v)| (*o, v.clone()))
        .collect()
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_clean_keeps_the_newest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 400, 7, |i| i == 390);
    let before = records(&s);
    let size_before = dir_bytes(&p);
    let fu = s.log().segments().last().unwrap().base_offset;
    let CleanProgress::Done(stats) = clean_once(&mut s) else {
        panic!("the clean finishes")
    };
    assert!(stats.segments_written >= 1);
    let want = expected(&before, fu, fu);
    assert_eq!(records(&s), want);
    assert!(dir_bytes(&p) < size_before / 2, "the directory shrinks");
    s.log().check_invariants();
    // The cleaned log is what a restart finds, after a clean shutdown or a crash.
    s.close().unwrap();
    drop(s);
    let s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    assert_eq!(records(&s), want);
    drop(s);
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    assert_eq!(records(&s), want);
    assert_eq!(s.first_dirty, Some(fu), "the checkpoint survives");
    // Nothing new is dirty: no second clean is due.
    assert!(
        !s.cleanable(10_000, s.log().log_end_offset())
            .unwrap()
            .should_clean
    );
}

#[test]
fn a_fetch_at_any_offset_of_a_cleaned_log_returns_the_batch_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    // Every third record has a key of its own and survives; the others share one key, so the
    // cleaned log has a gap of two offsets after each survivor, and records large enough that
    // a gap's floor index point lies more than an index interval before the next batch.
    for i in 0..300usize {
        let key = if i % 3 == 0 {
            format!("u{i}")
        } else {
            "hot".into()
        };
        let r = SimpleRecord {
            key: Some(key.into_bytes()),
            value: Some(vec![b'v'; 100]),
            headers: vec![],
            timestamp: 1_000 + i as i64,
        };
        let b = skein_core::compression::encode(&[r], None, batch::Compression::None);
        s.append(1_000 + i as u64, &b).unwrap();
    }
    assert!(matches!(clean_once(&mut s), CleanProgress::Done(_)));
    let kept = records(&s);
    let mut batches = Vec::new();
    let mut off = s.log().log_start_offset();
    while let Some(range) = s.plan_fetch(off, Grant::single(1 << 20)).unwrap() {
        let bytes = read_range(&range).unwrap();
        let h = batch::verify_stored(&bytes).unwrap();
        batches.push((h.base_offset, h.last_offset()));
        off = h.next_offset();
    }
    assert!(kept.len() < 150 && batches.windows(2).any(|w| w[1].0 > w[0].1 + 1));
    for o in s.log().log_start_offset()..s.log().log_end_offset() {
        let range = s.plan_fetch(o, Grant::single(1)).unwrap().unwrap();
        let bytes = read_range(&range).unwrap();
        assert!(
            !bytes.is_empty(),
            "a fetch at {o} below the log end is empty"
        );
        let h = batch::verify_stored(&bytes).unwrap();
        let want = batches.iter().find(|(_, last)| *last >= o).unwrap();
        assert_eq!((h.base_offset, h.last_offset()), *want, "fetch at {o}");
    }
}

/// One record with `key` from idempotent producer `pid` at sequence `seq`.
fn idempotent(pid: i64, seq: i32, key: &str) -> Vec<u8> {
    let r = SimpleRecord {
        key: Some(key.as_bytes().to_vec()),
        value: Some(vec![b'v'; 20]),
        headers: vec![],
        timestamp: 1_000,
    };
    let p = skein_core::batch::build::ProducerIdentity {
        id: pid,
        epoch: 0,
        base_sequence: seq,
    };
    skein_core::compression::encode(&[r], Some(p), batch::Compression::None)
}

#[test]
fn a_clean_keeps_a_producers_newest_batch_below_the_uncleanable_offset() {
    // Producer 7's newest batch lies in the active segment, above the high watermark; its
    // newest batch below (seq 39) holds only records producer 8 superseded. A crash then takes
    // the active segment's batch away, and recovery replays the cleaned log without a snapshot:
    // it must still find seq 39, or producer 7's retry of seq 40 is refused as out of order.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    s.append(1_000, &idempotent(7, 0, "b")).unwrap();
    for seq in 1..40 {
        s.append(1_000, &idempotent(7, seq, "a")).unwrap();
    }
    for seq in 0..40 {
        s.append(1_000, &idempotent(8, seq, "a")).unwrap();
    }
    let segments = s.log().segments().count();
    let mut seq = 40;
    while s.log().segments().count() == segments {
        s.append(1_000, &idempotent(8, seq, "z")).unwrap();
        seq += 1;
    }
    let hw = s.log().segments().last().unwrap().base_offset;
    assert_eq!(
        s.log().log_end_offset(),
        hw + 1,
        "the roll left one batch in the active segment"
    );
    s.truncate_to(hw, 1_000).unwrap();
    s.append(1_000, &idempotent(7, 40, "a")).unwrap();
    let range = s.cleanable(10_000, hw).unwrap();
    assert_eq!(range.first_uncleanable, hw);
    let mut c = s.start_clean(&range, CleanerConfig::default());
    loop {
        match c.run(&mut |_| {}) {
            CleanProgress::Commit => assert!(s.commit_clean(&mut c).unwrap()),
            CleanProgress::Done(_) => break,
            p => panic!("{p:?}"),
        }
    }
    s.truncate_to(hw, 2_000).unwrap();
    drop(s);
    for e in std::fs::read_dir(&p).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    s.append(3_000, &idempotent(7, 40, "a"))
        .expect("producer 7's next sequence is accepted");
}

#[test]
fn a_clean_keeps_every_batch_a_producer_may_still_retry() {
    // Producer 7 has two batches in flight (seq 0 and 1, both key "a"); producer 8 supersedes
    // them; the log rolls and a clean below the high watermark drops their records. Recovery then
    // replays the cleaned log without a snapshot: a retry of seq 0 (its answer was lost) must be
    // recognised as a duplicate, not refused out of order (skein-sim node seed 151, retry probes).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    let first = s.append(1_000, &idempotent(7, 0, "a")).unwrap();
    s.append(1_000, &idempotent(7, 1, "a")).unwrap();
    let segments = s.log().segments().count();
    let mut seq = 0;
    while s.log().segments().count() == segments {
        s.append(1_000, &idempotent(8, seq, "a")).unwrap();
        seq += 1;
    }
    let hw = s.log().log_end_offset();
    let range = s.cleanable(10_000, hw).unwrap();
    let mut c = s.start_clean(&range, CleanerConfig::default());
    loop {
        match c.run(&mut |_| {}) {
            CleanProgress::Commit => assert!(s.commit_clean(&mut c).unwrap()),
            CleanProgress::Done(_) => break,
            p => panic!("{p:?}"),
        }
    }
    assert!(
        records(&s).keys().all(|o| *o > 1),
        "producer 7's records are gone"
    );
    drop(s);
    for e in std::fs::read_dir(&p).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    let again = s
        .append(3_000, &idempotent(7, 0, "a"))
        .expect("a retry of producer 7's seq 0 is a duplicate");
    assert_eq!(
        (again.base_offset, again.write.is_none()),
        (first.base_offset, true)
    );
}

#[test]
fn a_clean_stopped_before_its_commit_point_leaves_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 300, 5, |_| false);
    let before = records(&s);
    let range = s.cleanable(10_000, s.log().log_end_offset()).unwrap();
    let mut c = s.start_clean(&range, CleanerConfig::default());
    assert_eq!(c.run(&mut |_| {}), CleanProgress::Commit);
    assert!(std::fs::read_dir(&p).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".cleaned")));
    drop(c);
    drop(s);
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    assert_eq!(records(&s), before);
    assert!(!std::fs::read_dir(&p).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".cleaned")));
}

#[test]
fn a_clean_stopped_after_its_commit_point_is_finished_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 300, 5, |_| false);
    let before = records(&s);
    let range = s.cleanable(10_000, s.log().log_end_offset()).unwrap();
    let mut c = s.start_clean(&range, CleanerConfig::default());
    assert_eq!(c.run(&mut |_| {}), CleanProgress::Commit);
    let Some(CleanStep::Swap { base }) = c.pending.clone() else {
        panic!("a swap is next")
    };
    c.swap(base).unwrap();
    // The crash: the log in memory never switched, the old segments are all on disk.
    let CleanStep::Install { segment, .. } = c.job.poll() else {
        panic!("install follows the swap")
    };
    let map_end = c.job.map_end().unwrap();
    drop(c);
    drop(s);
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    let got = records(&s);
    assert_eq!(got, expected(&before, map_end, segment.next_offset));
    s.log().check_invariants();
}

#[test]
fn a_clean_overtaken_by_a_cut_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 300, 5, |_| false);
    let range = s.cleanable(10_000, s.log().log_end_offset()).unwrap();
    let mut c = s.start_clean(&range, CleanerConfig::default());
    assert_eq!(c.run(&mut |_| {}), CleanProgress::Commit);
    let end = s.log().log_end_offset();
    s.truncate_to(end - 3, 2_000).unwrap();
    let before = records(&s);
    assert!(!s.commit_clean(&mut c).unwrap());
    assert_eq!(records(&s), before);
    assert!(!std::fs::read_dir(&p).unwrap().any(|e| {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        n.contains(".cleaned") || n.contains(".swap")
    }));
}

#[test]
fn tombstones_go_after_their_retention_and_the_second_clean_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c-0");
    let c = LogConfig {
        delete_retention_ms: 0,
        ..cfg()
    };
    let mut s = PartitionStore::open(&p, c.clone(), true, 0).unwrap();
    // Every key's last record is a tombstone.
    fill(&mut s, 200, 4, |i| i >= 196);
    fill(&mut s, 60, 3, |_| false);
    clean_once(&mut s);
    let after_first = records(&s);
    let dead: Vec<i64> = after_first
        .iter()
        .filter(|(_, (_, t))| *t)
        .map(|(o, _)| *o)
        .collect();
    assert!(
        !dead.is_empty(),
        "the first clean keeps tombstones in its dirty range"
    );
    // More data, so the segment holding the tombstones falls into the clean head.
    fill(&mut s, 60, 3, |_| false);
    clean_once(&mut s);
    let now = records(&s);
    for o in dead {
        assert!(!now.contains_key(&o), "tombstone at {o} is gone");
    }
}
