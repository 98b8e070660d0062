//! The partition store on real files: appends, rolls, recovery, truncation, retention.

use super::*;
use crate::fs::OsFs;
use skein_core::batch::{build, BatchHeader};
use skein_sys::fs::{self, OpenOptions};

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Appends `n` batches; gives each one's base offset and bytes as stored.
fn fill(store: &mut PartitionStore, n: usize) -> Vec<(i64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let b = build::simple(1 + i % 4, i as i64 * 10, None);
            let a = store.append(i as u64, &b).unwrap();
            (a.base_offset, stored(store, a.base_offset))
        })
        .collect()
}

/// The batch at `base` as the log file holds it.
fn stored(store: &PartitionStore, base: i64) -> Vec<u8> {
    let range = store.plan_fetch(base, Grant::single(1)).unwrap().unwrap();
    let bytes = read_range(&range).unwrap();
    let h = batch::verify_stored(&bytes).unwrap();
    assert_eq!(h.base_offset, base);
    bytes[..h.size].to_vec()
}

/// A produced batch is stored with its offsets and epoch assigned, the rest unchanged.
#[test]
fn produced_batch_is_stored_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = PartitionStore::open(&dir.path().join("t"), cfg(), true, 0).unwrap();
    s.set_leader_epoch(4).unwrap();
    fill(&mut s, 3);
    let b = build::simple(3, 7, None);
    let a = s.append(0, &b).unwrap();
    let got = stored(&s, a.base_offset);
    let mut expect = b.clone();
    batch::assign_offset(&mut expect, a.base_offset, 4);
    assert_eq!(got, expect);
}

/// A topic whose `compression.type` names a codec stores a batch sent with another one
/// recompressed (offsets and producer fields kept, survives a reopen); one sent with that codec
/// is stored as sent.
#[test]
fn compression_type_recompresses_produced_batches() {
    use skein_core::batch::Compression;
    let dir = tempfile::tempdir().unwrap();
    let mut config = cfg();
    config.segment_bytes = 1 << 20;
    config.compression.codec = Some(Compression::Zstd);
    let mut s = PartitionStore::open(&dir.path().join("t"), config.clone(), true, 0).unwrap();
    let recs: Vec<build::SimpleRecord> = (0..50)
        .map(|i| build::SimpleRecord {
            key: Some(vec![i as u8]),
            value: Some(vec![b'v'; 100]),
            headers: Vec::new(),
            timestamp: 5,
        })
        .collect();
    let pid = build::ProducerIdentity {
        id: 9,
        epoch: 0,
        base_sequence: 0,
    };
    let sent = skein_core::compression::encode(&recs, Some(pid), Compression::Gzip);
    let a = s.append(0, &sent).unwrap();
    let got = stored(&s, a.base_offset);
    let h = batch::verify_stored(&got).unwrap();
    assert_eq!(h.compression().unwrap(), Compression::Zstd);
    assert_eq!((h.record_count, h.producer_id, h.base_sequence), (50, 9, 0));
    let same = skein_core::compression::encode(&recs, None, Compression::Zstd);
    let b = s.append(1, &same).unwrap();
    let mut expect = same.clone();
    batch::assign_offset(&mut expect, b.base_offset, 0);
    assert_eq!(
        stored(&s, b.base_offset),
        expect,
        "already zstd: stored as sent"
    );
    // The retried first batch is a duplicate, recognised after recompression.
    let again = s.append(2, &sent).unwrap();
    assert_eq!(again.base_offset, a.base_offset);
    drop(s);
    let s = PartitionStore::open(&dir.path().join("t"), config, true, 0).unwrap();
    assert_eq!(read_all(&s).len(), 2);
}

fn read_all(store: &PartitionStore) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut off = store.log().log_start_offset();
    while let Some(range) = store.plan_fetch(off, Grant::single(100)).unwrap() {
        let bytes = read_range(&range).unwrap();
        let h = batch::verify_stored(&bytes).unwrap();
        off = h.next_offset();
        out.push(h);
    }
    out
}

#[test]
fn reopen_clean_and_unclean() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    let written = fill(&mut s, 100);
    let end = s.log().log_end_offset();
    assert!(s.log().segments().count() > 3);
    s.close().unwrap();
    drop(s);
    let s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    assert_eq!(s.log().log_end_offset(), end);
    assert_eq!(read_all(&s).len(), written.len());
    drop(s);
    // Unclean: tear the active segment's tail and remove a sealed segment's index.
    let bases = list_bases(&OsFs, &p, "log").unwrap();
    let last = p.join(file_name(*bases.last().unwrap(), "log"));
    let len = fs::metadata(&last).unwrap().len;
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    fs::remove_file(p.join(file_name(bases[0], "index"))).unwrap();
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    s.log().check_invariants();
    let got = read_all(&s);
    assert_eq!(got.len(), written.len() - 1);
    for (h, (off, b)) in got.iter().zip(&written) {
        assert_eq!((h.base_offset, h.size), (*off, b.len()));
    }
    assert_eq!(
        fs::metadata(&last).unwrap().len,
        len - written.last().unwrap().1.len() as u64
    );
}

