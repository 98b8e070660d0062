//! The real skein-broker shell — the Kafka-protocol server, partition storage and crash recovery —
//! run on turmoil's simulated network and file system, driven by skein's own Kafka client.
//!
//! What this catches that skein-sim (which drives skein-core directly) cannot: framing and
//! connection handling, client timeouts and reconnects, the order in which the shell writes,
//! fsyncs and directory-syncs real files, and recovery from those files after a crash that loses
//! every unsynced write and directory entry (turmoil's `unstable-fs`).
//!
//! Each seed draws a fault schedule: broker crashes (turmoil drops the host's tasks and its
//! unsynced file operations, optionally tearing pending writes at a block boundary) and restarts,
//! client<->broker partitions (both ways and one way), and random early write-back of unsynced
//! data. Idempotent acks=all producers retry every batch until it is acknowledged. At the end,
//! with every fault healed, the checker reads the whole partition back: every acknowledged batch
//! must be there exactly once, at the offset it was acknowledged at, with the same contents;
//! offsets are dense.
//!
//! turmoil is deterministic only with `--cfg tokio_unstable` (set in `.cargo/config.toml`); a
//! test runs one seed twice and compares the traces. A failing seed replays with
//! `SKEIN_TURMOIL_SEED=<seed> cargo test -p skein-tests --test turmoil_shell -- one_seed`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use skein_broker::broker::Broker;
use skein_broker::config::BrokerArgs;
use skein_client::Client;
use skein_core::batch::{self, build};
use skein_core::rng::SplitMix64;
use skein_sys::net::Listener;
use skein_tests::requests;

const TOPIC: &str = "t";
/// Batches each producer must get acknowledged.
const BATCHES: usize = 100;
/// Producers (each its own client host and producer id).
const PRODUCERS: usize = 2;
/// Simulated time a run may take before it counts as stuck (a liveness failure).
const SIM_LIMIT_S: u64 = 600;
/// The fault phase: faults are only injected before this much simulated time.
const FAULT_PHASE_MS: u64 = 20_000;

/// What one run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Trace {
    /// One line per client-visible event, in order.
    events: Vec<String>,
    /// Acknowledged batches: (producer, batch index) -> (base offset, CRC of the batch).
    acked: BTreeMap<(usize, usize), (i64, u32)>,
    /// Errors a correct broker never gives this workload, as (producer, batch, error code).
    fatal: Vec<(usize, usize, i16)>,
    /// Everything read back at the end: (base offset, producer id, base sequence, records, CRC).
    read: Vec<(i64, i64, i32, i32, u32)>,
}

/// The fault schedule's generator.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn chance(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }
}

fn broker_settings(ack_before_fsync: bool) -> skein_broker::config::Settings {
    BrokerArgs {
        // The interval flush policy answers acks=all before the fsync: a legal setting that
        // trades durability away, and the teeth test for this checker.
        flush_ms: ack_before_fsync.then_some(60_000),
        data_dir: Some("/data".into()),
        listen: Some("0.0.0.0:9092".into()),
        advertise: Some("broker:9092".into()),
        // Small segments so runs roll segments and recover sealed ones too.
        log_segment_bytes: Some(2048),
        log_level: Some("warn".into()),
        ..Default::default()
    }
    .resolve()
    .expect("settings")
}

