use std::time::Duration;

use skein_core::replica::FlushPolicy;
use skein_core::replication::ReplicationConfig;

use super::*;

fn env(flush: FlushPolicy) -> PartitionEnv {
    PartitionEnv {
        replica: ReplicaConfig {
            me: 1,
            replication: ReplicationConfig {
                min_insync_replicas: 1,
                lag_time_max_ms: 30_000,
                isr_retry_ms: 1_000,
            },
            flush,
        },
        wake: Arc::new(watch::channel(0).0),
        started: tokio::time::Instant::now(),
    }
}

fn open(flush: FlushPolicy) -> (tempfile::TempDir, Arc<Partition>) {
    let dir = tempfile::tempdir().unwrap();
    let store = PartitionStore::open(&dir.path().join("t-0"), Default::default(), true, 0).unwrap();
    (dir, new_partition("t", 0, [0; 16], store, env(flush)))
}

/// The leader of a partition whose ISR is itself alone.
fn sole_leader(flush: FlushPolicy) -> (tempfile::TempDir, Arc<Partition>) {
    let (dir, p) = open(flush);
    let state = PartitionState {
        replicas: vec![1],
        isr: vec![1],
        elr: vec![],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
    };
    p.set_role(&state, 1, &[]);
    assert_eq!(p.replica().leader_epoch(), Some(0));
    (dir, p)
}

/// Produces 3 records with `acks`: what the replica answered at once, if anything.
fn produce(p: &Arc<Partition>, acks: i8) -> (u64, Effects) {
    let b = skein_core::batch::build::simple(3, 0, None);
    let token = p.token();
    let input = Input::Produce {
        token,
        acks,
        timeout_ms: 30_000,
    };
    (token, p.drive(input, Data::Produced(&b)))
}

/// Found by the paused-leader e2e test: a produce dropped mid-fsync (its client went away)
/// left `flushing` set, so a follower's later fsync wait on that partition never returned
/// and its replica fetcher stalled for good.
#[tokio::test]
async fn a_flush_dropped_midway_does_not_block_later_waiters() {
    let (_dir, p) = open(FlushPolicy::FsyncBeforeAck);
    let b = skein_core::batch::build::simple(3, 0, None);
    p.store.lock().unwrap().append(0, &b).unwrap();
    {
        let w = p.wait_synced(3);
        tokio::pin!(w);
        // Poll once: the fsync is under way on the blocking pool; then drop the wait.
        let _ = futures::poll!(w.as_mut());
    }
    tokio::time::timeout(Duration::from_secs(10), p.wait_synced(3))
        .await
        .expect("a later waiter is not blocked")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_leader_exposes_only_what_is_fsynced() {
    let (_dir, p) = sole_leader(FlushPolicy::FsyncBeforeAck);
    let mut changed = p.repl_changed.subscribe();
    let (token, fx) = produce(&p, 1);
    assert!(fx.appended.unwrap().is_ok());
    assert_eq!(fx.produced, vec![(token, Ok(0))]);
    assert_eq!(fx.fsync, Some(3), "the replica asks for the fsync");
    // Appended, not yet fsynced: consumers see nothing of it.
    let hw = || p.replica().hw();
    assert_eq!(hw(), 0);
    p.flush_in_background();
    tokio::time::timeout(Duration::from_secs(10), async {
        while hw() < 3 {
            changed.changed().await.unwrap();
        }
    })
    .await
    .expect("the high watermark follows the fsync");
    assert_eq!(p.synced_end(), 3);
}

#[tokio::test]
async fn under_interval_flushing_the_written_end_counts() {
    let (_dir, p) = sole_leader(FlushPolicy::Interval);
    let (_, fx) = produce(&p, 1);
    assert!(fx.appended.unwrap().is_ok());
    assert_eq!(fx.fsync, None);
    assert_eq!(p.replica().hw(), 3);
    assert_eq!(p.synced_end(), 0, "nothing was fsynced");
}

#[tokio::test]
async fn an_acks_all_waiter_is_answered_by_the_replica_once_the_fsync_lands() {
    let (_dir, p) = sole_leader(FlushPolicy::FsyncBeforeAck);
    let b = skein_core::batch::build::simple(3, 0, None);
    let token = p.token();
    let rx = p.wait_for(token);
    let input = Input::Produce {
        token,
        acks: -1,
        timeout_ms: 30_000,
    };
    let fx = p.drive(input, Data::Produced(&b));
    assert!(fx.produced.is_empty(), "the answer goes to the waiter");
    p.wait_synced(3).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(answer, Ok(0));
}

#[tokio::test]
async fn a_refused_append_leaves_nothing_waiting() {
    let (_dir, p) = sole_leader(FlushPolicy::FsyncBeforeAck);
    let token = p.token();
    let rx = p.wait_for(token);
    let input = Input::Produce {
        token,
        acks: -1,
        timeout_ms: 30_000,
    };
    let fx = p.drive(input, Data::Produced(b"not a batch"));
    assert!(matches!(fx.appended, Some(Err(_))));
    p.forget(token);
    assert!(rx.await.is_err(), "the waiter is dropped, never answered");
}

/// A wait for an end the log was since cut below returns (it used to fsync forever, since no
/// fsync could reach that end).
#[tokio::test]
async fn a_wait_for_an_end_truncated_away_returns() {
    let (_dir, p) = open(FlushPolicy::FsyncBeforeAck);
    let b = skein_core::batch::build::simple(3, 0, None);
    p.store.lock().unwrap().append(0, &b).unwrap();
    {
        let mut st = p.store.lock().unwrap();
        st.truncate_to(0, 0).unwrap();
        p.reset_synced(0);
    }
    tokio::time::timeout(Duration::from_secs(10), p.wait_synced(3))
        .await
        .expect("returns")
        .unwrap();
}
