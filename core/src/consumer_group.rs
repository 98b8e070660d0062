//! One consumer group under the KIP-848 protocol, sans-I/O: members send
//! ConsumerGroupHeartbeat with their subscription and the partitions they own; the
//! coordinator computes the target assignment itself (a sticky, per-topic balanced assignor)
//! whenever the group epoch moves (a member joins, leaves, changes its subscription, or a
//! subscribed topic's partition count changes) and moves each member towards its target: it
//! first asks a member to revoke what it must give up, and hands a partition to its new owner
//! only once the old owner has reported it released.
//!
//! Invariants: a partition is held (assigned or being revoked) by at most one member; a member
//! holds a partition iff `owner` names it; a member's revoking set is inside what it holds;
//! member epochs <= assignment epoch <= group epoch, and none of them ever decreases.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition by name.
pub type Tp = (String, i32);

/// Why a heartbeat or commit was refused (each maps to one Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgError {
    /// UNKNOWN_MEMBER_ID: the member must rejoin with epoch 0.
    UnknownMemberId,
    /// FENCED_MEMBER_EPOCH: the member must rejoin with epoch 0.
    FencedMemberEpoch,
    /// STALE_MEMBER_EPOCH (commits with an epoch that is not the member's).
    StaleMemberEpoch,
    /// GROUP_MAX_SIZE_REACHED.
    GroupMaxSizeReached,
    /// UNRELEASED_INSTANCE_ID: another live member holds this group.instance.id.
    UnreleasedInstanceId,
    /// FENCED_INSTANCE_ID: this group.instance.id now belongs to another member id (a newer
    /// process replaced this one).
    FencedInstanceId,
}

/// `member_epoch` of a static member that left for a while (KIP-848): it keeps its
/// assignment until its session times out or a new process takes its instance id.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Coordinator-wide settings of consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgConfig {
    /// group.consumer.session.timeout.ms.
    pub session_timeout_ms: u64,
    /// group.consumer.heartbeat.interval.ms.
    pub heartbeat_interval_ms: i32,
    /// group.max.size.
    pub max_size: usize,
}

