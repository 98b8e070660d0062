//! Carries out the coordinator runtime's work: reads of an offsets partition for a load,
//! appends of a shard's records as the partition's leader, waits for the high watermark
//! (after the local fsync, unless the broker flushes on an interval), and the timer.
//! Each completion goes back to the runtime as an input; nothing here decides.

use crate::limits::{GROUP_TIMER_MAX_MS, GROUP_WAIT_COMMITTED};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skein_core::batch::build;
use skein_core::coordinator::runtime::{Input, Output, WriteError};
use skein_core::coordinator::Record;
use skein_core::fetch::Grant;
use skein_core::log::AppendError;
use skein_core::replica::{FlushPolicy, Input as ReplicaInput, ReplicaError};
use skein_storage::partition::StorageError;
use tracing::warn;

use super::{GroupHost, Work, OFFSETS_TOPIC};
use crate::clock::now_ms;
use crate::partition::Data;

/// Starts the driver task (the runtime's work, in order) and the timer task.
pub(super) fn spawn(b: Arc<dyn GroupHost>) {
    let rx = b.coordinator().work_rx.lock().expect("work lock").take();
    let Some(mut rx) = rx else { return };
    let b2 = b.clone();
    let mut stop = b.stopping();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(work) => {
                        carry_out(&b2, work);
                        b2.coordinator().work_queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    let b = b.clone();
    let mut stop = b.stopping();
    tokio::spawn(async move {
        loop {
            let due = b.coordinator().with_runtime(|rt| rt.poll_timeout());
            let wait = due.saturating_sub(b.mono_ms()).clamp(1, GROUP_TIMER_MAX_MS);
            // Capped at the tick interval: a deadline an input set meanwhile is late by at
            // most that much.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = stop.changed() => return,
            }
            let env = b.topic_counts();
            let wall_ms = now_ms() as i64;
            b.coordinator()
                .handle(b.as_ref(), Input::Tick { wall_ms, env });
        }
    });
}

/// Carries out one piece of work. Appends happen here, in the order the runtime planned
/// them; reads and waits run in tasks of their own.
fn carry_out(b: &Arc<dyn GroupHost>, work: Work) {
    match work {
        Output::ReadForLoad {
            partition,
            epoch,
            from,
            max_bytes,
        } => {
            let b = b.clone();
            tokio::spawn(async move {
                let input = match read(b.as_ref(), partition, epoch, from, max_bytes).await {
                    Some((bytes, log_end, hw)) => Input::Loaded {
                        partition,
                        epoch,
                        bytes,
                        log_end,
                        hw,
                    },
                    None => Input::LoadFailed { partition, epoch },
                };
                b.coordinator().handle(b.as_ref(), input);
            });
        }
        Output::Append {
            partition,
            epoch,
            write,
            records,
        } => {
            let input = match append(b.as_ref(), partition, epoch, &records) {
                Ok((base, end)) => Input::Appended {
                    partition,
                    epoch,
                    write,
                    base,
                    end,
                },
                Err(error) => Input::AppendFailed {
                    partition,
                    epoch,
                    write,
                    error,
                },
            };
            b.coordinator().handle(b.as_ref(), input);
        }
        Output::WaitCommitted {
            partition,
            epoch,
            offset,
        } => {
            let b = b.clone();
            tokio::spawn(async move {
                let input = match wait_committed(b.as_ref(), partition, epoch, offset).await {
                    Ok(()) => Input::Committed {
                        partition,
                        epoch,
                        hw: offset,
                    },
                    Err(error) => Input::ReplicationFailed {
                        partition,
                        epoch,
                        offset,
                        error,
                    },
                };
                b.coordinator().handle(b.as_ref(), input);
            });
        }
        Output::Answer { .. } => unreachable!("answers are delivered by Coordinator::handle"),
    }
}

