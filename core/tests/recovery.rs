//! `PartitionRecovery` driven over in-memory files: what it trusts, where it cuts, what it removes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use skein_core::batch::{self, build};
use skein_core::config::LogConfig;
use skein_core::log::PartitionLog;
use skein_core::recovery::{PartitionRecovery, Removal, SegmentFile, Step};

/// A partition directory in memory: file name -> bytes.
#[derive(Default, Clone)]
struct Dir {
    files: BTreeMap<String, Vec<u8>>,
    /// Every step carried out, in order, for assertions.
    steps: Vec<String>,
}

fn name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

impl Dir {
    /// Appends `n` idempotent batches through a real log, writing what it says.
    fn written(n: usize) -> (Dir, PartitionLog) {
        let mut d = Dir::default();
        let mut log = PartitionLog::new(config(), 1000);
        d.files.insert(name(0, "log"), Vec::new());
        for i in 0..n {
            let mut b = build::simple(
                2,
                1000 + i as i64,
                Some(build::ProducerIdentity {
                    id: 7,
                    epoch: 0,
                    base_sequence: 2 * i as i32,
                }),
            );
            let a = log.append(1000, &mut b).unwrap();
            if let Some(r) = &a.roll {
                let s = log.segment(r.sealed_base).unwrap();
                d.files
                    .insert(name(r.sealed_base, "index"), s.encode_offset_index());
                d.files
                    .insert(name(r.sealed_base, "timeindex"), s.encode_time_index());
                d.files
                    .insert(name(r.new_base, "snapshot"), r.producer_snapshot.clone());
                d.files.insert(name(r.new_base, "log"), Vec::new());
            }
            let w = a.write.unwrap();
            d.files
                .get_mut(&name(w.segment_base, "log"))
                .unwrap()
                .extend_from_slice(&b);
        }
        (d, log)
    }

    fn bases(&self, ext: &str) -> Vec<i64> {
        self.files
            .keys()
            .filter_map(|n| n.strip_suffix(&format!(".{ext}"))?.parse().ok())
            .collect()
    }

    fn recover(&mut self, clean: bool) -> PartitionLog {
        let files = self
            .bases("log")
            .into_iter()
            .map(|base| SegmentFile {
                base,
                size: self.files[&name(base, "log")].len() as u64,
                modified_ms: 5,
            })
            .collect();
        let mut rec =
            PartitionRecovery::new(files, self.bases("snapshot"), clean, true, &config(), 2000);
        loop {
            match rec.poll() {
                Step::Done => break,
                step => self.carry_out(step, &mut rec),
            }
        }
        let log = rec.finish(config(), &[]);
        log.check_invariants();
        log
    }

