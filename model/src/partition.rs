//! Model 2: partition leadership through the controller. Three brokers replicate one
//! partition (replicas `[1, 2, 3]`) with skein-core's own code, not a copy of it: the
//! controller's state is a real [`Catalog`] (records applied directly; the quorum that commits
//! them is model 1's business), a leader is a real [`Leader`], every replica's log is a real
//! [`PartitionLog`] fed through `append` / `append_replicated`, and a diverging follower cuts
//! where [`truncation_offset`] says.
//!
//! # State
//!
//! The catalog; per broker: alive or crashed, its incarnation, its log (plus the stamped bytes
//! of each batch, which the leader serves to fetchers: one record per batch, so batch index ==
//! offset), its high watermark, its role (a core `Leader` once it learned the catalog names it
//! leader at an epoch, else a follower of a leader/epoch) and the partition state it last
//! learned; the ISR proposals in flight to the controller; a logical clock; ghost records for the
//! properties.
//!
//! # Actions
//!
//! - `Append(b)`: leader `b` appends a one-record batch (acks=1 and acks=all alike: the
//!   write is in the log either way).
//! - `Fetch(f)`: follower `f` fetches from the leader it follows, at its log end with the
//!   epoch of its last batch (only when that leader is alive and leads that very epoch, else
//!   the fetch is refused and nothing changes). `check_fetch` says `Diverging` (the follower
//!   truncates to `truncation_offset`) or `Accepted` (the leader records `on_fetch`, the
//!   follower copies every batch from its fetch offset with `append_replicated` and takes
//!   `follower_hw`).
//! - `Advance`: the clock moves past `replica.lag.time.max.ms` (and the ISR retry time): a
//!   follower that does not fetch again before the leader's next tick looks stale.
//! - `Tick(b)`: leader `b`'s `tick`; an `IsrProposal` joins the in-flight set.
//! - `Deliver(p)` / `Drop(p)`: an in-flight ISR proposal is applied to the catalog as an
//!   `IsrChanged` record (possibly stale: the catalog refuses it then) or lost.
//! - `Learn(b)`: broker `b` learns the current partition state (it may act on stale metadata
//!   until then): it takes leadership (`set_leader_epoch`, `Leader::new`), updates it
//!   (`Leader::update`) or follows.
//! - `Crash(b)`: the process dies and the controller fences it (`BrokerFenced`); under the
//!   fsync-per-ack policy its log survives (nothing it reported is lost), its role does not.
//! - `Fence(b)`: the controller fences a live broker (missed heartbeats); the broker keeps
//!   running on stale metadata until it learns (a zombie leader). `Unfence(b)`: heard again.
//! - `Restart(b)`: a crashed broker comes back as a new incarnation (`BrokerRegistered`).
//!
//! Crashes and fences share one budget; `within_boundary` bounds the leader epoch, the log
//! length and the in-flight proposals.
//!
//! # Canaries (planted in this model; core is untouched)
//!
//! - `elect-outside-isr`: after a record that moved leadership away from a leader (or left the
//!   partition leaderless), the controller publishes a live replica outside the ISR as leader
//!   instead (like skein-sim replication's canary of the same name).
//! - `hw-from-leader-only`: a leader exposes its own log end as the high watermark.
//!
//! # Hashing
//!
//! `Catalog`, `Leader` and `PartitionLog` have no `Hash`; a state's identity is a canonical
//! fingerprint string (the catalog's and each leader's `Debug`, each log's batches and epoch
//! history), hashed and compared by [`State`]'s `Hash` / `Eq`.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use skein_core::catalog::{Catalog, MetadataRecord, PartitionState};
use skein_core::config::LogConfig;
use skein_core::log::PartitionLog;
use skein_core::replication::{
    follower_hw, truncation_offset, FetchCheck, IsrProposal, Leader, ReplicationConfig,
};
use stateright::{Model, Property};

/// Number of brokers (all replicas of the one partition).
pub const BROKERS: i32 = 3;
const TOPIC: &str = "t";
/// replica.lag.time.max.ms and the ISR retry time of the model's leaders.
const LAG_MS: u64 = 10;

/// A bug planted in the model's controller or leaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionCanary {
    /// The controller elects a live replica outside the ISR.
    ElectOutsideIsr,
    /// A leader exposes its log end as the high watermark.
    HwFromLeaderOnly,
}

