//! The cluster's metadata as a deterministic state machine over [`MetadataRecord`]s: the
//! cluster id, registered brokers and whether they are fenced, topics with each partition's
//! replicas, leader, ISR and epochs, topic configs, and producer-id blocks.
//!
//! Requests are validated against the current state into a record (`plan_*`); the shell makes
//! the record durable through the metadata quorum and every node then [`Catalog::apply`]s it.
//! Records may be planned against a state that is stale by the time they commit (proposed from
//! two brokers at once, or by a deposed controller), so `apply` never trusts the planner: it
//! re-checks what it must (first create of a name wins, fences name an incarnation) and is a
//! pure function of the state and the record. Replaying the same records in the same order
//! rebuilds the same catalog on every node.
//!
//! Invariants: topic names are valid and unique; every topic has at least one partition and its
//! count only grows; a partition's leader is -1 or a member of its ISR, the ISR is a non-empty
//! subset of its replicas, and the leader epoch grows with every leader change; producer-id
//! blocks never overlap.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{validate_topic_name, ConfigError, LogConfig, TopicConfig};

/// Producer ids reserved per metadata record.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// One durable change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id (the first one committed wins).
    ClusterId {
        /// Kafka-style base64 id.
        id: String,
    },
    /// A broker (re)joined; a new incarnation replaces the old one and starts unfenced.
    BrokerRegistered {
        /// Node id.
        id: i32,
        /// Fresh per process start.
        incarnation: String,
        /// Advertised host for Kafka clients.
        host: String,
        /// Advertised port.
        port: i32,
        /// Rack, carried for rack-aware placement later.
        #[serde(default)]
        rack: Option<String>,
    },
    /// The controller stopped hearing from this incarnation: it is fenced and loses leadership.
    BrokerFenced {
        /// Node id.
        id: i32,
        /// The incarnation fenced (a newer one is left alone).
        incarnation: String,
    },
    /// A fenced incarnation is heard from again.
    BrokerUnfenced {
        /// Node id.
        id: i32,
        /// The incarnation heard.
        incarnation: String,
    },
    /// A topic was created.
    TopicCreated {
        /// Name.
        name: String,
        /// Topic id (a UUID as 32 hex digits).
        id: String,
        /// Partition count.
        partitions: u32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Replicas of each partition, preferred leader first (empty in records written by a
        /// single-node broker before the quorum existed: no replicas known).
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// A topic grew to `total` partitions.
    PartitionsAdded {
        /// Name.
        name: String,
        /// New partition count.
        total: u32,
        /// Replicas of each new partition.
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// Name.
        name: String,
    },
    /// A topic's overrides were replaced.
    ConfigAltered {
        /// Name.
        name: String,
        /// The full new override set.
        configs: BTreeMap<String, String>,
    },
    /// Producer ids in `[start, end)` are reserved (for `broker`, when given); only raises the
    /// reserved frontier otherwise.
    ProducerIdBlock {
        /// First id.
        start: i64,
        /// One past the last id.
        end: i64,
        /// The broker holding the block.
        #[serde(default)]
        broker: Option<i32>,
    },
    /// `broker` asks for a fresh block of producer ids; where it starts is decided on apply.
    ProducerIdsAllocated {
        /// The asking broker.
        broker: i32,
    },
    /// A partition leader's ISR change (AlterPartition): applied only if the leader epoch and
    /// partition epoch it was planned against are still current.
    IsrChanged {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The proposing leader's epoch.
        leader_epoch: i32,
        /// The partition epoch the change was planned against.
        partition_epoch: i32,
        /// The new ISR.
        isr: Vec<i32>,
    },
    /// Leadership moves to `leader`, an in-sync live replica (preferred-leader election).
    LeaderMoved {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The partition epoch the move was planned against.
        partition_epoch: i32,
        /// The new leader.
        leader: i32,
    },
}

/// Why a metadata request was refused (each maps to one Kafka error code).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// INVALID_CONFIG.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// The registered incarnation.
    pub incarnation: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack.
    pub rack: Option<String>,
    /// Fenced: not heard from within the session timeout.
    pub fenced: bool,
}

/// One partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Eligible leader replicas (KIP-966): out of the ISR, but holding every committed record.
    pub elr: Vec<i32>,
    /// The leader, or -1.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of this state.
    pub partition_epoch: i32,
}

/// A topic as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Topic id, 16 bytes.
    pub id: [u8; 16],
    /// Partition count.
    pub partitions: u32,
    /// Overrides.
    pub config: TopicConfig,
    /// Replicas and leadership, one per partition.
    pub parts: Vec<PartitionState>,
}

/// How CreateTopics / CreatePartitions place replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Spread over the live brokers round-robin from `start` (a random rotation, so leaders of
    /// many topics do not all begin on the lowest id).
    Spread {
        /// Replicas per partition.
        replication_factor: i16,
        /// Rotation.
        start: u32,
    },
    /// Replicas given per (new) partition by the client.
    Manual(Vec<Vec<i32>>),
}

/// The cluster's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    defaults: LogConfig,
    cluster_id: Option<String>,
    brokers: BTreeMap<i32, BrokerInfo>,
    topics: BTreeMap<String, Topic>,
    producer_id_end: i64,
    producer_blocks: BTreeMap<i32, (i64, i64)>,
    unclean_elections: u64,
}

fn id_from_hex(s: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = s
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    id
}

