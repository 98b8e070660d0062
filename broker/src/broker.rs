//! The broker's shared state: the metadata catalog (applied from the metadata quorum), the
//! partitions this broker holds replicas of (`crate::partition`), retention, the controller's
//! broker-liveness loop, and clean shutdown.
//!
//! Invariants: the catalog changes only by applying records the quorum committed, in commit
//! order, so every broker sees the same metadata history; a partition is open here exactly while
//! its topic exists and this broker is one of its replicas; requests that need the partition
//! leader are served only while the catalog names this broker leader; each partition's
//! replica (`crate::partition`) takes its role from the catalog, in commit order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use kafka_protocol::ResponseError as E;
use skein_core::catalog::{
    Catalog, CatalogError, CatalogSnapshot, MetadataRecord, PartitionState, Placement,
};
use skein_core::controller::{Controller, RoundInput};
use skein_core::reconcile::{self, Action, PartitionKey};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::config::Settings;
use crate::limits;
use crate::partition::{new_partition, Data, Partition, PartitionEnv};
use crate::peer::Outbox;
use crate::quorum::{PeerMsg, Quorum, QuorumConfig, QuorumError, StateMachine};
use crate::reconciler::Reconciler;
use crate::replica::replication_config;
use skein_core::replica::{FlushPolicy, Input, ReplicaConfig};
use skein_storage::partition::{sync_dir, PartitionStore};
use skein_sys as sys;
use skein_sys::fs::{self, File, OpenOptions};

const METADATA_LOG: &str = "__metadata.log";
const RAFT_DIR: &str = "__raft";
const CLEAN_MARKER: &str = ".clean-shutdown";
const META_PROPERTIES: &str = "meta.properties";

/// Why a metadata change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Refused by the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The metadata quorum did not commit it.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

impl CreateError {
    /// The Kafka error code for this failure.
    pub fn code(&self) -> E {
        match self {
            CreateError::Catalog(c) => skein_proto::errors::catalog_error(c),
            CreateError::Quorum(q) => quorum_error(q),
        }
    }
}

/// The Kafka error code for a proposal the quorum did not commit: retriable either way.
pub fn quorum_error(e: &QuorumError) -> E {
    match e {
        QuorumError::NoLeader | QuorumError::NotCommitted(_) => E::NotController,
        QuorumError::Timeout | QuorumError::Stopped => E::RequestTimedOut,
    }
}

/// The producer ids this broker hands out: `[next, end)` of its current block.
#[derive(Default)]
struct ProducerIds {
    next: i64,
    end: i64,
}

/// The broker.
pub struct Broker {
    /// Settings.
    pub settings: Settings,
    /// This process's incarnation (registered with the quorum).
    pub incarnation: String,
    /// Cluster id of meta.properties (the committed one wins once known).
    local_cluster_id: String,
    clean_start: bool,
    catalog: Mutex<Catalog>,
    partitions: RwLock<BTreeMap<(String, i32), Arc<Partition>>>,
    /// Partition openings and removals waiting for (or running on) the reconciler task.
    reconciler: Reconciler,
    quorum: OnceLock<Quorum>,
    outbox: OnceLock<Outbox<PeerMsg>>,
    controller: Mutex<Controller>,
    /// Origin of the monotonic clock the controller runs on.
    started: tokio::time::Instant,
    producer_ids: tokio::sync::Mutex<ProducerIds>,
    /// Bumped after every append; long-polling fetches wait on it.
    pub appended: Arc<watch::Sender<u64>>,
    /// Flipped on shutdown.
    pub shutting_down: watch::Sender<bool>,
    /// Leaders a replica fetcher runs for.
    fetchers: Mutex<BTreeSet<i32>>,
    /// Asks the fetcher manager to start a fetcher for a leader.
    fetcher_tx: mpsc::UnboundedSender<i32>,
    fetcher_rx: Mutex<Option<mpsc::UnboundedReceiver<i32>>>,
    /// Set once controlled shutdown begins: heartbeats stop.
    stopping: AtomicBool,
    /// The group coordinator (shards of the `__consumer_offsets` partitions led here).
    pub groups: crate::group_runtime::Coordinator,
}

/// The broker as the quorum's state machine.
struct Machine(Arc<Broker>);

impl StateMachine for Machine {
    fn apply(&mut self, index: u64, data: &[u8]) {
        match serde_json::from_slice::<MetadataRecord>(data) {
            Ok(rec) => self.0.apply_record(&rec),
            // Every node skips the same entry, so they still agree.
            Err(e) => error!(index, error = %e, "skipping a metadata record that does not parse"),
        }
    }