/// What bounds the exploration.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// No leader epoch above this.
    pub epoch_max: i32,
    /// No log longer than this (records).
    pub log_len_max: usize,
    /// At most this many ISR proposals in flight.
    pub in_flight_max: usize,
    /// At most this many crashes and fences in total.
    pub crashes_max: u8,
    /// At most this many clock advances past the lag time.
    pub advances_max: u8,
    /// min.insync.replicas of the topic.
    pub min_isr: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            epoch_max: 2,
            log_len_max: 2,
            in_flight_max: 1,
            crashes_max: 1,
            advances_max: 1,
            min_isr: 2,
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "brokers={BROKERS} min_isr={} epoch_max={} log_len_max={} in_flight_max={} crashes_max={} advances_max={}",
            self.min_isr,
            self.epoch_max,
            self.log_len_max,
            self.in_flight_max,
            self.crashes_max,
            self.advances_max
        )
    }
}

/// The partition-leadership model.
#[derive(Clone, Debug)]
pub struct PartitionModel {
    /// Exploration bounds.
    pub bounds: Bounds,
    /// A planted bug.
    pub canary: Option<PartitionCanary>,
}

/// One stored batch: the leader's stamped bytes and the record's identity.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Leader epoch stamped in it.
    pub epoch: i32,
    /// Unique id of its one record.
    pub id: u8,
    /// The bytes as the leader stamped them (what fetchers copy).
    pub bytes: Vec<u8>,
}

/// A broker's role for the partition.
#[derive(Clone, Debug)]
pub enum Role {
    /// Neither (just restarted, or crashed).
    None,
    /// The real leader state.
    Leader(Box<Leader>),
    /// Fetching from `leader` at `epoch` (`leader` -1: nobody to fetch from).
    Follower {
        /// The leader it believes in.
        leader: i32,
        /// That leader's epoch.
        epoch: i32,
    },
}

/// One broker.
#[derive(Clone, Debug)]
pub struct Broker {
    /// Node id.
    pub id: i32,
    /// Process running.
    pub alive: bool,
    /// Restarts so far.
    pub incarnation: u8,
    /// The real log.
    pub log: PartitionLog,
    /// Its batches, index == offset.
    pub store: Vec<Batch>,
    /// Its high watermark (a leader's is what it exposes).
    pub hw: i64,
    /// Its role.
    pub role: Role,
    /// The partition state it last learned.
    pub known: Option<PartitionState>,
}

impl Broker {
    fn end(&self) -> i64 {
        self.log.log_end_offset()
    }

    fn ids(&self, upto: usize) -> Vec<u8> {
        self.store.iter().take(upto).map(|b| b.id).collect()
    }

    /// Keeps the first `n` batches: rebuilds the log from them (as skein-sim does).
    fn keep(&mut self, n: usize) -> Result<(), String> {
        self.store.truncate(n);
        let saved: Vec<(i32, i64)> = self.log.epochs().to_vec();
        let mut log = PartitionLog::new(LogConfig::default(), 0);
        for b in &self.store {
            log.append_replicated(0, &b.bytes)
                .map_err(|e| format!("b{} replay: {e}", self.id))?;
        }
        let end = log.log_end_offset();
        let kept: Vec<(i32, i64)> = saved.into_iter().filter(|(_, s)| *s < end).collect();
        log.restore_epochs(&kept);
        self.log = log;
        self.hw = self.hw.min(end);
        Ok(())
    }
}

/// The whole system plus ghost state.
#[derive(Clone, Debug)]
pub struct State {
    /// The controller's catalog.
    pub catalog: Catalog,
    /// Canary `elect-outside-isr`: (leader epoch, leader) published instead of the catalog's.
    pub override_leader: Option<(i32, i32)>,
    /// Brokers 1..=3 at 0..3.
    pub brokers: Vec<Broker>,
    /// ISR proposals in flight, sorted, distinct.
    pub inflight: Vec<IsrProposal>,
    /// The logical clock (ms).
    pub now: u64,
    /// Clock advances so far.
    pub advances: u8,
    /// Crashes and fences so far.
    pub crashes: u8,
    /// Next record id.
    pub next_id: u8,
    /// Ghost: the largest high watermark any leader exposed.
    pub max_hw: i64,
    /// Ghost: record ids below `max_hw` (as the leader that exposed it held them).
    pub committed: Vec<u8>,
    /// Ghost: the high watermark each leadership last exposed, by (broker, leader epoch).
    pub lead_hw: BTreeMap<(i32, i32), i64>,
    /// Ghost: some leader change happened.
    pub leader_changed: bool,
    /// Ghost: some follower truncated a diverging suffix.
    pub truncated: bool,
    /// Ghost: a leader was elected or took over without every committed record.
    pub incomplete: Option<String>,
    /// Ghost: a leadership's high watermark fell.
    pub hw_fell: Option<String>,
    /// Ghost: a leader's log disagreed with the committed prefix when exposing.
    pub fork: Option<String>,
    /// A panic inside skein-core or a refused replication step.
    pub fault: Option<String>,
}

