//! A real `skein broker` process, driven over TCP by skein's own Kafka client: idempotent
//! acks=all produces, `kill -9`, restart, and a full read-back. Asserts Kafka's durability
//! contract: every acknowledged record is present exactly once, in order, at the offset the
//! broker acknowledged; a retry of an acknowledged batch after the crash is answered with its
//! original offset instead of being written twice.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use skein_client::Client;
use skein_core::batch::{self, build};
use skein_tests::requests;

struct Broker {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start(dir: &std::path::Path, addr: &str) -> Broker {
        let child = Command::new(skein_tests::skein_bin())
            .args(["broker", "--listen", addr, "--data-dir"])
            .arg(dir)
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start skein broker");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child,
            addr: addr.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    fn kill9(mut self) -> (std::path::PathBuf, String) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        (self.dir.clone(), self.addr.clone())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn produce(c: &mut Client, topic: &str, batch: Vec<u8>) -> (i16, i64) {
    let req = requests::produce_all(topic, batch, 10_000);
    let v = c.pick_version::<ProduceRequest>(9).unwrap();
    let r = c.send(req, v).await.expect("produce");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch_all(c: &mut Client, topic: &str) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = requests::fetch(topic, offset);
        let v = c.pick_version::<FetchRequest>(12).unwrap();
        let r = c.send(req, v).await.expect("fetch");
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            p.error_code, 0,
            "fetch error at offset {offset}: hw {} start {}",
            p.high_watermark, p.log_start_offset
        );
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            assert_eq!(
                offset, p.high_watermark,
                "empty fetch below the high watermark"
            );
            return out;
        }
        for item in batch::iter_headers(&records) {
            let (pos, h) = item.expect("whole, valid batches");
            batch::verify_stored(&records[pos..pos + h.size]).expect("crc");
            if h.last_offset() >= offset {
                out.push((h.base_offset, records[pos..pos + h.size].to_vec()));
                offset = h.next_offset();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill9_and_retries_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let broker = Broker::start(dir.path(), &addr);
    let mut c = Client::connect(&addr).await.expect("connect");

    let req = requests::create_topic("durable", 1);
    let v = c.pick_version::<CreateTopicsRequest>(7).unwrap();
    let r = c.send(req, v).await.unwrap();
    assert_eq!(r.topics[0].error_code, 0);

    // InitProducerId: a fresh id at epoch 0.
    let v = c.pick_version::<InitProducerIdRequest>(4).unwrap();
    let ip = c.send(requests::init_producer_id(), v).await.unwrap();
    assert_eq!(ip.error_code, 0);
    let pid = i64::from(ip.producer_id);

    // Current timestamps: retention judges segments by record time (7 days by default).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut acked = Vec::new();
    let mut seq = 0;
    for i in 0..200usize {
        let n = 1 + i % 4;
        let b = build::simple(
            n,
            now_ms + i as i64,
            Some(build::ProducerIdentity {
                id: pid,
                epoch: 0,
                base_sequence: seq,
            }),
        );
        let (err, base) = produce(&mut c, "durable", b.clone()).await;
        assert_eq!(err, 0, "acks=all produce {i}");
        acked.push((base, b));
        seq += n as i32;
    }
    drop(c);
    let (path, addr) = broker.kill9();

    let _broker = Broker::start(&path, &addr);
    let mut c = Client::connect(&addr).await.expect("reconnect");
    // A retry of the last acknowledged batch (its response "lost") is a duplicate.
    let (last_base, last_batch) = acked.last().unwrap().clone();
    let (err, base) = produce(&mut c, "durable", last_batch).await;
    assert_eq!(
        (err, base),
        (0, last_base),
        "retry after restart must dedupe to the original offset"
    );
    // A gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    let gap = build::simple(
        1,
        0,
        Some(build::ProducerIdentity {
            id: pid,
            epoch: 0,
            base_sequence: seq + 5,
        }),
    );
    assert_eq!(produce(&mut c, "durable", gap).await.0, 45);

    let got = fetch_all(&mut c, "durable").await;
    assert_eq!(
        got.len(),
        acked.len(),
        "every acknowledged batch, exactly once"
    );
    let mut expect_offset = 0;
    for ((off, stored), (acked_off, produced)) in got.iter().zip(&acked) {
        assert_eq!(off, acked_off);
        assert_eq!(*off, expect_offset, "offsets are dense");
        let h = batch::parse_header(stored).unwrap();
        expect_offset = h.next_offset();
        // Everything after the header's offset and epoch fields is byte-identical.
        assert_eq!(
            &stored[batch::LOG_OVERHEAD + 4..],
            &produced[batch::LOG_OVERHEAD + 4..]
        );
    }
}
