//! Swarm testing: each seed draws its own shape and fault probabilities, so a batch of seeds
//! covers quiet runs, hostile runs, and everything between (Groce et al., "Swarm Testing").
//!
//! Invariant: [`Swarm::draw`] consumes only its own generator, and its `Display` form is printed
//! beside `seed=` so a reader sees what a run was up against.

use std::fmt;

use skein_core::batch::Compression;

use crate::rng::Rng;

/// What one producer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerShape {
    /// 0, 1 or -1 (all).
    pub acks: i16,
    /// Idempotent (then always acks=-1 and always retries, as Kafka requires).
    pub idempotent: bool,
    /// Batches in flight at once (`max.in.flight.requests.per.connection`): 1, or up to 5 for
    /// an idempotent producer. Drawn by [`Swarm::draw_more`].
    pub in_flight: u32,
}

/// How one workload topic is compacted (its topic configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactShape {
    /// `cleanup.policy=compact,delete` (retention deletes too), else `compact`.
    pub delete_too: bool,
    /// `segment.bytes`, small so segments seal and become cleanable.
    pub segment_bytes: u64,
    /// `delete.retention.ms`: how long a tombstone stays after its segment was cleaned.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`, in thousandths.
    pub dirty_ratio_permille: u32,
}

impl CompactShape {
    /// The topic configs that ask for this shape (CreateTopics' configs).
    pub fn configs(&self) -> Vec<(String, String)> {
        let policy = if self.delete_too {
            "compact,delete"
        } else {
            "compact"
        };
        let ratio = format!("{}", f64::from(self.dirty_ratio_permille) / 1000.0);
        [
            ("cleanup.policy", policy.to_string()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
            ),
            ("min.cleanable.dirty.ratio", ratio),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// How the workload and the node's cleaner exercise compaction. Drawn by
/// [`Swarm::draw_compaction`] from its own stream, after everything else, so a seed without a
/// compacted topic runs as it did before compaction existed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compaction {
    /// Per workload topic (in `sim::TOPICS` order): its compaction, if it is compacted.
    pub topics: [Option<CompactShape>; 3],
    /// Keys producers draw from on a compacted topic (small, so keys repeat).
    pub keys: u32,
    /// Per keyed record: chance it is a tombstone.
    pub tombstone_ppm: u32,
    /// Interval between cleaner passes (the broker's `log.cleaner.backoff.ms`).
    pub pass_ms: u64,
    /// Steps of a clean (reads, writes, seals) carried out per event.
    pub steps: u32,
    /// Longest delay between a clean's events (its runs and its commits).
    pub gap_max_ms: u64,
    /// The cleaner's key-map budget (`log.cleaner.dedupe.buffer.size`): small budgets split a
    /// clean into several passes.
    pub dedupe_bytes: u64,
    /// The cleaner's read and write buffers (`log.cleaner.io.buffer.size`).
    pub io_bytes: u64,
}

impl Compaction {
    /// True when some topic is compacted.
    pub fn any(&self) -> bool {
        self.topics.iter().any(Option::is_some)
    }
}

/// One run's shape and fault rates; rates are parts per million.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swarm {
    /// Partitions of the one topic (1-4).
    pub partitions: usize,
    /// `segment.bytes`, small so segments roll often.
    pub segment_bytes: u64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `retention.bytes` (-1: off).
    pub retention_bytes: i64,
    /// `retention.ms` (-1: off).
    pub retention_ms: i64,
    /// Interval between retention passes (0: none).
    pub retention_pass_ms: u64,
    /// Mean time between crashes (0: no crashes).
    pub crash_mean_ms: u64,
    /// Share of stops that are clean shutdowns (SIGTERM) rather than crashes, in ppm. Drawn
    /// from its own stream after the rest of the swarm, so the other draws of a seed are the same
    /// as before it existed.
    pub clean_stop_ppm: u32,
    /// Longest time a crashed node stays down.
    pub downtime_max_ms: u64,
    /// Chance a crash strikes in the middle of a later storage operation instead of between events.
    pub mid_op_crash_ppm: u32,
    /// Per crash and file with unsynced writes: chance the first lost write is torn at a sector.
    pub torn_write_ppm: u32,
    /// Per torn write: chance the file size survived but the lost sectors read as zeros.
    pub zero_fill_ppm: u32,
    /// Per crash and file created since the last directory sync: chance the file is lost.
    pub lose_new_file_ppm: u32,
    /// Per crash: chance one synced sector beyond the durable frontier rots.
    pub corrupt_ppm: u32,
    /// Per group-commit fsync: chance it fails with EIO.
    pub fsync_eio_ppm: u32,
    /// Per request and per response: chance the network loses it.
    pub drop_ppm: u32,
    /// One-way network latency bound.
    pub latency_max_ms: u64,
    /// fsync latency bound.
    pub fsync_latency_max_ms: u64,
    /// Group-commit delay before an fsync starts.
    pub group_commit_ms: u64,
    /// Client request timeout.
    pub timeout_ms: u64,
    /// Non-idempotent producers retry a timed-out or failed batch.
    pub retries: bool,
    /// The producers.
    pub producers: Vec<ProducerShape>,
    /// Number of fetchers.
    pub fetchers: usize,
    /// Length of the safety (faulty) phase.
    pub safety_ms: u64,
    // Everything below is drawn by `draw_more` from its own stream, after the rest, so the
    // draws above are what they were before these existed.
    /// Per message: chance it is delivered twice (a duplicated request is a retransmit the
    /// node sees twice).
    pub dup_ppm: u32,
    /// Mean time between network partitions between clients and the node (0: none).
    pub partition_mean_ms: u64,
    /// Longest a partition lasts before it heals.
    pub partition_max_ms: u64,
    /// Mean time between pauses of the node (0: none).
    pub pause_mean_ms: u64,
    /// Longest a pause lasts.
    pub pause_max_ms: u64,
    /// Mean time between spells of a full disk (0: none).
    pub enospc_mean_ms: u64,
    /// Longest a full-disk spell lasts.
    pub enospc_max_ms: u64,
    /// Per crash: chance a misdirected write landed beyond the durable frontier.
    pub misdirect_ppm: u32,
    /// Mean time between admin actions (create / delete topic, add partitions; 0: none).
    pub admin_mean_ms: u64,
    /// Chance a producer leaves its batches' header max timestamp unset (-1) or wrong.
    pub bad_timestamp_ppm: u32,
    /// Compacted topics and the cleaner (drawn last, by [`Swarm::draw_compaction`]).
    pub compaction: Compaction,
    /// Per workload topic: its `compression.type` codec, if it names one (the leader then
    /// recompresses what producers send); drawn after compaction by [`Swarm::draw_codecs`].
    pub topic_codecs: [Option<Compression>; 3],
}

fn pct(ppm: u32) -> String {
    if ppm.is_multiple_of(10_000) {
        format!("{}%", ppm / 10_000)
    } else {
        format!("{}.{}%", ppm / 10_000, (ppm % 10_000) / 1000)
    }
}

impl Swarm {
    /// Draws a shape from the seed's swarm generator.
    pub fn draw(r: &mut Rng) -> Swarm {
        let partitions = r.range(1, 4) as usize;
        let segment_bytes = r.pick(&[2048u64, 3000, 4096, 8192, 16384]);
        let index_interval_bytes = r.pick(&[128u32, 256, 512, 1024]);
        let retention = r.chance(500_000);
        let (retention_bytes, retention_ms) = if retention {
            (
                r.pick(&[-1i64, 8192, 20_000, 65_536]),
                r.pick(&[-1i64, 2000, 5000, 20_000]),
            )
        } else {
            (-1, -1)
        };
        let retention_pass_ms = if retention { r.range(200, 2000) } else { 0 };
        let crash_mean_ms = r.pick(&[0u64, 300, 1000, 3000]);
        let n_producers = r.range(1, 5) as usize;
        let producers = (0..n_producers)
            .map(|_| {
                let idempotent = r.chance(500_000);
                let acks = if idempotent {
                    -1
                } else {
                    r.pick(&[-1i16, -1, 1, 0])
                };
                ProducerShape {
                    acks,
                    idempotent,
                    in_flight: 1,
                }
            })
            .collect();
        Swarm {
            partitions,
            segment_bytes,
            index_interval_bytes,
            retention_bytes,
            retention_ms,
            retention_pass_ms,
            crash_mean_ms,
            clean_stop_ppm: 0,
            downtime_max_ms: r.pick(&[1u64, 50, 500]),
            mid_op_crash_ppm: r.pick(&[0u32, 300_000, 700_000]),
            torn_write_ppm: r.pick(&[0u32, 300_000, 1_000_000]),
            zero_fill_ppm: r.pick(&[0u32, 300_000]),
            lose_new_file_ppm: r.pick(&[0u32, 500_000]),
            corrupt_ppm: r.pick(&[0u32, 100_000, 500_000]),
            fsync_eio_ppm: r.pick(&[0u32, 0, 10_000, 100_000]),
            drop_ppm: r.pick(&[0u32, 10_000, 50_000, 200_000]),
            latency_max_ms: r.pick(&[0u64, 2, 10]),
            fsync_latency_max_ms: r.pick(&[1u64, 5, 20]),
            group_commit_ms: r.pick(&[0u64, 1, 5]),
            timeout_ms: r.pick(&[60u64, 100, 300]),
            retries: r.chance(700_000),
            producers,
            fetchers: r.range(1, 3) as usize,
            safety_ms: r.pick(&[1000u64, 3000, 6000]),
            dup_ppm: 0,
            partition_mean_ms: 0,
            partition_max_ms: 0,
            pause_mean_ms: 0,
            pause_max_ms: 0,
            enospc_mean_ms: 0,
            enospc_max_ms: 0,
            misdirect_ppm: 0,
            admin_mean_ms: 0,
            bad_timestamp_ppm: 0,
            compaction: Compaction::default(),
            topic_codecs: [None; 3],
        }
    }