impl State {
    fn fingerprint(&self) -> String {
        use std::fmt::Write;
        // The catalog's topic config and the brokers' addresses never change here: its
        // partition state, the brokers' incarnations and fencing, and the unclean count are
        // all of it that can.
        let mut s = format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}|{}|{}",
            self.catalog.partition(TOPIC, 0),
            self.catalog
                .brokers()
                .map(|b| (b.id, &b.incarnation, b.fenced))
                .collect::<Vec<_>>(),
            self.catalog.unclean_elections(),
            self.override_leader,
            self.inflight,
            self.now,
            self.advances,
            self.crashes,
            self.next_id,
            self.max_hw,
            self.committed,
            self.lead_hw,
            self.leader_changed,
            self.truncated,
            self.incomplete.is_some(),
            self.hw_fell.is_some(),
            self.fork.is_some() || self.fault.is_some(),
        );
        for b in &self.brokers {
            let _ = write!(
                s,
                "#{} {} {} {:?} {:?} {} {} {:?} {:?}",
                b.alive,
                b.incarnation,
                b.hw,
                b.store.iter().map(|x| (x.epoch, x.id)).collect::<Vec<_>>(),
                b.log.epochs(),
                b.log.leader_epoch(),
                b.log.log_end_offset(),
                b.role,
                b.known
            );
        }
        s
    }
}

/// Feeds `Debug` output straight into a hasher (no string built).
struct HashWriter<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

fn hash_partition<H: Hasher>(p: &PartitionState, h: &mut H) {
    (
        &p.replicas,
        &p.isr,
        &p.elr,
        p.leader,
        p.leader_epoch,
        p.partition_epoch,
    )
        .hash(h);
}

/// Hashes exactly what `fingerprint` shows (so `Hash` agrees with `Eq`), field by field: the
/// fingerprint's string formatting dominated the checker's time. Only a `Leader` (private
/// fields) goes through `Debug`.
impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        use std::fmt::Write;
        match self.catalog.partition(TOPIC, 0) {
            Some(p) => hash_partition(p, h),
            None => 0u8.hash(h),
        }
        for b in self.catalog.brokers() {
            (b.id, &b.incarnation, b.fenced).hash(h);
        }
        self.catalog.unclean_elections().hash(h);
        self.override_leader.hash(h);
        self.inflight.len().hash(h);
        for p in &self.inflight {
            (&p.isr, p.leader_epoch, p.partition_epoch).hash(h);
        }
        (
            self.now,
            self.advances,
            self.crashes,
            self.next_id,
            self.max_hw,
            &self.committed,
            &self.lead_hw,
            self.leader_changed,
            self.truncated,
        )
            .hash(h);
        (
            self.incomplete.is_some(),
            self.hw_fell.is_some(),
            self.fork.is_some() || self.fault.is_some(),
        )
            .hash(h);
        for b in &self.brokers {
            (b.alive, b.incarnation, b.hw, b.store.len()).hash(h);
            for x in &b.store {
                (x.epoch, x.id).hash(h);
            }
            (b.log.epochs(), b.log.leader_epoch(), b.log.log_end_offset()).hash(h);
            match &b.role {
                Role::None => 0u8.hash(h),
                Role::Leader(l) => {
                    1u8.hash(h);
                    let _ = write!(HashWriter(h), "{l:?}");
                }
                Role::Follower { leader, epoch } => (2u8, *leader, *epoch).hash(h),
            }
            match &b.known {
                Some(p) => {
                    1u8.hash(h);
                    hash_partition(p, h);
                }
                None => 0u8.hash(h),
            }
        }
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
    }
}

impl Eq for State {}

