//! One consumer group under Kafka's classic rebalance protocol, sans-I/O: members join (with
//! KIP-394's MEMBER_ID_REQUIRED round and KIP-345 static members), the coordinator completes
//! the join when every known member has rejoined or the rebalance timeout passes, the leader's
//! SyncGroup hands out assignments, heartbeats keep members alive, and silent members are
//! removed after their session timeout. A static member's process replaced by a new one (a join
//! under its instance id with no member id) is fenced: every request naming the instance id
//! with the old member id gets FENCED_INSTANCE_ID.
//!
//! The driver hands in requests with an id and the current time; JoinGroup and SyncGroup may
//! be answered later, so every call returns the [`Reply`]s that are ready now (for this request
//! or for others that were waiting), and [`Group::tick`] fires the timers.
//!
//! Invariants: within one generation every member got the same member list order and protocol;
//! a member is in at most one of `members` / `pending`; the generation only grows; in Stable
//! every member has an assignment (possibly empty) from that generation's leader.

use std::collections::BTreeMap;

use crate::offsets::{GroupValue, MemberValue};

/// A request id chosen by the driver (to route a delayed answer).
pub type ReqId = u64;

/// Why a group request failed (each maps to one Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// MEMBER_ID_REQUIRED: retry the join with the member id given.
    MemberIdRequired,
    /// UNKNOWN_MEMBER_ID.
    UnknownMemberId,
    /// ILLEGAL_GENERATION.
    IllegalGeneration,
    /// REBALANCE_IN_PROGRESS.
    RebalanceInProgress,
    /// INCONSISTENT_GROUP_PROTOCOL.
    InconsistentGroupProtocol,
    /// INVALID_SESSION_TIMEOUT.
    InvalidSessionTimeout,
    /// FENCED_INSTANCE_ID (a newer member took this static instance id).
    FencedInstanceId,
    /// GROUP_MAX_SIZE_REACHED.
    GroupMaxSizeReached,
    /// NON_EMPTY_GROUP: the group has members.
    NonEmptyGroup,
    /// GROUP_ID_NOT_FOUND.
    GroupIdNotFound,
    /// GROUP_SUBSCRIBED_TO_TOPIC: an active group still consumes the topic.
    GroupSubscribedToTopic,
    /// STALE_MEMBER_EPOCH: a KIP-848 member committed with an epoch not its own.
    StaleMemberEpoch,
}

/// Where the group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignments handed out.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Coordinator-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms.
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms.
    pub max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms: how long the first join of an empty group waits for
    /// more members.
    pub initial_rebalance_delay_ms: u64,
    /// group.max.size.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
        }
    }
}

/// A JoinGroup as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The member id the client has ("" on its first join).
    pub member_id: String,
    /// group.instance.id (static membership).
    pub instance_id: Option<String>,
    /// client.id, the prefix of generated member ids.
    pub client_id: String,
    /// The client's address as the coordinator saw it.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// Supported assignors, preferred first, with their metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: an unknown member must first get an id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// A completed join for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The generation.
    pub generation: i32,
    /// The chosen protocol (assignor).
    pub protocol: String,
    /// The protocol type.
    pub protocol_type: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader only: every member with its instance id and metadata for the protocol.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

/// The planted bugs a group consults (see `crate::canary`); a stand-in enum so the call sites
/// compile without the `canary` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CanaryKind {
    DoubleAssign,
    StaleGenerationCommit,
    StaticNotFenced,
}