impl Default for CgConfig {
    fn default() -> Self {
        CgConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// A ConsumerGroupHeartbeat as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Member id (clients generate it since v1; empty asks the coordinator for one).
    pub member_id: String,
    /// 0 joins, -1 leaves, -2 leaves temporarily (a static member); else the member's epoch.
    pub member_epoch: i32,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// client.rack.
    pub rack_id: Option<String>,
    /// How long the member may take to revoke partitions (-1: unchanged since the last
    /// heartbeat; a joining member must give it).
    pub rebalance_timeout_ms: i32,
    /// Subscribed topics (none: unchanged).
    pub subscribed: Option<Vec<String>>,
    /// Partitions the member owns now (none: unchanged).
    pub owned: Option<Vec<Tp>>,
    /// client.id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The member id.
    pub member_id: String,
    /// The member's epoch (-1 / -2 after a leave).
    pub member_epoch: i32,
    /// The partitions the member should own now; none when unchanged since the last answer
    /// (a full request, one with subscription and owned partitions, always gets it).
    pub assignment: Option<Vec<Tp>>,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CMember {
    /// Member id.
    pub id: String,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// client.rack.
    pub rack_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Member epoch.
    pub epoch: i32,
    previous_epoch: i32,
    /// Subscribed topics, sorted.
    pub subscribed: Vec<String>,
    /// Partitions it holds (including those it is revoking).
    pub assigned: BTreeSet<Tp>,
    /// Partitions it was asked to give up.
    pub revoking: BTreeSet<Tp>,
    rebalance_timeout_ms: i32,
    last_heard_ms: u64,
    revoke_deadline: Option<u64>,
    last_sent: Option<Vec<Tp>>,
}

/// One KIP-848 consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    id: String,
    config: CgConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, CMember>,
    target: BTreeMap<String, BTreeSet<Tp>>,
    /// Partition counts of the subscribed topics the target was computed for.
    counts: BTreeMap<String, i32>,
    owner: BTreeMap<Tp, String>,
    next_member: u64,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl ConsumerGroup {
    /// An empty group.
    pub fn new(id: &str, config: CgConfig) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            counts: BTreeMap::new(),
            owner: BTreeMap::new(),
            next_member: 0,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on (tests and simulation only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The epoch of the target assignment.
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// Members by id.
    pub fn members(&self) -> impl Iterator<Item = &CMember> {
        self.members.values()
    }

    /// A member's target assignment.
    pub fn target_of(&self, member: &str) -> impl Iterator<Item = &Tp> {
        self.target.get(member).into_iter().flatten()
    }

    /// Kafka's name for the group's state.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || self.target.get(&m.id).is_some_and(|t| *t != m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Whether `member` at `epoch` may commit offsets (a commit from outside the group, with no
    /// member id and a negative epoch, only while the group has no members).
    pub fn check_commit(&self, member: &str, epoch: i32) -> Result<(), CgError> {
        if member.is_empty() && epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(CgError::UnknownMemberId)
            };
        }
        let m = self.members.get(member).ok_or(CgError::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(CgError::StaleMemberEpoch);
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            for tp in &m.assigned {
                if self.owner.get(tp).is_some_and(|o| *o == m.id) {
                    self.owner.remove(tp);
                }
            }
            self.target.remove(id);
            self.group_epoch += 1;
        }
    }

    /// ConsumerGroupHeartbeat. `topics` gives the partition count of every existing topic.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        hb: Heartbeat,
        topics: &BTreeMap<String, i32>,
    ) -> Result<Beat, CgError> {
        let id = match hb.member_epoch {
            -1 | LEAVE_GROUP_STATIC_MEMBER_EPOCH => return self.leave(now_ms, hb, topics),
            0 => {
                let id = if hb.member_id.is_empty() {
                    loop {
                        self.next_member += 1;
                        let id = format!(
                            "{}-{:08x}-{:04x}",
                            hb.client_id, self.group_epoch, self.next_member
                        );
                        if !self.members.contains_key(&id) {
                            break id;
                        }
                    }
                } else {
                    hb.member_id.clone()
                };
                // A static member's new process takes its place (and assignment) only once the
                // old one left temporarily (epoch -2); while another member id holds the
                // instance id live, it is not released. (The holder itself rejoining, after a
                // fence, starts afresh below.)
                let holder = hb
                    .instance_id
                    .as_deref()
                    .and_then(|i| self.static_member(i));
                if let Some(h) = holder {
                    let released = self.members[&h].epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                    if h != id && !released {
                        return Err(CgError::UnreleasedInstanceId);
                    }
                    if released {
                        self.replace_static(now_ms, &h, &id, &hb);
                        let full = hb.subscribed.is_some() && hb.owned.is_some();
                        return Ok(self.answer(now_ms, &id, &hb, topics, full));
                    }
                }
                // A rejoin (after a fence, or a restart of a static member) starts afresh.
                self.remove(&id);
                if self.members.len() >= self.config.max_size {
                    return Err(CgError::GroupMaxSizeReached);
                }
                let mut subscribed = hb.subscribed.clone().unwrap_or_default();
                subscribed.sort();
                subscribed.dedup();
                self.members.insert(
                    id.clone(),
                    CMember {
                        id: id.clone(),
                        instance_id: hb.instance_id.clone(),
                        rack_id: hb.rack_id.clone(),
                        client_id: hb.client_id.clone(),
                        client_host: hb.client_host.clone(),
                        epoch: 0,
                        previous_epoch: -1,
                        subscribed,
                        assigned: BTreeSet::new(),
                        revoking: BTreeSet::new(),
                        rebalance_timeout_ms: hb.rebalance_timeout_ms,
                        last_heard_ms: now_ms,
                        revoke_deadline: None,
                        last_sent: None,
                    },
                );
                self.group_epoch += 1;
                id
            }
            e => {
                self.check_static(&hb)?;
                let m = self
                    .members
                    .get(&hb.member_id)
                    .ok_or(CgError::UnknownMemberId)?;
                // The previous epoch is accepted from a member that missed its bump, as long as
                // it claims nothing it no longer holds.
                let missed_bump = e == m.previous_epoch
                    && hb
                        .owned
                        .as_ref()
                        .is_some_and(|o| o.iter().all(|tp| m.assigned.contains(tp)));
                if e != m.epoch && !missed_bump {
                    return Err(CgError::FencedMemberEpoch);
                }
                if let Some(mut sub) = hb.subscribed.clone() {
                    sub.sort();
                    sub.dedup();
                    if sub != m.subscribed {
                        self.group_epoch += 1;
                        self.members
                            .get_mut(&hb.member_id)
                            .expect("member")
                            .subscribed = sub;
                    }
                }
                hb.member_id.clone()
            }
        };
        let full = hb.subscribed.is_some() && hb.owned.is_some();
        Ok(self.answer(now_ms, &id, &hb, topics, full))
    }