/// One nondeterministic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The leader appends one record.
    Append(i32),
    /// The follower fetches.
    Fetch(i32),
    /// The clock passes the lag time.
    Advance,
    /// The leader's `tick`.
    Tick(i32),
    /// An ISR proposal reaches the controller (`IsrChanged`).
    Deliver(IsrProposal),
    /// An ISR proposal is lost.
    Drop(IsrProposal),
    /// The broker learns the current partition state.
    Learn(i32),
    /// The broker's process dies; the controller fences it.
    Crash(i32),
    /// The controller fences a live broker.
    Fence(i32),
    /// A fenced live broker is heard again.
    Unfence(i32),
    /// A crashed broker starts as a new incarnation.
    Restart(i32),
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn idx(b: i32) -> usize {
    (b - 1) as usize
}

fn incarnation(b: i32, inc: u8) -> String {
    format!("b{b}-{inc}")
}

fn registered(b: i32, inc: u8) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        id: b,
        incarnation: incarnation(b, inc),
        host: "localhost".into(),
        port: 9092 + b,
        rack: None,
    }
}

impl PartitionModel {
    /// The model.
    pub fn new(bounds: Bounds, canary: Option<PartitionCanary>) -> Self {
        PartitionModel { bounds, canary }
    }

    fn config(&self) -> ReplicationConfig {
        ReplicationConfig {
            lag_time_max_ms: LAG_MS,
            min_insync_replicas: self.bounds.min_isr,
            isr_retry_ms: LAG_MS,
        }
    }

    /// The high watermark broker `b` exposes (as leader) or knows.
    fn exposed(&self, b: &Broker) -> i64 {
        match &b.role {
            Role::Leader(l) if self.canary == Some(PartitionCanary::HwFromLeaderOnly) => {
                let _ = l;
                b.end()
            }
            Role::Leader(l) => l.hw(),
            _ => b.hw,
        }
    }
}

impl State {
    /// The partition state brokers learn (the catalog's, or the canary's override).
    pub fn published(&self) -> PartitionState {
        let mut st = self
            .catalog
            .partition(TOPIC, 0)
            .expect("the topic exists")
            .clone();
        if let Some((e, l)) = self.override_leader {
            if e == st.leader_epoch {
                st.leader = l;
            }
        }
        st
    }

