//! The cleaner over random logs, driven on an in-memory directory: what survives, what stays
//! untouched, producer headers, multi-pass equivalence, and crashes at every step.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::choose::{self, Cleanable, SegmentInfo};
use super::decode;
use super::job::{CleanJob, CleanStep};
use super::leftovers::{self, FileKind, LeftoverAction, LeftoverFile};
use super::CleanerConfig;
use crate::batch::build::{ProducerIdentity, SimpleRecord};
use crate::batch::{self, BatchHeader, Compression};
use crate::config::{CleanupPolicy, LogConfig};
use crate::log::SegmentScan;
use crate::producer::ProducerStates;

/// One generated batch: producer (0 = none), codec, control, records (key, value).
type BatchSpec = (u8, usize, bool, Vec<(Option<u8>, Option<u8>)>);

/// A record as read back: offset, key, value (None = tombstone), whether in a control batch.
type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>, bool);

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    let rec = (
        prop_oneof![19 => (0u8..5).prop_map(Some), 1 => Just(None)],
        prop_oneof![3 => (0u8..50).prop_map(Some), 1 => Just(None)],
    );
    (
        0u8..4,
        0usize..5,
        prop_oneof![9 => Just(false), 1 => Just(true)],
        proptest::collection::vec(rec, 1..4),
    )
}

/// The in-memory partition directory and the log's segment metadata.
#[derive(Debug, Clone, Default)]
struct Disk {
    files: BTreeMap<String, Vec<u8>>,
    segs: Vec<SegmentInfo>,
    headers: Vec<BatchHeader>,
}

fn log_name(base: i64) -> String {
    format!("{base:020}.log")
}

/// Builds a log of `specs`, `per_seg` batches a segment, the last segment active.
fn build_log(specs: &[BatchSpec], per_seg: usize) -> Disk {
    let mut disk = Disk::default();
    let mut seqs: BTreeMap<u8, i32> = BTreeMap::new();
    let mut offset = 0i64;
    for (i, chunk) in specs.chunks(per_seg).enumerate() {
        let base = offset;
        let mut bytes = Vec::new();
        for (p, codec, control, recs) in chunk {
            let simple: Vec<SimpleRecord> = recs
                .iter()
                .enumerate()
                .map(|(j, (k, v))| SimpleRecord {
                    key: k.map(|k| vec![b'k', k]),
                    value: v.map(|v| vec![v; 4]),
                    headers: vec![],
                    timestamp: (offset + j as i64) * 10,
                })
                .collect();
            let producer = (*p > 0).then(|| {
                let seq = seqs.entry(*p).or_insert(0);
                let id = ProducerIdentity {
                    id: i64::from(*p),
                    epoch: 1,
                    base_sequence: *seq,
                };
                *seq += simple.len() as i32;
                id
            });
            let codec = if *control {
                Compression::None
            } else {
                CODECS[*codec]
            };
            let mut b = crate::compression::encode(&simple, producer, codec);
            if *control {
                b = batch::as_control(b);
            }
            batch::assign_offset(&mut b, offset, 0);
            disk.headers.push(batch::verify_stored(&b).unwrap());
            offset += simple.len() as i64;
            bytes.extend_from_slice(&b);
        }
        disk.segs.push(SegmentInfo {
            base,
            next_offset: offset,
            size: bytes.len() as u64,
            largest_timestamp: offset * 10,
            first_batch_timestamp: Some(base * 10),
            modified_ms: (i as u64 + 1) * 100,
        });
        disk.files.insert(log_name(base), bytes);
    }
    // The empty active segment.
    disk.segs.push(SegmentInfo {
        base: offset,
        next_offset: offset,
        size: 0,
        largest_timestamp: -1,
        first_batch_timestamp: None,
        modified_ms: 1_000_000,
    });
    disk.files.insert(log_name(offset), Vec::new());
    disk
}

fn producer_last(disk: &Disk) -> BTreeSet<i64> {
    let mut p = ProducerStates::new();
    for h in &disk.headers {
        p.record(h, 0);
    }
    p.last_batch_offsets()
}

