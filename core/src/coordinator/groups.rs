//! The groups and committed offsets of one `__consumer_offsets` partition, sans-I/O: the
//! state a coordinator rebuilds by replaying the partition when it becomes its leader, and
//! keeps current by applying each record once the partition has it.
//!
//! The driver appends the records [`Shard`] asks for (offset commits, group metadata after a
//! rebalance, tombstones), waits until they are replicated, and then applies them with
//! [`Shard::replay`], the same call loading uses; so the in-memory state is always a replay of
//! a prefix of the log. Loading replays the whole partition before the first request or tick.
//!
//! Invariants: a committed offset is replaced only by a record later in the log (an older
//! in-flight commit that completes late never wins); a group's metadata is written when a
//! generation completes, the group empties or a static member's restart replaces its member id,
//! at most once per such change.

use std::collections::{BTreeMap, BTreeSet};

use crate::consumer_group::{CgConfig, CgError, ConsumerGroup};
use crate::group::{Group, GroupConfig, GroupError, GroupState, Reply};
use crate::offsets::{
    self, decode_group_value, decode_key, decode_offset_value, encode_group_key,
    encode_group_value, encode_offset_key, encode_offset_value, CodecError, Key, OffsetValue,
};

pub use super::shard::Record;

/// One partition's outcome in OffsetDelete: refused, or the tombstone to append (none if
/// nothing was committed).
pub type OffsetDeletion = (Result<(), GroupError>, Option<Record>);

/// A committed offset, with the log offset of the record that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// What was committed.
    pub value: OffsetValue,
    /// Where in the offsets partition.
    pub record: i64,
}

/// The groups of one offsets partition.
#[derive(Debug, Clone)]
pub struct Shard {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: BTreeMap<String, BTreeMap<(String, i32), Committed>>,
    /// (generation, member ids) of each group's last written metadata.
    written: BTreeMap<String, (i32, Vec<String>)>,
    /// Groups this shard has operated on (requests, timers) rather than only loaded: their
    /// state is newer than any record of theirs in the log.
    operated: BTreeSet<String>,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
    /// KIP-848 groups (their membership is not stored: after a coordinator change members
    /// rejoin; their offsets are stored like any group's).
    consumer: BTreeMap<String, ConsumerGroup>,
    cg_config: CgConfig,
    /// Mixed into the member ids of this shard's groups (random per load, from the driver).
    id_salt: u64,
}

/// Kafka's hash of a group id onto the offsets partitions (Java `String.hashCode`, made
/// non-negative), so every tool agrees on the coordinator.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for u in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(u));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// The topics a consumer's subscription (ConsumerProtocolSubscription, any version) names.
pub fn subscribed_topics(meta: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if meta.len() < 6 {
        return out;
    }
    let n = i32::from_be_bytes([meta[2], meta[3], meta[4], meta[5]]);
    let mut pos = 6;
    for _ in 0..n.max(0) {
        let Some(len) = meta.get(pos..pos + 2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]);
        pos += 2;
        let Some(name) = meta.get(pos..pos + len.max(0) as usize) else {
            break;
        };
        pos += len.max(0) as usize;
        if let Ok(s) = std::str::from_utf8(name) {
            out.push(s.to_string());
        }
    }
    out
}

impl Shard {
    /// An empty shard.
    pub fn new(config: GroupConfig) -> Self {
        Shard {
            config,
            groups: BTreeMap::new(),
            offsets: BTreeMap::new(),
            written: BTreeMap::new(),
            operated: BTreeSet::new(),
            #[cfg(feature = "canary")]
            canary: None,
            consumer: BTreeMap::new(),
            cg_config: CgConfig::default(),
            id_salt: 0,
        }
    }