    /// Applies a record as the controller, with the canary's override.
    fn control(&mut self, model: &PartitionModel, rec: MetadataRecord) {
        let before = self.published();
        let cat = &mut self.catalog;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            cat.apply(&rec);
            cat.check_invariants();
        })) {
            self.fault = Some(format!("controller {rec:?}: {}", panic_text(p)));
            return;
        }
        let fencing = matches!(
            rec,
            MetadataRecord::BrokerFenced { .. } | MetadataRecord::BrokerRegistered { .. }
        );
        if model.canary == Some(PartitionCanary::ElectOutsideIsr) && fencing {
            let new = self.catalog.partition(TOPIC, 0).expect("topic").clone();
            if before.leader >= 0 && new.leader != before.leader {
                let live = self.catalog.live_brokers();
                if let Some(pick) = new
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| live.contains(r) && !new.isr.contains(r) && *r != before.leader)
                {
                    self.override_leader = Some((new.leader_epoch, pick));
                }
            }
        }
        let after = self.published();
        if after.leader >= 0 && after.leader_epoch != before.leader_epoch {
            if after.leader != before.leader {
                self.leader_changed = true;
            }
            self.complete(after.leader, after.leader_epoch, "elected");
        }
    }

    /// Leader completeness for `b` leading `epoch`.
    fn complete(&mut self, b: i32, epoch: i32, how: &str) {
        let br = &self.brokers[idx(b)];
        let n = self.max_hw as usize;
        if self.incomplete.is_none() && (br.store.len() < n || br.ids(n) != self.committed) {
            self.incomplete = Some(format!(
                "b{b} {how} leader at epoch {epoch} with log {:?}, but {:?} is committed (hw {})",
                br.ids(usize::MAX),
                self.committed,
                self.max_hw
            ));
        }
    }

    /// Records what every leader exposes now (after any step).
    fn observe(&mut self, model: &PartitionModel) {
        for i in 0..self.brokers.len() {
            let b = &self.brokers[i];
            let Role::Leader(l) = &b.role else {
                continue;
            };
            if !b.alive {
                continue;
            }
            let (id, epoch) = (b.id, l.leader_epoch());
            let hw = model.exposed(b);
            if let Some(prev) = self.lead_hw.insert((id, epoch), hw) {
                if hw < prev && self.hw_fell.is_none() {
                    self.hw_fell = Some(format!(
                        "b{id} epoch {epoch}: high watermark {prev} -> {hw}"
                    ));
                }
            }
            let n = (hw.max(0) as usize).min(self.max_hw as usize);
            if b.ids(n) != self.committed[..n.min(self.committed.len())] && self.fork.is_none() {
                self.fork = Some(format!(
                    "b{id} epoch {epoch} exposes hw {hw} over {:?}; committed {:?}",
                    b.ids(usize::MAX),
                    self.committed
                ));
            }
            if hw > self.max_hw {
                self.max_hw = hw;
                self.committed = b.ids(hw as usize);
            }
            self.brokers[i].hw = hw;
        }
    }

    /// Broker `b` learns the published state.
    fn learn(&mut self, model: &PartitionModel, b: i32) {
        let st = self.published();
        let now = self.now;
        let cfg = model.config();
        let br = &mut self.brokers[idx(b)];
        br.known = Some(st.clone());
        if !st.replicas.contains(&b) {
            br.role = Role::None;
            return;
        }
        let end = br.end();
        if st.leader == b {
            if let Role::Leader(l) = &mut br.role {
                if l.leader_epoch() == st.leader_epoch {
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| l.update(&st, end, now))) {
                        self.fault = Some(format!("b{b} update: {}", panic_text(p)));
                    }
                    return;
                }
            }
            br.log.set_leader_epoch(st.leader_epoch);
            let hw = br.hw;
            match catch_unwind(AssertUnwindSafe(|| Leader::new(b, &st, end, hw, now, cfg))) {
                Ok(l) => br.role = Role::Leader(Box::new(l)),
                Err(p) => {
                    self.fault = Some(format!("b{b} Leader::new: {}", panic_text(p)));
                    return;
                }
            }
            self.complete(b, st.leader_epoch, "took over as");
            return;
        }
        let same = matches!(br.role, Role::Follower { leader, epoch } if leader == st.leader && epoch == st.leader_epoch);
        if !same {
            br.role = Role::Follower {
                leader: st.leader,
                epoch: st.leader_epoch,
            };
        }
    }

    /// The leader `f` fetches from, if the fetch would be served.
    fn fetch_target(&self, f: i32) -> Option<i32> {
        let br = &self.brokers[idx(f)];
        let Role::Follower { leader, epoch } = br.role else {
            return None;
        };
        if !br.alive || leader < 0 {
            return None;
        }
        let lb = &self.brokers[idx(leader)];
        match &lb.role {
            Role::Leader(l) if lb.alive && l.leader_epoch() == epoch => Some(leader),
            _ => None,
        }
    }

    fn fetch(&mut self, model: &PartitionModel, f: i32) {
        let Some(lid) = self.fetch_target(f) else {
            return;
        };
        let now = self.now;
        let (offset, last_epoch) = {
            let fb = &self.brokers[idx(f)];
            (fb.end(), fb.log.last_epoch())
        };
        let lb = &mut self.brokers[idx(lid)];
        let leader_end = lb.end();
        let Role::Leader(l) = &mut lb.role else {
            return;
        };
        let check = l.check_fetch(f, offset, last_epoch, &lb.log);
        match check {
            FetchCheck::NotReplica => {}
            FetchCheck::Diverging { epoch, end_offset } => {
                let fb = &mut self.brokers[idx(f)];
                let cut = truncation_offset(&fb.log, epoch, end_offset);
                if cut < fb.end() {
                    self.truncated = true;
                }
                if let Err(e) = fb.keep(cut.max(0) as usize) {
                    self.fault = Some(e);
                }
            }
            FetchCheck::Accepted if offset > leader_end => {}
            FetchCheck::Accepted => {
                l.on_fetch(f, offset, leader_end, now);
                let hw = model.exposed(lb);
                let batches: Vec<Batch> = lb.store[offset as usize..].to_vec();
                let fb = &mut self.brokers[idx(f)];
                for b in batches {
                    if let Err(e) = fb.log.append_replicated(0, &b.bytes) {
                        self.fault =
                            Some(format!("b{f} append_replicated at {}: {e}", fb.store.len()));
                        return;
                    }
                    fb.store.push(b);
                }
                fb.hw = follower_hw(hw, fb.end());
            }
        }
    }

    fn append(&mut self, b: i32) {
        let id = self.next_id;
        self.next_id += 1;
        let br = &mut self.brokers[idx(b)];
        let Role::Leader(l) = &mut br.role else {
            return;
        };
        let mut bytes = skein_core::batch::build::simple(1, i64::from(id), None);
        match br.log.append(0, &mut bytes) {
            Ok(_) => {}
            Err(e) => {
                self.fault = Some(format!("b{b} append: {e}"));
                return;
            }
        }
        br.store.push(Batch {
            epoch: l.leader_epoch(),
            id,
            bytes,
        });
        l.on_append(br.log.log_end_offset());
    }
}