/// Every record and batch header of a segment file's bytes.
fn read_bytes(bytes: &[u8], recs: &mut Vec<Rec>, hs: &mut Vec<BatchHeader>) {
    for r in batch::iter_headers(bytes) {
        let (at, h) = r.unwrap();
        let stored = &bytes[at..at + h.size];
        batch::verify_stored(stored).unwrap();
        crate::records::timestamps(stored, &h).unwrap();
        let d = decode::decode(stored, &h).unwrap();
        for r in &d.records {
            let value = (!r.tombstone).then(|| {
                let (_, _, v) = value_of(&d.plain[r.span.clone()]);
                v
            });
            recs.push((
                r.offset,
                d.key(r).map(|k| k.to_vec()),
                value.flatten(),
                h.is_control(),
            ));
        }
        hs.push(h);
    }
}

/// Parses a plain record's key and value (test helper, independent of `decode`'s spans).
fn value_of(rec: &[u8]) -> (usize, Option<Vec<u8>>, Option<Vec<u8>>) {
    let (len, mut at) = batch::read_varint(rec).unwrap();
    at += 1;
    for _ in 0..2 {
        at += batch::read_varlong(&rec[at..]).unwrap().1;
    }
    let mut field = || {
        let (l, n) = batch::read_varint(&rec[at..]).unwrap();
        at += n;
        if l < 0 {
            return None;
        }
        let v = rec[at..at + l as usize].to_vec();
        at += l as usize;
        Some(v)
    };
    let k = field();
    let v = field();
    (len as usize, k, v)
}

fn read_all(disk: &Disk) -> (Vec<Rec>, Vec<BatchHeader>) {
    let (mut recs, mut hs) = (Vec::new(), Vec::new());
    for s in &disk.segs {
        read_bytes(&disk.files[&log_name(s.base)], &mut recs, &mut hs);
    }
    (recs, hs)
}

fn rename(files: &mut BTreeMap<String, Vec<u8>>, from: &str, to: &str) {
    if let Some(b) = files.remove(from) {
        files.insert(to.to_string(), b);
    }
}

/// Carries out one step; `false` at the end.
fn apply(disk: &mut Disk, job: &mut CleanJob, step: CleanStep) -> bool {
    match step {
        CleanStep::Read {
            segment,
            position,
            len,
        } => {
            let f = &disk.files[&log_name(segment)];
            let (p, l) = (position as usize, len as usize);
            job.on_read(&f[p..p + l]).unwrap();
        }
        CleanStep::CreateCleaned { base } => {
            disk.files
                .insert(format!("{}.cleaned", log_name(base)), Vec::new());
        }
        CleanStep::Append { base, bytes } => {
            let f = disk
                .files
                .get_mut(&format!("{}.cleaned", log_name(base)))
                .unwrap();
            f.extend_from_slice(&bytes);
        }
        CleanStep::SealCleaned { segment } => {
            let f = &disk.files[&format!("{}.cleaned", log_name(segment.base_offset))];
            assert_eq!(f.len() as u64, segment.size);
        }
        CleanStep::Swap { base } => {
            let n = log_name(base);
            rename(
                &mut disk.files,
                &format!("{n}.cleaned"),
                &format!("{n}.swap"),
            );
        }
        CleanStep::Install { segment, replaces } => {
            let at = disk
                .segs
                .iter()
                .position(|s| s.base == replaces[0])
                .unwrap();
            disk.segs.drain(at..at + replaces.len());
            disk.segs.insert(at, SegmentInfo::of(&segment, None));
        }
        CleanStep::DeleteSegment { base } => {
            disk.files.remove(&log_name(base)).unwrap();
        }
        CleanStep::FinishSwap { base } => {
            let n = log_name(base);
            rename(&mut disk.files, &format!("{n}.swap"), &n);
        }
        CleanStep::WriteCheckpoint { .. } => {}
        CleanStep::Abort { error, .. } => panic!("clean aborted: {error}"),
        CleanStep::Done => return false,
    }
    job.check_invariants();
    true
}

fn compact_cfg() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        segment_bytes: 400,
        ..LogConfig::default()
    }
}

fn new_job(disk: &Disk, range: &Cleanable, budget: u64) -> CleanJob {
    let cfg = CleanerConfig {
        dedupe_buffer_bytes: budget,
        read_buffer_bytes: 50,
        write_buffer_bytes: 100,
    };
    CleanJob::new(disk.segs.clone(), range, producer_last(disk), 400, 64, cfg)
}