async fn broker_host(ack_before_fsync: bool) -> turmoil::Result {
    let settings = broker_settings(ack_before_fsync);
    // A supervisor would restart a broker whose recovery hit a transient error; so do we.
    let broker = loop {
        match Broker::start(settings.clone()).await {
            Ok(b) => break b,
            Err(e) => {
                eprintln!("broker open failed: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    broker.spawn_background();
    let listener = Listener::bind(settings.listen).await?;
    let stop = broker.shutting_down.subscribe();
    skein_broker::server::serve(broker, listener, stop).await;
    Ok(())
}

async fn connect(addr: &str) -> Client {
    loop {
        match Client::connect_with(addr, "turmoil", Duration::from_millis(2_000)).await {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Sends `req` until it gets an answer, reconnecting after connection failures.
async fn call<R>(c: &mut Option<Client>, req: R, version_max: i16) -> R::Response
where
    R: kafka_protocol::protocol::Request + Clone,
{
    loop {
        if c.is_none() {
            *c = Some(connect("broker:9092").await);
        }
        let client = c.as_mut().expect("connected");
        let v = client.pick_version::<R>(version_max).expect("version");
        match client.send(req.clone(), v).await {
            Ok(r) => return r,
            Err(_) => {
                *c = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn create_topic(c: &mut Option<Client>) {
    let r = call(c, requests::create_topic(TOPIC, 1), 7).await;
    let code = r.topics[0].error_code;
    // 36: TOPIC_ALREADY_EXISTS (the other producer, or a retry whose answer was lost).
    assert!(code == 0 || code == 36, "CreateTopics failed: {code}");
}

async fn producer(id: usize, trace: Rc<RefCell<Trace>>) -> turmoil::Result {
    let mut c = None;
    create_topic(&mut c).await;
    let ip = call(&mut c, requests::init_producer_id(), 4).await;
    assert_eq!(ip.error_code, 0, "InitProducerId: {:?}", ip);
    let pid = i64::from(ip.producer_id);
    let epoch = ip.producer_epoch;
    let mut seq = 0i32;
    for i in 0..BATCHES {
        let n = 1 + (i + id) % 4;
        let bytes = build::simple(
            n,
            1_700_000_000_000 + (id * 1000 + i) as i64,
            Some(build::ProducerIdentity {
                id: pid,
                epoch,
                base_sequence: seq,
            }),
        );
        let crc = batch::compute_crc(&bytes);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            assert!(
                attempts < 10_000,
                "producer {id} batch {i}: never acknowledged"
            );
            let req = requests::produce_all(TOPIC, bytes.clone(), 5_000);
            let r = call(&mut c, req, 9).await;
            let p = &r.responses[0].partition_responses[0];
            trace.borrow_mut().events.push(format!(
                "t={} p{id} b{i} try{attempts} err={} base={}",
                turmoil::elapsed().as_millis(),
                p.error_code,
                p.base_offset
            ));
            match p.error_code {
                0 => {
                    trace
                        .borrow_mut()
                        .acked
                        .insert((id, i), (p.base_offset, crc));
                    break;
                }
                // Retriable: KAFKA_STORAGE_ERROR (56, a failed fsync or write), REQUEST_TIMED_OUT
                // (7), NOT_ENOUGH_REPLICAS (19/20), UNKNOWN_TOPIC_OR_PARTITION (3, just created).
                56 | 7 | 19 | 20 | 3 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // OUT_OF_ORDER_SEQUENCE_NUMBER (45) after a crash means the broker forgot an
                // acknowledged batch; anything else is a protocol error. Either way this
                // producer stops, as a Kafka producer would, and the checker reports it.
                other => {
                    trace.borrow_mut().fatal.push((id, i, other));
                    return Ok(());
                }
            }
        }
        seq += n as i32;
    }
    Ok(())
}

async fn read_back(trace: Rc<RefCell<Trace>>) -> turmoil::Result {
    let mut c = None;
    let mut offset = 0i64;
    loop {
        let r = call(&mut c, requests::fetch(TOPIC, offset), 12).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            assert_eq!(
                offset, p.high_watermark,
                "empty fetch below the high watermark"
            );
            return Ok(());
        }
        for item in batch::iter_headers(&records) {
            let (pos, h) = item.expect("whole batches");
            batch::verify_stored(&records[pos..pos + h.size]).expect("stored CRC");
            if h.last_offset() >= offset {
                trace.borrow_mut().read.push((
                    h.base_offset,
                    h.producer_id,
                    h.base_sequence,
                    h.record_count,
                    batch::compute_crc(&records[pos..pos + h.size]),
                ));
                offset = h.next_offset();
            }
        }
    }
}

/// Runs one seed; `Err` names the violated property (a stuck run panics).
fn run(seed: u64, ack_before_fsync: bool) -> Result<Trace, String> {
    let _one_at_a_time = skein_tests::one_simulation_at_a_time();
    skein_sys::seed_uuids(seed);
    let mut rng = Rng(SplitMix64::new(seed));
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(SIM_LIMIT_S))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1 + rng.below(20)));
    // Some seeds let the "kernel" write back unsynced data early; some tear pending writes.
    let early_writeback = [0.0, 0.0, 0.01, 0.2][rng.below(4) as usize];
    b.fs().sync_probability(early_writeback);
    if rng.chance(500_000) {
        b.fs().block_size(512);
    }
    let mut sim = b.build();
    let trace = Rc::new(RefCell::new(Trace::default()));
    sim.host("broker", move || broker_host(ack_before_fsync));
    for id in 0..PRODUCERS {
        let t = trace.clone();
        sim.client(
            format!("producer{id}"),
            async move { producer(id, t).await },
        );
    }
    let crash_ppm = [0, 1_000, 5_000, 20_000][rng.below(4) as usize];
    let partition_ppm = [0, 2_000, 10_000][rng.below(3) as usize];
    let mut down_until: Option<u64> = None;
    let mut cut: Option<(usize, u64)> = None;
    let mut step = 0u64;
    loop {
        step += 1;
        let now_ms = sim.elapsed().as_millis() as u64;
        if let Some(until) = down_until {
            if now_ms >= until {
                sim.bounce("broker");
                trace
                    .borrow_mut()
                    .events
                    .push(format!("t={now_ms} restart"));
                down_until = None;
            }
        } else if now_ms < FAULT_PHASE_MS && rng.chance(crash_ppm) {
            sim.crash("broker");
            trace.borrow_mut().events.push(format!("t={now_ms} crash"));
            down_until = Some(now_ms + 1 + rng.below(2_000));
        }
        if let Some((p, until)) = cut {
            if now_ms >= until {
                sim.repair(format!("producer{p}"), "broker");
                cut = None;
                trace
                    .borrow_mut()
                    .events
                    .push(format!("t={now_ms} heal p{p}"));
            }
        } else if now_ms < FAULT_PHASE_MS && rng.chance(partition_ppm) {
            let p = rng.below(PRODUCERS as u64) as usize;
            let mode = rng.below(3) as u8;
            let (a, b) = (format!("producer{p}"), "broker".to_string());
            match mode {
                0 => sim.partition(a, b),
                1 => sim.partition_oneway(a, b),
                _ => sim.partition_oneway(b, a),
            }
            cut = Some((p, now_ms + 1 + rng.below(3_000)));
            trace
                .borrow_mut()
                .events
                .push(format!("t={now_ms} cut p{p} mode{mode}"));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!(
                "seed {seed}: simulation failed at step {step}: {e}\nreplay: SKEIN_TURMOIL_SEED={seed} cargo test -p skein-tests --test turmoil_shell -- one_seed"
            ),
        }
    }
    // Every producer is done; heal everything and read the log back.
    if down_until.is_some() {
        sim.bounce("broker");
    }
    if let Some((p, _)) = cut {
        sim.repair(format!("producer{p}"), "broker");
    }
    let t = trace.clone();
    sim.client("reader", async move { read_back(t).await });
    if let Err(e) = sim.run() {
        panic!("seed {seed}: read-back failed: {e}");
    }
    let trace = trace.borrow().clone();
    check(seed, &trace)?;
    Ok(trace)
}

/// The durability checker: every acknowledged batch is read back exactly once, at its offset,
/// unchanged; offsets are dense from 0.
fn check(seed: u64, t: &Trace) -> Result<(), String> {
    if let Some((p, i, code)) = t.fatal.first() {
        return Err(format!(
            "seed {seed}: producer {p} batch {i} got error {code} (45: the broker forgot an acknowledged batch)"
        ));
    }
    let mut next = 0i64;
    let mut by_offset = BTreeMap::new();
    for &(base, pid, seq, count, crc) in &t.read {
        if base != next {
            return Err(format!("seed {seed}: offsets not dense at {base}"));
        }
        next = base + i64::from(count);
        by_offset.insert(base, (pid, seq, crc));
    }
    let mut seen = std::collections::BTreeSet::new();
    for &(pid, seq, _) in by_offset.values() {
        if !seen.insert((pid, seq)) {
            return Err(format!(
                "seed {seed}: producer {pid} sequence {seq} stored twice"
            ));
        }
    }
    for ((p, i), (base, crc)) in &t.acked {
        match by_offset.get(base) {
            Some(&(_, _, c)) if c == *crc => {}
            Some(_) => {
                return Err(format!(
                    "seed {seed}: acked batch p{p} b{i} at {base} was changed"
                ))
            }
            None => {
                return Err(format!(
                    "seed {seed}: acked batch p{p} b{i} at {base} was lost"
                ))
            }
        }
    }
    if t.acked.len() != PRODUCERS * BATCHES {
        return Err(format!("seed {seed}: not every batch was acknowledged"));
    }
    Ok(())
}

fn hash(t: &Trace) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for line in &t.events {
        for b in line.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[test]
fn seeds_survive_crashes_and_partitions() {
    let seeds: u64 = std::env::var("SKEIN_TURMOIL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let t = run(seed, false).unwrap_or_else(|e| {
            panic!("{e}\nreplay: SKEIN_TURMOIL_SEED={seed} cargo test -p skein-tests --test turmoil_shell -- one_seed --nocapture")
        });
        let crashes = t.events.iter().filter(|e| e.ends_with(" crash")).count();
        eprintln!(
            "turmoil seed={seed} events={} crashes={crashes} acked={} read={} trace={:016x}",
            t.events.len(),
            t.acked.len(),
            t.read.len(),
            hash(&t)
        );
    }
}

#[test]
fn same_seed_same_trace() {
    let a = run(7, false).expect("seed 7");
    let b = run(7, false).expect("seed 7");
    assert_eq!(hash(&a), hash(&b), "seed 7 ran differently twice");
    assert_eq!(a, b);
}

#[test]
fn one_seed() {
    if let Some(seed) = std::env::var("SKEIN_TURMOIL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let t = run(seed, false);
        if let Ok(t) = &t {
            for e in &t.events {
                eprintln!("{e}");
            }
        }
        if let Err(e) = t {
            panic!("{e}");
        }
    }
}

/// Teeth: with acks=all answered before the fsync (the interval flush policy), crashes must make
/// the checker report a lost acknowledged batch within a few seeds.
#[test]
fn checker_catches_acks_before_fsync() {
    for seed in 0..20 {
        if let Err(e) = run(seed, true) {
            eprintln!("caught at seed {seed}: {e}");
            return;
        }
    }
    panic!("20 seeds with acks answered before fsync and no lost acknowledged batch");
}