/// Reads whole batches of offsets partition `index` from `from` (or its log start): the
/// bytes, the log end and the high watermark; none if it cannot be read as leader at `epoch`.
async fn read(
    b: &dyn GroupHost,
    index: i32,
    epoch: i32,
    from: i64,
    max_bytes: u64,
) -> Option<(Bytes, i64, i64)> {
    let p = b.offsets_partition(index)?;
    let hw = {
        let r = p.replica();
        (r.leader_epoch() == Some(epoch)).then(|| r.hw())?
    };
    let (plan, log_end) = {
        let st = p.store.lock().expect("partition lock");
        let from = from.max(st.log().log_start_offset());
        let end = st.log().log_end_offset();
        (st.plan_fetch(from, Grant::single(max_bytes)), end)
    };
    let range = match plan {
        Ok(Some(r)) => r,
        Ok(None) => return Some((Bytes::new(), log_end, hw)),
        Err(e) => {
            warn!(partition = index, error = ?e, "loading {OFFSETS_TOPIC} failed");
            return None;
        }
    };
    match skein_sys::blocking(move || skein_storage::partition::read_range(&range)).await {
        Ok(Ok(bytes)) => Some((bytes, log_end, hw)),
        _ => {
            warn!(partition = index, "reading {OFFSETS_TOPIC} failed");
            None
        }
    }
}

/// Appends `records` as one batch to offsets partition `index` as its leader at `epoch`:
/// where they landed.
fn append(
    b: &dyn GroupHost,
    index: i32,
    epoch: i32,
    records: &[Record],
) -> Result<(i64, i64), WriteError> {
    let Some(p) = b.offsets_partition(index) else {
        return Err(WriteError::NotLeader);
    };
    let ts = now_ms() as i64;
    let recs: Vec<build::SimpleRecord> = records
        .iter()
        .map(|(k, v)| build::SimpleRecord {
            key: Some(k.clone()),
            value: v.clone(),
            headers: vec![],
            timestamp: ts,
        })
        .collect();
    let buf = build::batch(&recs, None);
    let fx = {
        let mut st = p.store.lock().expect("partition lock");
        // Checked under the log's lock: a write planned at an old epoch never lands.
        if p.replica().leader_epoch() != Some(epoch) {
            return Err(WriteError::NotLeader);
        }
        let input = ReplicaInput::Produce {
            token: p.token(),
            acks: 1,
            timeout_ms: 0,
        };
        p.drive_locked(&mut st, input, Data::Produced(&buf))
    };
    if fx.fsync.is_some() {
        p.flush_in_background();
    }
    let a = match fx.appended {
        None => return Err(WriteError::NotLeader),
        Some(res) => res.map_err(|e| {
            warn!(partition = index, error = %e, "appending coordinator records failed");
            match e {
                StorageError::Append(AppendError::TooLarge { .. })
                | StorageError::Append(AppendError::LargerThanSegment { .. }) => {
                    WriteError::TooLarge
                }
                _ => WriteError::Storage,
            }
        })?,
    };
    b.appended();
    Ok((a.base_offset, a.last_offset + 1))
}

/// Waits until offsets partition `index` has everything below `offset` fsynced here (unless
/// the broker flushes on an interval) and replicated to the ISR at `epoch`.
async fn wait_committed(
    b: &dyn GroupHost,
    index: i32,
    epoch: i32,
    offset: i64,
) -> Result<(), WriteError> {
    let Some(p) = b.offsets_partition(index) else {
        return Err(WriteError::NotLeader);
    };
    let deadline = tokio::time::Instant::now() + GROUP_WAIT_COMMITTED;
    if p.flush_policy() == FlushPolicy::FsyncBeforeAck {
        p.wait_synced(offset).await.map_err(|e| {
            warn!(partition = index, error = %e, "fsync of coordinator records failed");
            WriteError::Storage
        })?;
    }
    let mut changed = p.repl_changed.subscribe();
    loop {
        changed.borrow_and_update();
        match p.replica().commit_status(epoch, offset) {
            Some(Ok(())) => return Ok(()),
            Some(Err(ReplicaError::NotEnoughReplicasAfterAppend)) => {
                return Err(WriteError::NotEnoughReplicas)
            }
            Some(Err(_)) => return Err(WriteError::NotLeader),
            None => {}
        }
        tokio::select! {
            c = changed.changed() => if c.is_err() { return Err(WriteError::NotLeader) },
            _ = tokio::time::sleep_until(deadline) => return Err(WriteError::Timeout),
        }
    }
}