#[test]
fn producer_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 30);
    let id = build::ProducerIdentity {
        id: 5,
        epoch: 0,
        base_sequence: 0,
    };
    let b = build::simple(3, 0, Some(id));
    let first = s.append(0, &b).unwrap();
    drop(s); // crash: no close
    let mut s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    let again = s.append(0, &b).unwrap();
    assert_eq!((again.base_offset, again.write), (first.base_offset, None));
}

/// A follower copies a leader's batches (offsets, epochs and producer state kept), and the
/// epoch history survives a crash; truncation cuts at a batch boundary, drops the later
/// epochs, and a later leader append of a replicated idempotent batch is a duplicate.
#[test]
fn follower_copies_truncates_and_keeps_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
    let f = dir.path().join("f");
    let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
    let mut copied = Vec::new();
    leader.set_leader_epoch(1).unwrap();
    copied.extend(fill(&mut leader, 20));
    leader.set_leader_epoch(3).unwrap();
    let id = build::ProducerIdentity {
        id: 9,
        epoch: 0,
        base_sequence: 0,
    };
    let produced = build::simple(2, 0, Some(id));
    let a = leader.append(0, &produced).unwrap();
    copied.push((a.base_offset, stored(&leader, a.base_offset)));
    copied.extend(fill(&mut leader, 20));
    for (_, bytes) in &copied {
        follower.append_replicated(0, bytes).unwrap();
    }
    let end = leader.log().log_end_offset();
    assert_eq!(follower.log().log_end_offset(), end);
    assert_eq!(follower.log().epochs(), leader.log().epochs());
    assert_eq!(follower.log().last_epoch(), 3);
    // A batch that does not start at the log end is refused.
    assert!(follower.append_replicated(0, &copied[0].1).is_err());
    // Crash (no close): the epochs come back from the checkpoint and the tail.
    drop(follower);
    let mut follower = PartitionStore::open(&f, cfg(), false, 0).unwrap();
    assert_eq!(follower.log().epochs(), leader.log().epochs());
    // Cut inside epoch 3: the batch at the cut goes, epoch 3 stays where it starts.
    let cut = copied[26].0;
    follower.truncate_to(cut + 1, 0).unwrap();
    let held = read_all(&follower);
    // A cut inside a batch removes that whole batch.
    let expect = if copied[27].0 == cut + 1 {
        cut + 1
    } else {
        cut
    };
    assert_eq!(held.last().unwrap().next_offset(), expect);
    follower.truncate_to(a.base_offset, 0).unwrap();
    assert_eq!(follower.log().log_end_offset(), a.base_offset);
    assert_eq!(follower.log().last_epoch(), 1);
    assert_eq!(follower.log().epochs(), &[(1, 0)]);
    drop(follower);
    let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
    assert_eq!(follower.log().epochs(), &[(1, 0)]);
    // Copy the idempotent batch again; as leader, a retry of it is a duplicate.
    follower.append_replicated(0, &copied[20].1).unwrap();
    follower.set_leader_epoch(5).unwrap();
    let again = follower.append(0, &produced).unwrap();
    assert_eq!((again.base_offset, again.write), (a.base_offset, None));
}

/// Found by skein-sim (seeds 3121, 329): a crash during retention can bring back some deleted
/// segments, leaving a gap; recovery must keep the newer side, where acknowledged data lives.
#[test]
fn a_gap_left_by_retention_keeps_the_newer_segments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 100);
    let end = s.log().log_end_offset();
    drop(s);
    let bases = list_bases(&OsFs, &p, "log").unwrap();
    assert!(bases.len() >= 4);
    // Retention deleted the first three segments; only the first two came back.
    fs::remove_file(p.join(file_name(bases[2], "log"))).unwrap();
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    assert_eq!(s.log().log_end_offset(), end, "no acknowledged data lost");
    assert_eq!(s.log().log_start_offset(), bases[3]);
    assert_eq!(list_bases(&OsFs, &p, "log").unwrap(), bases[3..].to_vec());
}

#[test]
fn retention_of_an_expired_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(
        &p,
        LogConfig {
            retention_ms: 1000,
            ..cfg()
        },
        true,
        0,
    )
    .unwrap();
    let b = build::simple(3, 5, None);
    s.append(10, &b).unwrap();
    assert_eq!(s.retention(100_000).unwrap(), 1);
    assert_eq!(s.log().log_start_offset(), 3);
    assert_eq!(list_bases(&OsFs, &p, "log").unwrap(), vec![3]);
    let b = build::simple(1, 100_000, None);
    assert_eq!(s.append(100_001, &b).unwrap().base_offset, 3);
    s.close().unwrap();
}