/// An answer ready for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to the JoinGroup `req`. `Err((MemberIdRequired, id))` carries the id to use.
    Join {
        /// The request.
        req: ReqId,
        /// The outcome; on an error, the member id to report (may be empty).
        result: Result<Joined, (GroupError, String)>,
    },
    /// Answer to the SyncGroup `req`: this member's assignment.
    Sync {
        /// The request.
        req: ReqId,
        /// The assignment or why not.
        result: Result<Vec<u8>, GroupError>,
    },
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Assignors with metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Assignment of the current generation.
    pub assignment: Vec<u8>,
    last_heard_ms: u64,
    join_waiting: Option<ReqId>,
    sync_waiting: Option<ReqId>,
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not joined yet, with when they were issued.
    pending: BTreeMap<String, u64>,
    /// Static instance id to its current member id.
    statics: BTreeMap<String, String>,
    /// When the join phase ends at the latest.
    join_deadline: Option<u64>,
    /// The join phase is the initial delay of an empty group: it ends only at the deadline.
    initial_delay: bool,
    next_member: u64,
    /// Mixed into member ids: the driver's random value for this coordinator's incarnation.
    salt: u64,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl Group {
    /// An empty group.
    pub fn new(id: &str, config: GroupConfig) -> Self {
        Group {
            id: id.to_string(),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            statics: BTreeMap::new(),
            join_deadline: None,
            initial_delay: false,
            next_member: 0,
            salt: 0,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// Whether the planted bug `c` is on (always false without the `canary` feature).
    #[allow(unused_variables)]
    fn canary_on(&self, c: CanaryKind) -> bool {
        #[cfg(feature = "canary")]
        {
            use crate::canary::Canary;
            match c {
                CanaryKind::DoubleAssign => self.canary == Some(Canary::DoubleAssign),
                CanaryKind::StaleGenerationCommit => {
                    self.canary == Some(Canary::StaleGenerationCommit)
                }
                CanaryKind::StaticNotFenced => self.canary == Some(Canary::StaticNotFenced),
            }
        }
        #[cfg(not(feature = "canary"))]
        {
            false
        }
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The chosen protocol of this generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The protocol type ("consumer").
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Members by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether `member` (with its group.instance.id, if static) of `generation` may commit
    /// offsets now: a member of this generation, or (generation -1, no member id) a client
    /// outside any group while the group is empty.
    pub fn check_commit(
        &self,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if generation < 0 && member.is_empty() && instance.is_none() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        self.validate_member(member, instance)?;
        if generation != self.generation && !self.canary_on(CanaryKind::StaleGenerationCommit) {
            return Err(GroupError::IllegalGeneration);
        }
        // During PreparingRebalance members still commit (they do so as they give partitions
        // up); between the join and the assignment they have nothing to commit for.
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Kafka's check of a request that names a member: from a static member (one that sends
    /// its group.instance.id), an instance id now held by another member id is
    /// FENCED_INSTANCE_ID (a newer process took it over, KIP-345; clients stop for good), an
    /// instance id nobody holds is UNKNOWN_MEMBER_ID; and the member id must be a member.
    fn validate_member(&self, member: &str, instance: Option<&str>) -> Result<(), GroupError> {
        if let Some(i) = instance {
            match self.statics.get(i) {
                None => return Err(GroupError::UnknownMemberId),
                Some(cur) if cur != member => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    fn new_member_id(&mut self, now_ms: u64, client_id: &str, instance_id: Option<&str>) -> String {
        let prefix = instance_id.unwrap_or(client_id);
        loop {
            self.next_member += 1;
            // The counter keeps ids of this group value apart; the time keeps them apart from
            // the ids of the value it replaced. A group reloaded after a coordinator failover
            // (or created again) starts counting afresh at a generation it may already have
            // handed ids out at (never stored), and clients share client ids, so neither the
            // counter nor the generation alone is unique; a reused id would let a dead process's
            // late request, or two live processes, act as one member. Every id the old value
            // issued predates the failover, every id of the new one follows it.
            // A salt (random per coordinator load, from the driver) makes that independent
            // of clocks agreeing across brokers.
            let id = if self.salt == 0 {
                format!("{prefix}-{now_ms:x}-{:x}", self.next_member)
            } else {
                format!(
                    "{prefix}-{now_ms:x}-{:x}-{:x}",
                    self.salt & 0xffff_ffff,
                    self.next_member
                )
            };
            if !self.members.contains_key(&id) && !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Sets the value mixed into the member ids this group hands out (see the driver).
    pub fn set_id_salt(&mut self, salt: u64) {
        self.salt = salt;
    }

    /// JoinGroup.
    pub fn join(&mut self, now_ms: u64, req: ReqId, j: Join) -> Vec<Reply> {
        let err = |e: GroupError, id: &str| {
            vec![Reply::Join {
                req,
                result: Err((e, id.to_string())),
            }]
        };
        if j.session_timeout_ms < self.config.min_session_timeout_ms
            || j.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return err(GroupError::InvalidSessionTimeout, &j.member_id);
        }
        if j.protocols.is_empty()
            || self
                .protocol_type
                .as_ref()
                .is_some_and(|t| *t != j.protocol_type && !self.members.is_empty())
            || (!self.members.is_empty() && !self.supports_common_protocol(&j.protocols))
        {
            return err(GroupError::InconsistentGroupProtocol, &j.member_id);
        }
        let mut out = Vec::new();
        let mut id = j.member_id.clone();
        // The id a static member had before this rejoin replaced it.
        let mut replaced: Option<String> = None;
        if id.is_empty() {
            match j
                .instance_id
                .as_ref()
                .and_then(|i| self.statics.get(i))
                .cloned()
            {
                // A static member rejoining (a restart): it takes its old place under a new id;
                // the old id is fenced.
                Some(old) => {
                    let new = if self.canary_on(CanaryKind::StaticNotFenced) {
                        old.clone()
                    } else {
                        self.new_member_id(now_ms, &j.client_id, j.instance_id.as_deref())
                    };
                    if let Some(mut m) = self.members.remove(&old) {
                        // The old process's requests still waiting are its last answers.
                        if let Some(r) = m.join_waiting.take() {
                            out.push(Reply::Join {
                                req: r,
                                result: Err((GroupError::FencedInstanceId, old.clone())),
                            });
                        }
                        if let Some(r) = m.sync_waiting.take() {
                            out.push(Reply::Sync {
                                req: r,
                                result: Err(GroupError::FencedInstanceId),
                            });
                        }
                        m.id = new.clone();
                        replaced = Some(old.clone());
                        if self.leader.as_deref() == Some(old.as_str()) {
                            self.leader = Some(new.clone());
                        }
                        self.members.insert(new.clone(), m);
                    }
                    self.statics
                        .insert(j.instance_id.clone().expect("static"), new.clone());
                    id = new;
                }
                None => {
                    let new = self.new_member_id(now_ms, &j.client_id, j.instance_id.as_deref());
                    if j.require_known_member_id && j.instance_id.is_none() {
                        self.pending.insert(new.clone(), now_ms);
                        return err(GroupError::MemberIdRequired, &new);
                    }
                    id = new;
                }
            }
        } else if self.members.contains_key(&id) || !self.pending.contains_key(&id) {
            // A known member rejoining: an old process of a static member that was replaced
            // is fenced here, not told to get a new id (it would take the id back).
            if let Err(e) = self.validate_member(&id, j.instance_id.as_deref()) {
                return err(e, &id);
            }
        } else {
            self.pending.remove(&id);
        }
        if let Some(inst) = &j.instance_id {
            if let Some(cur) = self.statics.get(inst) {
                if *cur != id {
                    return err(GroupError::FencedInstanceId, &id);
                }
            }
        }
        if !self.members.contains_key(&id) && self.members.len() >= self.config.max_size {
            return err(GroupError::GroupMaxSizeReached, &id);
        }
        let existing = self.members.get(&id).cloned();
        let member = Member {
            id: id.clone(),
            instance_id: j.instance_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout_ms: j.session_timeout_ms,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            protocols: j.protocols.clone(),
            assignment: existing
                .as_ref()
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
            last_heard_ms: now_ms,
            join_waiting: Some(req),
            sync_waiting: None,
        };
        if let Some(old) = existing.as_ref().and_then(|m| m.join_waiting) {
            // A duplicate join from the same member: the newer request replaces the older.
            out.push(Reply::Join {
                req: old,
                result: Err((GroupError::RebalanceInProgress, id.clone())),
            });
        }
        if let Some(inst) = &j.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        let unchanged = existing
            .as_ref()
            .is_some_and(|m| m.protocols == j.protocols);
        self.members.insert(id.clone(), member);
        self.protocol_type = Some(j.protocol_type.clone());
        match self.state {
            GroupState::Stable
                if unchanged
                    && (replaced.is_some() || self.leader.as_deref() != Some(id.as_str())) =>
            {
                // A follower rejoining with nothing new, or a static member restarting (KIP-345,
                // even the leader): answer with the current generation, no rebalance. A
                // restarted leader is told the id it had as the leader's, so it does not
                // assign again (a Stable group would not pass that assignment on).
                let mut reply = self.joined_reply(&id);
                if let Some(old) = replaced.filter(|_| reply.leader == id) {
                    reply.leader = old;
                    reply.members.clear();
                }
                if let Some(m) = self.members.get_mut(&id) {
                    m.join_waiting = None;
                }
                out.push(Reply::Join {
                    req,
                    result: Ok(reply),
                });
                return out;
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty => self.prepare(now_ms, true),
            GroupState::CompletingRebalance | GroupState::Stable => self.prepare(now_ms, false),
        }
        out.extend(self.maybe_complete_join(now_ms, false));
        out
    }

    fn supports_common_protocol(&self, protocols: &[(String, Vec<u8>)]) -> bool {
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare(&mut self, now_ms: u64, initial: bool) {
        // Members waiting on a sync of the old generation learn it is over.
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        let delay = if initial {
            self.config.initial_rebalance_delay_ms.min(timeout)
        } else {
            timeout
        };
        self.join_deadline = Some(now_ms + delay);
        self.initial_delay = initial;
    }

    /// Completes the join when every member has rejoined (or, `timed_out`, drops those that
    /// did not).
    fn maybe_complete_join(&mut self, now_ms: u64, timed_out: bool) -> Vec<Reply> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        let all_in = self.members.values().all(|m| m.join_waiting.is_some());
        if !timed_out && (!all_in || self.initial_delay) {
            return Vec::new();
        }
        let mut bump = true;
        if timed_out {
            let gone: Vec<String> = self
                .members
                .values()
                .filter(|m| m.join_waiting.is_none())
                .map(|m| m.id.clone())
                .collect();
            if !gone.is_empty() && self.canary_on(CanaryKind::DoubleAssign) {
                bump = false;
            }
            for id in gone {
                self.remove_member(&id);
            }
        }
        let mut out = Vec::new();
        for m in self.members.values_mut() {
            if let Some(r) = m.sync_waiting.take() {
                out.push(Reply::Sync {
                    req: r,
                    result: Err(GroupError::RebalanceInProgress),
                });
            }
        }
        self.join_deadline = None;
        self.initial_delay = false;
        if bump {
            self.generation += 1;
        }
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return out;
        }
        self.protocol = self.vote();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let reply = self.joined_reply(&id);
            let m = self.members.get_mut(&id).expect("member");
            m.last_heard_ms = now_ms;
            m.assignment.clear();
            if let Some(r) = m.join_waiting.take() {
                out.push(Reply::Join {
                    req: r,
                    result: Ok(reply),
                });
            }
        }
        out
    }

    /// The protocol every member supports that most members prefer: each member votes for
    /// its first supported-by-all protocol; ties go to the earlier one in the first member's
    /// order.
    fn vote(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let by_all = |n: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(x, _)| x == n))
        };
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| by_all(n))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<usize> = None;
        for i in 0..candidates.len() {
            if best.is_none_or(|b| votes[i] > votes[b]) {
                best = Some(i);
            }
        }
        best.map(|i| candidates[i].to_string())
    }

    fn joined_reply(&self, id: &str) -> Joined {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            self.members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default();
                    (m.id.clone(), m.instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            generation: self.generation,
            protocol,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            leader,
            member_id: id.to_string(),
            members,
        }
    }

    /// SyncGroup: the leader brings the assignments; everyone gets theirs once it has.
    pub fn sync(
        &mut self,
        now_ms: u64,
        req: ReqId,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Vec<Reply> {
        let err = |e| {
            vec![Reply::Sync {
                req,
                result: Err(e),
            }]
        };
        if let Err(e) = self.validate_member(member, instance) {
            return err(e);
        }
        let Some(m) = self.members.get_mut(member) else {
            return err(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return err(GroupError::IllegalGeneration);
        }
        m.last_heard_ms = now_ms;
        match self.state {
            GroupState::Empty => err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => err(GroupError::RebalanceInProgress),
            GroupState::Stable => vec![Reply::Sync {
                req,
                result: Ok(m.assignment.clone()),
            }],
            GroupState::CompletingRebalance => {
                if let Some(old) = m.sync_waiting.replace(req) {
                    return vec![Reply::Sync {
                        req: old,
                        result: Err(GroupError::RebalanceInProgress),
                    }];
                }
                if self.leader.as_deref() != Some(member) {
                    return Vec::new();
                }
                // The leader's assignment: members it left out get an empty one.
                let given: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
                let mut out = Vec::new();
                for m in self.members.values_mut() {
                    m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    if let Some(r) = m.sync_waiting.take() {
                        out.push(Reply::Sync {
                            req: r,
                            result: Ok(m.assignment.clone()),
                        });
                    }
                }
                self.state = GroupState::Stable;
                out
            }
        }
    }

    /// Heartbeat of `member` (with its group.instance.id, if static).
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.validate_member(member, instance)?;
        let Some(m) = self.members.get_mut(member) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        m.last_heard_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            _ => Ok(()),
        }
    }

    /// LeaveGroup of one member (by member id, or by instance id for a static member).
    pub fn leave(
        &mut self,
        now_ms: u64,
        member: &str,
        instance_id: Option<&str>,
    ) -> (Result<(), GroupError>, Vec<Reply>) {
        // By instance id (KIP-345's admin removal names no member id), else by member id; an
        // instance id held by another member id than the one named is fenced.
        let id = match instance_id.map(|i| self.statics.get(i)) {
            Some(None) => return (Err(GroupError::UnknownMemberId), Vec::new()),
            Some(Some(cur)) if !member.is_empty() && cur != member => {
                return (Err(GroupError::FencedInstanceId), Vec::new())
            }
            Some(Some(cur)) => cur.clone(),
            None => member.to_string(),
        };
        let Some(m) = self.remove_member(&id) else {
            return (Err(GroupError::UnknownMemberId), Vec::new());
        };
        let mut out = Vec::new();
        if let Some(r) = m.join_waiting {
            out.push(Reply::Join {
                req: r,
                result: Err((GroupError::UnknownMemberId, id.clone())),
            });
        }
        if let Some(r) = m.sync_waiting {
            out.push(Reply::Sync {
                req: r,
                result: Err(GroupError::UnknownMemberId),
            });
        }
        out.extend(self.membership_changed(now_ms));
        (Ok(()), out)
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(i) = &m.instance_id {
            if self.statics.get(i).is_some_and(|cur| cur == id) {
                self.statics.remove(i);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(m)
    }

    fn membership_changed(&mut self, now_ms: u64) -> Vec<Reply> {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty();
                    Vec::new()
                } else {
                    self.prepare(now_ms, false);
                    self.maybe_complete_join(now_ms, false)
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, false),
            GroupState::Empty => Vec::new(),
        }
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.generation += 1;
        self.protocol = None;
        self.leader = None;
        self.join_deadline = None;
    }

    /// Fires the timers due at `now_ms`: the end of the join phase, expired sessions and
    /// member ids handed out but never used.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Reply> {
        let mut out = Vec::new();
        self.pending
            .retain(|_, at| now_ms.saturating_sub(*at) <= 300_000);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiting.is_none()
                    && now_ms.saturating_sub(m.last_heard_ms) > m.session_timeout_ms.max(0) as u64
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            if let Some(m) = self.remove_member(&id) {
                if let Some(r) = m.sync_waiting {
                    out.push(Reply::Sync {
                        req: r,
                        result: Err(GroupError::UnknownMemberId),
                    });
                }
            }
            out.extend(self.membership_changed(now_ms));
        }
        if self.join_deadline.is_some_and(|d| now_ms >= d) {
            out.extend(self.maybe_complete_join(now_ms, true));
        }
        out
    }

    /// When [`Group::tick`] next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiting.is_none())
            .map(|m| m.last_heard_ms + m.session_timeout_ms.max(0) as u64 + 1);
        sessions.chain(self.join_deadline).min()
    }

    /// The group's state as `__consumer_offsets` stores it (after a rebalance, or emptied).
    pub fn to_value(&self, now_ms: i64) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_ms: now_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group loaded from its stored metadata: Stable with its members (whose sessions start
    /// at `now_ms`), or Empty.
    pub fn from_value(id: &str, config: GroupConfig, v: &GroupValue, now_ms: u64) -> Self {
        let mut g = Group::new(id, config);
        g.generation = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        if v.members.is_empty() {
            return g;
        }
        g.protocol = v.protocol.clone();
        for m in &v.members {
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(
                        v.protocol.clone().unwrap_or_default(),
                        m.subscription.clone(),
                    )],
                    assignment: m.assignment.clone(),
                    last_heard_ms: now_ms,
                    join_waiting: None,
                    sync_waiting: None,
                },
            );
        }
        g.leader = v
            .leader
            .clone()
            .filter(|l| g.members.contains_key(l))
            .or_else(|| g.members.keys().next().cloned());
        g.state = GroupState::Stable;
        g
    }

    /// Asserts the module's invariants (tests and simulation).
    pub fn check_invariants(&self) {
        for id in self.pending.keys() {
            assert!(!self.members.contains_key(id), "{id} pending and a member");
        }
        if let Some(l) = &self.leader {
            assert!(
                self.members.contains_key(l) || self.state == GroupState::PreparingRebalance,
                "leader {l} is not a member in {:?}",
                self.state
            );
        }
        if self.state == GroupState::Empty {
            assert!(self.members.is_empty(), "members in an Empty group");
        }
        for (inst, id) in &self.statics {
            assert!(
                self.members
                    .get(id)
                    .is_some_and(|m| m.instance_id.as_deref() == Some(inst)),
                "static {inst} maps to {id}, not a member with that instance id"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: 100,
            max_session_timeout_ms: 100_000,
            initial_rebalance_delay_ms: 50,
            max_size: 10,
        }
    }

    fn join(member: &str, instance: Option<&str>) -> Join {
        Join {
            member_id: member.to_string(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 1_000,
            rebalance_timeout_ms: 500,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), vec![1]), ("roundrobin".into(), vec![2])],
            require_known_member_id: true,
        }
    }

    /// Joins a new dynamic member through the MEMBER_ID_REQUIRED round; returns its id.
    fn first_join(g: &mut Group, now: u64, req: ReqId) -> (String, Vec<Reply>) {
        let r = g.join(now, req, join("", None));
        let [Reply::Join {
            result: Err((GroupError::MemberIdRequired, id)),
            ..
        }] = r.as_slice()
        else {
            panic!("{r:?}")
        };
        let id = id.clone();
        let out = g.join(now, req + 1, join(&id, None));
        (id, out)
    }

    fn joined(r: &[Reply], req: ReqId) -> Joined {
        r.iter()
            .find_map(|x| match x {
                Reply::Join {
                    req: q,
                    result: Ok(j),
                } if *q == req => Some(j.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no join answer for {req} in {r:?}"))
    }

    #[test]
    fn two_members_join_sync_and_heartbeat() {
        let mut g = Group::new("g", cfg());
        let (a, r) = first_join(&mut g, 0, 1);
        assert!(r.is_empty(), "the initial delay holds the first join");
        let (b, r) = first_join(&mut g, 10, 3);
        assert!(r.is_empty());
        let r = g.tick(60);
        let (ja, jb) = (joined(&r, 2), joined(&r, 4));
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.protocol, "range");
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty());
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        assert!(
            g.sync(61, 5, &b, None, 1, vec![]).is_empty(),
            "a follower waits for the leader"
        );
        let r = g.sync(
            62,
            6,
            &a,
            None,
            1,
            vec![(a.clone(), vec![0xA]), (b.clone(), vec![0xB])],
        );
        assert!(r.contains(&Reply::Sync {
            req: 5,
            result: Ok(vec![0xB])
        }));
        assert!(r.contains(&Reply::Sync {
            req: 6,
            result: Ok(vec![0xA])
        }));
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.heartbeat(100, &b, None, 1), Ok(()));
        assert_eq!(
            g.heartbeat(100, &b, None, 0),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat(100, "x", None, 1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(g.check_commit(&a, None, 1), Ok(()));
        assert_eq!(
            g.check_commit("", None, -1),
            Err(GroupError::UnknownMemberId)
        );
        g.check_invariants();
    }

    fn stable_pair(g: &mut Group) -> (String, String) {
        let (a, _) = first_join(g, 0, 1);
        let (b, _) = first_join(g, 0, 3);
        g.tick(60);
        g.sync(61, 5, &b, None, 1, vec![]);
        g.sync(61, 6, &a, None, 1, vec![]);
        assert_eq!(g.state(), GroupState::Stable);
        (a, b)
    }

    #[test]
    fn a_new_member_rebalances_and_a_silent_one_is_removed() {
        let mut g = Group::new("g", cfg());
        let (a, b) = stable_pair(&mut g);
        let (c, r) = first_join(&mut g, 100, 10);
        assert!(r.is_empty());
        assert_eq!(
            g.heartbeat(110, &a, None, 1),
            Err(GroupError::RebalanceInProgress)
        );
        assert!(g.join(120, 12, join(&a, None)).is_empty());
        // b never rejoins: the rebalance timeout (500 ms) drops it.
        let r = g.tick(700);
        let j = joined(&r, 12);
        assert_eq!(j.generation, 2);
        assert_eq!(joined(&r, 11).generation, 2);
        assert!(!g.members().any(|m| m.id == b));
        assert_eq!(g.members().count(), 2);
        g.sync(701, 13, &c, None, 2, vec![]);
        g.sync(701, 14, &a, None, 2, vec![]);
        assert_eq!(g.state(), GroupState::Stable);
        // c goes silent past its session timeout (1 s); a keeps heartbeating.
        assert_eq!(g.heartbeat(1_500, &a, None, 2), Ok(()));
        g.tick(1_800);
        assert!(!g.members().any(|m| m.id == c));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let r = g.join(1_801, 15, join(&a, None));
        assert_eq!(joined(&r, 15).generation, 3);
        g.check_invariants();
    }

    #[test]
    fn leaving_members_and_an_empty_group() {
        let mut g = Group::new("g", cfg());
        let (a, b) = stable_pair(&mut g);
        let (res, _) = g.leave(100, &b, None);
        assert_eq!(res, Ok(()));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let r = g.join(101, 7, join(&a, None));
        assert_eq!(joined(&r, 7).members.len(), 1);
        let (res, _) = g.leave(102, &a, None);
        assert_eq!(res, Ok(()));
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(
            g.check_commit("", None, -1),
            Ok(()),
            "an empty group takes standalone commits"
        );
        assert_eq!(g.leave(103, &a, None).0, Err(GroupError::UnknownMemberId));
        g.check_invariants();
    }

    #[test]
    fn a_static_member_restarts_without_a_rebalance() {
        let mut g = Group::new("g", cfg());
        let r = g.join(0, 1, join("", Some("i1")));
        assert!(r.is_empty(), "a static member needs no member-id round");
        let r = g.join(0, 2, join("", Some("i2")));
        assert!(r.is_empty());
        let r = g.tick(60);
        let (l, f) = (joined(&r, 1), joined(&r, 2));
        g.sync(
            61,
            3,
            &f.member_id,
            None,
            1,
            vec![(f.member_id.clone(), vec![7])],
        );
        g.sync(
            61,
            4,
            &l.member_id,
            None,
            1,
            vec![(f.member_id.clone(), vec![7])],
        );
        // The follower restarts: it rejoins with no member id and the same instance id.
        let r = g.join(100, 5, join("", Some("i2")));
        let j = joined(&r, 5);
        assert_eq!((j.generation, g.state()), (1, GroupState::Stable));
        assert_ne!(j.member_id, f.member_id);
        assert_eq!(
            g.heartbeat(101, &f.member_id, None, 1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.heartbeat(101, &f.member_id, Some("i2"), 1),
            Err(GroupError::FencedInstanceId),
            "the old process, naming its instance id, is fenced"
        );
        assert_eq!(
            g.sync(102, 6, &j.member_id, None, 1, vec![]),
            vec![Reply::Sync {
                req: 6,
                result: Ok(vec![7])
            }]
        );
        // The leader restarts too: no rebalance, and it is told its old id as the leader's,
        // so it does not assign (it syncs as a follower and gets its own assignment).
        let r = g.join(200, 7, join("", Some("i1")));
        let k = joined(&r, 7);
        assert_eq!((k.generation, g.state()), (1, GroupState::Stable));
        assert_eq!(k.leader, l.member_id);
        assert!(k.members.is_empty());
        assert_eq!(g.leader(), Some(k.member_id.as_str()));
        g.check_invariants();
    }

    /// Issue 17: a second process started with a live static member's group.instance.id
    /// replaces it; the old process (still running) is fenced by every request that names the
    /// instance id, including the SyncGroup it was waiting on, and never answered with success.
    #[test]
    fn a_replaced_static_member_is_fenced_everywhere() {
        let mut g = Group::new("g", cfg());
        g.join(0, 1, join("", Some("i1")));
        g.join(0, 2, join("", Some("i2")));
        let r = g.tick(60);
        let (l, f) = (joined(&r, 1), joined(&r, 2));
        let old = f.member_id.clone();
        // The old process waits on its SyncGroup (the leader has not assigned yet).
        assert!(g.sync(61, 3, &old, Some("i2"), 1, vec![]).is_empty());
        let r = g.join(62, 4, join("", Some("i2")));
        assert!(
            r.contains(&Reply::Sync {
                req: 3,
                result: Err(GroupError::FencedInstanceId)
            }),
            "{r:?}"
        );
        let new = r
            .iter()
            .find_map(|x| match x {
                Reply::Join { req: 4, result } => Some(result.clone()),
                _ => None,
            })
            .map(|res| res.map(|j| j.member_id))
            .unwrap_or_else(|| {
                // Mid-rebalance: the new process's join completes with the leader's sync.
                g.members()
                    .find(|m| m.instance_id.as_deref() == Some("i2"))
                    .map(|m| Ok(m.id.clone()))
                    .expect("i2 is a member")
            })
            .expect("the new process joined");
        assert_ne!(new, old);
        let fenced = Err(GroupError::FencedInstanceId);
        let i2 = Some("i2");
        assert_eq!(g.heartbeat(63, &old, i2, 1), fenced);
        assert_eq!(g.check_commit(&old, i2, 1), fenced);
        assert_eq!(
            g.sync(64, 5, &old, i2, 1, vec![]),
            vec![Reply::Sync {
                req: 5,
                result: Err(GroupError::FencedInstanceId)
            }]
        );
        assert_eq!(
            g.join(65, 6, join(&old, i2)),
            vec![Reply::Join {
                req: 6,
                result: Err((GroupError::FencedInstanceId, old.clone()))
            }]
        );
        assert_eq!(g.leave(66, &old, i2).0, fenced);
        // Replaced mid-rebalance, the member rebalances again (as in Kafka); the new process
        // gets i2's share, the old one still nothing.
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let r = g.join(67, 7, join(&l.member_id, Some("i1")));
        let gen = joined(&r, 7).generation;
        assert_eq!(joined(&r, 4).member_id, new);
        let give = vec![(new.clone(), vec![2]), (l.member_id.clone(), vec![1])];
        g.sync(601, 8, &l.member_id, Some("i1"), gen, give);
        assert_eq!(
            g.sync(602, 9, &new, i2, gen, vec![]),
            vec![Reply::Sync {
                req: 9,
                result: Ok(vec![2])
            }]
        );
        assert_eq!(g.heartbeat(603, &new, i2, gen), Ok(()));
        assert_eq!(g.heartbeat(603, &old, i2, gen), fenced);
        // Once the instance id is gone (the new process left), the old one is unknown.
        assert_eq!(g.leave(700, &new, i2).0, Ok(()));
        assert_eq!(
            g.heartbeat(701, &old, i2, gen + 1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(g.leave(702, "", i2).0, Err(GroupError::UnknownMemberId));
        g.check_invariants();
    }

    /// Found by `skein-sim groups` (seeds 44, 1045): a group reloaded after a coordinator
    /// failover, or created again because nothing of it was stored yet, counted member ids
    /// afresh at a generation it had already handed ids out at. With clients sharing a
    /// client.id, a second process got a live member's id (both then held its partitions), and
    /// a dead process's late commit passed as the new member's.
    #[test]
    fn member_ids_stay_unique_across_a_reload() {
        // Nothing stored yet: the new coordinator starts from an empty group.
        let mut g = Group::new("g", cfg());
        let (a, _) = first_join(&mut g, 0, 1);
        let mut fresh = Group::new("g", cfg());
        let (b, _) = first_join(&mut fresh, 10, 1);
        assert_ne!(a, b, "a fresh group reissued {a}");
        // A stored generation: ids issued after the store are not in it.
        let mut g = Group::new("g", cfg());
        stable_pair(&mut g);
        let stored = g.to_value(61);
        let r = g.join(70, 20, join("", None));
        let [Reply::Join {
            result: Err((GroupError::MemberIdRequired, unstored)),
            ..
        }] = r.as_slice()
        else {
            panic!("{r:?}")
        };
        let mut loaded = Group::from_value("g", cfg(), &stored, 100);
        let r = loaded.join(100, 21, join("", None));
        let [Reply::Join {
            result: Err((GroupError::MemberIdRequired, reissued)),
            ..
        }] = r.as_slice()
        else {
            panic!("{r:?}")
        };
        assert_ne!(unstored, reissued);
        assert!(!loaded.members().any(|m| &m.id == reissued));
    }

    #[test]
    fn inconsistent_protocols_and_bad_timeouts_are_refused() {
        let mut g = Group::new("g", cfg());
        let (_a, _) = first_join(&mut g, 0, 1);
        let mut other = join("", None);
        other.protocols = vec![("sticky".into(), vec![])];
        assert!(matches!(
            g.join(1, 3, other).as_slice(),
            [Reply::Join {
                result: Err((GroupError::InconsistentGroupProtocol, _)),
                ..
            }]
        ));
        let mut slow = join("", None);
        slow.session_timeout_ms = 10;
        assert!(matches!(
            g.join(1, 4, slow).as_slice(),
            [Reply::Join {
                result: Err((GroupError::InvalidSessionTimeout, _)),
                ..
            }]
        ));
    }

    proptest! {
        /// Processes sharing two group.instance.ids, in any interleaving of joins (with no
        /// member id: a start; or with the id they have), syncs, heartbeats, commits, leaves
        /// and timeouts: once a process's start took an instance id over, no older process of
        /// that id is ever answered with success.
        #[test]
        fn only_the_newest_process_of_an_instance_succeeds(ops in proptest::collection::vec((0u8..7, 0usize..4, 0u64..400), 1..150)) {
            let mut g = Group::new("g", cfg());
            // Process p has instance p % 2, its member id and generation.
            let inst = |p: usize| ["i0", "i1"][p % 2];
            let mut mine: Vec<(String, i32)> = vec![(String::new(), -1); 4];
            // Per instance: the process that took it over last; per request: its process.
            let mut newest: BTreeMap<&str, usize> = BTreeMap::new();
            let mut asked: BTreeMap<ReqId, usize> = BTreeMap::new();
            let (mut now, mut req) = (0u64, 0u64);
            for (op, p, dt) in ops {
                now += dt;
                req += 1;
                let i = Some(inst(p));
                let (id, gen) = mine[p].clone();
                let mut ok_now = false;
                let replies = match op {
                    0 | 1 => {
                        let start = op == 0 || id.is_empty();
                        let member = if start { String::new() } else { id.clone() };
                        asked.insert(req, p);
                        let before = g.statics.get(inst(p)).cloned();
                        let r = g.join(now, req, join(&member, i));
                        let took = g.statics.get(inst(p)).is_some_and(|cur| Some(cur) != before.as_ref());
                        if start && took {
                            newest.insert(inst(p), p);
                        }
                        r
                    }
                    2 => {
                        asked.insert(req, p);
                        let all: Vec<(String, Vec<u8>)> = g.members().map(|m| (m.id.clone(), vec![1])).collect();
                        g.sync(now, req, &id, i, gen, all)
                    }
                    3 => { ok_now = g.heartbeat(now, &id, i, gen).is_ok(); vec![] }
                    4 => { ok_now = g.check_commit(&id, i, gen).is_ok(); vec![] }
                    // (With no member id a leave by instance id is an admin's removal.)
                    5 if !id.is_empty() => { let (res, r) = g.leave(now, &id, i); ok_now = res.is_ok(); r }
                    5 => vec![],
                    _ => g.tick(now),
                };
                if ok_now {
                    prop_assert_eq!(newest.get(inst(p)), Some(&p), "op {} of an old process of {:?} succeeded", op, i);
                }
                for r in &replies {
                    let (q, ok) = match r {
                        Reply::Join { req, result } => {
                            let q = asked[req];
                            if let Ok(j) = result { mine[q] = (j.member_id.clone(), j.generation); }
                            (q, result.is_ok())
                        }
                        Reply::Sync { req, result } => (asked[req], result.is_ok()),
                    };
                    if ok {
                        prop_assert_eq!(newest.get(inst(q)), Some(&q), "an old process of {} was answered {:?}", inst(q), r);
                    }
                }
                g.check_invariants();
            }
        }

        /// Clients that follow the protocol, in any interleaving, with crashes (silence) and
        /// leaves: within a generation every answer names the same leader and protocol, the
        /// generation never falls, the invariants hold, and a stable group hands every member
        /// an assignment from the leader of that generation.
        #[test]
        fn generations_agree(ops in proptest::collection::vec((0u8..6, 0usize..4, 0u64..400), 1..120)) {
            let mut g = Group::new("g", cfg());
            let mut ids: Vec<Option<String>> = vec![None; 4];
            let mut gens: Vec<i32> = vec![0; 4];
            let mut seen: BTreeMap<i32, (String, String)> = BTreeMap::new();
            let mut now = 0u64;
            let mut req = 0u64;
            for (op, c, dt) in ops {
                now += dt;
                req += 1;
                let before = g.generation();
                let replies = match op {
                    0 | 1 => {
                        let id = ids[c].clone().unwrap_or_default();
                        let r = g.join(now, req, join(&id, None));
                        if let [Reply::Join { result: Err((GroupError::MemberIdRequired, new)), .. }] = r.as_slice() {
                            ids[c] = Some(new.clone());
                        }
                        r
                    }
                    2 => match &ids[c] {
                        Some(id) => {
                            let all: Vec<(String, Vec<u8>)> = g.members().map(|m| (m.id.clone(), m.id.clone().into_bytes())).collect();
                            g.sync(now, req, id, None, gens[c], all)
                        }
                        None => vec![],
                    },
                    3 => {
                        if let Some(id) = &ids[c] { let _ = g.heartbeat(now, id, None, gens[c]); }
                        vec![]
                    }
                    4 => match ids[c].take() {
                        Some(id) => g.leave(now, &id, None).1,
                        None => vec![],
                    },
                    _ => g.tick(now),
                };
                for r in &replies {
                    if let Reply::Join { result: Ok(j), .. } = r {
                        let e = seen.entry(j.generation).or_insert((j.leader.clone(), j.protocol.clone()));
                        prop_assert_eq!(e.clone(), (j.leader.clone(), j.protocol.clone()));
                        if let Some(i) = ids.iter().position(|x| x.as_deref() == Some(j.member_id.as_str())) {
                            gens[i] = j.generation;
                        }
                    }
                }
                prop_assert!(g.generation() >= before);
                g.check_invariants();
                if g.state() == GroupState::Stable {
                    for m in g.members() {
                        prop_assert_eq!(&m.assignment, &m.id.clone().into_bytes());
                    }
                }
            }
        }
    }
}