/// One whole clean; returns the range it used and the new checkpoint.
fn clean(
    disk: &mut Disk,
    checkpoint: Option<i64>,
    hw: i64,
    horizon: i64,
    budget: u64,
) -> (Cleanable, i64) {
    let mut range = choose::cleanable(&disk.segs, checkpoint, hw, 0, &compact_cfg());
    range.delete_horizon_ms = horizon;
    let mut job = new_job(disk, &range, budget);
    loop {
        let step = job.poll();
        if !apply(disk, &mut job, step) {
            break;
        }
    }
    (range, job.map_end().unwrap_or(range.first_dirty))
}

/// The model: which original records survive a clean over `range`.
fn survivors(orig: &[Rec], disk: &Disk, range: &Cleanable) -> BTreeSet<i64> {
    let seg_of = |o: i64| disk.segs.iter().rfind(|s| s.base <= o).unwrap().modified_ms;
    let fu = range.first_uncleanable;
    orig.iter()
        .filter(|(o, k, v, control)| {
            // Nothing dirty and cleanable: the clean does nothing.
            if *o >= fu || *control || range.first_dirty >= fu {
                return true;
            }
            let Some(k) = k else { return false };
            let newer = orig.iter().any(|(o2, k2, _, c2)| {
                !c2 && k2.as_ref() == Some(k) && *o2 > *o && *o2 >= range.first_dirty && *o2 < fu
            });
            let expired = v.is_none()
                && *o < range.first_dirty
                && i64::try_from(seg_of(*o)).unwrap() <= range.delete_horizon_ms;
            !newer && !expired
        })
        .map(|r| r.0)
        .collect()
}