    /// Draws which workload topics name a `compression.type` codec, from their own stream:
    /// half the seeds none (they run as before), the others some topics each.
    pub fn draw_codecs(&mut self, r: &mut Rng) {
        let ppm = r.pick(&[0u32, 0, 300_000, 700_000]);
        for t in &mut self.topic_codecs {
            if r.chance(ppm) {
                *t = Some(r.pick(&Compression::ALL));
            }
        }
    }

    /// Draws which workload topics are compacted, their configs and the cleaner's pace, from
    /// their own stream. About half the seeds compact nothing (and run as before compaction was
    /// simulated); the others compact one to three topics.
    pub fn draw_compaction(&mut self, r: &mut Rng) {
        let ppm = r.pick(&[0u32, 0, 400_000, 700_000]);
        let mut topics = [None; 3];
        for t in &mut topics {
            if r.chance(ppm) {
                *t = Some(CompactShape {
                    delete_too: r.chance(250_000),
                    segment_bytes: r.pick(&[1500u64, 2048, 4096]),
                    delete_retention_ms: r.pick(&[0i64, 50, 500, 1_000_000]),
                    min_compaction_lag_ms: r.pick(&[0i64, 0, 20, 300]),
                    dirty_ratio_permille: r.pick(&[1u32, 10, 100]),
                });
            }
        }
        self.compaction = Compaction {
            topics,
            keys: r.pick(&[1u32, 4, 16, 64]),
            tombstone_ppm: r.pick(&[0u32, 100_000, 300_000]),
            pass_ms: r.pick(&[20u64, 100, 400]),
            steps: r.pick(&[2u32, 8, 1000]),
            gap_max_ms: r.pick(&[0u64, 5, 50]),
            dedupe_bytes: r.pick(&[192u64, 1024, 65_536]),
            io_bytes: r.pick(&[600u64, 4096, 65_536]),
        };
    }