impl Model for PartitionModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut catalog = Catalog::new(LogConfig::default());
        for b in 1..=BROKERS {
            catalog.apply(&registered(b, 0));
        }
        let mut configs = BTreeMap::new();
        configs.insert(
            "min.insync.replicas".to_string(),
            self.bounds.min_isr.to_string(),
        );
        configs.insert(
            "unclean.leader.election.enable".to_string(),
            "false".to_string(),
        );
        catalog.apply(&MetadataRecord::TopicCreated {
            name: TOPIC.into(),
            id: "00112233445566778899aabbccddeeff".into(),
            partitions: 1,
            configs,
            assignments: vec![vec![1, 2, 3]],
        });
        let mut s = State {
            catalog,
            override_leader: None,
            brokers: (1..=BROKERS)
                .map(|id| Broker {
                    id,
                    alive: true,
                    incarnation: 0,
                    log: PartitionLog::new(LogConfig::default(), 0),
                    store: Vec::new(),
                    hw: 0,
                    role: Role::None,
                    known: None,
                })
                .collect(),
            inflight: Vec::new(),
            now: 0,
            advances: 0,
            crashes: 0,
            next_id: 0,
            max_hw: 0,
            committed: Vec::new(),
            lead_hw: BTreeMap::new(),
            leader_changed: false,
            truncated: false,
            incomplete: None,
            hw_fell: None,
            fork: None,
            fault: None,
        };
        for b in 1..=BROKERS {
            s.learn(self, b);
        }
        s.observe(self);
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.fault.is_some() {
            return;
        }
        let published = s.published();
        for b in &s.brokers {
            let id = b.id;
            if !b.alive {
                actions.push(Action::Restart(id));
                continue;
            }
            if let Role::Leader(_) = b.role {
                if b.store.len() < self.bounds.log_len_max {
                    actions.push(Action::Append(id));
                }
                actions.push(Action::Tick(id));
            }
            if s.fetch_target(id).is_some() {
                actions.push(Action::Fetch(id));
            }
            if b.known.as_ref() != Some(&published) {
                actions.push(Action::Learn(id));
            }
            let fenced = s.catalog.broker(id).is_some_and(|x| x.fenced);
            if s.crashes < self.bounds.crashes_max {
                actions.push(Action::Crash(id));
                if !fenced {
                    actions.push(Action::Fence(id));
                }
            }
            if fenced {
                actions.push(Action::Unfence(id));
            }
        }
        if s.advances < self.bounds.advances_max {
            actions.push(Action::Advance);
        }
        for p in &s.inflight {
            actions.push(Action::Deliver(p.clone()));
            actions.push(Action::Drop(p.clone()));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Append(b) => s.append(b),
            Action::Fetch(f) => s.fetch(self, f),
            Action::Advance => {
                s.advances += 1;
                s.now += LAG_MS + 1;
            }
            Action::Tick(b) => {
                let now = s.now;
                if let Role::Leader(l) = &mut s.brokers[idx(b)].role {
                    if let Some(p) = l.tick(now) {
                        if !s.inflight.contains(&p) {
                            s.inflight.push(p);
                            s.inflight.sort_by(|a, b| {
                                (a.leader_epoch, a.partition_epoch, &a.isr).cmp(&(
                                    b.leader_epoch,
                                    b.partition_epoch,
                                    &b.isr,
                                ))
                            });
                        }
                    }
                }
            }
            Action::Deliver(p) => {
                let k = s.inflight.iter().position(|x| *x == p)?;
                s.inflight.remove(k);
                s.control(
                    self,
                    MetadataRecord::IsrChanged {
                        topic: TOPIC.into(),
                        partition: 0,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        isr: p.isr,
                    },
                );
            }
            Action::Drop(p) => {
                let k = s.inflight.iter().position(|x| *x == p)?;
                s.inflight.remove(k);
            }
            Action::Learn(b) => s.learn(self, b),
            Action::Crash(b) => {
                s.crashes += 1;
                let br = &mut s.brokers[idx(b)];
                br.alive = false;
                br.role = Role::None;
                br.known = None;
                let inc = incarnation(b, br.incarnation);
                s.control(
                    self,
                    MetadataRecord::BrokerFenced {
                        id: b,
                        incarnation: inc,
                    },
                );
            }
            Action::Fence(b) => {
                s.crashes += 1;
                let inc = incarnation(b, s.brokers[idx(b)].incarnation);
                s.control(
                    self,
                    MetadataRecord::BrokerFenced {
                        id: b,
                        incarnation: inc,
                    },
                );
            }
            Action::Unfence(b) => {
                let inc = incarnation(b, s.brokers[idx(b)].incarnation);
                s.control(
                    self,
                    MetadataRecord::BrokerUnfenced {
                        id: b,
                        incarnation: inc,
                    },
                );
            }
            Action::Restart(b) => {
                let br = &mut s.brokers[idx(b)];
                br.alive = true;
                br.incarnation += 1;
                let inc = br.incarnation;
                s.control(self, registered(b, inc));
            }
        }
        s.observe(self);
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.published().leader_epoch <= self.bounds.epoch_max
            && s.inflight.len() <= self.bounds.in_flight_max
            && s.brokers
                .iter()
                .all(|b| b.store.len() <= self.bounds.log_len_max)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no core assertion fails", |_, s: &State| s.fault.is_none()),
            Property::always("leader completeness", |_, s: &State| s.incomplete.is_none()),
            Property::always(
                "ISR and ELR within replicas and disjoint",
                |_, s: &State| {
                    let Some(p) = s.catalog.partition(TOPIC, 0) else {
                        return false;
                    };
                    !p.isr.is_empty()
                        && p.isr.iter().all(|r| p.replicas.contains(r))
                        && p.elr
                            .iter()
                            .all(|r| p.replicas.contains(r) && !p.isr.contains(r))
                        && (p.leader == -1 || p.isr.contains(&p.leader))
                },
            ),
            Property::always(
                "high watermark never falls within a leadership",
                |_, s: &State| s.hw_fell.is_none(),
            ),
            Property::always("no fork below the high watermark", |_, s: &State| {
                s.fork.is_none()
                    && s.brokers.iter().all(|b| {
                        let n = (b.hw.max(0) as usize).min(b.store.len());
                        n <= s.committed.len() && b.ids(n) == s.committed[..n]
                    })
            }),
            Property::sometimes("a leader change happens", |_, s: &State| s.leader_changed),
            Property::sometimes("a record commits", |_, s: &State| s.max_hw > 0),
            Property::sometimes("a diverged follower truncates", |_, s: &State| s.truncated),
        ]
    }
}