fn check_headers_and_scans(disk: &Disk, orig_headers: &[BatchHeader], last: &BTreeSet<i64>) {
    let (_, hs) = read_all(disk);
    let by_base: BTreeMap<i64, &BatchHeader> = hs.iter().map(|h| (h.base_offset, h)).collect();
    for h in orig_headers
        .iter()
        .filter(|h| last.contains(&h.base_offset))
    {
        let c = by_base
            .get(&h.base_offset)
            .expect("a producer's last batch keeps its header");
        assert_eq!(
            (
                c.last_offset(),
                c.producer_id,
                c.producer_epoch,
                c.base_sequence
            ),
            (
                h.last_offset(),
                h.producer_id,
                h.producer_epoch,
                h.base_sequence
            )
        );
    }
    for h in orig_headers.iter().filter(|h| h.is_control()) {
        assert!(by_base.contains_key(&h.base_offset), "control batches stay");
    }
    // A rescan of every segment finds the offset range its metadata says.
    for s in &disk.segs {
        let mut scan = SegmentScan::new(s.base, 0, 64).allow_gaps();
        for r in batch::iter_headers(&disk.files[&log_name(s.base)]) {
            let (at, h) = r.unwrap();
            scan.push(&disk.files[&log_name(s.base)][at..at + h.size])
                .unwrap();
        }
        assert_eq!(
            scan.finish().next_offset,
            s.next_offset,
            "segment {}",
            s.base
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// One clean keeps exactly the model's survivors, unchanged at their offsets; nothing at
    /// or above the first uncleanable offset changes; producer headers and control batches stay.
    #[test]
    fn one_clean_keeps_the_newest(
        specs in proptest::collection::vec(batch_spec(), 1..30),
        per_seg in 1usize..6,
        cp_seg in 0usize..8,
        hw_back in 0i64..6,
        horizon_seg in 0u64..8,
    ) {
        let disk0 = build_log(&specs, per_seg);
        let (orig, orig_headers) = read_all(&disk0);
        let last = producer_last(&disk0);
        let end = disk0.segs.last().unwrap().base;
        let checkpoint = disk0.segs.get(cp_seg).map(|s| s.base);
        let mut disk = disk0.clone();
        let (range, _) = clean(&mut disk, checkpoint, end - hw_back, horizon_seg as i64 * 100, 1 << 16);
        let (after, _) = read_all(&disk);
        let want = survivors(&orig, &disk0, &range);
        let got: BTreeSet<i64> = after.iter().map(|r| r.0).collect();
        prop_assert_eq!(&got, &want);
        let by_off: BTreeMap<i64, &Rec> = orig.iter().map(|r| (r.0, r)).collect();
        for r in &after {
            prop_assert_eq!(by_off[&r.0], r);
        }
        for s in disk0.segs.iter().filter(|s| s.base >= range.first_uncleanable) {
            prop_assert_eq!(&disk.files[&log_name(s.base)], &disk0.files[&log_name(s.base)]);
        }
        check_headers_and_scans(&disk, &orig_headers, &last);
    }

    /// Cleaning pass after pass with a map of 4 keys ends where one pass with a big map does.
    #[test]
    fn many_small_passes_equal_one_big(
        specs in proptest::collection::vec(batch_spec(), 1..30),
        per_seg in 1usize..6,
    ) {
        let disk0 = build_log(&specs, per_seg);
        let (_, orig_headers) = read_all(&disk0);
        let hw = disk0.segs.last().unwrap().base;
        let mut big = disk0.clone();
        clean(&mut big, None, hw, i64::MIN, 1 << 16);
        let mut small = disk0.clone();
        let mut checkpoint = None;
        for _ in 0..100 {
            let (range, next) = clean(&mut small, checkpoint, hw, i64::MIN, 24 * 5);
            checkpoint = Some(next);
            if next >= range.first_uncleanable {
                break;
            }
        }
        prop_assert_eq!(read_all(&small).0, read_all(&big).0);
        check_headers_and_scans(&small, &orig_headers, &producer_last(&disk0));
    }

    /// A crash after any step, then recovery of the leftovers, leaves every group old or new:
    /// the records present lie between the clean's survivors and the original log.
    #[test]
    fn crash_anywhere_recovers(
        specs in proptest::collection::vec(batch_spec(), 1..20),
        per_seg in 1usize..4,
        crash_at in 0usize..80,
    ) {
        let disk0 = build_log(&specs, per_seg);
        let (orig, _) = read_all(&disk0);
        let hw = disk0.segs.last().unwrap().base;
        let mut done = disk0.clone();
        let (range, _) = clean(&mut done, None, hw, i64::MIN, 1 << 16);
        let new: BTreeSet<i64> = read_all(&done).0.iter().map(|r| r.0).collect();
        let mut disk = disk0.clone();
        let mut job = new_job(&disk, &range, 1 << 16);
        for _ in 0..crash_at {
            let step = job.poll();
            if !apply(&mut disk, &mut job, step) {
                break;
            }
        }
        recover(&mut disk);
        let got: BTreeSet<i64> = read_all(&disk).0.iter().map(|r| r.0).collect();
        let old: BTreeSet<i64> = orig.iter().map(|r| r.0).collect();
        prop_assert!(new.is_subset(&got) && got.is_subset(&old));
    }
}

/// Recovery after a crash: the leftover actions, then the segment list from the `.log` files.
fn recover(disk: &mut Disk) {
    let mut listing = Vec::new();
    for (name, bytes) in &disk.files {
        let base: i64 = name[..20].parse().unwrap();
        let kind = match &name[20..] {
            ".log" => FileKind::Log,
            ".log.cleaned" => FileKind::Cleaned,
            ".log.swap" => {
                let mut scan = SegmentScan::new(base, 0, 64).allow_gaps();
                for r in batch::iter_headers(bytes) {
                    let (at, h) = r.unwrap();
                    scan.push(&bytes[at..at + h.size]).unwrap();
                }
                FileKind::LogSwap {
                    next_offset: scan.finish().next_offset,
                }
            }
            other => panic!("unexpected file {other}"),
        };
        listing.push(LeftoverFile { base, kind });
    }
    for a in leftovers::recover_clean_leftovers(&listing) {
        match a {
            LeftoverAction::RemoveCleaned { base } => {
                disk.files.remove(&format!("{}.cleaned", log_name(base)));
            }
            LeftoverAction::RemoveSegment { base } => {
                disk.files.remove(&log_name(base));
            }
            LeftoverAction::CompleteSwap { base } => {
                let n = log_name(base);
                rename(&mut disk.files, &format!("{n}.swap"), &n);
            }
            LeftoverAction::RemoveIndexSwaps { .. } | LeftoverAction::SyncDir => {}
        }
    }
    // Rebuild the segment list from the files; every segment must be contiguous after a scan.
    let mut segs = Vec::new();
    for (name, bytes) in &disk.files {
        let base: i64 = name[..20].parse().unwrap();
        let mut scan = SegmentScan::new(base, 0, 64).allow_gaps();
        for r in batch::iter_headers(bytes) {
            let (at, h) = r.unwrap();
            scan.push(&bytes[at..at + h.size]).unwrap();
        }
        let s = scan.finish();
        segs.push(SegmentInfo::of(&s, None));
    }
    for w in segs.windows(2) {
        assert_eq!(
            w[0].next_offset, w[1].base,
            "recovered segments are contiguous"
        );
    }
    disk.segs = segs;
}