    fn carry_out(&mut self, step: Step, rec: &mut PartitionRecovery) {
        match step {
            Step::ReadIndexes { base } => {
                let o = self.files.get(&name(base, "index")).cloned();
                let t = self.files.get(&name(base, "timeindex")).cloned();
                let next = rec.on_indexes(o.zip(t));
                self.carry_out(next, rec);
            }
            Step::Scan {
                base,
                size,
                mut scan,
                after_bad_index,
            } => {
                self.steps.push(format!(
                    "scan {base} from {} {after_bad_index}",
                    scan.position()
                ));
                let bytes = &self.files[&name(base, "log")][..size as usize];
                let mut pos = scan.position() as usize;
                let mut complete = true;
                while pos < bytes.len() {
                    let ok = batch::peek_size(&bytes[pos..])
                        .ok()
                        .filter(|len| pos + len <= bytes.len())
                        .and_then(|len| scan.push(&bytes[pos..pos + len]).ok().map(|_| len));
                    match ok {
                        Some(len) => pos += len,
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
                rec.on_scanned(scan.finish(), complete);
            }
            Step::WriteIndexes(seg) => {
                self.steps.push(format!("index {}", seg.base_offset));
                self.files
                    .insert(name(seg.base_offset, "index"), seg.encode_offset_index());
                self.files
                    .insert(name(seg.base_offset, "timeindex"), seg.encode_time_index());
            }
            Step::Truncate { base, len, .. } => {
                self.steps.push(format!("truncate {base} {len}"));
                self.files
                    .get_mut(&name(base, "log"))
                    .unwrap()
                    .truncate(len as usize);
            }
            Step::RemoveSegment { base, why } => {
                self.steps.push(format!("remove {base} {why:?}"));
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    self.files.remove(&name(base, ext));
                }
            }
            Step::SyncDir => self.steps.push("sync".into()),
            Step::ReadSnapshot { offset } => {
                self.steps.push(format!("snapshot {offset}"));
                rec.on_snapshot(self.files.get(&name(offset, "snapshot")).cloned());
            }
            Step::RemoveSnapshot { offset } => {
                self.steps.push(format!("remove snapshot {offset}"));
                self.files.remove(&name(offset, "snapshot"));
            }
            Step::ReadHeaders { base, size } => {
                let bytes = &self.files[&name(base, "log")][..size as usize];
                let headers: Vec<_> = batch::iter_headers(bytes).map(|r| r.unwrap().1).collect();
                rec.on_headers(&headers);
            }
            Step::Done => unreachable!(),
        }
    }
}

#[test]
fn a_clean_stop_trusts_every_index() {
    let (mut d, before) = Dir::written(30);
    let log = d.recover(true);
    assert_eq!(log.log_end_offset(), before.log_end_offset());
    assert!(log.segments().count() > 2);
    // Every segment was scanned only from its last index point, and no index was rewritten.
    assert!(
        d.steps.iter().all(|s| !s.starts_with("index")),
        "{:?}",
        d.steps
    );
    assert_eq!(
        log.producers()
            .get(7)
            .unwrap()
            .batches
            .last()
            .unwrap()
            .last_seq,
        59
    );
}

#[test]
fn a_torn_active_tail_is_cut() {
    let (mut d, before) = Dir::written(30);
    let active = *d.bases("log").last().unwrap();
    let f = d.files.get_mut(&name(active, "log")).unwrap();
    let len = f.len();
    f.truncate(len - 3);
    let log = d.recover(false);
    assert_eq!(log.log_end_offset(), before.log_end_offset() - 2);
    assert!(d
        .steps
        .iter()
        .any(|s| s.starts_with(&format!("truncate {active}"))));
}

#[test]
fn a_corrupt_sealed_segment_cuts_everything_after_it() {
    let (mut d, _) = Dir::written(30);
    let bases = d.bases("log");
    let victim = bases[1];
    // Damage past the last index point of a sealed segment (where recovery scans).
    let f = d.files.get_mut(&name(victim, "log")).unwrap();
    let at = f.len() - 5;
    f[at] ^= 0xff;
    let log = d.recover(true);
    assert!(log.log_end_offset() < bases[2]);
    for later in &bases[2..] {
        assert!(d
            .steps
            .contains(&format!("remove {later} {:?}", Removal::AfterCut)));
        assert!(!d.files.contains_key(&name(*later, "log")));
    }
}

#[test]
fn segments_before_a_gap_are_dropped() {
    let (mut d, before) = Dir::written(30);
    let bases = d.bases("log");
    // An interrupted retention removed segment 1 but its directory sync was lost for segment 0.
    for ext in ["log", "index", "timeindex", "snapshot"] {
        d.files.remove(&name(bases[1], ext));
    }
    let log = d.recover(true);
    assert_eq!(log.log_start_offset(), bases[2]);
    assert_eq!(log.log_end_offset(), before.log_end_offset());
    assert!(d
        .steps
        .contains(&format!("remove {} {:?}", bases[0], Removal::BeforeGap)));
}

#[test]
fn a_missing_index_is_rebuilt_and_a_lying_one_rescanned() {
    let (mut d, before) = Dir::written(30);
    let bases = d.bases("log");
    d.files.remove(&name(bases[0], "index"));
    // An index whose last point (where the scan resumes) lies inside a batch.
    let mut bad = d.files[&name(bases[1], "index")].clone();
    assert!(bad.len() >= 8, "the segment has index points");
    let at = bad.len() - 4;
    let pos = u32::from_be_bytes(bad[at..].try_into().unwrap()) + 1;
    bad[at..].copy_from_slice(&pos.to_be_bytes());
    d.files.insert(name(bases[1], "index"), bad);
    let log = d.recover(true);
    assert_eq!(log.log_end_offset(), before.log_end_offset());
    assert!(d.steps.contains(&format!("index {}", bases[0])));
    assert!(
        d.steps.contains(&format!("scan {} from 0 true", bases[1])),
        "{:?}",
        d.steps
    );
    assert!(d.steps.contains(&format!("index {}", bases[1])));
}

#[test]
fn snapshots_past_the_end_go_and_a_broken_one_falls_back() {
    let (mut d, _) = Dir::written(30);
    let snaps = d.bases("snapshot");
    assert!(snaps.len() >= 2);
    let newest = *snaps.last().unwrap();
    d.files
        .insert(name(newest, "snapshot"), b"garbage".to_vec());
    d.files
        .insert(name(1_000_000, "snapshot"), b"future".to_vec());
    let log = d.recover(true);
    assert!(d.steps.contains(&"remove snapshot 1000000".to_string()));
    assert!(d.steps.contains(&format!("snapshot {newest}")));
    // Replay from an older snapshot still restores the producer's last sequence.
    assert_eq!(
        log.producers()
            .get(7)
            .unwrap()
            .batches
            .last()
            .unwrap()
            .last_seq,
        59
    );
}

proptest! {
    /// Whatever is cut off the active segment, recovery keeps every whole batch before the cut
    /// and nothing after it.
    #[test]
    fn recovery_keeps_every_whole_batch_before_a_cut(n in 1usize..20, cut in 0usize..400) {
        let (mut d, before) = Dir::written(n);
        let active = *d.bases("log").last().unwrap();
        let f = d.files.get_mut(&name(active, "log")).unwrap();
        let keep = f.len().saturating_sub(cut);
        f.truncate(keep);
        let whole = batch::iter_headers(&f[..]).filter_map(Result::ok).count() as i64;
        let log = d.recover(false);
        prop_assert_eq!(log.log_end_offset(), active + 2 * whole);
        prop_assert!(log.log_end_offset() <= before.log_end_offset());
    }
}