/// One line per broker plus the controller's view.
pub fn summary(s: &State) -> String {
    let mut out = String::new();
    for b in &s.brokers {
        let role = match &b.role {
            Role::None => "none".to_string(),
            Role::Leader(l) => format!(
                "leader(epoch {} isr {:?} maximal {:?} hw {})",
                l.leader_epoch(),
                l.isr(),
                l.maximal_isr(),
                l.hw()
            ),
            Role::Follower { leader, epoch } => format!("follower(of b{leader} epoch {epoch})"),
        };
        out.push_str(&format!(
            "\n    b{}: {} inc={} {role} log(epoch,id)={:?} epochs={:?} hw={}",
            b.id,
            if b.alive { "up" } else { "DOWN" },
            b.incarnation,
            b.store.iter().map(|x| (x.epoch, x.id)).collect::<Vec<_>>(),
            b.log.epochs(),
            b.hw
        ));
    }
    out.push_str(&format!(
        "\n    controller: {:?} fenced={:?} in flight={:?}\n    max_hw={} committed={:?} now={}\n    incomplete={:?} hw_fell={:?} fork={:?} fault={:?}",
        s.published(),
        s.catalog
            .brokers()
            .filter(|b| b.fenced)
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        s.inflight,
        s.max_hw,
        s.committed,
        s.now,
        s.incomplete,
        s.hw_fell,
        s.fork,
        s.fault
    ));
    out
}
