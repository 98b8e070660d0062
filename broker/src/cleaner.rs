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

use tokio::sync::watch;

use crate::config::CleanerSettings;
use crate::partition::Partition;

type Key = (String, i32);

/// What the cleaner threads need of the broker.
pub trait CleanerHost: Send + Sync + 'static {
    /// The cleaner's settings.
    fn cleaner_settings(&self) -> &CleanerSettings;
    /// Every open partition.
    fn partitions(&self) -> Vec<Arc<Partition>>;
    /// Turns true when the broker shuts down.
    fn stopping(&self) -> watch::Receiver<bool>;
}

/// Starts the cleaner threads, unless `log.cleaner.enable` is false.
pub fn spawn<H: CleanerHost>(b: &Arc<H>) {
    let s = b.cleaner_settings();
    if !s.enable {
        return;
    }
    let busy: Arc<Mutex<BTreeSet<Key>>> = Arc::default();
    for _ in 0..s.threads {
        let (b, busy) = (b.clone(), busy.clone());
        let mut stop = b.stopping();
        tokio::spawn(async move {
            loop {
                let (b2, busy2) = (b.clone(), busy.clone());
                let _ = sys::blocking(move || clean_while_due(b2.as_ref(), &busy2)).await;
                let backoff = Duration::from_millis(b.cleaner_settings().backoff_ms);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

/// The partitions due for a clean now, not being cleaned by another thread nor given up on in
/// this round, with their cleanable ranges.
fn candidates(
    b: &impl CleanerHost,
    busy: &BTreeSet<Key>,
    skip: &BTreeSet<Key>,
) -> Vec<(Key, Cleanable)> {
    let now = crate::clock::now_ms();
    b.partitions()
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
fn clean_while_due(b: &impl CleanerHost, busy: &Mutex<BTreeSet<Key>>) {
    let mut skip = BTreeSet::new();
    let mut throttle = Throttle::new(b.cleaner_settings().io_max_bytes_per_second);
    let stop = b.stopping();
    loop {
        if *stop.borrow() {
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
        let p = b
            .partitions()
            .into_iter()
            .find(|p| p.topic == key.0 && p.index == key.1);
        let progressed = p.is_some_and(|p| clean(b, &stop, &p, &range, &mut throttle));
        busy.lock().expect("cleaner lock").remove(&key);
        if !progressed {
            skip.insert(key);
        }
    }
}

/// One clean of `p`; true when it finished and moved the first dirty offset forward.
fn clean(
    b: &impl CleanerHost,
    stop: &watch::Receiver<bool>,
    p: &Arc<Partition>,
    range: &Cleanable,
    throttle: &mut Throttle,
) -> bool {
    let cfg = b.cleaner_settings().clean;
    let mut c = p
        .store
        .lock()
        .expect("partition lock")
        .start_clean(range, cfg);
    let started = Instant::now();
    loop {
        if *stop.borrow() {
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
