//! Carries out the partition openings and removals that skein-core's reconciliation plans
//! (`skein_core::reconcile`), on a task of its own: applying a metadata record only queues
//! them, so recovering a large log never holds up the metadata quorum's driver (its votes,
//! heartbeats and commits) or the catalog lock.
//!
//! Invariants: jobs run one at a time in the order they were queued (a removal queued before
//! the re-creation of the same partition runs first); an opened partition is served only if,
//! under the catalog lock, the catalog still gives it to this broker under the same topic id
//! and no later plan cancelled the opening; it gets its role in that same critical section, so
//! no role change committed meanwhile is lost.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use skein_core::config::LogConfig;
use skein_core::reconcile::PartitionKey;
use skein_storage::partition::{sync_dir, PartitionStore};
use skein_sys as sys;
use skein_sys::fs;
use tokio::sync::watch;
use tracing::{error, info, warn};

use skein_core::catalog::id_to_hex;
use skein_storage::partition::StorageError;

use crate::clock::now_ms;
use crate::dirs::{partition_dir, stored_topic_id, trash_partition_dir, write_topic_id};

/// What the reconciler task needs of the broker that owns it.
pub trait ReconcileHost: Send + Sync + 'static {
    /// The queue it works through.
    fn reconciler(&self) -> &Reconciler;
    /// Where partition folders live.
    fn data_dir(&self) -> &Path;
    /// Whether this process started after a clean shutdown (indexes can be trusted).
    fn clean_start(&self) -> bool;
    /// The page-cache window of an opened partition.
    fn page_cache_window(&self) -> u64;
    /// Serves an opened partition with the role the catalog gives it now (or drops it).
    fn install_opened(&self, key: &PartitionKey, topic_id: [u8; 16], store: PartitionStore);
}

/// A queued piece of partition work.
#[derive(Debug)]
enum Job {
    /// Open (recovering if need be) a partition's files.
    Open {
        key: PartitionKey,
        topic_id: [u8; 16],
        config: LogConfig,
    },
    /// Move a removed partition's directory aside.
    Remove { key: PartitionKey },
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Openings queued or running, with the topic id each is for; a later plan that removes
    /// the partition cancels its entry.
    opening: BTreeMap<PartitionKey, [u8; 16]>,
    /// Jobs ever queued.
    queued: u64,
}