    /// Notes the heartbeat of member `id`, moves it towards its target, and answers.
    fn answer(
        &mut self,
        now_ms: u64,
        id: &str,
        hb: &Heartbeat,
        topics: &BTreeMap<String, i32>,
        full: bool,
    ) -> Beat {
        {
            let m = self.members.get_mut(id).expect("member");
            m.last_heard_ms = now_ms;
            // -1: unchanged since the last heartbeat (the Java client sends it only when it
            // joins); taken as 0 it removed every member asked to revoke at the next tick.
            if hb.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
            }
            if hb.rack_id.is_some() {
                m.rack_id = hb.rack_id.clone();
            }
        }
        self.recompute(topics);
        self.reconcile(now_ms, id, hb.owned.as_deref());
        let m = self.members.get_mut(id).expect("member");
        let now: Vec<Tp> = m.assigned.difference(&m.revoking).cloned().collect();
        let changed = m.last_sent.as_ref() != Some(&now);
        m.last_sent = Some(now.clone());
        Beat {
            member_id: id.to_string(),
            member_epoch: m.epoch,
            assignment: (changed || full).then_some(now),
        }
    }

    /// The member id that holds the static `instance` id.
    fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// Kafka's check of a heartbeat from a static member that is not joining: its instance id
    /// must be held, and by its own member id (else a newer process replaced it: fenced).
    fn check_static(&self, hb: &Heartbeat) -> Result<(), CgError> {
        let Some(inst) = hb.instance_id.as_deref() else {
            return Ok(());
        };
        match self.static_member(inst) {
            None => Err(CgError::UnknownMemberId),
            Some(h) if h != hb.member_id => Err(CgError::FencedInstanceId),
            Some(_) => Ok(()),
        }
    }

    /// A leave (epoch -1), or a static member's temporary leave (epoch -2): that one keeps its
    /// place and assignment, at epoch -2, until its session times out or a new process of its
    /// instance id joins.
    fn leave(
        &mut self,
        now_ms: u64,
        hb: Heartbeat,
        topics: &BTreeMap<String, i32>,
    ) -> Result<Beat, CgError> {
        self.check_static(&hb)?;
        let Some(m) = self.members.get_mut(&hb.member_id) else {
            return Err(CgError::UnknownMemberId);
        };
        if hb.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && m.instance_id.is_some() {
            // The epoch it held is kept for the process that takes its place.
            m.previous_epoch = m.epoch;
            m.epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            m.last_heard_ms = now_ms;
            m.revoke_deadline = None;
        } else {
            self.remove(&hb.member_id);
            self.recompute(topics);
        }
        Ok(Beat {
            member_id: hb.member_id,
            member_epoch: hb.member_epoch,
            assignment: None,
        })
    }

    /// Member `new` takes the place of the static member `old` (which left with epoch -2):
    /// what `old` holds, its target and its partitions' ownership pass to it, at the epoch `old`
    /// held (a member holding partitions is never at epoch 0, which would read as a rejoin when
    /// it revokes some first). The group epoch moves only if the subscription changed.
    fn replace_static(&mut self, now_ms: u64, old: &str, new: &str, hb: &Heartbeat) {
        let prev = self.members.remove(old).expect("member");
        if let Some(t) = self.target.remove(old) {
            self.target.insert(new.to_string(), t);
        }
        for tp in &prev.assigned {
            self.owner.insert(tp.clone(), new.to_string());
        }
        let mut subscribed = hb.subscribed.clone().unwrap_or(prev.subscribed.clone());
        subscribed.sort();
        subscribed.dedup();
        if subscribed != prev.subscribed {
            self.group_epoch += 1;
        }
        self.members.insert(
            new.to_string(),
            CMember {
                id: new.to_string(),
                instance_id: hb.instance_id.clone(),
                rack_id: hb.rack_id.clone(),
                client_id: hb.client_id.clone(),
                client_host: hb.client_host.clone(),
                epoch: if prev.assigned.is_empty() {
                    0
                } else {
                    prev.previous_epoch
                },
                previous_epoch: -1,
                subscribed,
                assigned: prev.assigned,
                revoking: prev.revoking,
                rebalance_timeout_ms: hb.rebalance_timeout_ms,
                last_heard_ms: now_ms,
                revoke_deadline: None,
                last_sent: None,
            },
        );
    }

    /// Recomputes the target if the group epoch moved or a subscribed topic changed size.
    fn recompute(&mut self, topics: &BTreeMap<String, i32>) {
        let subscribed: BTreeSet<&String> =
            self.members.values().flat_map(|m| &m.subscribed).collect();
        let counts: BTreeMap<String, i32> = subscribed
            .iter()
            .filter_map(|t| topics.get(*t).map(|n| ((*t).clone(), *n)))
            .collect();
        if counts != self.counts && self.group_epoch == self.assignment_epoch {
            self.group_epoch += 1;
        }
        if self.group_epoch == self.assignment_epoch {
            return;
        }
        self.counts = counts;
        self.assignment_epoch = self.group_epoch;
        let mut target: BTreeMap<String, BTreeSet<Tp>> = self
            .members
            .keys()
            .map(|id| (id.clone(), BTreeSet::new()))
            .collect();
        for (topic, &n) in &self.counts {
            let subs: Vec<&String> = self
                .members
                .values()
                .filter(|m| m.subscribed.contains(topic))
                .map(|m| &m.id)
                .collect();
            if subs.is_empty() || n <= 0 {
                continue;
            }
            let k = subs.len();
            let (base, extra) = (n as usize / k, n as usize % k);
            // Members that already had more of this topic get the larger quotas (sticky).
            let prev = |id: &String| {
                self.target
                    .get(id)
                    .map(|s| s.iter().filter(|(t, p)| t == topic && *p < n).count())
                    .unwrap_or(0)
            };
            let mut order: Vec<&String> = subs.clone();
            order.sort_by(|a, b| prev(b).cmp(&prev(a)).then(a.cmp(b)));
            let quota: BTreeMap<&String, usize> = order
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, base + usize::from(i < extra)))
                .collect();
            let mut free: Vec<i32> = Vec::new();
            let mut taken: BTreeMap<&String, usize> = BTreeMap::new();
            for p in 0..n {
                let tp = (topic.clone(), p);
                let had = subs
                    .iter()
                    .find(|id| self.target.get(**id).is_some_and(|s| s.contains(&tp)));
                match had {
                    Some(id) if taken.get(id).copied().unwrap_or(0) < quota[id] => {
                        *taken.entry(id).or_default() += 1;
                        target.get_mut(*id).expect("member").insert(tp);
                    }
                    _ => free.push(p),
                }
            }
            let mut free = free.into_iter();
            for id in &order {
                while taken.get(id).copied().unwrap_or(0) < quota[id] {
                    let Some(p) = free.next() else { break };
                    *taken.entry(id).or_default() += 1;
                    target
                        .get_mut(*id)
                        .expect("member")
                        .insert((topic.clone(), p));
                }
            }
        }
        self.target = target;
    }

    /// Moves member `id` towards its target.
    fn reconcile(&mut self, now_ms: u64, id: &str, owned: Option<&[Tp]>) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("member");
        // Revoked partitions the member no longer reports are released.
        if let Some(owned) = owned {
            let owned: BTreeSet<&Tp> = owned.iter().collect();
            let released: Vec<Tp> = m
                .revoking
                .iter()
                .filter(|tp| !owned.contains(tp))
                .cloned()
                .collect();
            for tp in released {
                m.revoking.remove(&tp);
                m.assigned.remove(&tp);
                if self.owner.get(&tp).is_some_and(|o| o == id) {
                    self.owner.remove(&tp);
                }
            }
        }
        let revoke: Vec<Tp> = m
            .assigned
            .iter()
            .filter(|tp| !target.contains(*tp))
            .cloned()
            .collect();
        m.revoking.extend(revoke);
        if !m.revoking.is_empty() {
            if m.revoke_deadline.is_none() {
                m.revoke_deadline = Some(now_ms + m.rebalance_timeout_ms.max(0) as u64);
            }
            return;
        }
        m.revoke_deadline = None;
        #[cfg(feature = "canary")]
        let steal = self.canary == Some(crate::canary::Canary::AssignBeforeRevoke);
        #[cfg(not(feature = "canary"))]
        let steal = false;
        for tp in target {
            if m.assigned.contains(&tp) {
                continue;
            }
            if steal || !self.owner.contains_key(&tp) {
                self.owner.insert(tp.clone(), id.to_string());
                m.assigned.insert(tp);
            }
        }
        if m.epoch != epoch {
            m.previous_epoch = m.epoch;
            m.epoch = epoch;
        }
    }

    /// Removes members silent past the session timeout, and members that did not revoke in
    /// their rebalance timeout; true if any went.
    pub fn tick(&mut self, now_ms: u64, topics: &BTreeMap<String, i32>) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now_ms.saturating_sub(m.last_heard_ms) > self.config.session_timeout_ms
                    || m.revoke_deadline.is_some_and(|d| now_ms > d)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        if !gone.is_empty() {
            self.recompute(topics);
        }
        !gone.is_empty()
    }

    /// Asserts the module's invariants (tests and simulation).
    pub fn check_invariants(&self) {
        assert!(self.assignment_epoch <= self.group_epoch);
        let mut seen: BTreeMap<&Tp, &str> = BTreeMap::new();
        for m in self.members.values() {
            assert!(m.epoch <= self.assignment_epoch, "member epoch ahead");
            assert!(
                m.revoking.is_subset(&m.assigned),
                "revoking what it does not hold"
            );
            for tp in &m.assigned {
                if let Some(other) = seen.insert(tp, &m.id) {
                    panic!("{tp:?} held by {other} and {}", m.id);
                }
                assert_eq!(self.owner.get(tp).map(String::as_str), Some(m.id.as_str()));
            }
        }
        assert_eq!(seen.len(), self.owner.len(), "owner map out of step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topics() -> BTreeMap<String, i32> {
        [("t".to_string(), 6), ("u".to_string(), 2)].into()
    }

    fn join(id: &str, subs: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 1_000,
            subscribed: Some(subs.iter().map(|s| s.to_string()).collect()),
            owned: Some(vec![]),
            client_id: "c".into(),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &[Tp]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: 1_000,
            owned: Some(owned.to_vec()),
            ..Default::default()
        }
    }

    /// Heartbeats, filling an unchanged (absent) assignment from what the member was last given.
    fn hb(
        g: &mut ConsumerGroup,
        now: u64,
        h: Heartbeat,
        t: &BTreeMap<String, i32>,
        known: &mut BTreeMap<String, Vec<Tp>>,
    ) -> Result<(i32, Vec<Tp>), CgError> {
        let b = g.heartbeat(now, h, t)?;
        if let Some(a) = b.assignment {
            known.insert(b.member_id.clone(), a);
        }
        Ok((
            b.member_epoch,
            known.get(&b.member_id).cloned().unwrap_or_default(),
        ))
    }

    #[test]
    fn partitions_move_only_after_their_owner_releases_them() {
        let mut g = ConsumerGroup::new("g", CgConfig::default());
        let k = &mut BTreeMap::new();
        let t = &topics();
        let a = hb(&mut g, 0, join("a", &["t"]), t, k).unwrap();
        assert_eq!((a.0, a.1.len()), (1, 6));
        let b = hb(&mut g, 10, join("b", &["t"]), t, k).unwrap();
        assert_eq!(
            (b.0, b.1.len()),
            (2, 0),
            "b is at the new epoch, waiting for a"
        );
        // a is asked to give up three partitions and keeps its epoch until it has.
        let a2 = hb(&mut g, 20, beat("a", 1, &a.1), t, k).unwrap();
        assert_eq!((a2.0, a2.1.len()), (1, 3));
        assert_eq!(g.state_name(), "Reconciling");
        // a commits with its epoch meanwhile; a stale epoch is refused.
        assert_eq!(g.check_commit("a", 1), Ok(()));
        assert_eq!(g.check_commit("a", 0), Err(CgError::StaleMemberEpoch));
        // An unchanged assignment is not sent again.
        let raw = g.heartbeat(25, beat("a", 1, &a.1), t).unwrap();
        assert_eq!(raw.assignment, None);
        let a3 = hb(&mut g, 30, beat("a", 1, &a2.1), t, k).unwrap();
        assert_eq!((a3.0, a3.1.len()), (2, 3));
        let b2 = hb(&mut g, 40, beat("b", 2, &[]), t, k).unwrap();
        assert_eq!(b2.1.len(), 3);
        assert!(b2.1.iter().all(|tp| !a3.1.contains(tp)));
        assert_eq!(g.state_name(), "Stable");
        g.check_invariants();
        // b leaves: a gets everything back at a new epoch.
        g.heartbeat(50, beat("b", -1, &[]), t).unwrap();
        let a4 = hb(&mut g, 60, beat("a", 2, &a3.1), t, k).unwrap();
        assert_eq!((a4.0, a4.1.len()), (3, 6));
        assert_eq!(
            g.heartbeat(70, beat("b", 2, &[]), t),
            Err(CgError::UnknownMemberId)
        );
        assert_eq!(
            g.heartbeat(70, beat("a", 1, &[]), t),
            Err(CgError::FencedMemberEpoch)
        );
        g.check_invariants();
    }

    #[test]
    fn silent_and_slow_members_are_removed() {
        let mut g = ConsumerGroup::new("g", CgConfig::default());
        let k = &mut BTreeMap::new();
        let t = &topics();
        let a = hb(&mut g, 0, join("a", &["t", "u"]), t, k).unwrap();
        hb(&mut g, 0, join("b", &["t"]), t, k).unwrap();
        // a never revokes: after its rebalance timeout (1 s) it is fenced, and b gets t.
        hb(&mut g, 10, beat("a", a.0, &a.1), t, k).unwrap();
        assert!(g.tick(2_000, t));
        let b = hb(&mut g, 2_001, beat("b", 2, &[]), t, k).unwrap();
        assert_eq!(b.1.len(), 6);
        // b goes silent past the session timeout.
        assert!(g.tick(50_000, t));
        assert_eq!(g.state_name(), "Empty");
        assert_eq!(g.check_commit("", -1), Ok(()));
        g.check_invariants();
    }

    /// KIP-848 static membership (issue 17): a second process with a live member's
    /// group.instance.id is refused (UNRELEASED_INSTANCE_ID); after the holder's temporary
    /// leave (epoch -2) a new process takes its place and its partitions without a rebalance,
    /// and the old process is fenced (FENCED_INSTANCE_ID) from then on.
    #[test]
    fn a_static_member_is_replaced_only_after_it_left_and_the_old_one_is_fenced() {
        let mut g = ConsumerGroup::new("g", CgConfig::default());
        let k = &mut BTreeMap::new();
        let t = &topics();
        let stat = |h: Heartbeat| Heartbeat {
            instance_id: Some("i1".into()),
            ..h
        };
        let a = hb(&mut g, 0, stat(join("a", &["t"])), t, k).unwrap();
        let b = hb(&mut g, 0, join("b", &["t"]), t, k).unwrap();
        let a = hb(&mut g, 10, stat(beat("a", a.0, &a.1)), t, k).unwrap();
        let b = hb(&mut g, 10, beat("b", b.0, &b.1), t, k).unwrap();
        let a = hb(&mut g, 20, stat(beat("a", a.0, &a.1)), t, k).unwrap();
        let b = hb(&mut g, 20, beat("b", b.0, &b.1), t, k).unwrap();
        assert_eq!((a.1.len(), b.1.len()), (3, 3));
        let epoch = g.group_epoch();
        assert_eq!(
            g.heartbeat(30, stat(join("a2", &["t"])), t),
            Err(CgError::UnreleasedInstanceId),
            "a's instance id is live"
        );
        assert_eq!(
            g.heartbeat(31, stat(beat("x", 2, &[])), t),
            Err(CgError::FencedInstanceId),
            "another member id naming i1"
        );
        // a leaves for a while: it keeps its place and partitions.
        let left = g.heartbeat(40, stat(beat("a", -2, &a.1)), t).unwrap();
        assert_eq!(left.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        assert_eq!(g.group_epoch(), epoch, "no rebalance");
        g.check_invariants();
        let a2 = hb(&mut g, 50, stat(join("a2", &["t"])), t, k).unwrap();
        assert_eq!(a2.1, a.1, "the new process gets a's partitions");
        assert_eq!(g.group_epoch(), epoch, "still no rebalance");
        assert!(!g.members().any(|m| m.id == "a"));
        let fenced = Err(CgError::FencedInstanceId);
        assert_eq!(g.heartbeat(60, stat(beat("a", a.0, &a.1)), t), fenced);
        assert_eq!(g.heartbeat(60, stat(beat("a", -1, &[])), t), fenced);
        assert_eq!(g.heartbeat(60, stat(beat("a", -2, &[])), t), fenced);
        assert_eq!(
            g.heartbeat(60, stat(join("a", &["t"])), t),
            Err(CgError::UnreleasedInstanceId)
        );
        let a2 = hb(&mut g, 70, stat(beat("a2", a2.0, &a2.1)), t, k).unwrap();
        assert_eq!(a2.1.len(), 3);
        g.check_invariants();
        // Left for good (-1): the instance id is free and unknown to heartbeats.
        g.heartbeat(80, stat(beat("a2", a2.0, &[])), t).unwrap();
        g.heartbeat(81, stat(beat("a2", -1, &[])), t).unwrap();
        assert_eq!(
            g.heartbeat(82, stat(beat("a2", a2.0, &[])), t),
            Err(CgError::UnknownMemberId)
        );
        // A temporary leave that nobody takes over ends with the session timeout.
        let c = hb(&mut g, 90, stat(join("c", &["t"])), t, k).unwrap();
        g.heartbeat(100, stat(beat("c", -2, &c.1)), t).unwrap();
        hb(&mut g, 40_000, beat("b", b.0, &b.1), t, k).unwrap();
        assert!(g.tick(45_200, t));
        assert!(!g.members().any(|m| m.id == "c"));
    }

    #[test]
    fn a_rebalance_timeout_left_unchanged_is_kept() {
        // The Java client gives RebalanceTimeoutMs when it joins and -1 ("unchanged") after:
        // a member asked to revoke then has the timeout it joined with (1 s here), not none.
        let mut g = ConsumerGroup::new("g", CgConfig::default());
        let k = &mut BTreeMap::new();
        let t = &topics();
        let a = hb(&mut g, 0, join("a", &["t", "u"]), t, k).unwrap();
        hb(&mut g, 0, join("b", &["t"]), t, k).unwrap();
        let mut unchanged = beat("a", a.0, &a.1);
        unchanged.rebalance_timeout_ms = -1;
        let revoking = hb(&mut g, 10, unchanged, t, k).unwrap();
        assert!(revoking.1.len() < a.1.len(), "a is asked to revoke");
        assert!(
            !g.tick(500, t),
            "a was removed inside its rebalance timeout"
        );
        assert_eq!(g.members().count(), 2);
        // Past the timeout it goes, as before.
        assert!(g.tick(2_000, t));
        assert_eq!(g.members().count(), 1);
        g.check_invariants();
    }

    /// Drives a group through `ops` (join, leave or crash, heartbeat, resize a topic, time
    /// out) the way clients would, checking after every step that no partition has two holders
    /// and that what members believe they own never overlaps; then heals and checks the group
    /// converges to a complete assignment. `Err` (or a panic in `check_invariants`) is a
    /// violation.
    fn drive(ops: &[(u8, usize, bool)], g: &mut ConsumerGroup) -> Result<(), String> {
        let mut topics = topics();
        let ids = ["a", "b", "c", "d"];
        // a and c are two processes of one static member: one holds it, the other is refused
        // while it does, and takes its place after a temporary leave (op 6).
        let stat = |id: &str, h: Heartbeat| Heartbeat {
            instance_id: matches!(id, "a" | "c").then(|| "i1".to_string()),
            ..h
        };
        // What each member believes it owns, and its epoch.
        let mut owned: BTreeMap<&str, (i32, Vec<Tp>)> = BTreeMap::new();
        let mut known: BTreeMap<String, Vec<Tp>> = BTreeMap::new();
        let mut now = 0;
        let step = |g: &mut ConsumerGroup,
                    owned: &mut BTreeMap<&'static str, (i32, Vec<Tp>)>,
                    known: &mut BTreeMap<String, Vec<Tp>>,
                    topics: &BTreeMap<String, i32>,
                    now: u64,
                    id: &'static str| {
            if let Some((e, mine)) = owned.get(id).cloned() {
                match hb(g, now, stat(id, beat(id, e, &mine)), topics, known) {
                    Ok(b) => {
                        owned.insert(id, b);
                    }
                    Err(_) => {
                        owned.remove(id);
                    }
                }
            }
        };
        for &(op, who, flag) in ops {
            now += 100;
            let id = ids[who];
            match op {
                0 => {
                    let subs: &[&str] = if flag { &["t", "u"] } else { &["t"] };
                    if let Ok(b) = hb(g, now, stat(id, join(id, subs)), &topics, &mut known) {
                        owned.insert(id, b);
                    }
                }
                1 => {
                    if let Some((e, _)) = owned.remove(id) {
                        let h = stat(id, beat(id, if flag { -1 } else { e }, &[]));
                        let _ = g.heartbeat(now, h, &topics);
                    }
                }
                6 => {
                    if owned.remove(id).is_some() {
                        let h = stat(id, beat(id, LEAVE_GROUP_STATIC_MEMBER_EPOCH, &[]));
                        let _ = g.heartbeat(now, h, &topics);
                    }
                }
                2 | 3 => step(g, &mut owned, &mut known, &topics, now, id),
                4 => {
                    topics.insert("t".into(), if flag { 8 } else { 6 });
                }
                _ => {
                    if flag {
                        g.tick(now + 60_000, &topics);
                        owned.clear();
                        now += 60_000;
                    }
                }
            }
            g.check_invariants();
            let mut all = BTreeSet::new();
            for (_, mine) in owned.values() {
                for tp in mine {
                    if !all.insert(tp.clone()) {
                        return Err(format!("{tp:?} owned by two members"));
                    }
                }
            }
        }
        // Members the harness stopped driving (crashed) time out; the others heartbeat.
        now += 46_000;
        for id in ids {
            step(g, &mut owned, &mut known, &topics, now, id);
        }
        g.tick(now + 1, &topics);
        for _ in 0..6 {
            for id in ids {
                step(g, &mut owned, &mut known, &topics, now, id);
            }
        }
        g.check_invariants();
        if !owned.is_empty() {
            if g.state_name() != "Stable" {
                return Err(format!("not Stable after healing: {}", g.state_name()));
            }
            let t: usize = owned
                .values()
                .map(|(_, m)| m.iter().filter(|(t, _)| t == "t").count())
                .sum();
            if t as i32 != topics["t"] {
                return Err(format!("{t} of {} partitions of t owned", topics["t"]));
            }
        }
        Ok(())
    }

    proptest! {
        /// Any interleaving of joins, leaves (static members' temporary ones too, and a second
        /// process of a static member joining), heartbeats that release or keep partitions,
        /// partition count changes and timeouts keeps every partition with at most one member,
        /// and once everyone reports what it was given the group converges.
        #[test]
        fn never_two_owners_and_converges(ops in proptest::collection::vec((0u8..7, 0usize..4, any::<bool>()), 1..80)) {
            let mut g = ConsumerGroup::new("g", CgConfig::default());
            let res = drive(&ops, &mut g);
            prop_assert!(res.is_ok(), "{:?}", res);
        }
    }

    /// The planted `assign-before-revoke` bug is caught by the same harness (seeded ops).
    #[cfg(feature = "canary")]
    #[test]
    fn the_harness_catches_assign_before_revoke() {
        let mut rng = crate::rng::SplitMix64::new(7);
        let caught = (0..200).any(|_| {
            let ops: Vec<(u8, usize, bool)> = (0..40)
                .map(|_| (rng.below(6) as u8, rng.below(4) as usize, rng.below(2) == 1))
                .collect();
            let mut g = ConsumerGroup::new("g", CgConfig::default());
            g.set_canary(Some(crate::canary::Canary::AssignBeforeRevoke));
            let res =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&ops, &mut g)));
            !matches!(res, Ok(Ok(())))
        });
        assert!(caught, "assign-before-revoke went unnoticed in 200 runs");
    }
}