    /// Turns a planted bug on (simulator only) in every group, present and future.
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
        for g in self.groups.values_mut() {
            g.set_canary(canary);
        }
    }

    /// A new empty group, with the shard's planted bug if any.
    fn new_group(&self, id: &str) -> Group {
        let mut g = Group::new(id, self.config);
        g.set_id_salt(self.id_salt);
        #[cfg(feature = "canary")]
        g.set_canary(self.canary);
        g
    }

    /// Sets the value mixed into member ids of the groups this shard creates or loads, so
    /// ids of two loads of one partition never meet (the shell draws it at random).
    pub fn set_id_salt(&mut self, salt: u64) {
        self.id_salt = salt;
    }

    /// Sets the settings of KIP-848 consumer groups.
    pub fn set_consumer_config(&mut self, config: CgConfig) {
        self.cg_config = config;
    }

    /// The KIP-848 group `id`, created if unknown; refused while a classic group of that id
    /// has members.
    pub fn consumer_group_mut(&mut self, id: &str) -> Result<&mut ConsumerGroup, GroupError> {
        if self
            .groups
            .get(id)
            .is_some_and(|g| g.state() != GroupState::Empty)
        {
            return Err(GroupError::GroupIdNotFound);
        }
        let config = self.cg_config;
        Ok(self
            .consumer
            .entry(id.to_string())
            .or_insert_with(|| ConsumerGroup::new(id, config)))
    }

    /// A KIP-848 group, if known.
    pub fn consumer_group(&self, id: &str) -> Option<&ConsumerGroup> {
        self.consumer.get(id)
    }

    /// Every KIP-848 group.
    pub fn consumer_groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.consumer.values()
    }

    /// Whether `id` is a KIP-848 group with members (a classic join must not take it over).
    pub fn is_active_consumer_group(&self, id: &str) -> bool {
        self.consumer
            .get(id)
            .is_some_and(|g| g.members().next().is_some())
    }

    /// Fires the KIP-848 groups' timers; `topics` gives every topic's partition count.
    pub fn tick_consumer(&mut self, now_ms: u64, topics: &BTreeMap<String, i32>) {
        for g in self.consumer.values_mut() {
            g.tick(now_ms, topics);
        }
        let offsets = &self.offsets;
        self.consumer
            .retain(|id, g| g.members().next().is_some() || offsets.contains_key(id));
    }

    /// Applies one record of the partition at log offset `record` (loading, and after each
    /// append of ours is replicated). Sessions of loaded members start at `now_ms`.
    pub fn replay(
        &mut self,
        record: i64,
        key: &[u8],
        value: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<(), CodecError> {
        match decode_key(key)? {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                let offsets = self.offsets.entry(group.clone()).or_default();
                match value {
                    None => {
                        offsets.remove(&(topic, partition));
                    }
                    Some(v) => {
                        let value = decode_offset_value(v)?;
                        let slot = offsets.entry((topic, partition));
                        match slot {
                            std::collections::btree_map::Entry::Occupied(mut o) => {
                                if o.get().record < record {
                                    o.insert(Committed { value, record });
                                }
                            }
                            std::collections::btree_map::Entry::Vacant(e) => {
                                e.insert(Committed { value, record });
                            }
                        }
                    }
                }
                if self.offsets.get(&group).is_some_and(BTreeMap::is_empty) {
                    self.offsets.remove(&group);
                }
                if !self.groups.contains_key(&group) && self.offsets.contains_key(&group) {
                    let g = self.new_group(&group);
                    self.groups.insert(group.clone(), g);
                }
            }
            Key::Group(group) => match value {
                None => {
                    self.groups.remove(&group);
                    self.written.remove(&group);
                    if self
                        .consumer
                        .get(&group)
                        .is_some_and(|g| g.members().next().is_none())
                    {
                        self.consumer.remove(&group);
                    }
                }
                Some(v) => {
                    let v = decode_group_value(v)?;
                    // Our own write coming back changes nothing: a group this shard has operated
                    // on is newer than anything in the log. While loading, a later record wins,
                    // also at the same generation (a static member's replacement).
                    let live = self.groups.get(&group).is_some_and(|g| {
                        g.generation() > v.generation
                            || (g.generation() == v.generation && self.operated.contains(&group))
                    });
                    if !live {
                        let mut g = Group::from_value(&group, self.config, &v, now_ms);
                        g.set_id_salt(self.id_salt);
                        #[cfg(feature = "canary")]
                        g.set_canary(self.canary);
                        self.groups.insert(group.clone(), g);
                    }
                    let ids = v.members.iter().map(|m| m.member_id.clone()).collect();
                    self.written.insert(group, (v.generation, ids));
                }
            },
        }
        Ok(())
    }

    /// The group, if known.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// The group, created empty if unknown.
    pub fn group_mut(&mut self, id: &str) -> &mut Group {
        self.operated.insert(id.to_string());
        if !self.groups.contains_key(id) {
            let g = self.new_group(id);
            self.groups.insert(id.to_string(), g);
        }
        self.groups.get_mut(id).expect("inserted")
    }

    /// The group, if known, to change.
    pub fn group_mut_if_exists(&mut self, id: &str) -> Option<&mut Group> {
        let g = self.groups.get_mut(id)?;
        self.operated.insert(id.to_string());
        Some(g)
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// A group's committed offsets.
    pub fn offsets(&self, group: &str) -> impl Iterator<Item = (&(String, i32), &Committed)> {
        self.offsets.get(group).into_iter().flatten()
    }

    /// A group's committed offset of one partition.
    pub fn offset(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.offsets
            .get(group)?
            .get(&(topic.to_string(), partition))
    }

    /// Checks an OffsetCommit (of `member`, with its group.instance.id if static) and gives the
    /// records to append for it. A commit from outside any group (generation -1, no member) is
    /// accepted while the group has no members.
    pub fn commit(
        &mut self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        offsets: &[(String, i32, OffsetValue)],
    ) -> Result<Vec<Record>, GroupError> {
        if let Some(cg) = self.consumer.get(group) {
            cg.check_commit(member, generation).map_err(|e| match e {
                CgError::StaleMemberEpoch | CgError::FencedMemberEpoch => {
                    GroupError::StaleMemberEpoch
                }
                _ => GroupError::UnknownMemberId,
            })?;
            return Ok(offsets
                .iter()
                .map(|(t, p, v)| {
                    (
                        encode_offset_key(group, t, *p),
                        Some(encode_offset_value(v)),
                    )
                })
                .collect());
        }
        let known = self.groups.contains_key(group);
        let outsider = generation < 0 && member.is_empty();
        if !known && !outsider {
            return Err(if member.is_empty() {
                GroupError::IllegalGeneration
            } else {
                GroupError::UnknownMemberId
            });
        }
        // Checked against a stand-in when the group is unknown: it exists once the commit is
        // replayed, not before (a commit that fails to replicate leaves nothing behind).
        match self.groups.get(group) {
            Some(g) => g.check_commit(member, instance, generation)?,
            None => Group::new(group, self.config).check_commit(member, instance, generation)?,
        }
        Ok(offsets
            .iter()
            .map(|(t, p, v)| {
                (
                    encode_offset_key(group, t, *p),
                    Some(encode_offset_value(v)),
                )
            })
            .collect())
    }

    /// The group metadata records due: groups that completed a generation, emptied, or had a
    /// static member replaced (a restart under the same group.instance.id gets a new member id
    /// and fences the old one; Kafka stores that too, or a reload would bring the fenced id
    /// back) since their metadata was last written. Call after every group operation.
    pub fn metadata_writes(&mut self, now_wall_ms: i64) -> Vec<Record> {
        let mut out = Vec::new();
        for (id, g) in &self.groups {
            let empty = g.state() == GroupState::Empty;
            if !matches!(g.state(), GroupState::Stable | GroupState::Empty) {
                continue;
            }
            let now = (g.generation(), g.members().map(|m| m.id.clone()).collect());
            if empty && g.generation() == 0 {
                continue; // never had members: nothing to write
            }
            if self.written.get(id) != Some(&now) {
                out.push((
                    encode_group_key(id),
                    Some(encode_group_value(&g.to_value(now_wall_ms))),
                ));
                self.written.insert(id.clone(), now);
            }
        }
        out
    }

    /// DeleteGroups for one group: it must have no members. Removes it and gives the
    /// tombstones to append for its offsets and metadata.
    pub fn delete_group(&mut self, id: &str) -> Result<Vec<Record>, GroupError> {
        let consumer = self.consumer.get(id);
        if consumer.is_some_and(|cg| cg.members().next().is_some()) {
            return Err(GroupError::NonEmptyGroup);
        }
        match self.groups.get(id) {
            None if consumer.is_none() => return Err(GroupError::GroupIdNotFound),
            Some(g) if g.state() != GroupState::Empty => return Err(GroupError::NonEmptyGroup),
            _ => {}
        }
        // The group goes when the tombstones are replayed (once replicated), like any record.
        let mut out: Vec<Record> = self
            .offsets(id)
            .map(|((t, p), _)| (encode_offset_key(id, t, *p), None))
            .collect();
        out.push((encode_group_key(id), None));
        Ok(out)
    }

    /// OffsetDelete: tombstones for the given partitions' offsets. A group with members
    /// refuses topics one of them subscribes to (per partition, in order).
    pub fn delete_offsets(
        &mut self,
        id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<OffsetDeletion>, GroupError> {
        let Some(g) = self.groups.get(id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        let subscribed: Vec<String> = if g.state() == GroupState::Empty {
            Vec::new()
        } else if g.protocol_type() != Some("consumer") {
            return Err(GroupError::NonEmptyGroup);
        } else {
            g.members()
                .flat_map(|m| {
                    m.protocols
                        .iter()
                        .flat_map(|(_, meta)| subscribed_topics(meta))
                })
                .collect()
        };
        Ok(partitions
            .iter()
            .map(|(t, p)| {
                if subscribed.contains(t) {
                    (Err(GroupError::GroupSubscribedToTopic), None)
                } else if self.offset(id, t, *p).is_some() {
                    (Ok(()), Some((encode_offset_key(id, t, *p), None)))
                } else {
                    (Ok(()), None)
                }
            })
            .collect())
    }

    /// Tombstones for offsets of member-less groups committed more than `retention_ms` ago
    /// (offsets.retention.minutes), and for such groups once they have no offsets left.
    pub fn expire(&self, now_wall_ms: i64, retention_ms: i64) -> Vec<Record> {
        let mut out = Vec::new();
        for (id, g) in &self.groups {
            if g.state() != GroupState::Empty {
                continue;
            }
            let mut left = 0;
            for ((t, p), c) in self.offsets(id) {
                if now_wall_ms.saturating_sub(c.value.commit_ms) > retention_ms {
                    out.push((encode_offset_key(id, t, *p), None));
                } else {
                    left += 1;
                }
            }
            if left == 0 && self.written.contains_key(id) {
                out.push((encode_group_key(id), None));
            }
        }
        out
    }

    /// Fires every group's timers.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Reply> {
        let mut out = Vec::new();
        for (id, g) in self.groups.iter_mut() {
            let before = (g.state(), g.generation(), g.members().count());
            out.extend(g.tick(now_ms));
            if (g.state(), g.generation(), g.members().count()) != before {
                self.operated.insert(id.clone());
            }
        }
        // Groups that never had members nor offsets (a join that never completed) go away.
        let offsets = &self.offsets;
        let written = &self.written;
        self.groups.retain(|id, g| {
            g.state() != GroupState::Empty
                || g.generation() != 0
                || offsets.contains_key(id)
                || written.contains_key(id)
                || g.members().next().is_some()
        });
        out
    }

    /// Asserts the module's invariants (tests and simulation).
    pub fn check_invariants(&self) {
        for g in self.groups.values() {
            g.check_invariants();
        }
        for g in self.consumer.values() {
            g.check_invariants();
        }
    }
}

/// Reads every record of stored batches into `shard` (loading a partition); returns how many
/// records did not parse (they are skipped, as Kafka skips them).
pub fn load_batch(shard: &mut Shard, batch: &[u8], now_ms: u64) -> usize {
    let Ok(records) = offsets::batch_records(batch) else {
        return 1;
    };
    let mut bad = 0;
    for (offset, key, value) in records {
        match key {
            Some(k) if shard.replay(offset, k, value, now_ms).is_ok() => {}
            _ => bad += 1,
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::Join;

    fn v(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 1_000,
        }
    }

    #[test]
    fn java_string_hash_code() {
        // "abc".hashCode() == 96354; Kafka puts group "abc" on partition 96354 % 50 == 4.
        assert_eq!(partition_for("abc", 50), 4);
        // A hash that overflows i32 and goes negative before the mask.
        let h = "a-rather-long-group-name-that-overflows"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        assert_eq!(
            partition_for("a-rather-long-group-name-that-overflows", 50),
            (h & 0x7fffffff) % 50
        );
    }

    #[test]
    fn commits_replay_in_log_order_and_deletes_tombstone() {
        let mut s = Shard::new(GroupConfig::default());
        let recs = s
            .commit("g", "", None, -1, &[("t".into(), 0, v(5))])
            .unwrap();
        let (k, val) = &recs[0];
        // A later record wins; an earlier one that completes late does not.
        s.replay(10, k, val.as_deref(), 0).unwrap();
        let (k2, val2) = &s
            .commit("g", "", None, -1, &[("t".into(), 0, v(3))])
            .unwrap()[0];
        s.replay(7, k2, val2.as_deref(), 0).unwrap();
        assert_eq!(s.offset("g", "t", 0).unwrap().value.offset, 5);
        let tombs = s.delete_group("g").unwrap();
        assert_eq!(tombs.len(), 2);
        assert!(
            s.group("g").is_some(),
            "gone only once the tombstones replicate"
        );
        for (i, (k, v)) in tombs.iter().enumerate() {
            s.replay(11 + i as i64, k, v.as_deref(), 0).unwrap();
        }
        assert!(s.group("g").is_none());
        assert_eq!(s.delete_group("g"), Err(GroupError::GroupIdNotFound));
        // A commit that never replicates leaves no group behind.
        s.commit("h", "", None, -1, &[("t".into(), 0, v(1))])
            .unwrap();
        assert!(s.group("h").is_none());
        // Replaying everything on a fresh shard gives the same state.
        let mut fresh = Shard::new(GroupConfig::default());
        fresh.replay(10, k, val.as_deref(), 0).unwrap();
        for (i, (k, v)) in tombs.iter().enumerate() {
            fresh.replay(11 + i as i64, k, v.as_deref(), 0).unwrap();
        }
        assert!(fresh.group("g").is_none());
        assert_eq!(fresh.offsets("g").count(), 0);
    }

    #[test]
    fn a_commit_needs_a_member_of_the_generation() {
        let mut s = Shard::new(GroupConfig::default());
        assert_eq!(
            s.commit("g", "m", None, 1, &[]),
            Err(GroupError::UnknownMemberId)
        );
        let r = s.group_mut("g").join(
            0,
            1,
            Join {
                member_id: String::new(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), vec![0, 0, 0, 0, 0, 1, 0, 1, b't'])],
                require_known_member_id: false,
            },
        );
        assert!(r.is_empty());
        s.tick(3_000);
        let id = s.group("g").unwrap().leader().unwrap().to_string();
        assert_eq!(
            s.commit("g", "", None, -1, &[]),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            s.commit("g", &id, None, 1, &[]),
            Err(GroupError::RebalanceInProgress),
            "no commits between join and assignment"
        );
        s.group_mut("g").sync(3_001, 2, &id, None, 1, vec![]);
        assert_eq!(s.commit("g", &id, None, 1, &[]).map(|r| r.len()), Ok(0));
        assert_eq!(
            s.commit("g", &id, None, 0, &[]),
            Err(GroupError::IllegalGeneration)
        );
        // Metadata is written once for the new generation.
        assert_eq!(s.metadata_writes(5).len(), 1);
        assert!(s.metadata_writes(6).is_empty());
        assert_eq!(s.delete_group("g"), Err(GroupError::NonEmptyGroup));
        let per = s
            .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)])
            .unwrap();
        assert_eq!(per[0].0, Err(GroupError::GroupSubscribedToTopic));
        assert_eq!(per[1].0, Ok(()));
        // The stored metadata reloads as the same stable group.
        let (k, val) = &s
            .clone()
            .group_mut("g")
            .to_value(1)
            .clone()
            .into_record("g");
        let mut fresh = Shard::new(GroupConfig::default());
        fresh.replay(0, k, val.as_deref(), 100).unwrap();
        let g = fresh.group("g").unwrap();
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.generation(), 1);
        assert_eq!(g.leader(), Some(id.as_str()));
    }

    #[test]
    fn offsets_of_empty_groups_expire() {
        let mut s = Shard::new(GroupConfig::default());
        let mut at = 0;
        for (t, ms) in [("old", 1_000), ("new", 9_000)] {
            let mut val = v(1);
            val.commit_ms = ms;
            for (k, val) in s.commit("g", "", None, -1, &[(t.into(), 0, val)]).unwrap() {
                s.replay(at, &k, val.as_deref(), 0).unwrap();
                at += 1;
            }
        }
        // Retention 5 s at t=10 s: only "old" (committed at 1 s) is due.
        let due = s.expire(10_000, 5_000);
        assert_eq!(due, vec![(encode_offset_key("g", "old", 0), None)]);
        for (k, val) in due {
            s.replay(at, &k, val.as_deref(), 0).unwrap();
            at += 1;
        }
        assert!(s.offset("g", "old", 0).is_none());
        assert!(s.offset("g", "new", 0).is_some());
        // Once every offset is gone, the group itself goes (it never stored metadata).
        let due = s.expire(20_000, 5_000);
        assert_eq!(due.len(), 1);
        for (k, val) in due {
            s.replay(at, &k, val.as_deref(), 0).unwrap();
        }
        s.tick(0);
        assert!(
            s.group("g").is_none(),
            "an empty group without offsets is forgotten"
        );
    }

    /// Found by `skein-sim groups`: a static member's restart (a new member id in a Stable
    /// group, same generation) was not stored, so after a failover the reloaded group had the
    /// fenced member id again and accepted the dead process's late commit.
    #[test]
    fn a_static_replacement_is_stored() {
        let mut s = Shard::new(GroupConfig::default());
        let join = |member: &str| Join {
            member_id: member.to_string(),
            instance_id: Some("i1".into()),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), vec![])],
            require_known_member_id: true,
        };
        let mut log: Vec<Record> = Vec::new();
        s.group_mut("g").join(0, 1, join(""));
        s.tick(3_000);
        let old = s.group("g").unwrap().leader().unwrap().to_string();
        s.group_mut("g").sync(3_001, 2, &old, None, 1, vec![]);
        log.extend(s.metadata_writes(1));
        // Another member makes i1 a follower, so its restart keeps the generation.
        let mut other = join("");
        other.instance_id = Some("i0".into());
        s.group_mut("g").join(3_002, 3, other);
        s.group_mut("g").join(3_003, 4, join(&old));
        let g = s.group("g").unwrap();
        let leader = g.leader().unwrap().to_string();
        let gen = g.generation();
        s.group_mut("g").sync(3_004, 5, &leader, None, gen, vec![]);
        log.extend(s.metadata_writes(2));
        assert_eq!(s.group("g").unwrap().state(), GroupState::Stable);
        let f = s
            .group("g")
            .unwrap()
            .members()
            .find(|m| m.id != leader)
            .unwrap();
        let (follower, instance) = (f.id.clone(), f.instance_id.clone());
        let mut restarted = join("");
        restarted.instance_id = instance;
        s.group_mut("g").join(3_005, 6, restarted);
        assert_eq!(
            s.group("g").unwrap().generation(),
            gen,
            "a follower's restart keeps the generation"
        );
        assert!(
            s.commit("g", &follower, None, gen, &[]).is_err(),
            "the old id is fenced"
        );
        log.extend(s.metadata_writes(3));
        let mut fresh = Shard::new(GroupConfig::default());
        for (i, (k, v)) in log.iter().enumerate() {
            fresh.replay(i as i64, k, v.as_deref(), 4_000).unwrap();
        }
        assert_eq!(
            fresh.commit("g", &follower, None, gen, &[]),
            Err(GroupError::UnknownMemberId),
            "the reloaded group took the fenced member id back"
        );
    }

    #[test]
    fn salted_loads_hand_out_distinct_member_ids() {
        let ids: Vec<String> = [7u64, 9]
            .iter()
            .map(|salt| {
                let mut s = Shard::new(GroupConfig::default());
                s.set_id_salt(*salt);
                let r = s.group_mut("g").join(
                    5,
                    1,
                    Join {
                        member_id: String::new(),
                        instance_id: None,
                        client_id: "c".into(),
                        client_host: "h".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 10_000,
                        protocol_type: "consumer".into(),
                        protocols: vec![("range".into(), vec![])],
                        require_known_member_id: true,
                    },
                );
                match &r[..] {
                    [Reply::Join {
                        result: Err((GroupError::MemberIdRequired, id)),
                        ..
                    }] => id.clone(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        // Same clock, same counter, different coordinator loads: different ids.
        assert_ne!(ids[0], ids[1]);
    }

    trait IntoRecord {
        fn into_record(self, id: &str) -> Record;
    }
    impl IntoRecord for offsets::GroupValue {
        fn into_record(self, id: &str) -> Record {
            (encode_group_key(id), Some(encode_group_value(&self)))
        }
    }

    #[test]
    fn subscription_topics() {
        // version 1, topics ["a", "bc"], user data etc. after.
        let meta = [0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0xff, 0xff];
        assert_eq!(subscribed_topics(&meta), vec!["a", "bc"]);
        assert!(subscribed_topics(&[0, 1, 0]).is_empty());
        assert_eq!(
            subscribed_topics(&[0, 0, 0, 0, 0, 9, 0, 1, b'x']),
            vec!["x"]
        );
    }
}