/// The queue of partition work and its progress.
pub struct Reconciler {
    state: Mutex<State>,
    /// Jobs finished (the count only grows); waiters watch it.
    done: watch::Sender<u64>,
    /// Wakes the task when a job is queued.
    wake: tokio::sync::Notify,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler {
            state: Mutex::new(State::default()),
            done: watch::channel(0).0,
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl Reconciler {
    /// Queues the opening of `key` for `topic_id`.
    pub fn open(&self, key: PartitionKey, topic_id: [u8; 16], config: LogConfig) {
        let mut st = self.state.lock().expect("reconciler lock");
        st.opening.insert(key.clone(), topic_id);
        st.queue.push_back(Job::Open {
            key,
            topic_id,
            config,
        });
        st.queued += 1;
        drop(st);
        self.wake.notify_one();
    }

    /// Cancels any opening of `key` and queues moving its directory aside.
    pub fn remove(&self, key: PartitionKey) {
        let mut st = self.state.lock().expect("reconciler lock");
        st.opening.remove(&key);
        st.queue.push_back(Job::Remove { key });
        st.queued += 1;
        drop(st);
        self.wake.notify_one();
    }

    /// The partitions being opened, with their topic ids.
    pub fn opening(&self) -> BTreeMap<PartitionKey, [u8; 16]> {
        self.state.lock().expect("reconciler lock").opening.clone()
    }

    /// Whether no job is queued or running.
    pub fn idle(&self) -> bool {
        let st = self.state.lock().expect("reconciler lock");
        *self.done.borrow() == st.queued
    }

    /// Waits until every job queued before this call has finished (`topic`: only that topic's
    /// openings, so a long recovery of another topic's log does not hold the caller up).
    pub async fn settled(&self, topic: Option<&str>) {
        let mut done = self.done.subscribe();
        let target = self.state.lock().expect("reconciler lock").queued;
        loop {
            let pending_topic = topic.is_some_and(|t| {
                let st = self.state.lock().expect("reconciler lock");
                st.opening.keys().any(|(name, _)| name == t)
            });
            let settled = match topic {
                Some(_) => !pending_topic,
                None => *done.borrow_and_update() >= target,
            };
            if settled || done.changed().await.is_err() {
                return;
            }
        }
    }

    fn next(&self) -> Option<Job> {
        self.state
            .lock()
            .expect("reconciler lock")
            .queue
            .pop_front()
    }

    /// Whether the opening of `key` for `topic_id` still stands (no later plan cancelled it).
    pub(crate) fn still_opening(&self, key: &PartitionKey, topic_id: [u8; 16]) -> bool {
        let st = self.state.lock().expect("reconciler lock");
        st.opening.get(key) == Some(&topic_id)
    }

    pub(crate) fn finish_opening(&self, key: &PartitionKey, topic_id: [u8; 16]) {
        let mut st = self.state.lock().expect("reconciler lock");
        if st.opening.get(key) == Some(&topic_id) {
            st.opening.remove(key);
        }
    }

    fn finished(&self) {
        self.done.send_modify(|n| *n += 1);
    }
}

/// The reconciler task: runs queued jobs until the broker shuts down.
pub async fn run<H: ReconcileHost>(b: Arc<H>, mut stop: watch::Receiver<bool>) {
    loop {
        while let Some(job) = b.reconciler().next() {
            match job {
                Job::Open {
                    key,
                    topic_id,
                    config,
                } => open(&b, key, topic_id, config).await,
                Job::Remove { key } => {
                    let dir = b.data_dir().to_path_buf();
                    let _ = sys::blocking(move || {
                        trash_partition_dir(&dir, &key.0, key.1);
                        sync_dir(&dir);
                    })
                    .await;
                }
            }
            b.reconciler().finished();
        }
        tokio::select! {
            _ = b.reconciler().wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Opens one partition off the quorum's task, then, under the catalog lock, serves it with
/// the role the catalog gives it now, or drops it if the catalog no longer wants it here.
async fn open<H: ReconcileHost>(
    b: &Arc<H>,
    key: PartitionKey,
    topic_id: [u8; 16],
    config: LogConfig,
) {
    if !b.reconciler().still_opening(&key, topic_id) {
        return;
    }
    let dir = b.data_dir().to_path_buf();
    let clean_start = b.clean_start();
    let window = b.page_cache_window();
    let (name, index) = key.clone();
    let started = now_ms();
    let opened = sys::blocking(move || {
        open_files(&dir, &name, index, topic_id, config, clean_start, window)
    })
    .await;
    let store = match opened {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => return failed(b.as_ref(), &key, topic_id, &e),
        Err(e) => return failed(b.as_ref(), &key, topic_id, &e),
    };
    let took_ms = now_ms().saturating_sub(started);
    if took_ms >= 1000 {
        info!(topic = %key.0, partition = key.1, took_ms, log_end = store.log().log_end_offset(),
            "partition recovered");
    }
    b.install_opened(&key, topic_id, store);
}

/// An opening that failed: logged, and no longer pending (the next plan that wants the
/// partition queues it again).
fn failed<H: ReconcileHost>(
    b: &H,
    key: &PartitionKey,
    topic_id: [u8; 16],
    e: &dyn std::fmt::Display,
) {
    error!(topic = %key.0, partition = key.1, error = %e, "opening partition failed");
    b.reconciler().finish_opening(key, topic_id);
}

/// The blocking part of opening: moves aside the files of an earlier topic of the same name,
/// opens (and after a crash recovers) the log, records the topic id.
fn open_files(
    dir: &Path,
    name: &str,
    index: i32,
    topic_id: [u8; 16],
    config: LogConfig,
    clean_start: bool,
    window: u64,
) -> Result<PartitionStore, StorageError> {
    let pdir = partition_dir(dir, name, index);
    let id_hex = id_to_hex(&topic_id);
    if let Some(old) = stored_topic_id(&pdir).filter(|old| *old != id_hex) {
        // The topic was deleted and created again while this broker was away (it learned both
        // from a snapshot): the old data is not this topic's.
        warn!(topic = %name, partition = index, old_id = %old, new_id = %id_hex,
            "removing the data of an earlier topic with the same name");
        trash_partition_dir(dir, name, index);
    }
    // A directory that does not exist yet has nothing to recover.
    let clean = clean_start || fs::metadata(&pdir).is_err();
    let mut store = PartitionStore::open(&pdir, config, clean, now_ms())?;
    store.set_cache_window(window);
    if let Err(e) = write_topic_id(&pdir, &id_hex) {
        error!(topic = %name, partition = index, error = %e, "writing partition.metadata failed");
    }
    // The partition's directory entry must survive a crash with its contents.
    sync_dir(dir);
    Ok(store)
}
