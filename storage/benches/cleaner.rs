//! The log cleaner's throughput and result on real files (issue 20's benchmark targets): builds
//! a compacted partition of SIZE_MB of keyed 100-byte records over KEYS keys in 16 MiB
//! segments, measures this disk's sequential read rate over the same files (page cache
//! dropped first where the kernel lets us), then cleans it and reports MB cleaned per second
//! as a fraction of that read rate (target >= 50%), and the size after compaction against
//! live keys x record size (target <= 1.1x).
//!
//! `cargo bench -p skein-storage --bench cleaner` (SKEIN_CLEANER_BENCH_MB, default 512).

use std::time::Instant;

use skein_core::batch::build::SimpleRecord;
use skein_core::cleaner::CleanerConfig;
use skein_core::config::{CleanupPolicy, DirtyRatio, LogConfig};
use skein_storage::partition::{CleanProgress, PartitionStore};

const KEYS: usize = 10_000;
const VALUE: usize = 100;
const PER_BATCH: usize = 100;

fn main() {
    let size_mb: usize = std::env::var("SKEIN_CLEANER_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let p = dir.path().join("bench-0");
    let cfg = LogConfig {
        segment_bytes: 16 << 20,
        cleanup_policy: CleanupPolicy::parse("compact").expect("policy"),
        min_cleanable_dirty_ratio: DirtyRatio::new(0.01).expect("ratio"),
        ..LogConfig::default()
    };
    let mut s = PartitionStore::open(&p, cfg.clone(), true, 0).expect("open");
    let value = vec![7u8; VALUE];
    let mut i = 0usize;
    let mut record_bytes = 0u64;
    while s.log().segments().map(|g| g.size).sum::<u64>() < (size_mb as u64) << 20 {
        let recs: Vec<SimpleRecord> = (0..PER_BATCH)
            .map(|j| SimpleRecord {
                key: Some(format!("key-{:08}", (i + j) % KEYS).into_bytes()),
                value: Some(value.clone()),
                headers: vec![],
                timestamp: 1_000,
            })
            .collect();
        let b = skein_core::compression::encode(&recs, None, skein_core::batch::Compression::None);
        record_bytes = (b.len() / PER_BATCH) as u64;
        s.append(1_000, &b).expect("append");
        i += PER_BATCH;
    }
    s.close().expect("close");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&p)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|f| f.extension().is_some_and(|x| x == "log"))
        .collect();
    // Sequential read rate of the same bytes (the kernel's cache dropped where allowed).
    let drop_cache = || {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    };
    drop_cache();
    let t = Instant::now();
    let mut read = 0u64;
    for f in &files {
        read += std::fs::read(f).expect("read").len() as u64;
    }
    let read_rate = read as f64 / t.elapsed().as_secs_f64();
    drop_cache();
    let hw = s.log().log_end_offset();
    let range = s.cleanable(10_000, hw).expect("compacted");
    let t = Instant::now();
    let mut c = s.start_clean(&range, CleanerConfig::default());
    let stats = loop {
        match c.run(&mut |_| {}) {
            CleanProgress::Commit => assert!(s.commit_clean(&mut c).expect("commit")),
            CleanProgress::Done(st) => break st,
            CleanProgress::Abandoned(why) => panic!("clean abandoned: {why}"),
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let cleaned = range.dirty_bytes + range.clean_bytes;
    let clean_rate = cleaned as f64 / secs;
    let head: u64 = s
        .log()
        .segments()
        .filter(|g| g.base_offset < range.first_uncleanable)
        .map(|g| g.size)
        .sum();
    let live = KEYS as u64 * record_bytes;
    println!(
        "cleaner: {:.0} MB of {} records over {KEYS} keys cleaned in {secs:.2} s = {:.0} MB/s; \
         sequential read {:.0} MB/s; ratio {:.2} (target >= 0.50)",
        cleaned as f64 / 1e6,
        i,
        clean_rate / 1e6,
        read_rate / 1e6,
        clean_rate / read_rate
    );
    println!(
        "cleaned segments hold {head} bytes for {KEYS} live keys x {record_bytes} bytes = {live}: \
         {:.2}x (target <= 1.10); map held {} keys, {} records kept",
        head as f64 / live as f64,
        stats.map_keys,
        stats.records.kept
    );
}