    /// Draws the rates added after the first swarm (network duplication and partitions, pauses,
    /// full disks, misdirected writes, admin actions, in-flight batches) from their own stream.
    pub fn draw_more(&mut self, r: &mut Rng) {
        self.dup_ppm = r.pick(&[0u32, 0, 10_000, 50_000]);
        self.partition_mean_ms = r.pick(&[0u64, 0, 500, 2000]);
        self.partition_max_ms = r.pick(&[50u64, 300, 1000]);
        self.pause_mean_ms = r.pick(&[0u64, 0, 1000, 3000]);
        self.pause_max_ms = r.pick(&[20u64, 200, 1000]);
        self.enospc_mean_ms = r.pick(&[0u64, 0, 1000, 3000]);
        self.enospc_max_ms = r.pick(&[20u64, 200, 1000]);
        self.misdirect_ppm = r.pick(&[0u32, 0, 100_000, 500_000]);
        self.admin_mean_ms = r.pick(&[0u64, 0, 300, 1000]);
        for p in &mut self.producers {
            p.in_flight = if p.idempotent {
                r.pick(&[1u32, 2, 5, 5])
            } else {
                1
            };
        }
    }
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |v: i64| {
            if v < 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        let producers: Vec<String> = self
            .producers
            .iter()
            .map(|p| {
                let inf = if p.in_flight > 1 {
                    format!("x{}", p.in_flight)
                } else {
                    String::new()
                };
                format!("{}{}{inf}", p.acks, if p.idempotent { "i" } else { "" })
            })
            .collect();
        write!(
            f,
            "parts={} seg={} idx={} ret=b{}/t{}/{}ms crash={}ms/{}ms clean={} midop={} tear={} zero={} losefile={} corrupt={} eio={} drop={} lat={}ms fsync={}ms gc={}ms timeout={}ms retries={} prod=[{}] fetch={} safety={}ms dup={} part={}ms/{}ms pause={}ms/{}ms enospc={}ms/{}ms misdir={} admin={}ms badts={}",
            self.partitions,
            self.segment_bytes,
            self.index_interval_bytes,
            num(self.retention_bytes),
            num(self.retention_ms),
            self.retention_pass_ms,
            self.crash_mean_ms,
            self.downtime_max_ms,
            pct(self.clean_stop_ppm),
            pct(self.mid_op_crash_ppm),
            pct(self.torn_write_ppm),
            pct(self.zero_fill_ppm),
            pct(self.lose_new_file_ppm),
            pct(self.corrupt_ppm),
            pct(self.fsync_eio_ppm),
            pct(self.drop_ppm),
            self.latency_max_ms,
            self.fsync_latency_max_ms,
            self.group_commit_ms,
            self.timeout_ms,
            if self.retries { "y" } else { "n" },
            producers.join(","),
            self.fetchers,
            self.safety_ms,
            pct(self.dup_ppm),
            self.partition_mean_ms,
            self.partition_max_ms,
            self.pause_mean_ms,
            self.pause_max_ms,
            self.enospc_mean_ms,
            self.enospc_max_ms,
            pct(self.misdirect_ppm),
            self.admin_mean_ms,
            pct(self.bad_timestamp_ppm),
        )?;
        let codecs: Vec<String> = self
            .topic_codecs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some(format!("t{i}:{}", (*c)?.config_name())))
            .collect();
        if !codecs.is_empty() {
            write!(f, " codecs=[{}]", codecs.join(","))?;
        }
        let c = &self.compaction;
        if !c.any() {
            return Ok(());
        }
        let topics: Vec<String> = c
            .topics
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let t = t.as_ref()?;
                Some(format!(
                    "t{i}:{}/seg{}/dr{}/lag{}/r{}",
                    if t.delete_too { "cd" } else { "c" },
                    t.segment_bytes,
                    t.delete_retention_ms,
                    t.min_compaction_lag_ms,
                    f64::from(t.dirty_ratio_permille) / 1000.0
                ))
            })
            .collect();
        write!(
            f,
            " compact=[{}] keys={} tomb={} clean={}ms/{}steps/{}ms map={} io={}",
            topics.join(","),
            c.keys,
            pct(c.tombstone_ppm),
            c.pass_ms,
            c.steps,
            c.gap_max_ms,
            c.dedupe_bytes,
            c.io_bytes
        )
    }
}
