//! The real skein-storage stores on the simulator's crash-losing disk: what was fsynced
//! survives a crash, whatever else the crash loses, tears, zero-fills or brings back.
//! A failure names its seed; `SEED=N cargo test -p skein-sim --test real_stores` replays it.

use std::path::Path;

use skein_core::batch::{self, build};
use skein_core::config::LogConfig;
use skein_core::fetch::Grant;
use skein_core::raft::{Entry, EntryKind, HardState, Output, Snapshot};
use skein_sim::disk::SimDisk;
use skein_sim::disk_fs::SimFs;
use skein_sim::rng::Rng;
use skein_sim::swarm::Swarm;
use skein_storage::fs::FsFile;
use skein_storage::partition::{read_range, PartitionStore};
use skein_storage::raft_store::RaftStore;

/// Seeds each test runs: `SEED=N` runs only N.
fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..n).collect(),
    }
}

/// Runs `check` for every seed, naming the seed that fails. `check` tells whether the crash
/// cut something unsynced away; over a full run some crashes must and some must not, or the
/// test proves nothing.
fn for_seeds(n: u64, test: &str, check: impl Fn(u64) -> bool + std::panic::RefUnwindSafe) {
    let seeds = seeds(n);
    let mut cut = 0;
    for &seed in &seeds {
        match std::panic::catch_unwind(|| check(seed)) {
            Ok(c) => cut += usize::from(c),
            Err(_) => panic!(
                "seed={seed} failed; replay: SEED={seed} cargo test -p skein-sim --test real_stores {test}"
            ),
        }
    }
    if seeds.len() > 1 {
        assert!(
            cut > 0 && cut < seeds.len(),
            "{cut} of {} crashes lost unsynced data",
            seeds.len()
        );
    }
}

/// A crash that tears and zero-fills often and loses half the unsynced directory changes.
fn hostile(seed: u64) -> Swarm {
    let mut s = Swarm::draw(&mut Rng::new(seed));
    s.torn_write_ppm = 500_000;
    s.zero_fill_ppm = 500_000;
    s.lose_new_file_ppm = 500_000;
    s
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Every batch of the store from its log start: (base offset, bytes as stored).
fn batches(store: &PartitionStore<SimFs>) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = store.log().log_start_offset();
    while let Some(range) = store.plan_fetch(off, Grant::single(1)).expect("in range") {
        let bytes = read_range(&range).expect("readable");
        let h = batch::verify_stored(&bytes).expect("a stored batch");
        out.push((h.base_offset, bytes[..h.size].to_vec()));
        off = h.next_offset();
    }
    out
}

/// Appends `n` produced batches of 1 to 4 records at times from `t` under leader epoch
/// `epoch`; gives each as it must be stored (offset and epoch stamped, the rest unchanged).
fn append(store: &mut PartitionStore<SimFs>, t: u64, n: u64, epoch: i32) -> Vec<(i64, Vec<u8>)> {
    (t..t + n)
        .map(|i| {
            let mut b = build::simple(1 + (i % 4) as usize, i as i64 * 10, None);
            let a = store.append(i, &b).expect("append");
            batch::assign_offset(&mut b, a.base_offset, epoch);
            (a.base_offset, b)
        })
        .collect()
}

