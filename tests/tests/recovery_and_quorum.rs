//! A voter that recovers a large partition after a crash keeps taking part in the metadata
//! quorum meanwhile: its partitions open on the reconciler task, never on the quorum's driver.
//!
//! Three real brokers (voters 1-3) run in this process on loopback. Broker 3 holds a topic
//! whose one partition gets a 1 GiB active segment, written while broker 3 is down, and loses
//! its clean-shutdown marker, so its next start scans the whole segment (cold: the pages are
//! dropped from the cache). Brokers 1 and 2 stop too. Then broker 3 and broker 2 start
//! together: electing a leader and committing broker 2's registration needs broker 3's vote
//! and its acknowledgement. The test asserts that broker 2's start — an election and a commit —
//! completes while broker 3 is still recovering the partition. Before the reconciler, broker 3
//! opened the partition while applying the metadata record, on the driver's task, so the
//! quorum waited for the whole recovery.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skein_broker::broker::Broker;
use skein_broker::config::{BrokerArgs, Settings};
use skein_core::batch::build::{batch, SimpleRecord};
use skein_core::catalog::Placement;
use skein_core::config::LogConfig;
use skein_storage::partition::PartitionStore;

/// The size of the partition broker 3 recovers.
const LOG_BYTES: u64 = 1 << 30;
/// A segment larger than the log, so all of it is the active segment (scanned after a crash).
const SEGMENT_BYTES: u64 = (1 << 31) - 1;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn settings(id: i32, dir: &Path, voters: &str, kafka_port: u16, ctl_port: u16) -> Settings {
    BrokerArgs {
        node_id: Some(id),
        voters: Some(voters.to_string()),
        controller_listen: Some(format!("127.0.0.1:{ctl_port}")),
        listen: Some(format!("127.0.0.1:{kafka_port}")),
        advertise: Some(format!("127.0.0.1:{kafka_port}")),
        data_dir: Some(dir.to_path_buf()),
        auto_create_topics: Some(false),
        log_level: Some("warn".into()),
        ..Default::default()
    }
    .resolve()
    .expect("settings")
}

/// Stops a broker the way its supervisor does, leaving its data directory closed.
async fn stop(b: Arc<Broker>) {
    b.shutting_down.send_replace(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.close().expect("close");
}

/// Appends about [`LOG_BYTES`] to the closed partition in `pdir` as a leader would.
fn fill(pdir: &Path) -> i64 {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut store = PartitionStore::open(pdir, config, true, now).expect("open partition");
    let records: Vec<SimpleRecord> = (0..500)
        .map(|i| SimpleRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![(i % 251) as u8; 1000]),
            headers: vec![],
            timestamp: now as i64 - 1000 + i,
        })
        .collect();
    let b = batch(&records, None);
    let mut written = 0u64;
    while written < LOG_BYTES {
        store.append(now, &b).expect("append");
        written += b.len() as u64;
    }
    let end = store.log().log_end_offset();
    store.close().expect("close partition");
    end
}

/// Drops the partition's pages from the page cache, so recovery reads them from the disk.
fn drop_cache(pdir: &Path) {
    for e in std::fs::read_dir(pdir).expect("partition dir").flatten() {
        if let Ok(f) = skein_sys::fs::File::open(e.path()) {
            let len = f.size().unwrap_or(0);
            f.drop_cached(0, len);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_recovering_a_1_gib_log_still_votes_and_acknowledges() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let kafka: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ctl: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = (0..3)
        .map(|i| format!("{}@127.0.0.1:{}", i + 1, ctl[i]))
        .collect::<Vec<_>>()
        .join(",");
    let s: Vec<Settings> = (0..3)
        .map(|i| settings(i as i32 + 1, dirs[i].path(), &voters, kafka[i], ctl[i]))
        .collect();

    // Three voters; a topic whose one replica lives on broker 3.
    let starts: Vec<_> = s
        .iter()
        .cloned()
        .map(|st| tokio::spawn(Broker::start(st)))
        .collect();
    let mut brokers = Vec::new();
    for h in starts {
        brokers.push(h.await.unwrap().expect("broker starts"));
    }
    let configs = [("segment.bytes".to_string(), SEGMENT_BYTES.to_string())];
    brokers[0]
        .create_topic("big", 1, Placement::Manual(vec![vec![3]]), &configs, false)
        .await
        .expect("create big");
    let deadline = Instant::now() + Duration::from_secs(30);
    while brokers[2].partition("big", 0).is_none() {
        assert!(Instant::now() < deadline, "broker 3 never opened big-0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Broker 3 goes down; its partition grows to 1 GiB and its stop becomes unclean.
    let b3 = brokers.pop().unwrap();
    stop(b3).await;
    let pdir = skein_broker::dirs::partition_dir(dirs[2].path(), "big", 0);
    let end = tokio::task::spawn_blocking({
        let pdir = pdir.clone();
        move || fill(&pdir)
    })
    .await
    .unwrap();
    std::fs::remove_file(dirs[2].path().join(".clean-shutdown")).expect("clean marker");
    drop_cache(&pdir);
    // Brokers 1 and 2 go down too: from here on nothing commits without broker 3.
    while let Some(b) = brokers.pop() {
        stop(b).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Broker 3 and broker 2 start together.
    let restarted = Instant::now();
    let (b3, starting3) = Broker::launch(s[2].clone()).expect("launch broker 3");
    let b2 = Broker::start(s[1].clone()).await.expect("broker 2 starts");
    let b2_started = restarted.elapsed();
    let still_recovering = b3.recovering();
    starting3.await.unwrap().expect("broker 3 starts");
    let b3_started = restarted.elapsed();
    eprintln!(
        "broker 2 elected, committed and started in {b2_started:?}; \
         broker 3 recovered {LOG_BYTES} bytes and started in {b3_started:?}"
    );
    assert!(
        still_recovering,
        "broker 2's start (an election and a commit, both needing broker 3) completed only after \
         broker 3 finished recovering ({b2_started:?} vs {b3_started:?})"
    );
    let p = b3.partition("big", 0).expect("big-0 open on broker 3");
    assert_eq!(p.store.lock().unwrap().log().log_end_offset(), end);
    stop(b2).await;
    stop(b3).await;
}