#[test]
fn retention_deletes_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 100);
    s.set_config(LogConfig {
        retention_bytes: 3000,
        ..cfg()
    });
    assert!(s.retention(0).unwrap() > 0);
    let bases = list_bases(&OsFs, &p, "log").unwrap();
    assert_eq!(bases[0], s.log().log_start_offset());
    assert!(s.log().size_bytes() <= 3000 + 2000);
    drop(s);
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    assert_eq!(s.log().log_start_offset(), bases[0]);
}

/// Every segment file of a store, by base offset.
fn files(store: &PartitionStore) -> Vec<(i64, Vec<u8>)> {
    store
        .log()
        .segments()
        .map(|seg| {
            let f = store.segment_file(seg.base_offset).unwrap();
            (
                seg.base_offset,
                f.read_vec_at(seg.size as usize, 0).unwrap(),
            )
        })
        .collect()
}

/// A replicated run whose write fails is cut back from the files, so the log matches its
/// file again, and the same batches copy cleanly afterwards.
#[test]
fn a_failed_replicated_run_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
    let copied = fill(&mut leader, 6);
    let f = dir.path().join("f");
    let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
    let first: Vec<u8> = copied[..3].iter().flat_map(|(_, b)| b.clone()).collect();
    let rest: Vec<u8> = copied[3..].iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(follower.append_replicated_all(0, &first).unwrap());
    let (end, before) = (follower.log().log_end_offset(), files(&follower));
    // The active segment's handle turns read-only: the run's write fails (EBADF).
    let base = follower.log().segments().last().unwrap().base_offset;
    let path = f.join(file_name(base, "log"));
    let read_only = OpenOptions::new().read(true).open(&path).unwrap();
    follower.files.insert(base, Arc::new(read_only));
    assert!(matches!(
        follower.append_replicated_all(0, &rest),
        Err(StorageError::Io { .. })
    ));
    assert_eq!(follower.log().log_end_offset(), end);
    assert_eq!(files(&follower), before);
    assert!(follower.append_replicated_all(0, &rest).unwrap());
    assert_eq!(files(&follower), files(&leader));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// A follower handed the leader's batches in arbitrary chunks, each starting at or before
    /// its log end (so some are repeated), ends with the leader's segments byte for byte,
    /// rolls included, and its batches survive a restart.
    #[test]
    fn replicated_runs_copy_the_leader(
        sizes in proptest::collection::vec(1usize..6, 1..40),
        cuts in proptest::collection::vec((0usize..40, 0usize..4), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
        leader.set_leader_epoch(2).unwrap();
        let mut stored_batches = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let a = leader.append(i as u64, &build::simple(*n, i as i64, None)).unwrap();
            stored_batches.push(stored(&leader, a.base_offset));
        }
        let f = dir.path().join("f");
        let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
        let mut next = 0usize;
        for (len, back) in cuts.iter().copied().chain([(usize::MAX, 0)]) {
            let from = next.saturating_sub(back);
            let to = from.saturating_add(len.max(1)).min(stored_batches.len());
            if from >= to {
                continue;
            }
            let chunk: Vec<u8> = stored_batches[from..to].concat();
            let grew = follower.append_replicated_all(0, &chunk).unwrap();
            proptest::prop_assert_eq!(grew, to > next);
            next = next.max(to);
        }
        proptest::prop_assert_eq!(files(&follower), files(&leader));
        proptest::prop_assert_eq!(follower.unflushed_messages(), leader.unflushed_messages());
        drop(follower);
        let follower = PartitionStore::open(&f, cfg(), false, 0).unwrap();
        proptest::prop_assert_eq!(files(&follower), files(&leader));
    }
}

/// DeleteRecords' log start is saved before segments go, and a restart keeps it.
#[test]
fn the_log_start_moved_by_delete_records_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
    fill(&mut s, 60);
    let bases: Vec<i64> = s.log().segments().map(|g| g.base_offset).collect();
    assert!(bases.len() > 3);
    let cut = bases[2] + 1;
    s.advance_log_start(cut).unwrap();
    assert_eq!(s.log().log_start_offset(), cut);
    assert_eq!(s.log().segments().next().unwrap().base_offset, bases[2]);
    assert!(!p.join(file_name(bases[0], "log")).exists());
    // Never back.
    s.advance_log_start(1).unwrap();
    assert_eq!(s.log().log_start_offset(), cut);
    assert!(s.plan_fetch(cut - 1, Grant::single(100)).is_err());
    drop(s);
    let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
    assert_eq!(s.log().log_start_offset(), cut);
    s.log().check_invariants();
}
