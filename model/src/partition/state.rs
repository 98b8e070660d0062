//! The model's state: the controller's catalog, the brokers (log, fsynced prefix, core
//! replica), the ISR proposals in flight and the ghost records the properties read; its
//! identity (a canonical fingerprint behind `Hash` and `Eq`) and a readable summary.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use skein_core::catalog::{Catalog, PartitionState};
use skein_core::config::LogConfig;
use skein_core::log::PartitionLog;
use skein_core::replica::{Input, Replica};
use skein_core::replication::IsrProposal;

use super::{PartitionModel, TOPIC};

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
    /// How many of its batches are fsynced (a crash keeps exactly these).
    pub synced: usize,
    /// The end its replica asked to fsync that is not yet (0: none pending).
    pub fsync_upto: i64,
    /// The core replica state machine (role, leader state, high watermark, durable end).
    pub replica: Replica,
    /// The partition state it last learned.
    pub known: Option<PartitionState>,
}

impl Broker {
    /// A fresh broker with an empty log and an idle replica.
    pub(super) fn new(model: &PartitionModel, id: i32) -> Broker {
        let log = PartitionLog::new(LogConfig::default(), 0);
        let mut replica = Replica::new(model.replica_config(id), &log, 0, 0);
        replica.set_canary(model.core_canary());
        Broker {
            id,
            alive: true,
            incarnation: 0,
            log,
            store: Vec::new(),
            synced: 0,
            fsync_upto: 0,
            replica,
            known: None,
        }
    }

    pub(super) fn end(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The ids of its first `upto` records.
    pub(super) fn ids(&self, upto: usize) -> Vec<u8> {
        self.store.iter().take(upto).map(|b| b.id).collect()
    }

    /// How many batches the fsync its replica asked for makes durable, when that is more than
    /// are.
    pub(super) fn sync_target(&self) -> Option<usize> {
        let target = self.fsync_upto.min(self.end()).max(0) as usize;
        (self.alive && target > self.synced).then_some(target)
    }

    /// Its fsync up to `target` batches completed: the completion to report.
    pub(super) fn synced_to(&mut self, target: usize) -> Input {
        self.synced = target;
        if self.fsync_upto <= target as i64 {
            self.fsync_upto = 0;
        }
        Input::Synced {
            durable_end: target as i64,
        }
    }

    /// Whether a pending fsync can complete.
    pub(super) fn sync_pending(&self) -> bool {
        self.sync_target().is_some()
    }

    /// Keeps the first `n` batches: rebuilds the log from them (as skein-sim does).
    pub(super) fn keep(&mut self, n: usize) -> Result<(), String> {
        self.store.truncate(n);
        self.synced = self.synced.min(n);
        self.fsync_upto = self.fsync_upto.min(n as i64);
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
    /// Ghost: a crash lost a write that was not fsynced.
    pub lost_unsynced: bool,
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
    /// The initial state over `catalog`, before any broker learned it.
    pub(super) fn new(catalog: Catalog, brokers: Vec<Broker>) -> State {
        State {
            catalog,
            override_leader: None,
            brokers,
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
            lost_unsynced: false,
            incomplete: None,
            hw_fell: None,
            fork: None,
            fault: None,
        }
    }

    fn fingerprint(&self) -> String {
        use std::fmt::Write;
        // The catalog's topic config and the brokers' addresses never change here: its
        // partition state, the brokers' incarnations and fencing, and the unclean count are
        // all of it that can.
        let mut s = format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}|{}|{}|{}",
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
            self.lost_unsynced,
            self.incomplete.is_some(),
            self.hw_fell.is_some(),
            self.fork.is_some() || self.fault.is_some(),
        );
        for b in &self.brokers {
            let _ = write!(
                s,
                "#{} {} {} {} {:?} {:?} {} {} {:?} {:?}",
                b.alive,
                b.incarnation,
                b.synced,
                b.fsync_upto,
                b.store.iter().map(|x| (x.epoch, x.id)).collect::<Vec<_>>(),
                b.log.epochs(),
                b.log.leader_epoch(),
                b.log.log_end_offset(),
                ReplicaKey(&b.replica),
                b.known
            );
        }
        s
    }
}

/// What of a `Replica` makes a state's identity: its role (the whole `Leader` when it leads),
/// its high watermark and its durable end. The rest of its private state is fixed by these
/// and the log between two actions, or never read here: its log end is the log's, the largest
/// high watermark its leadership exposed is the one it exposes (which never falls), its queues
/// of produce requests and of a fetch answer being applied are empty (acks=1 and a fetch are
/// carried out within one action), nothing here asks it for consumer fetches, and its clock is
/// only checked never to go back. (Its high watermark at takeover, which only decides whether
/// `check_invariants` compares the high watermark with the leader's counted end, is left out.)
struct ReplicaKey<'a>(&'a Replica);

impl fmt::Debug for ReplicaKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(
            f,
            "{:?} {:?} {} {}",
            r.following(),
            r.leader(),
            r.hw(),
            r.durable_end()
        )
    }
}

impl Hash for ReplicaKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        use std::fmt::Write;
        let r = self.0;
        (r.following(), r.hw(), r.durable_end()).hash(h);
        if let Some(l) = r.leader() {
            let _ = write!(HashWriter(h), "{l:?}");
        }
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
            self.lost_unsynced,
        )
            .hash(h);
        (
            self.incomplete.is_some(),
            self.hw_fell.is_some(),
            self.fork.is_some() || self.fault.is_some(),
        )
            .hash(h);
        for b in &self.brokers {
            (
                b.alive,
                b.incarnation,
                b.synced,
                b.fsync_upto,
                b.store.len(),
            )
                .hash(h);
            for x in &b.store {
                (x.epoch, x.id).hash(h);
            }
            (b.log.epochs(), b.log.leader_epoch(), b.log.log_end_offset()).hash(h);
            ReplicaKey(&b.replica).hash(h);
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

/// How broker `b`'s replica sees its role, for a summary.
fn role(b: &Broker) -> String {
    let r = &b.replica;
    if let Some(l) = r.leader() {
        return format!(
            "leader(epoch {} isr {:?} maximal {:?} hw {} durable {})",
            l.leader_epoch(),
            l.isr(),
            l.maximal_isr(),
            r.hw(),
            r.durable_end()
        );
    }
    match r.following() {
        Some((leader, epoch)) => format!(
            "follower(of b{leader} epoch {epoch} hw {} durable {})",
            r.hw(),
            r.durable_end()
        ),
        None => format!("idle(hw {})", r.hw()),
    }
}

/// One line per broker plus the controller's view.
pub fn summary(s: &State) -> String {
    let mut out = String::new();
    for b in &s.brokers {
        out.push_str(&format!(
            "\n    b{}: {} inc={} {} log(epoch,id)={:?} synced={} fsync_upto={} epochs={:?}",
            b.id,
            if b.alive { "up" } else { "DOWN" },
            b.incarnation,
            role(b),
            b.store.iter().map(|x| (x.epoch, x.id)).collect::<Vec<_>>(),
            b.synced,
            b.fsync_upto,
            b.log.epochs(),
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
