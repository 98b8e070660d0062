//! The log cleaner's threads (`log.cleaner.threads`): each, every `log.cleaner.backoff.ms`,
//! cleans partitions of compacted topics until none is due, the dirtiest first. What is
//! cleanable, whether it is due and which goes first are skein-core's decisions
//! ([`skein_core::cleaner::choose`]); each replica cleans its own log below its own high
//! watermark, as in Kafka. A clean reads and writes without the partition lock and takes it
//! only for its commit steps ([`skein_storage::partition::Cleaning`]).
//!
//! Invariants: one partition is cleaned by at most one thread at a time; a round cleans a
//! partition again only while its cleans make progress, so a clean that keeps failing waits for
//! the next round instead of spinning.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skein_core::cleaner::choose::{rank_dirtiest, Cleanable};
use skein_storage::partition::CleanProgress;
use skein_sys as sys;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::partition::Partition;

type Key = (String, i32);

/// Starts the cleaner threads, unless `log.cleaner.enable` is false.
pub fn spawn(b: &Arc<Broker>) {
    let s = &b.settings.cleaner;
    if !s.enable {
        return;
    }
    let busy: Arc<Mutex<BTreeSet<Key>>> = Arc::default();
    for _ in 0..s.threads {
        let (b, busy) = (b.clone(), busy.clone());
        let mut stop = b.shutting_down.subscribe();
        tokio::spawn(async move {
            loop {
                let (b2, busy2) = (b.clone(), busy.clone());
                let _ = sys::blocking(move || clean_while_due(&b2, &busy2)).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(b.settings.cleaner.backoff_ms)) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

/// The partitions due for a clean now, not being cleaned by another thread nor given up on in
/// this round, with their cleanable ranges.
fn candidates(b: &Broker, busy: &BTreeSet<Key>, skip: &BTreeSet<Key>) -> Vec<(Key, Cleanable)> {
    let now = crate::clock::now_ms();
    b.all_partitions()
        .into_iter()
        .filter_map(|p| {
            let key = (p.topic.clone(), p.index);
            if busy.contains(&key) || skip.contains(&key) {
                return None;
            }
            let st = p.store.lock().expect("partition lock");
            let hw = p.replica().hw();
            Some((key, st.cleanable(now, hw)?))
        })
        .collect()
}

/// Cleans the dirtiest due partition, again and again, until none is due or the broker stops.
fn clean_while_due(b: &Broker, busy: &Mutex<BTreeSet<Key>>) {
    let mut skip = BTreeSet::new();
    let mut throttle = Throttle::new(b.settings.cleaner.io_max_bytes_per_second);
    loop {
        if *b.shutting_down.borrow() {
            return;
        }
        let picked = {
            let mut busy = busy.lock().expect("cleaner lock");
            let c = candidates(b, &busy, &skip);
            let first = rank_dirtiest(&c).into_iter().next();
            let picked = first.and_then(|k| c.into_iter().find(|(key, _)| *key == k));
            if let Some((k, _)) = &picked {
                busy.insert(k.clone());
            }
            picked
        };
        let Some((key, range)) = picked else {
            return;
        };
        let progressed = b
            .partition(&key.0, key.1)
            .is_some_and(|p| clean(b, &p, &range, &mut throttle));
        busy.lock().expect("cleaner lock").remove(&key);
        if !progressed {
            skip.insert(key);
        }
    }
}

/// One clean of `p`; true when it finished and moved the first dirty offset forward.
fn clean(b: &Broker, p: &Arc<Partition>, range: &Cleanable, throttle: &mut Throttle) -> bool {
    let cfg = b.settings.cleaner.clean;
    let mut c = p
        .store
        .lock()
        .expect("partition lock")
        .start_clean(range, cfg);
    let started = Instant::now();
    loop {
        if *b.shutting_down.borrow() {
            // The `.cleaned` files left are removed by the next start.
            return false;
        }
        match c.run(&mut |n| throttle.note(n)) {
            CleanProgress::Commit => {
                let mut st = p.store.lock().expect("partition lock");
                match st.commit_clean(&mut c) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        warn!(topic = %p.topic, partition = p.index, error = %e, "committing a cleaned segment failed");
                        return false;
                    }
                }
            }
            CleanProgress::Done(stats) => {
                let Some(first_dirty) = c.first_dirty() else {
                    return false;
                };
                p.store
                    .lock()
                    .expect("partition lock")
                    .set_first_dirty(first_dirty);
                let r = stats.records;
                info!(topic = %p.topic, partition = p.index, first_dirty,
                    read_bytes = stats.bytes_read, written_bytes = stats.bytes_written,
                    segments = stats.segments_written, records = ?r,
                    ms = started.elapsed().as_millis() as u64, "cleaned");
                return first_dirty > range.first_dirty;
            }
            CleanProgress::Abandoned(why) => {
                warn!(topic = %p.topic, partition = p.index, why, "clean abandoned");
                return false;
            }
        }
    }
}

/// Paces a cleaner's reads and writes to `log.cleaner.io.max.bytes.per.second` (I/O pacing,
/// measured over windows of about a second).
struct Throttle {
    rate: Option<f64>,
    start: Instant,
    bytes: f64,
}

impl Throttle {
    fn new(rate: Option<f64>) -> Self {
        Throttle {
            rate,
            start: Instant::now(),
            bytes: 0.0,
        }
    }

    /// `n` more bytes moved: sleeps while the window's rate is above the limit.
    fn note(&mut self, n: u64) {
        let Some(rate) = self.rate else { return };
        self.bytes += n as f64;
        let due = Duration::from_secs_f64(self.bytes / rate);
        let spent = self.start.elapsed();
        if due > spent {
            std::thread::sleep(due - spent);
        }
        if self.start.elapsed() > Duration::from_secs(1) {
            self.start = Instant::now();
            self.bytes = 0.0;
        }
    }
}