/// Formats a topic id as 32 hex digits.
pub fn id_to_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// An empty catalog with these broker-wide log defaults.
    pub fn new(defaults: LogConfig) -> Self {
        Self {
            defaults,
            ..Self::default()
        }
    }

    /// The broker-wide log defaults.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// The cluster id, once one is committed.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Registered brokers by id, fenced ones included.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values()
    }

    /// One registered broker.
    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(&id)
    }

    /// Ids of the registered, unfenced brokers, ascending.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The replicas of `state` that may not join its ISR now (fenced, which a controlled
    /// shutdown also does, or not registered), in replica order: what its leader is told.
    pub fn fenced_replicas(&self, state: &PartitionState) -> Vec<i32> {
        let r = state.replicas.iter().copied();
        r.filter(|id| !self.is_live(*id)).collect()
    }

    /// Topics by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// One partition's state.
    pub fn partition(&self, name: &str, index: i32) -> Option<&PartitionState> {
        self.topics
            .get(name)?
            .parts
            .get(usize::try_from(index).ok()?)
    }

    /// The resolved log config of a topic.
    pub fn log_config(&self, name: &str) -> Option<LogConfig> {
        let t = self.topics.get(name)?;
        Some(
            t.config
                .resolve(&self.defaults)
                .expect("stored configs were validated"),
        )
    }

    /// The producer-id block last granted to `broker`.
    pub fn producer_block(&self, broker: i32) -> Option<(i64, i64)> {
        self.producer_blocks.get(&broker).copied()
    }

    /// Replicas for `count` partitions, the first of them numbered `first`.
    fn place(
        &self,
        first: u32,
        count: u32,
        how: &Placement,
    ) -> Result<Vec<Vec<i32>>, CatalogError> {
        match how {
            Placement::Spread {
                replication_factor,
                start,
            } => {
                let live = self.live_brokers();
                let rf = *replication_factor;
                if rf < 1 {
                    return Err(CatalogError::InvalidReplicationFactor(format!(
                        "replication factor must be at least 1, got {rf}"
                    )));
                }
                if rf as usize > live.len() {
                    return Err(CatalogError::InvalidReplicationFactor(format!(
                        "replication factor {rf} is larger than the {} available broker{}",
                        live.len(),
                        if live.len() == 1 { "" } else { "s" }
                    )));
                }
                let n = live.len();
                Ok((first..first + count)
                    .map(|p| {
                        let lead = (*start as usize + p as usize) % n;
                        (0..rf as usize).map(|j| live[(lead + j) % n]).collect()
                    })
                    .collect())
            }
            Placement::Manual(a) => {
                if a.len() != count as usize {
                    return Err(CatalogError::InvalidReplicaAssignment(format!(
                        "{} assignments given for {count} new partitions",
                        a.len()
                    )));
                }
                for (i, replicas) in a.iter().enumerate() {
                    let p = first as usize + i;
                    if replicas.is_empty() {
                        return Err(CatalogError::InvalidReplicaAssignment(format!(
                            "partition {p} has no replicas"
                        )));
                    }
                    if replicas.len() != a[0].len() {
                        return Err(CatalogError::InvalidReplicaAssignment(
                            "all partitions must have the same number of replicas".into(),
                        ));
                    }
                    let distinct: BTreeSet<_> = replicas.iter().collect();
                    if distinct.len() != replicas.len() {
                        return Err(CatalogError::InvalidReplicaAssignment(format!(
                            "partition {p} names a broker twice"
                        )));
                    }
                    if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                        return Err(CatalogError::InvalidReplicaAssignment(format!(
                            "partition {p} names broker {b}, which is not registered"
                        )));
                    }
                }
                Ok(a.clone())
            }
        }
    }

    /// Validates a CreateTopics entry; `id` is 16 random bytes from the driver.
    pub fn plan_create(
        &self,
        name: &str,
        partitions: i32,
        placement: &Placement,
        configs: &[(String, String)],
        id: [u8; 16],
    ) -> Result<MetadataRecord, CatalogError> {
        validate_topic_name(name).map_err(CatalogError::InvalidTopic)?;
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.into()));
        }
        if let Some(clash) = self
            .topics
            .keys()
            .find(|t| t.replace('.', "_") == name.replace('.', "_"))
        {
            return Err(CatalogError::InvalidTopic(format!(
                "topic '{name}' collides with existing topic '{clash}' ('.' and '_' are treated alike)"
            )));
        }
        if partitions < 1 || partitions as u32 > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}"
            )));
        }
        let assignments = self.place(0, partitions as u32, placement)?;
        let cfg = TopicConfig::new(
            configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &self.defaults,
        )?;
        Ok(MetadataRecord::TopicCreated {
            name: name.into(),
            id: id_to_hex(&id),
            partitions: partitions as u32,
            configs: cfg.overrides().clone(),
            assignments,
        })
    }

    /// Validates a DeleteTopics entry.
    pub fn plan_delete(&self, name: &str) -> Result<MetadataRecord, CatalogError> {
        if !self.topics.contains_key(name) {
            return Err(CatalogError::UnknownTopic(name.into()));
        }
        Ok(MetadataRecord::TopicDeleted { name: name.into() })
    }

    /// Validates a CreatePartitions entry; spread placement keeps the topic's replication factor.
    pub fn plan_partitions(
        &self,
        name: &str,
        total: i32,
        placement: &Placement,
    ) -> Result<MetadataRecord, CatalogError> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.into()))?;
        if total <= t.partitions as i32 {
            return Err(CatalogError::InvalidPartitions(format!(
                "topic currently has {} partitions, {total} would not be an increase",
                t.partitions
            )));
        }
        if total as u32 > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(format!(
                "number of partitions must be at most {PARTITIONS_MAX}"
            )));
        }
        let placement = match placement {
            Placement::Spread { start, .. } => Placement::Spread {
                replication_factor: t
                    .parts
                    .first()
                    .map_or(1, |p| p.replicas.len().max(1) as i16),
                start: *start,
            },
            m => m.clone(),
        };
        let assignments = self.place(t.partitions, total as u32 - t.partitions, &placement)?;
        Ok(MetadataRecord::PartitionsAdded {
            name: name.into(),
            total: total as u32,
            assignments,
        })
    }

    /// Validates a config change (`None` removes a key); `replace` drops all other overrides
    /// (legacy AlterConfigs) instead of merging (IncrementalAlterConfigs).
    pub fn plan_alter(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        replace: bool,
    ) -> Result<MetadataRecord, CatalogError> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.into()))?;
        let base = if replace {
            TopicConfig::default()
        } else {
            t.config.clone()
        };
        let next = base.alter(
            changes.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            &self.defaults,
        )?;
        Ok(MetadataRecord::ConfigAltered {
            name: name.into(),
            configs: next.overrides().clone(),
        })
    }

    /// Records that rebuild this catalog when applied in order to a fresh one with the same
    /// defaults: the metadata quorum's snapshot.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(id) = &self.cluster_id {
            out.push(MetadataRecord::ClusterId { id: id.clone() });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::BrokerRegistered {
                id: b.id,
                incarnation: b.incarnation.clone(),
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
            });
            if b.fenced {
                out.push(MetadataRecord::BrokerFenced {
                    id: b.id,
                    incarnation: b.incarnation.clone(),
                });
            }
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::TopicCreated {
                name: t.name.clone(),
                id: id_to_hex(&t.id),
                partitions: t.partitions,
                configs: t.config.overrides().clone(),
                assignments: t.parts.iter().map(|p| p.replicas.clone()).collect(),
            });
        }
        for (b, (start, end)) in &self.producer_blocks {
            out.push(MetadataRecord::ProducerIdBlock {
                start: *start,
                end: *end,
                broker: Some(*b),
            });
        }
        if self.producer_id_end > 0 {
            // Only the reserved frontier matters: ids below it may have been handed out.
            out.push(MetadataRecord::ProducerIdBlock {
                start: self.producer_id_end,
                end: self.producer_id_end,
                broker: None,
            });
        }
        out
    }

    /// Partition states rebuilt from a snapshot's assignments lose their ISR and epochs; the
    /// snapshot carries them in this form instead.
    pub fn snapshot(&self) -> CatalogSnapshot {
        CatalogSnapshot {
            records: self.to_records(),
            partitions: self
                .topics
                .values()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.parts.iter().map(PartitionSnapshot::of).collect(),
                    )
                })
                .collect(),
            unclean_elections: self.unclean_elections,
        }
    }

    /// Rebuilds a catalog from [`Catalog::snapshot`] with these defaults.
    pub fn from_snapshot(defaults: LogConfig, snap: &CatalogSnapshot) -> Catalog {
        let mut c = Catalog::new(defaults);
        for r in &snap.records {
            c.apply(r);
        }
        for (name, parts) in &snap.partitions {
            if let Some(t) = c.topics.get_mut(name) {
                for (p, s) in t.parts.iter_mut().zip(parts) {
                    p.isr = s.isr.clone();
                    p.elr = s.elr.clone();
                    p.leader = s.leader;
                    p.leader_epoch = s.leader_epoch;
                    p.partition_epoch = s.partition_epoch;
                }
            }
        }
        c.unclean_elections = snap.unclean_elections;
        c
    }

    /// A new partition: every live replica is in sync (all logs are empty) and the first leads;
    /// with none live, all replicas form the ISR so whichever returns first leads.
    fn new_partition(&self, replicas: Vec<i32>) -> PartitionState {
        let live: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| self.is_live(*r))
            .collect();
        let leader = live.first().copied().unwrap_or(-1);
        let isr = if live.is_empty() {
            replicas.clone()
        } else {
            live
        };
        PartitionState {
            replicas,
            isr,
            elr: Vec::new(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// Elects a leader for a partition that has none, among `live` brokers: the first live ISR
    /// member in replica order; else the first live eligible leader replica, which becomes the
    /// ISR (the old members, which hold every committed record too, become eligible); else,
    /// when the topic allows it, any live replica (unclean: records may be lost). Returns
    /// whether the election was unclean.
    fn elect(p: &mut PartitionState, live: &BTreeSet<i32>, unclean_allowed: bool) -> bool {
        debug_assert!(p.leader < 0);
        let pick = |set: &[i32]| {
            p.replicas
                .iter()
                .copied()
                .find(|r| set.contains(r) && live.contains(r))
        };
        if let Some(l) = pick(&p.isr) {
            p.leader = l;
        } else if let Some(l) = pick(&p.elr) {
            let old = std::mem::replace(&mut p.isr, vec![l]);
            p.elr.retain(|r| *r != l);
            for r in old {
                if !p.elr.contains(&r) {
                    p.elr.push(r);
                }
            }
            p.elr.sort_unstable();
            p.leader = l;
        } else if unclean_allowed {
            let Some(l) = pick(&p.replicas) else {
                return false;
            };
            p.isr = vec![l];
            p.elr.clear();
            p.leader = l;
            p.leader_epoch += 1;
            return true;
        } else {
            return false;
        }
        p.leader_epoch += 1;
        false
    }

    /// Replaces a partition's ISR, keeping the eligible leader replicas right (KIP-966): a
    /// member leaving while the ISR falls short of `min_isr` becomes eligible, since the high
    /// watermark stops advancing without `min_isr` in sync; an ISR at `min_isr` or more clears
    /// them.
    fn set_isr(p: &mut PartitionState, isr: Vec<i32>, min_isr: usize) {
        let removed: Vec<i32> = p.isr.iter().copied().filter(|r| !isr.contains(r)).collect();
        p.isr = isr;
        // As for the high watermark, a min.insync.replicas above the replica count means all.
        let min_isr = min_isr.min(p.replicas.len());
        if p.isr.len() >= min_isr {
            p.elr.clear();
        } else {
            for r in removed {
                if !p.elr.contains(&r) {
                    p.elr.push(r);
                }
            }
            p.elr.retain(|r| !p.isr.contains(r));
            p.elr.sort_unstable();
        }
    }

    /// A topic's (min.insync.replicas, unclean.leader.election.enable).
    fn topic_rules(&self, t: &Topic) -> (usize, bool) {
        let c = t.config.resolve(&self.defaults).unwrap_or_default();
        (c.min_insync_replicas as usize, c.unclean_leader_election)
    }

    /// [`Catalog::topic_rules`] of every topic, by name.
    fn all_topic_rules(&self) -> BTreeMap<String, (usize, bool)> {
        self.topics
            .values()
            .map(|t| (t.name.clone(), self.topic_rules(t)))
            .collect()
    }

    /// `id` is gone: it leaves every ISR it is not the last member of, and partitions it led
    /// elect a new leader (see `elect`).
    fn elect_without(&mut self, id: i32) {
        let live: BTreeSet<i32> = self.live_brokers().into_iter().collect();
        let rules = self.all_topic_rules();
        let mut unclean = 0;
        for t in self.topics.values_mut() {
            let (min_isr, allow) = rules[&t.name];
            for p in &mut t.parts {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&id) {
                    let isr = p.isr.iter().copied().filter(|r| *r != id).collect();
                    Self::set_isr(p, isr, min_isr);
                    changed = true;
                }
                if p.leader == id {
                    p.leader = -1;
                    unclean += u64::from(Self::elect(p, &live, allow));
                    if p.leader < 0 {
                        p.leader_epoch += 1;
                    }
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
        self.unclean_elections += unclean;
    }

    /// `id` is back: leaderless partitions elect (it is now among the live candidates).
    fn elect_with(&mut self, id: i32) {
        let live: BTreeSet<i32> = self.live_brokers().into_iter().collect();
        let rules = self.all_topic_rules();
        let mut unclean = 0;
        for t in self.topics.values_mut() {
            let (_, allow) = rules[&t.name];
            for p in &mut t.parts {
                if p.leader < 0 && p.replicas.contains(&id) {
                    unclean += u64::from(Self::elect(p, &live, allow));
                    if p.leader >= 0 {
                        p.partition_epoch += 1;
                    }
                }
            }
        }
        self.unclean_elections += unclean;
    }

    /// Elections that may have lost committed records (unclean.leader.election.enable).
    pub fn unclean_elections(&self) -> u64 {
        self.unclean_elections
    }

    /// Why an ISR change proposed by a leader would not apply, or `None` if it would.
    pub fn check_isr_change(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Option<&'static str> {
        let Some(p) = self.partition(topic, partition) else {
            return Some("unknown partition");
        };
        if leader_epoch != p.leader_epoch {
            return Some("fenced leader epoch");
        }
        if partition_epoch != p.partition_epoch {
            return Some("stale partition epoch");
        }
        if isr.is_empty() || !isr.contains(&p.leader) {
            return Some("the ISR must hold the leader");
        }
        if isr.iter().any(|r| !p.replicas.contains(r)) {
            return Some("the ISR must be replicas");
        }
        let distinct: BTreeSet<&i32> = isr.iter().collect();
        if distinct.len() != isr.len() {
            return Some("the ISR names a replica twice");
        }
        if isr.iter().any(|r| !p.isr.contains(r) && !self.is_live(*r)) {
            return Some("a fenced broker cannot join the ISR");
        }
        None
    }

    /// Applies a committed record.
    pub fn apply(&mut self, rec: &MetadataRecord) {
        match rec {
            MetadataRecord::ClusterId { id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(id.clone());
                }
            }
            MetadataRecord::BrokerRegistered {
                id,
                incarnation,
                host,
                port,
                rack,
            } => {
                // A new incarnation replaces a live old one: the old one is gone (it may have
                // crashed and lost unsynced writes), so its leaderships end first and any
                // leadership of the new one starts at a new epoch.
                if self
                    .brokers
                    .get(id)
                    .is_some_and(|b| !b.fenced && b.incarnation != *incarnation)
                {
                    if let Some(b) = self.brokers.get_mut(id) {
                        b.fenced = true;
                    }
                    self.elect_without(*id);
                }
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        id: *id,
                        incarnation: incarnation.clone(),
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                    },
                );
                self.elect_with(*id);
            }
            MetadataRecord::BrokerFenced { id, incarnation } => {
                let Some(b) = self.brokers.get_mut(id) else {
                    return;
                };
                if b.fenced || b.incarnation != *incarnation {
                    return;
                }
                b.fenced = true;
                self.elect_without(*id);
            }
            MetadataRecord::BrokerUnfenced { id, incarnation } => {
                let Some(b) = self.brokers.get_mut(id) else {
                    return;
                };
                if !b.fenced || b.incarnation != *incarnation {
                    return;
                }
                b.fenced = false;
                self.elect_with(*id);
            }
            MetadataRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
                assignments,
            } => {
                // First wins: two creates of one name can both commit when proposed from
                // different brokers; every node keeps the first, so they all agree.
                if self.topics.contains_key(name) {
                    return;
                }
                let config = TopicConfig::new(
                    configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    &self.defaults,
                )
                .unwrap_or_default();
                let parts = (0..*partitions as usize)
                    .map(|p| self.new_partition(assignments.get(p).cloned().unwrap_or_default()))
                    .collect();
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name: name.clone(),
                        id: id_from_hex(id),
                        partitions: *partitions,
                        config,
                        parts,
                    },
                );
            }
            MetadataRecord::PartitionsAdded {
                name,
                total,
                assignments,
            } => {
                let Some(have) = self.topics.get(name).map(|t| t.partitions) else {
                    return;
                };
                if *total <= have {
                    return;
                }
                // Assignments were planned for the partitions after the count seen then; a
                // concurrent grow that committed first shifts them, which is harmless.
                let first_assigned = (*total as usize).saturating_sub(assignments.len());
                let new: Vec<PartitionState> = (have as usize..*total as usize)
                    .map(|p| {
                        let replicas = p
                            .checked_sub(first_assigned)
                            .and_then(|i| assignments.get(i))
                            .cloned()
                            .unwrap_or_default();
                        self.new_partition(replicas)
                    })
                    .collect();
                let t = self.topics.get_mut(name).expect("checked above");
                t.parts.extend(new);
                t.partitions = *total;
            }
            MetadataRecord::TopicDeleted { name } => {
                self.topics.remove(name);
            }
            MetadataRecord::ConfigAltered { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    if let Ok(c) = TopicConfig::new(
                        configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        &self.defaults,
                    ) {
                        t.config = c;
                    }
                }
            }
            MetadataRecord::ProducerIdBlock { start, end, broker } => {
                if let Some(b) = broker {
                    self.producer_blocks.insert(*b, (*start, *end));
                }
                self.producer_id_end = self.producer_id_end.max(*end);
            }
            MetadataRecord::ProducerIdsAllocated { broker } => {
                let start = self.producer_id_end;
                self.producer_id_end += PRODUCER_ID_BLOCK;
                self.producer_blocks
                    .insert(*broker, (start, self.producer_id_end));
            }
            MetadataRecord::IsrChanged {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                if self
                    .check_isr_change(topic, *partition, *leader_epoch, *partition_epoch, isr)
                    .is_some()
                {
                    return;
                }
                let t = self.topics.get(topic).expect("checked");
                let (min_isr, _) = self.topic_rules(t);
                let mut isr = isr.clone();
                let t = self.topics.get_mut(topic).expect("checked");
                let p = &mut t.parts[*partition as usize];
                isr.sort_by_key(|r| p.replicas.iter().position(|x| x == r));
                Self::set_isr(p, isr, min_isr);
                p.partition_epoch += 1;
            }
            MetadataRecord::LeaderMoved {
                topic,
                partition,
                partition_epoch,
                leader,
            } => {
                let live = self.is_live(*leader);
                let Some(p) = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.parts.get_mut(usize::try_from(*partition).ok()?))
                else {
                    return;
                };
                if p.partition_epoch != *partition_epoch
                    || p.leader == *leader
                    || !p.isr.contains(leader)
                    || !live
                {
                    return;
                }
                p.leader = *leader;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }

    /// Partitions whose preferred replica (the first) is live and in sync but does not lead:
    /// `(topic, partition, partition epoch, preferred)`.
    pub fn imbalanced(&self) -> Vec<(String, i32, i32, i32)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.parts.iter().enumerate() {
                let Some(&pref) = p.replicas.first() else {
                    continue;
                };
                if p.leader != pref && p.isr.contains(&pref) && self.is_live(pref) {
                    out.push((t.name.clone(), i as i32, p.partition_epoch, pref));
                }
            }
        }
        out
    }

    /// Asserts the module's invariants (tests and simulation).
    pub fn check_invariants(&self) {
        for t in self.topics.values() {
            assert_eq!(t.parts.len(), t.partitions as usize, "{}", t.name);
            for (i, p) in t.parts.iter().enumerate() {
                let at = format!("{}-{i}: {p:?}", t.name);
                if p.replicas.is_empty() {
                    continue;
                }
                assert!(!p.isr.is_empty(), "empty ISR at {at}");
                assert!(
                    p.isr.iter().all(|r| p.replicas.contains(r)),
                    "ISR outside replicas at {at}"
                );
                assert!(
                    p.leader == -1 || p.isr.contains(&p.leader),
                    "leader outside ISR at {at}"
                );
                assert!(
                    p.elr
                        .iter()
                        .all(|r| p.replicas.contains(r) && !p.isr.contains(r)),
                    "ELR outside replicas or overlapping the ISR at {at}"
                );
            }
        }
        let mut blocks: Vec<(i64, i64)> = self.producer_blocks.values().copied().collect();
        blocks.sort_unstable();
        for w in blocks.windows(2) {
            assert!(w[0].1 <= w[1].0, "producer-id blocks overlap: {blocks:?}");
        }
        assert!(blocks.iter().all(|b| b.1 <= self.producer_id_end));
    }
}