/// Appends, fsyncs, appends more (perhaps on a disk that dies midway), crashes, recovers: the
/// fsynced batches are all there byte for byte, and nothing is there that was not appended.
#[test]
fn partition_store_keeps_what_was_fsynced() {
    for_seeds(300, "partition_store_keeps_what_was_fsynced", |seed| {
        let mut rng = Rng::new(seed);
        let fs = SimFs::new(SimDisk::new());
        let dir = Path::new("t-0");
        let mut s = PartitionStore::open_on(fs.clone(), dir, cfg(), true, 0).expect("open");
        s.set_leader_epoch(1).expect("epoch");
        let mut appended = append(&mut s, 0, 1 + rng.below(40), 1);
        let epoch_2_start = s.log().log_end_offset();
        s.set_leader_epoch(2).expect("epoch");
        appended.extend(append(&mut s, 100, rng.below(10), 2));
        let (file, synced_end) = s.sync_target();
        file.sync_data().expect("fsync");
        drop(file);
        assert_eq!(batches(&s), appended, "seed {seed}: stored bytes");
        let synced = appended.clone();
        if rng.chance(300_000) {
            // The disk dies midway through the next appends: later writes are dropped.
            fs.disk_mut().die_after(rng.below(30) as u32);
        }
        appended.extend(append(&mut s, 200, rng.below(40), 2));
        drop(s);
        let report = fs.disk_mut().crash(&mut rng, &hostile(seed));
        let s = PartitionStore::open_on(fs.clone(), dir, cfg(), false, 1).expect("recover");
        s.log().check_invariants();
        let got = batches(&s);
        assert!(
            s.log().log_end_offset() >= synced_end,
            "seed {seed}: log end {} below the fsynced end {synced_end} ({report:?})",
            s.log().log_end_offset()
        );
        assert_eq!(
            got[..synced.len()],
            synced[..],
            "seed {seed}: fsynced batches changed"
        );
        assert!(got.len() <= appended.len(), "seed {seed}: batches made up");
        assert_eq!(got[..], appended[..got.len()], "seed {seed}: not a prefix");
        assert_eq!(
            s.log().epochs(),
            &[(1, 0), (2, epoch_2_start)][..],
            "seed {seed}"
        );
        got.len() < appended.len()
    });
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: format!("e{index}").into_bytes(),
    }
}

/// The Raft store keeps its synced hard state, entries and snapshot through a crash that
/// loses what came after; the snapshot's rename and log rewrite are atomic on the SimDisk.
#[test]
fn raft_store_keeps_what_was_synced() {
    for_seeds(300, "raft_store_keeps_what_was_synced", |seed| {
        let mut rng = Rng::new(seed);
        let fs = SimFs::new(SimDisk::new());
        let dir = Path::new("__raft");
        let (mut s, durable) = RaftStore::open_on(fs.clone(), dir).expect("open");
        assert!(durable.entries.is_empty());
        let n = 2 + rng.below(20);
        let h = HardState {
            term: 2,
            voted_for: Some(1),
        };
        s.apply(&Output::PersistHardState(h)).expect("hard state");
        let entries: Vec<Entry> = (1..=n).map(|i| entry(1 + i / 5, i)).collect();
        s.apply(&Output::AppendEntries(entries.clone()))
            .expect("append");
        s.sync().expect("sync");
        let snap = (rng.chance(500_000)).then(|| Snapshot {
            index: 1 + rng.below(n),
            term: 1,
            data: b"state".to_vec(),
        });
        if let Some(sn) = &snap {
            s.apply(&Output::PersistSnapshot(sn.clone()))
                .expect("snapshot");
        }
        // Unsynced: a newer hard state and more entries, perhaps on a disk that dies midway.
        if rng.chance(300_000) {
            fs.disk_mut().die_after(rng.below(4) as u32);
        }
        s.apply(&Output::PersistHardState(HardState {
            term: 9,
            voted_for: None,
        }))
        .expect("hard state");
        s.apply(&Output::AppendEntries(vec![entry(9, n + 1)]))
            .expect("append");
        drop(s);
        fs.disk_mut().crash(&mut rng, &hostile(seed));
        let (_, got) = RaftStore::open_on(fs.clone(), dir).expect("recover");
        assert!(
            got.hard_state == h || got.hard_state.term == 9,
            "seed {seed}"
        );
        assert_eq!(got.snapshot, snap, "seed {seed}");
        let from = snap.as_ref().map_or(1, |sn| sn.index + 1);
        let kept: Vec<Entry> = entries.into_iter().filter(|e| e.index >= from).collect();
        assert_eq!(got.entries[..kept.len()], kept[..], "seed {seed}");
        assert!(got.entries.len() <= kept.len() + 1, "seed {seed}");
        got.entries.len() == kept.len()
    });
}
