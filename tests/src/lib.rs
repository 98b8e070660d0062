//! skein-tests: end-to-end tests that start real `skein` broker processes and drive them with
//! real Kafka clients. The Rust tests live in `tests/tests/`; the client-library tests (kcat,
//! confluent-kafka, kafka-python) live in `tests/e2e/` and run under pytest from `ci/test.sh`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `skein` binary, built once per test process in this workspace's target dir.
pub fn skein_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SKEIN_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "skein"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of skein failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("release").join("skein")
    })
    .clone()
}

/// Kafka requests the Rust end-to-end tests send, built one way for all of them.
/// One turmoil simulation at a time in this process, each starting from the same tokio task-id
/// class; hold the guard for the whole run.
///
/// Why: tokio numbers tasks from one process-wide counter, and a current-thread runtime keeps
/// its tasks in 4 lists chosen by `id % 4`. When turmoil crashes a host it drops that runtime,
/// which drops the tasks list by list, so which of the host's sockets closes first (and so the
/// simulated network's latency draws) depends on how many tasks the process had spawned before.
/// Unchecked, a seed run after others (or beside another test) differs from the same seed run
/// alone, and a replay command would not replay.
pub fn one_simulation_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SIMULATION: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = SIMULATION.lock().unwrap_or_else(|e| e.into_inner());
    align_task_ids();
    guard
}

/// Spawns throwaway tasks until the next task id is a multiple of 4.
fn align_task_ids() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Nothing else in this process spawns tasks meanwhile (the caller holds the lock), so 4
    // tries do; a few more are free.
    for _ in 0..64 {
        let id: u64 = rt
            .spawn(async {})
            .id()
            .to_string()
            .parse()
            .expect("numeric task id");
        if id % 4 == 3 {
            return;
        }
    }
    panic!("tokio task ids skipped every id of the form 4n + 3");
}

pub mod requests {
    use bytes::Bytes;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        CreateTopicsRequest, FetchRequest, InitProducerIdRequest, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    /// A topic name on the wire.
    pub fn topic_name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    /// CreateTopics for one topic with replication factor 1.
    pub fn create_topic(topic: &str, partitions: i32) -> CreateTopicsRequest {
        let mut t = CreatableTopic::default();
        t.name = topic_name(topic);
        t.num_partitions = partitions;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 10_000;
        req
    }

    /// InitProducerId for a fresh idempotent (non-transactional) producer.
    pub fn init_producer_id() -> InitProducerIdRequest {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = 60_000;
        req.producer_id = (-1).into();
        req.producer_epoch = -1;
        req
    }

    /// An acks=all Produce of one batch to partition 0 of `topic`.
    pub fn produce_all(topic: &str, batch: Vec<u8>, timeout_ms: i32) -> ProduceRequest {
        let mut pd = PartitionProduceData::default();
        pd.index = 0;
        pd.records = Some(Bytes::from(batch));
        let mut td = TopicProduceData::default();
        td.name = topic_name(topic);
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = timeout_ms;
        req.topic_data = vec![td];
        req
    }

    /// A Fetch of partition 0 of `topic` from `offset` that does not wait.
    pub fn fetch(topic: &str, offset: i64) -> FetchRequest {
        let mut fp = FetchPartition::default();
        fp.partition = 0;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = 1 << 20;
        fp.current_leader_epoch = -1;
        fp.log_start_offset = -1;
        let mut ft = FetchTopic::default();
        ft.topic = topic_name(topic);
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = (-1).into();
        req.max_wait_ms = 0;
        req.min_bytes = 1;
        req.max_bytes = 1 << 24;
        req.session_epoch = -1;
        req.topics = vec![ft];
        req
    }
}