/// One partition's leadership as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Eligible leader replicas.
    #[serde(default)]
    pub elr: Vec<i32>,
    /// Leader or -1.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

impl PartitionSnapshot {
    fn of(p: &PartitionState) -> Self {
        PartitionSnapshot {
            isr: p.isr.clone(),
            elr: p.elr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        }
    }
}

/// The whole catalog: records that rebuild it plus each partition's leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// Records rebuilding brokers, topics, configs and producer-id blocks.
    pub records: Vec<MetadataRecord>,
    /// Leadership per topic, partition by partition.
    pub partitions: BTreeMap<String, Vec<PartitionSnapshot>>,
    /// Unclean elections so far.
    #[serde(default)]
    pub unclean_elections: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn register(c: &mut Catalog, id: i32) {
        c.apply(&MetadataRecord::BrokerRegistered {
            id,
            incarnation: format!("inc-{id}"),
            host: "localhost".into(),
            port: 9090 + id,
            rack: None,
        });
    }

    fn spread(rf: i16) -> Placement {
        Placement::Spread {
            replication_factor: rf,
            start: 0,
        }
    }

    fn cluster(n: i32) -> Catalog {
        let mut c = Catalog::new(LogConfig::default());
        for id in 1..=n {
            register(&mut c, id);
        }
        c
    }

    #[test]
    fn snapshot_rebuilds_the_catalog_and_a_second_create_of_a_name_is_ignored() {
        let mut c = cluster(3);
        c.apply(&MetadataRecord::ClusterId { id: "x".into() });
        c.apply(&MetadataRecord::ClusterId { id: "y".into() });
        assert_eq!(c.cluster_id(), Some("x"));
        let r = c
            .plan_create(
                "a",
                2,
                &spread(3),
                &[("retention.ms".into(), "7".into())],
                [3; 16],
            )
            .unwrap();
        c.apply(&r);
        let r2 = c.plan_create("b", 1, &spread(1), &[], [4; 16]).unwrap();
        c.apply(&r2);
        let dup = MetadataRecord::TopicCreated {
            name: "a".into(),
            id: id_to_hex(&[9; 16]),
            partitions: 5,
            configs: BTreeMap::new(),
            assignments: vec![],
        };
        c.apply(&dup);
        assert_eq!(c.topic("a").unwrap().id, [3; 16]);
        assert_eq!(c.topic("a").unwrap().partitions, 2);
        c.apply(&MetadataRecord::ProducerIdsAllocated { broker: 2 });
        c.apply(&MetadataRecord::ProducerIdsAllocated { broker: 1 });
        c.apply(&MetadataRecord::BrokerFenced {
            id: 1,
            incarnation: "inc-1".into(),
        });
        c.check_invariants();
        let snap = c.snapshot();
        let json = serde_json::to_vec(&snap).unwrap();
        let back: CatalogSnapshot = serde_json::from_slice(&json).unwrap();
        let d = Catalog::from_snapshot(LogConfig::default(), &back);
        assert_eq!(d, c);
        assert_eq!(d.log_config("a").unwrap().retention_ms, 7);
    }

    #[test]
    fn legacy_records_still_parse() {
        let old = r#"{"type":"TopicCreated","name":"t","id":"00","partitions":2,"configs":{}}"#;
        let r: MetadataRecord = serde_json::from_str(old).unwrap();
        assert!(
            matches!(r, MetadataRecord::TopicCreated { ref assignments, .. } if assignments.is_empty())
        );
        let old = r#"{"type":"ProducerIdBlock","start":0,"end":1000}"#;
        let r: MetadataRecord = serde_json::from_str(old).unwrap();
        let mut c = Catalog::new(LogConfig::default());
        c.apply(&r);
        c.apply(&MetadataRecord::ProducerIdsAllocated { broker: 1 });
        assert_eq!(c.producer_block(1), Some((1000, 2000)));
    }

    #[test]
    fn create_alter_delete() {
        let mut c = cluster(1);
        let r = c
            .plan_create(
                "t",
                3,
                &spread(1),
                &[("retention.ms".into(), "5".into())],
                [1; 16],
            )
            .unwrap();
        c.apply(&r);
        assert_eq!(c.topic("t").unwrap().partitions, 3);
        assert_eq!(c.log_config("t").unwrap().retention_ms, 5);
        assert!(matches!(
            c.plan_create("t", 1, &spread(1), &[], [0; 16]),
            Err(CatalogError::TopicExists(_))
        ));
        assert!(matches!(
            c.plan_create("bad name", 1, &spread(1), &[], [0; 16]),
            Err(CatalogError::InvalidTopic(_))
        ));
        assert!(matches!(
            c.plan_create("u", 0, &spread(1), &[], [0; 16]),
            Err(CatalogError::InvalidPartitions(_))
        ));
        assert!(matches!(
            c.plan_create("u", 1, &spread(3), &[], [0; 16]),
            Err(CatalogError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            c.plan_create("u", 1, &spread(0), &[], [0; 16]),
            Err(CatalogError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            c.plan_create("u", 1, &Placement::Manual(vec![vec![7]]), &[], [0; 16]),
            Err(CatalogError::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(
            c.plan_partitions("t", 2, &spread(1)),
            Err(CatalogError::InvalidPartitions(_))
        ));
        c.apply(&c.plan_partitions("t", 5, &spread(1)).unwrap());
        assert_eq!(c.topic("t").unwrap().partitions, 5);
        assert_eq!(c.partition("t", 4).unwrap().leader, 1);
        c.apply(
            &c.plan_alter("t", &[("segment.ms".into(), Some("100".into()))], false)
                .unwrap(),
        );
        assert_eq!(c.log_config("t").unwrap().retention_ms, 5);
        c.apply(
            &c.plan_alter("t", &[("segment.ms".into(), Some("100".into()))], true)
                .unwrap(),
        );
        assert_ne!(c.log_config("t").unwrap().retention_ms, 5);
        c.apply(&c.plan_delete("t").unwrap());
        assert!(c.topic("t").is_none());
        c.check_invariants();
    }

    fn fence(c: &mut Catalog, id: i32) {
        let incarnation = c.broker(id).unwrap().incarnation.clone();
        c.apply(&MetadataRecord::BrokerFenced { id, incarnation });
    }

    fn isr_change(c: &Catalog, isr: &[i32]) -> MetadataRecord {
        let p = c.partition("t", 0).unwrap();
        MetadataRecord::IsrChanged {
            topic: "t".into(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn isr_changes_keep_eligible_leaders_and_elections_use_them() {
        let mut c = cluster(3);
        let cfg = [("min.insync.replicas".to_string(), "2".to_string())];
        let placement = Placement::Manual(vec![vec![1, 2, 3]]);
        c.apply(&c.plan_create("t", 1, &placement, &cfg, [1; 16]).unwrap());
        let stale = isr_change(&c, &[1]);
        c.apply(&isr_change(&c, &[1, 2]));
        let p = c.partition("t", 0).unwrap().clone();
        assert_eq!(
            (p.isr.clone(), p.elr.clone(), p.partition_epoch),
            (vec![1, 2], vec![], 1)
        );
        c.apply(&stale);
        assert_eq!(
            c.partition("t", 0).unwrap(),
            &p,
            "a stale partition epoch is refused"
        );
        // Below min.insync.replicas the leaver stays eligible.
        c.apply(&isr_change(&c, &[1]));
        let p = c.partition("t", 0).unwrap();
        assert_eq!((p.isr.clone(), p.elr.clone()), (vec![1], vec![2]));
        c.check_invariants();
        // The leader dies: the eligible replica leads, the old ISR becomes eligible.
        fence(&mut c, 1);
        let p = c.partition("t", 0).unwrap();
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (2, vec![2], vec![1])
        );
        assert_eq!(p.leader_epoch, 1);
        c.check_invariants();
        // 3 was never eligible: with 2 gone too, nobody leads (unclean election is off).
        fence(&mut c, 2);
        assert_eq!(c.partition("t", 0).unwrap().leader, -1);
        assert_eq!(c.unclean_elections(), 0);
        // A fenced broker may not join the ISR; a leader must stay in it.
        assert!(c
            .check_isr_change(
                "t",
                0,
                2,
                c.partition("t", 0).unwrap().partition_epoch,
                &[3]
            )
            .is_some());
    }

    /// Found by skein-sim replication: a leader restarted within the session timeout must not
    /// lead again at the epoch it may have lost writes of.
    #[test]
    fn a_new_incarnation_ends_the_old_ones_leaderships() {
        let mut c = cluster(3);
        let placement = Placement::Manual(vec![vec![1, 2, 3], vec![2, 1, 3]]);
        c.apply(&c.plan_create("t", 2, &placement, &[], [1; 16]).unwrap());
        let before = c.topic("t").unwrap().parts.clone();
        c.apply(&MetadataRecord::BrokerRegistered {
            id: 1,
            incarnation: "inc-1-again".into(),
            host: "localhost".into(),
            port: 9091,
            rack: None,
        });
        let p = c.partition("t", 0).unwrap();
        assert_eq!(p.leader, 2, "an in-sync replica took over");
        assert!(p.leader_epoch > before[0].leader_epoch);
        assert!(
            !p.isr.contains(&1),
            "the new incarnation rejoins the ISR by catching up"
        );
        assert!(!c.broker(1).unwrap().fenced);
        c.check_invariants();
    }

    #[test]
    fn unclean_election_is_counted_and_preferred_leaders_return() {
        let mut c = cluster(3);
        let cfg = [(
            "unclean.leader.election.enable".to_string(),
            "true".to_string(),
        )];
        let placement = Placement::Manual(vec![vec![1, 2, 3]]);
        c.apply(&c.plan_create("t", 1, &placement, &cfg, [1; 16]).unwrap());
        c.apply(&isr_change(&c, &[1]));
        fence(&mut c, 1);
        let p = c.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!(c.unclean_elections(), 1);
        let snap = c.snapshot();
        assert_eq!(Catalog::from_snapshot(LogConfig::default(), &snap), c);
        // 1 returns and catches up: it is preferred, so it leads again.
        register(&mut c, 1);
        c.apply(&isr_change(&c, &[2, 1]));
        let p = c.partition("t", 0).unwrap();
        assert_eq!(p.isr, vec![1, 2], "the ISR keeps replica order");
        let moves = c.imbalanced();
        assert_eq!(moves, vec![("t".to_string(), 0, p.partition_epoch, 1)]);
        let (topic, partition, partition_epoch, leader) = moves[0].clone();
        let epoch = p.leader_epoch;
        c.apply(&MetadataRecord::LeaderMoved {
            topic,
            partition,
            partition_epoch,
            leader,
        });
        let p = c.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (1, epoch + 1));
        assert!(c.imbalanced().is_empty());
        c.check_invariants();
    }

    #[test]
    fn replicas_spread_over_live_brokers_and_leaders_rotate() {
        let mut c = cluster(3);
        c.apply(&c.plan_create("t", 6, &spread(3), &[], [1; 16]).unwrap());
        let t = c.topic("t").unwrap();
        let mut leads = BTreeMap::new();
        for p in &t.parts {
            let mut r = p.replicas.clone();
            r.sort_unstable();
            assert_eq!(r, vec![1, 2, 3]);
            *leads.entry(p.leader).or_insert(0) += 1;
            assert_eq!(p.isr, p.replicas, "every live replica starts in sync");
            assert_eq!(p.leader, p.replicas[0]);
        }
        assert_eq!(
            leads.into_iter().collect::<Vec<_>>(),
            vec![(1, 2), (2, 2), (3, 2)]
        );
        // A fenced broker gets no new replicas.
        c.apply(&MetadataRecord::BrokerFenced {
            id: 2,
            incarnation: "inc-2".into(),
        });
        c.apply(&c.plan_create("u", 4, &spread(2), &[], [2; 16]).unwrap());
        assert!(c
            .topic("u")
            .unwrap()
            .parts
            .iter()
            .all(|p| !p.replicas.contains(&2)));
        assert!(c.plan_create("v", 1, &spread(3), &[], [3; 16]).is_err());
        c.check_invariants();
    }

    #[test]
    fn fencing_takes_leadership_away_and_return_gives_it_back() {
        let mut c = cluster(2);
        c.apply(
            &c.plan_create("t", 1, &Placement::Manual(vec![vec![1, 2]]), &[], [1; 16])
                .unwrap(),
        );
        // Pretend replication put 2 in sync.
        c.topics.get_mut("t").unwrap().parts[0].isr = vec![1, 2];
        c.apply(&MetadataRecord::BrokerFenced {
            id: 1,
            incarnation: "inc-1".into(),
        });
        let p = c.partition("t", 0).unwrap().clone();
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 1));
        // A stale fence of an older incarnation changes nothing.
        c.apply(&MetadataRecord::BrokerFenced {
            id: 2,
            incarnation: "old".into(),
        });
        assert_eq!(c.partition("t", 0).unwrap().leader, 2);
        c.apply(&MetadataRecord::BrokerFenced {
            id: 2,
            incarnation: "inc-2".into(),
        });
        let p = c.partition("t", 0).unwrap().clone();
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (-1, vec![2], 2));
        // 1 is not in the ISR any more: its return elects nobody; 2's does.
        c.apply(&MetadataRecord::BrokerUnfenced {
            id: 1,
            incarnation: "inc-1".into(),
        });
        assert_eq!(c.partition("t", 0).unwrap().leader, -1);
        register(&mut c, 2);
        let p = c.partition("t", 0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 3, 3));
        c.check_invariants();
    }

    fn record() -> impl Strategy<Value = MetadataRecord> {
        let name = prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from);
        let broker = 1..5i32;
        let inc = prop::sample::select(vec!["x", "y"]).prop_map(String::from);
        prop_oneof![
            (broker.clone(), inc.clone()).prop_map(|(id, incarnation)| {
                MetadataRecord::BrokerRegistered {
                    id,
                    incarnation,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                }
            }),
            (broker.clone(), inc.clone())
                .prop_map(|(id, incarnation)| MetadataRecord::BrokerFenced { id, incarnation }),
            (broker.clone(), inc)
                .prop_map(|(id, incarnation)| MetadataRecord::BrokerUnfenced { id, incarnation }),
            (
                name.clone(),
                1..4u32,
                prop::collection::vec(prop::collection::vec(1..5i32, 1..3), 0..4)
            )
                .prop_map(|(name, partitions, assignments)| {
                    MetadataRecord::TopicCreated {
                        name,
                        id: "00".into(),
                        partitions,
                        configs: BTreeMap::new(),
                        assignments: assignments
                            .into_iter()
                            .map(|mut a| {
                                a.sort_unstable();
                                a.dedup();
                                a
                            })
                            .collect(),
                    }
                }),
            (
                name.clone(),
                1..6u32,
                prop::collection::vec(prop::collection::vec(1..5i32, 1..2), 0..3)
            )
                .prop_map(|(name, total, assignments)| {
                    MetadataRecord::PartitionsAdded {
                        name,
                        total,
                        assignments,
                    }
                }),
            name.clone()
                .prop_map(|name| MetadataRecord::TopicDeleted { name }),
            broker
                .clone()
                .prop_map(|broker| MetadataRecord::ProducerIdsAllocated { broker }),
            (
                name.clone(),
                0..3i32,
                0..3i32,
                0..4i32,
                prop::collection::vec(1..5i32, 0..4)
            )
                .prop_map(|(topic, partition, leader_epoch, partition_epoch, isr)| {
                    MetadataRecord::IsrChanged {
                        topic,
                        partition,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    }
                }),
            (name.clone(), 0..3i32, 0..4i32, broker).prop_map(
                |(topic, partition, partition_epoch, leader)| MetadataRecord::LeaderMoved {
                    topic,
                    partition,
                    partition_epoch,
                    leader,
                }
            ),
            (name, prop::bool::ANY, 1..4u32).prop_map(|(name, unclean, min)| {
                MetadataRecord::ConfigAltered {
                    name,
                    configs: [
                        (
                            "unclean.leader.election.enable".to_string(),
                            unclean.to_string(),
                        ),
                        ("min.insync.replicas".to_string(), min.to_string()),
                    ]
                    .into_iter()
                    .collect(),
                }
            }),
        ]
    }

    proptest! {
        /// Any committed sequence, planned or not, keeps the invariants, and a snapshot taken at
        /// any point rebuilds the same catalog.
        #[test]
        fn any_record_sequence_keeps_invariants(recs in prop::collection::vec(record(), 0..60)) {
            let mut c = Catalog::new(LogConfig::default());
            for r in &recs {
                c.apply(r);
                c.check_invariants();
                let d = Catalog::from_snapshot(LogConfig::default(), &c.snapshot());
                prop_assert_eq!(&d, &c);
            }
        }
    }
}