    fn restore(&mut self, data: &[u8]) {
        match serde_json::from_slice::<CatalogSnapshot>(data) {
            Ok(snap) => self.0.restore_catalog(&snap),
            Err(e) => error!(error = %e, "metadata snapshot does not parse; keeping the old state"),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = self.0.with_catalog(Catalog::snapshot);
        serde_json::to_vec(&snap).expect("snapshots serialize")
    }
}

impl Broker {
    /// Opens the data directory, joins the metadata quorum, waits until this broker's metadata
    /// is current (recovering every partition it holds on the way) and registers the broker.
    pub async fn start(settings: Settings) -> anyhow::Result<Arc<Broker>> {
        let (broker, starting) = Broker::launch(settings)?;
        let started = match starting.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("start-up task failed: {e}")),
        };
        if started.is_err() {
            // Stop what this attempt spawned (the controller listener above all), so that a
            // supervisor's next attempt in this process can bind it again.
            broker.shutting_down.send_replace(true);
        }
        started.map(|()| broker)
    }

    /// Begins [`Broker::start`] and returns at once: the broker (its quorum not yet joined,
    /// its partitions not yet open) and the start-up task, which ends when `start` would.
    /// Whoever drops the task's result on an error must stop the broker (`shutting_down`).
    #[allow(clippy::type_complexity)]
    pub fn launch(
        settings: Settings,
    ) -> anyhow::Result<(Arc<Broker>, tokio::task::JoinHandle<anyhow::Result<()>>)> {
        let dir = settings.data_dir.clone();
        fs::create_dir_all(&dir).with_context(|| format!("creating data dir {}", dir.display()))?;
        // A data dir created just now must itself survive a crash, or everything in it is lost.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent);
        }
        let local_cluster_id = load_or_create_properties(&dir, settings.node_id)?;
        let clean = fs::metadata(dir.join(CLEAN_MARKER)).is_ok();
        let bootstrap = legacy_bootstrap(&settings, &local_cluster_id)?;
        let incarnation = sys::uuid().simple().to_string();
        let (fetcher_tx, fetcher_rx) = mpsc::unbounded_channel();
        let broker = Arc::new(Broker {
            fetchers: Mutex::new(BTreeSet::new()),
            fetcher_tx,
            fetcher_rx: Mutex::new(Some(fetcher_rx)),
            stopping: AtomicBool::new(false),
            groups: crate::group_runtime::Coordinator::new(&settings),
            catalog: Mutex::new(Catalog::new(settings.log_defaults.clone())),
            controller: Mutex::new(
                Controller::new(settings.broker_session_timeout_ms)
                    .with_rebalance_every(settings.leader_imbalance_check_ms),
            ),
            started: tokio::time::Instant::now(),
            settings,
            incarnation,
            local_cluster_id,
            clean_start: clean,
            partitions: RwLock::new(BTreeMap::new()),
            reconciler: Reconciler::default(),
            quorum: OnceLock::new(),
            outbox: OnceLock::new(),
            producer_ids: tokio::sync::Mutex::new(ProducerIds::default()),
            appended: Arc::new(watch::channel(0).0),
            shutting_down: watch::channel(false).0,
        });
        tokio::spawn(crate::reconciler::run(
            broker.clone(),
            broker.shutting_down.subscribe(),
        ));
        let starting = tokio::spawn(broker.clone().start_inner(bootstrap));
        Ok((broker, starting))
    }

    async fn start_inner(self: Arc<Self>, bootstrap: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let broker = self;
        let dir = broker.settings.data_dir.clone();
        let clean = broker.clean_start;
        broker.join_quorum(bootstrap).await?;
        let migrated = !broker.legacy_log_gone();
        if migrated {
            let from = dir.join(METADATA_LOG);
            let to = dir.join(format!("{METADATA_LOG}.migrated"));
            fs::rename(&from, &to).with_context(|| format!("renaming {}", from.display()))?;
            sync_dir(&dir);
        }
        let quorum = broker.quorum();
        let mut waited = 0u64;
        while !quorum.caught_up(limits::QUORUM_WAIT_LOG_EVERY).await || quorum.is_stopped() {
            if quorum.is_stopped() {
                bail!("the metadata quorum stopped during start-up (see the error above)");
            }
            waited += limits::QUORUM_WAIT_LOG_EVERY.as_secs();
            let s = quorum.status();
            warn!(
                waited_s = waited,
                leader = ?s.leader,
                term = s.term,
                "waiting for the metadata quorum to elect a leader and catch this broker up"
            );
        }
        // The quorum's driver kept voting and committing while the partitions this broker
        // holds were opened (and recovered) on the reconciler task; wait for them before
        // registering, so a broker serves its partitions as soon as it is unfenced.
        if !broker.reconciler.idle() {
            info!("recovering partitions");
        }
        broker.reconciler.settled(None).await;
        broker.register().await?;
        crate::dirs::remove_orphans(&dir, &broker.partitions.read().expect("partitions lock"));
        // Only now is every partition recovered: from here on a crash is unclean again.
        let _ = fs::remove_file(dir.join(CLEAN_MARKER));
        sync_dir(&dir);
        info!(
            data_dir = %dir.display(),
            topics = broker.with_catalog(|c| c.topics().count()),
            partitions = broker.partitions.read().expect("partitions lock").len(),
            clean,
            "data directory loaded"
        );
        Ok(())
    }

    fn legacy_log_gone(&self) -> bool {
        fs::metadata(self.settings.data_dir.join(METADATA_LOG)).is_err()
    }

    /// Starts the quorum driver (and, with other voters, the controller listener).
    async fn join_quorum(self: &Arc<Self>, bootstrap: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let s = &self.settings;
        let me = s.node_id as u64;
        let voters: BTreeMap<u64, String> = if s.voters.is_empty() {
            BTreeMap::from([(me, String::new())])
        } else {
            s.voters
                .iter()
                .map(|(id, a)| (*id as u64, a.clone()))
                .collect()
        };
        let stop = self.shutting_down.subscribe();
        let tag = cluster_tag(&voters);
        let peers: BTreeMap<u64, String> = voters
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(i, a)| (*i, a.clone()))
            .collect();
        let outbox = Outbox::new(me, tag.clone(), peers, stop.clone());
        let (qtx, qrx) = mpsc::channel(limits::QUORUM_INBOX_MAX);
        if let Some(addr) = s.controller_listen {
            let listener = sys::net::Listener::bind(addr)
                .await
                .with_context(|| format!("listening for controllers on {addr}"))?;
            let (ptx, prx) = mpsc::channel(limits::QUORUM_INBOX_MAX);
            tokio::spawn(crate::peer::serve(listener, tag, ptx, stop.clone()));
            tokio::spawn(route_peer_messages(self.clone(), prx, qtx));
            info!(%addr, voters = ?s.voters, "controller listener up");
        }
        let cfg = QuorumConfig {
            node_id: me,
            voters,
            dir: s.data_dir.join(RAFT_DIR),
            bootstrap,
            snapshot_every: s.metadata_snapshot_entries,
            rng_seed: u64::from_le_bytes(sys::uuid().as_bytes()[..8].try_into().expect("8 bytes")),
        };
        let quorum = if cfg.voters.contains_key(&me) {
            Quorum::start(cfg, Machine(self.clone()), outbox.clone(), qrx, stop)
                .context("starting the metadata quorum")?
        } else {
            let addr = s
                .controller_listen
                .expect("observers have a controller listener");
            // Listening on every interface: the voters answer at the advertised host.
            let addr = if addr.ip().is_unspecified() {
                format!("{}:{}", s.advertise_host, addr.port())
            } else {
                addr.to_string()
            };
            info!(voters = ?s.voters, "not a voter: observing the metadata quorum");
            crate::observer::start(
                crate::observer::ObserverConfig {
                    node_id: me,
                    voters: cfg.voters.keys().copied().collect(),
                    addr,
                },
                Machine(self.clone()),
                outbox.clone(),
                qrx,
                stop,
            )
        };
        let _ = self.quorum.set(quorum);
        let _ = self.outbox.set(outbox);
        Ok(())
    }

    /// The metadata quorum.
    pub fn quorum(&self) -> &Quorum {
        self.quorum.get().expect("quorum started")
    }

    /// This incarnation's registration record.
    fn registration(&self) -> MetadataRecord {
        MetadataRecord::BrokerRegistered {
            id: self.settings.node_id,
            incarnation: self.incarnation.clone(),
            host: self.settings.advertise_host.clone(),
            port: self.settings.advertise_port,
            rack: self.settings.rack.clone(),
        }
    }

    /// Proposes this broker's registration once; true if it committed.
    async fn register_once(&self) -> bool {
        match self.propose(&self.registration()).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "registering with the metadata quorum failed");
                false
            }
        }
    }

    /// Proposes this broker's registration until it is committed.
    async fn register(&self) -> anyhow::Result<()> {
        while !self.register_once().await {
            if self.quorum().is_stopped() {
                bail!("the metadata quorum stopped before this broker could register");
            }
            tokio::time::sleep(limits::REGISTER_RETRY).await;
        }
        info!(
            node_id = self.settings.node_id,
            incarnation = %self.incarnation,
            "broker registered"
        );
        Ok(())
    }

    /// The cluster id: the committed one, else this data dir's.
    pub fn cluster_id(&self) -> String {
        self.with_catalog(|c| c.cluster_id().map(str::to_string))
            .unwrap_or_else(|| self.local_cluster_id.clone())
    }

    /// Reads the catalog under its lock.
    pub fn with_catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.catalog.lock().expect("catalog lock"))
    }

    /// Commits a record through the quorum; returns once it is applied here.
    pub async fn propose(&self, rec: &MetadataRecord) -> Result<(), QuorumError> {
        let data = serde_json::to_vec(rec).expect("records serialize");
        self.quorum().propose(data).await.map(|_| ())
    }

    /// Applies a committed record and carries it out on this broker's partitions.
    fn apply_record(&self, rec: &MetadataRecord) {
        let mut cat = self.catalog.lock().expect("catalog lock");
        let unclean = cat.unclean_elections();
        let refused = reconcile::refused_isr_change(&cat, rec);
        cat.apply(rec);
        if cat.unclean_elections() > unclean {
            warn!(
                unclean_elections = cat.unclean_elections(),
                "unclean leader election: an out-of-sync replica now leads; acknowledged records may be lost"
            );
        }
        match rec {
            MetadataRecord::TopicCreated { name, .. }
            | MetadataRecord::PartitionsAdded { name, .. }
            | MetadataRecord::TopicDeleted { name } => self.reconcile(&cat, Some(name)),
            MetadataRecord::BrokerRegistered { .. }
            | MetadataRecord::BrokerFenced { .. }
            | MetadataRecord::BrokerUnfenced { .. } => self.reconcile(&cat, None),
            MetadataRecord::ConfigAltered { name, .. } => {
                if let Some(cfg) = cat.log_config(name) {
                    let min = cfg.min_insync_replicas as usize;
                    for p in self.topic_partitions(name) {
                        p.store
                            .lock()
                            .expect("partition lock")
                            .set_config(cfg.clone());
                        let state = cat
                            .topic(name)
                            .and_then(|t| t.parts.get(usize::try_from(p.index).ok()?).cloned());
                        if let Some(state) = state {
                            // The same state with the new min.insync.replicas.
                            p.set_role(&state, min, &cat.fenced_replicas(&state));
                        }
                    }
                }
            }
            MetadataRecord::IsrChanged {
                topic, partition, ..
            } => {
                self.reconcile(&cat, Some(topic));
                // The catalog refused it: the proposing leader (if here) may plan again.
                if let (Some(prop), Some(p)) = (refused, self.partition(topic, *partition)) {
                    p.drive(Input::IsrRejected(prop), Data::None);
                }
            }
            MetadataRecord::LeaderMoved { topic, .. } => self.reconcile(&cat, Some(topic)),
            MetadataRecord::ClusterId { .. }
            | MetadataRecord::ProducerIdBlock { .. }
            | MetadataRecord::ProducerIdsAllocated { .. } => {}
        }
    }

    /// Replaces the catalog with a snapshot's and reconciles every partition.
    fn restore_catalog(&self, snap: &CatalogSnapshot) {
        let mut cat = self.catalog.lock().expect("catalog lock");
        *cat = Catalog::from_snapshot(self.settings.log_defaults.clone(), snap);
        self.reconcile(&cat, None);
    }

    /// Brings this broker's partitions in line with `catalog` (one topic or all), as
    /// skein-core's reconciliation plans it: role changes of open partitions at once; openings
    /// (which may recover a large log) and removals queued for the reconciler task, so the
    /// quorum's driver and the catalog lock are never held up by partition I/O.
    fn reconcile(&self, catalog: &Catalog, topic: Option<&str>) {
        let me = self.settings.node_id;
        let mut held: BTreeMap<PartitionKey, [u8; 16]> = self
            .partitions
            .read()
            .expect("partitions lock")
            .iter()
            .map(|(k, p)| (k.clone(), p.topic_id))
            .collect();
        held.extend(self.reconciler.opening());
        for action in reconcile::plan(catalog, me, &held, topic) {
            match action {
                Action::Remove { key } => {
                    let removed = self
                        .partitions
                        .write()
                        .expect("partitions lock")
                        .remove(&key);
                    if removed.is_some() && key.0 == crate::group_runtime::OFFSETS_TOPIC {
                        self.groups.role_changed(self, key.1, None);
                    }
                    self.reconciler.remove(key);
                }
                Action::Open {
                    key,
                    topic_id,
                    config,
                } => self.reconciler.open(key, topic_id, config),
                Action::Role {
                    key,
                    state,
                    min_insync,
                    fenced,
                } => {
                    if let Some(p) = self.partition(&key.0, key.1) {
                        self.set_role(&p, &state, min_insync, &fenced);
                    }
                }
            }
        }
    }

    /// What every partition of this broker shares: the replica settings, the signal to wake
    /// readers with, the clock.
    fn partition_env(&self) -> PartitionEnv {
        let flush = if self.settings.interval_flush() {
            FlushPolicy::Interval
        } else {
            FlushPolicy::FsyncBeforeAck
        };
        PartitionEnv {
            replica: ReplicaConfig {
                me: self.settings.node_id,
                replication: replication_config(self.settings.replica_lag_time_max_ms, 1),
                flush,
            },
            wake: self.appended.clone(),
            started: self.started,
        }
    }

    /// Whether partitions this broker holds are still being opened (recovered after a crash).
    pub fn recovering(&self) -> bool {
        !self.reconciler.idle()
    }

    /// Moves a partition to the role `state` gives this broker: leader (a new leadership at a
    /// new epoch, or the same one seeing a new ISR), follower of the leader at its epoch
    /// (starting a fetcher for that leader), or idle while the partition has no leader.
    pub(crate) fn set_role(
        &self,
        p: &Arc<Partition>,
        state: &PartitionState,
        min_insync: u32,
        fenced: &[i32],
    ) {
        let was = p.replica().following();
        let fx = p.set_role(state, min_insync as usize, fenced);
        if let Some(e) = fx.storage_error {
            error!(topic = %p.topic, partition = p.index, error = %e, "carrying out a role change failed");
        }
        let (leading, following) = {
            let r = p.replica();
            (r.leader_epoch(), r.following())
        };
        if leading.is_some() {
            info!(topic = %p.topic, partition = p.index, epoch = state.leader_epoch,
                hw = p.replica().hw(), isr = ?state.isr, "leading partition");
        }
        crate::group_runtime::note_role(self, &p.topic, p.index, leading);
        if let Some((leader, _)) = following.filter(|f| Some(*f) != was) {
            debug!(topic = %p.topic, partition = p.index, leader,
                epoch = state.leader_epoch, "following partition");
            self.ensure_fetcher(leader);
        }
    }

    /// Makes sure a replica fetcher runs for `leader`.
    fn ensure_fetcher(&self, leader: i32) {
        if self.fetchers.lock().expect("fetchers lock").insert(leader) {
            let _ = self.fetcher_tx.send(leader);
        }
    }

    /// Controlled shutdown: stops heartbeating and asks the quorum to fence this broker, so
    /// its partitions elect other leaders before it stops; waits for that up to `timeout`.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::Release);
        let me = self.settings.node_id;
        let leads = self.with_catalog(|c| {
            c.topics()
                .flat_map(|t| t.parts.iter())
                .any(|p| p.leader == me && p.replicas.len() > 1)
        });
        if !leads {
            return;
        }
        info!("controlled shutdown: moving partition leadership to other replicas");
        let rec = MetadataRecord::BrokerFenced {
            id: me,
            incarnation: self.incarnation.clone(),
        };
        match tokio::time::timeout(timeout, self.propose(&rec)).await {
            Ok(Ok(())) => {
                // As quorum leader, stay for a couple of Raft heartbeats so the others learn
                // the change is committed; otherwise they only apply it after electing a new
                // quorum leader.
                if self.quorum().status().role == skein_core::raft::Role::Leader {
                    tokio::time::sleep(limits::SHUTDOWN_LINGER).await;
                }
                info!("controlled shutdown: leadership moved")
            }
            Ok(Err(e)) => warn!(error = %e, "controlled shutdown could not move leadership"),
            Err(_) => warn!("controlled shutdown timed out moving leadership"),
        }
    }

    /// Validates and commits a topic creation; `Ok` once it is applied here.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        placement: Placement,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), CreateError> {
        let id = *sys::uuid().as_bytes();
        let rec =
            self.with_catalog(|c| c.plan_create(name, partitions, &placement, configs, id))?;
        if validate_only {
            return Ok(());
        }
        self.propose(&rec).await?;
        // Applied here; this broker's replicas of it open on the reconciler task.
        self.reconciler.settled(Some(name)).await;
        // Another broker's create of the same name may have committed first.
        let ours = self.with_catalog(|c| c.topic(name).is_some_and(|t| t.id == id));
        if !ours {
            return Err(CatalogError::TopicExists(name.into()).into());
        }
        Ok(())
    }

    /// Validates and commits any other planned change.
    pub async fn commit(
        &self,
        plan: impl FnOnce(&Catalog) -> Result<MetadataRecord, CatalogError>,
    ) -> Result<(), CreateError> {
        let rec = self.with_catalog(plan)?;
        self.propose(&rec).await?;
        Ok(())
    }

    /// Spread placement with a fresh random rotation.
    pub fn spread(&self, replication_factor: i16) -> Placement {
        Placement::Spread {
            replication_factor,
            start: u32::from_le_bytes(sys::uuid().as_bytes()[..4].try_into().expect("4 bytes")),
        }
    }

    /// Creates a topic with default settings if auto-creation is on; true if it exists afterwards.
    pub async fn auto_create(&self, name: &str) -> bool {
        if self.with_catalog(|c| c.topic(name).is_some()) {
            return true;
        }
        if !self.settings.auto_create_topics {
            return false;
        }
        let placement = self.spread(self.settings.default_replication_factor);
        match self
            .create_topic(name, self.settings.num_partitions, placement, &[], false)
            .await
        {
            Ok(()) => {
                info!(topic = name, "auto-created topic");
                true
            }
            Err(CreateError::Catalog(CatalogError::TopicExists(_))) => true,
            Err(e) => {
                warn!(topic = name, error = %e, "auto-create failed");
                false
            }
        }
    }

    /// Hands out a fresh producer id (committing a new block for this broker when needed).
    pub async fn next_producer_id(&self) -> Result<i64, QuorumError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.next >= ids.end {
            let me = self.settings.node_id;
            self.propose(&MetadataRecord::ProducerIdsAllocated { broker: me })
                .await?;
            let (start, end) = self
                .with_catalog(|c| c.producer_block(me))
                .expect("the block was just applied");
            *ids = ProducerIds { next: start, end };
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// The partition for a client request that must go to its leader: the error code when this
    /// broker does not lead it (or it does not exist).
    pub fn leader_partition(&self, topic: &str, index: i32) -> Result<(Arc<Partition>, i32), E> {
        let state = self.with_catalog(|c| {
            c.topic(topic)
                .map(|t| t.parts.get(usize::try_from(index).ok()?).cloned())
        });
        match state {
            None | Some(None) => Err(E::UnknownTopicOrPartition),
            Some(Some(p)) if p.leader < 0 => Err(E::LeaderNotAvailable),
            Some(Some(p)) if p.leader != self.settings.node_id => Err(E::NotLeaderOrFollower),
            Some(Some(p)) => match self.partition(topic, index) {
                Some(open) => Ok((open, p.leader_epoch)),
                // Leader by the catalog, but its log failed to open here.
                None => Err(E::KafkaStorageError),
            },
        }
    }

    /// One partition.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// All partitions of a topic, in index order.
    pub fn topic_partitions(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .range((topic.to_string(), 0)..=(topic.to_string(), i32::MAX))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Every open partition.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .cloned()
            .collect()
    }

    /// Runs retention and producer expiry on every partition.
    pub fn run_retention(&self) {
        let now = crate::clock::now_ms();
        for p in self.all_partitions() {
            let mut st = p.store.lock().expect("partition lock");
            if let Err(e) = st.retention(now) {
                error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
            st.expire_producers(now, self.settings.producer_id_expiration_ms);
        }
    }

    /// Interval flush policy: fsyncs partitions with unflushed messages past `flush.messages`,
    /// or all of them when `force` (the `flush.ms` tick).
    pub async fn run_interval_flush(&self, force: bool) {
        for p in self.all_partitions() {
            let (pending, end) = {
                let st = p.store.lock().expect("partition lock");
                (st.unflushed_messages(), st.log().log_end_offset())
            };
            let due = match self.settings.flush_messages {
                Some(n) => pending >= n,
                None => false,
            };
            if pending > 0 && (force || due) {
                if let Err(e) = p.wait_synced(end).await {
                    error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Clean shutdown: fsync and close every partition, then leave the clean-shutdown marker.
    pub fn close(&self) -> anyhow::Result<()> {
        let mut ok = true;
        for p in self.all_partitions() {
            if let Err(e) = p.store.lock().expect("partition lock").close() {
                error!(topic = %p.topic, partition = p.index, error = %e, "closing partition failed");
                ok = false;
            }
        }
        if ok && !self.reconciler.idle() {
            // A partition was still being opened (its recovery cut short): the next start
            // must recover every partition again.
            warn!("closing while partitions are still being opened: the next start recovers");
            ok = false;
        }
        if ok {
            let marker = self.settings.data_dir.join(CLEAN_MARKER);
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", marker.display()))?;
            sync_dir(&self.settings.data_dir);
        }
        Ok(())
    }

    /// Milliseconds on the monotonic clock since this broker started.
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A heartbeat reached this node's controller.
    fn heard(&self, broker: i32, incarnation: &str) {
        let mut ctl = self.controller.lock().expect("controller lock");
        // Read under the lock, so the controller's inputs come in time order.
        ctl.heartbeat(self.mono_ms(), broker, incarnation);
        #[cfg(debug_assertions)]
        ctl.check_invariants();
    }

    /// One round of the controller: while this node leads the quorum, commit the cluster id if
    /// none is yet, and fence or unfence brokers by their heartbeats.
    async fn control(&self) {
        let input = RoundInput {
            me: self.settings.node_id,
            incarnation: &self.incarnation,
            leading: self.quorum().status().role == skein_core::raft::Role::Leader,
            stopping: self.stopping.load(Ordering::Acquire),
            local_cluster_id: &self.local_cluster_id,
        };
        // Catalog before controller (the lock hierarchy in ARCHITECTURE.md).
        let round = self.with_catalog(|c| {
            let mut ctl = self.controller.lock().expect("controller lock");
            let now = self.mono_ms();
            let round = ctl.round(now, c, input);
            #[cfg(debug_assertions)]
            ctl.check_invariants();
            round
        });
        if round.register_again {
            warn!("the metadata names an earlier incarnation of this broker; registering again");
            self.register_once().await;
        }
        let recs = round.proposals;
        for rec in recs {
            match &rec {
                MetadataRecord::BrokerFenced { id, .. } => {
                    warn!(
                        broker = id,
                        "fencing a broker: no heartbeat within the session timeout"
                    )
                }
                MetadataRecord::BrokerUnfenced { id, .. } => {
                    info!(broker = id, "unfencing a broker: heartbeats resumed")
                }
                MetadataRecord::LeaderMoved {
                    topic,
                    partition,
                    leader,
                    ..
                } => {
                    info!(
                        topic,
                        partition, leader, "moving leadership back to the preferred replica"
                    )
                }
                _ => {}
            }
            if let Err(e) = self.propose(&rec).await {
                debug!(error = %e, "controller proposal not committed");
            }
        }
    }

    /// Sends this broker's heartbeat to the quorum leader.
    fn heartbeat(&self) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let me = self.settings.node_id;
        if let Some(leader) = self.quorum().status().leader {
            if leader != me as u64 {
                if let Some(out) = self.outbox.get() {
                    out.send(
                        leader,
                        PeerMsg::Heartbeat {
                            broker: me,
                            incarnation: self.incarnation.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Spawns the background tasks: retention, interval flushes, heartbeats and the controller.
    pub fn spawn_background(self: &Arc<Self>) {
        crate::group_runtime::spawn(self.clone());
        crate::cleaner::spawn(self);
        let every = |ms: u64| {
            let mut tick = tokio::time::interval(Duration::from_millis(ms.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        // Each task ends when the broker shuts down.
        let b = self.clone();
        let mut tick = every((b.settings.broker_heartbeat_interval_ms / 2).max(10));
        let mut stop = self.shutting_down.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tick.tick() => b.control().await,
                    _ = stop.changed() => return,
                }
            }
        });
        let b = self.clone();
        let mut tick = every(b.settings.broker_heartbeat_interval_ms);
        let mut stop = self.shutting_down.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tick.tick() => b.heartbeat(),
                    _ = stop.changed() => return,
                }
            }
        });
        let b = self.clone();
        let mut tick = every(b.settings.retention_check_ms);
        let mut stop = self.shutting_down.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let b2 = b.clone();
                        let _ = sys::blocking(move || b2.run_retention()).await;
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        // Replica fetchers: one per leader this broker follows, started on demand.
        let rx = self.fetcher_rx.lock().expect("fetcher lock").take();
        if let Some(mut rx) = rx {
            let b = self.clone();
            let mut stop = self.shutting_down.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        leader = rx.recv() => match leader {
                            Some(l) => { tokio::spawn(crate::replica::run_fetcher(b.clone(), l)); }
                            None => return,
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        let b = self.clone();
        let mut tick = every((b.settings.replica_lag_time_max_ms / 4).clamp(10, 500));
        let mut stop = self.shutting_down.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tick.tick() => crate::replica::tick_isr(&b).await,
                    _ = stop.changed() => return,
                }
            }
        });
        if let Some(ms) = self.settings.flush_ms {
            let b = self.clone();
            let mut tick = every(ms);
            let mut stop = self.shutting_down.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tick.tick() => b.run_interval_flush(true).await,
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }
}

impl crate::reconciler::ReconcileHost for Broker {
    fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }

    fn clean_start(&self) -> bool {
        self.clean_start
    }

    fn page_cache_window(&self) -> u64 {
        self.settings.page_cache_window_bytes
    }

    /// Serves a partition the reconciler opened, with the role the catalog gives it now; or
    /// drops it if the catalog no longer gives it to this broker under that topic id, or a
    /// later plan cancelled the opening.
    fn install_opened(&self, key: &PartitionKey, topic_id: [u8; 16], store: PartitionStore) {
        let catalog = self.catalog.lock().expect("catalog lock");
        let standing = self.reconciler.still_opening(key, topic_id);
        self.reconciler.finish_opening(key, topic_id);
        let me = self.settings.node_id;
        match reconcile::wanted(&catalog, me, key).filter(|w| w.topic_id == topic_id) {
            Some(w) if standing => {
                let p = new_partition(&key.0, key.1, topic_id, store, self.partition_env());
                self.partitions
                    .write()
                    .expect("partitions lock")
                    .insert(key.clone(), p.clone());
                self.set_role(&p, &w.state, w.min_insync, &w.fenced);
            }
            _ => warn!(topic = %key.0, partition = key.1,
                "partition opened after the catalog stopped giving it to this broker; not serving it"),
        }
    }
}

impl crate::cleaner::CleanerHost for Broker {
    fn cleaner_settings(&self) -> &crate::config::CleanerSettings {
        &self.settings.cleaner
    }

    fn partitions(&self) -> Vec<Arc<Partition>> {
        self.all_partitions()
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }
}

impl crate::replica::ReplicaHost for Broker {
    fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    fn partitions(&self) -> Vec<Arc<Partition>> {
        self.all_partitions()
    }

    fn broker_address(&self, id: i32) -> Option<String> {
        self.with_catalog(|c| {
            c.broker(id)
                .filter(|x| !x.fenced)
                .map(|x| format!("{}:{}", x.host, x.port))
        })
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    fn release_fetcher(&self, leader: i32, still_empty: impl FnOnce() -> bool) -> bool {
        let mut f = self.fetchers.lock().expect("fetchers lock");
        if still_empty() {
            f.remove(&leader);
            true
        } else {
            false
        }
    }

    async fn propose_record(&self, rec: MetadataRecord) -> Result<(), String> {
        self.propose(&rec).await.map_err(|e| e.to_string())
    }
}

impl crate::group_runtime::GroupHost for Broker {
    fn coordinator(&self) -> &crate::group_runtime::Coordinator {
        &self.groups
    }

    fn mono_ms(&self) -> u64 {
        Broker::mono_ms(self)
    }

    fn offsets_partition(&self, index: i32) -> Option<Arc<Partition>> {
        self.partition(crate::group_runtime::OFFSETS_TOPIC, index)
    }

    fn topic_counts(&self) -> BTreeMap<String, i32> {
        self.with_catalog(|c| {
            c.topics()
                .map(|t| (t.name.clone(), t.parts.len() as i32))
                .collect()
        })
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    fn appended(&self) {
        self.appended.send_modify(|n| *n += 1);
    }
}

/// Hands heartbeats to the controller and everything else to the quorum driver.
async fn route_peer_messages(
    b: Arc<Broker>,
    mut rx: mpsc::Receiver<(u64, PeerMsg)>,
    quorum: mpsc::Sender<(u64, PeerMsg)>,
) {
    while let Some((from, m)) = rx.recv().await {
        match m {
            PeerMsg::Heartbeat {
                broker,
                incarnation,
            } => b.heard(broker, &incarnation),
            other => {
                if quorum.send((from, other)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Peers refuse frames from another cluster: the tag is the voter set.
fn cluster_tag(voters: &BTreeMap<u64, String>) -> String {
    voters
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The records a single-node `__metadata.log` (from before the quorum) becomes: the first entries
/// of a fresh one-voter quorum, with every partition placed on this broker.
fn legacy_bootstrap(settings: &Settings, cluster_id: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let dir = &settings.data_dir;
    let legacy = dir.join(METADATA_LOG);
    if fs::metadata(&legacy).is_err() || fs::metadata(dir.join(RAFT_DIR)).is_ok() {
        return Ok(Vec::new());
    }
    if settings.voters.len() > 1 {
        bail!(
            "{} holds metadata from a single-node broker; start it once without --voters to \
             migrate it before joining a multi-voter quorum",
            legacy.display()
        );
    }
    let me = settings.node_id;
    let mut out = vec![MetadataRecord::ClusterId {
        id: cluster_id.to_string(),
    }];
    for rec in read_metadata_log(&legacy)? {
        out.push(match rec {
            MetadataRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
                assignments,
            } if assignments.is_empty() => MetadataRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
                assignments: vec![vec![me]; partitions as usize],
            },
            MetadataRecord::PartitionsAdded {
                name,
                total,
                assignments,
            } if assignments.is_empty() => MetadataRecord::PartitionsAdded {
                name,
                total,
                // Enough for any count it could have grown from.
                assignments: vec![vec![me]; total as usize],
            },
            other => other,
        });
    }
    info!(
        records = out.len() - 1,
        "migrating the single-node metadata log into the quorum"
    );
    Ok(out
        .iter()
        .map(|r| serde_json::to_vec(r).expect("records serialize"))
        .collect())
}

fn load_or_create_properties(dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = dir.join(META_PROPERTIES);
    if let Ok(text) = fs::read_to_string(&path) {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("cluster.id=") {
                return Ok(id.trim().to_string());
            }
        }
    }
    let id = base64_uuid(sys::uuid());
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir);
    Ok(id)
}

/// Kafka prints cluster ids as URL-safe base64 of the UUID, without padding.
fn base64_uuid(u: uuid::Uuid) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = u.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn read_metadata_log(path: &Path) -> anyhow::Result<Vec<MetadataRecord>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into()?) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into()?);
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    if pos < bytes.len() {
        warn!(path = %path.display(), valid = pos, len = bytes.len(), "torn metadata log tail; truncating");
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(pos as u64)?;
        f.sync_all()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerArgs;
    use crate::dirs::{stored_topic_id, PARTITION_METADATA};

    fn frame(rec: &MetadataRecord) -> Vec<u8> {
        let payload = serde_json::to_vec(rec).unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        f.extend_from_slice(&payload);
        f
    }

    /// Default single-node settings with the data in `dir`.
    fn settings_in(dir: &Path) -> Settings {
        BrokerArgs {
            data_dir: Some(dir.to_path_buf()),
            log_level: Some("warn".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_metadata_log_migrates_into_the_quorum() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(dir.path());
        // What a pre-quorum broker left behind: its cluster id and a metadata log whose records
        // carry no replica assignments.
        std::fs::write(
            dir.path().join(META_PROPERTIES),
            "version=1\ncluster.id=OldClusterId\nnode.id=1\n",
        )
        .unwrap();
        let legacy: Vec<u8> = [
            r#"{"type":"TopicCreated","name":"t","id":"0102030405060708090a0b0c0d0e0f10","partitions":1,"configs":{"retention.ms":"5000"}}"#,
            r#"{"type":"PartitionsAdded","name":"t","total":3}"#,
            r#"{"type":"ProducerIdBlock","start":0,"end":1000}"#,
        ]
        .iter()
        .flat_map(|j| frame(&serde_json::from_str(j).unwrap()))
        .collect();
        std::fs::write(dir.path().join(METADATA_LOG), legacy).unwrap();

        let b = Broker::start(settings.clone()).await.unwrap();
        assert_eq!(b.cluster_id(), "OldClusterId");
        b.with_catalog(|c| {
            let t = c.topic("t").expect("migrated topic");
            assert_eq!(t.id[0], 1);
            assert_eq!(t.partitions, 3);
            assert!(t
                .parts
                .iter()
                .all(|p| p.replicas == vec![1] && p.leader == 1));
            assert_eq!(c.log_config("t").unwrap().retention_ms, 5000);
        });
        assert_eq!(b.topic_partitions("t").len(), 3);
        // Producer ids continue above the old block.
        assert!(b.next_producer_id().await.unwrap() >= 1000);
        assert!(fs::metadata(dir.path().join(METADATA_LOG)).is_err());
        assert!(fs::metadata(dir.path().join(format!("{METADATA_LOG}.migrated"))).is_ok());
        b.shutting_down.send_replace(true);
        b.close().unwrap();
        drop(b);
        tokio::time::sleep(Duration::from_millis(50)).await;

        // The next start reads the quorum log alone.
        let b = Broker::start(settings).await.unwrap();
        assert_eq!(b.cluster_id(), "OldClusterId");
        assert_eq!(
            b.with_catalog(|c| c.topic("t").map(|t| t.partitions)),
            Some(3)
        );
        assert_eq!(b.topic_partitions("t").len(), 3);
        b.shutting_down.send_replace(true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_of_deleted_topics_are_swept_at_start() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash mid-delete leaves: a partition directory with every kind of file a
        // partition keeps (the leader-epoch checkpoint kept the old sweep from ever removing one).
        let orphan = dir.path().join("gone-0");
        std::fs::create_dir_all(&orphan).unwrap();
        for f in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
            "leader-epoch-checkpoint",
            PARTITION_METADATA,
        ] {
            std::fs::write(orphan.join(f), b"x").unwrap();
        }
        let foreign = dir.path().join("keep-0");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), b"not skein's").unwrap();
        let b = Broker::start(settings_in(dir.path())).await.unwrap();
        assert!(
            !orphan.exists(),
            "the deleted topic's directory is still there"
        );
        assert!(
            foreign.join("notes.txt").exists(),
            "a foreign file was removed"
        );
        b.shutting_down.send_replace(true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_of_an_earlier_topic_with_the_same_name_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(dir.path());
        // A directory left by an older "t" (another topic id) with a segment in it.
        let old = dir.path().join("t-0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(PARTITION_METADATA), "version: 0\ntopic_id: 0000\n").unwrap();
        std::fs::write(old.join("00000000000000000000.log"), b"").unwrap();
        std::fs::write(old.join("left-by-the-old-topic.tmp"), b"x").unwrap();
        let b = Broker::start(settings).await.unwrap();
        b.create_topic("t", 1, b.spread(1), &[], false)
            .await
            .unwrap();
        let id = b.with_catalog(|c| skein_core::catalog::id_to_hex(&c.topic("t").unwrap().id));
        assert_eq!(stored_topic_id(&old), Some(id));
        assert!(
            !old.join("left-by-the-old-topic.tmp").exists(),
            "the old directory was moved away, not reused"
        );
        b.shutting_down.send_replace(true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_registration_of_an_earlier_incarnation_is_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::start(settings_in(dir.path())).await.unwrap();
        let stale = MetadataRecord::BrokerRegistered {
            id: 1,
            incarnation: "an-earlier-process".into(),
            host: "h".into(),
            port: 1,
            rack: None,
        };
        b.propose(&stale).await.unwrap();
        b.control().await;
        let inc = b.with_catalog(|c| c.broker(1).map(|x| x.incarnation.clone()));
        assert_eq!(inc.as_deref(), Some(b.incarnation.as_str()));
        b.shutting_down.send_replace(true);
    }
}
