//! The group coordinator as a shard type of the coordinator runtime: classic groups (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), KIP-848 groups (ConsumerGroupHeartbeat) and committed
//! offsets (OffsetCommit, DeleteGroups, OffsetDelete) of one `__consumer_offsets` partition,
//! over [`Shard`]. Reads (OffsetFetch, DescribeGroups, ListGroups) look at [`GroupShard::groups`].
//!
//! Invariants: every request is answered exactly once (JoinGroup and SyncGroup possibly in the
//! step of another member's request or of a timer); after every operation and every tick the
//! group metadata that changed is written ([`Shard::metadata_writes`]), in the same step, so
//! the answers it produced wait for it.

use std::collections::BTreeMap;

use super::groups::Shard;
use super::shard::{CoordinatorShard, OpId, Record, Step};
use crate::consumer_group::{Beat, CgConfig, CgError, Heartbeat};
use crate::group::{GroupConfig, GroupError, Join, Joined, Reply};
use crate::offsets::{CodecError, OffsetValue};

/// Settings of group shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupShardConfig {
    /// Classic groups' settings.
    pub group: GroupConfig,
    /// KIP-848 groups' settings.
    pub consumer: CgConfig,
    /// offsets.retention.minutes, in ms.
    pub offsets_retention_ms: i64,
    /// offsets.retention.check.interval.ms.
    pub expire_every_ms: u64,
}

impl Default for GroupShardConfig {
    fn default() -> Self {
        GroupShardConfig {
            group: GroupConfig::default(),
            consumer: CgConfig::default(),
            offsets_retention_ms: 7 * 24 * 3_600_000,
            expire_every_ms: 60_000,
        }
    }
}

/// An operation on a group shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    /// JoinGroup (answered when the rebalance completes).
    Join {
        /// The group.
        group: String,
        /// The member's join.
        join: Join,
    },
    /// SyncGroup (answered once the leader has sent the assignment and it is stored).
    Sync {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Its group.instance.id.
        instance: Option<String>,
        /// Its generation.
        generation: i32,
        /// The leader's assignments.
        assignments: Vec<(String, Vec<u8>)>,
        /// The protocol type the member expects, if it says.
        protocol_type: Option<String>,
        /// The protocol name the member expects, if it says.
        protocol_name: Option<String>,
    },
    /// Heartbeat.
    Heartbeat {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Its group.instance.id.
        instance: Option<String>,
        /// Its generation.
        generation: i32,
    },
    /// LeaveGroup of members (member id, group.instance.id).
    Leave {
        /// The group.
        group: String,
        /// The members leaving.
        members: Vec<(String, Option<String>)>,
    },
    /// OffsetCommit of the partitions that passed the shell's checks.
    Commit {
        /// The group.
        group: String,
        /// The member (empty outside any group).
        member: String,
        /// Its group.instance.id.
        instance: Option<String>,
        /// Its generation or member epoch (-1 outside any group).
        generation: i32,
        /// (topic, partition, value).
        offsets: Vec<(String, i32, OffsetValue)>,
    },
    /// DeleteGroups for one group.
    DeleteGroup {
        /// The group.
        group: String,
    },
    /// OffsetDelete.
    DeleteOffsets {
        /// The group.
        group: String,
        /// (topic, partition).
        partitions: Vec<(String, i32)>,
    },
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerHeartbeat {
        /// The group.
        group: String,
        /// The heartbeat.
        heartbeat: Heartbeat,
        /// Every topic's partition count.
        topics: BTreeMap<String, i32>,
    },
}

/// Why a ConsumerGroupHeartbeat was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerHeartbeatError {
    /// A classic group of that id has members.
    Group(GroupError),
    /// The KIP-848 group refused it.
    Consumer(CgError),
}

/// The answer to a [`GroupRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupResponse {
    /// JoinGroup: the generation joined, or the error with the member id to report.
    Join(Result<Joined, (GroupError, String)>),
    /// SyncGroup: the assignment, with the group's protocol type and name when known.
    Sync {
        /// This member's assignment or why not.
        result: Result<Vec<u8>, GroupError>,
        /// The group's protocol type.
        protocol_type: Option<String>,
        /// The group's protocol name.
        protocol_name: Option<String>,
    },
    /// Heartbeat.
    Heartbeat(Result<(), GroupError>),
    /// LeaveGroup, per member in request order.
    Leave(Vec<Result<(), GroupError>>),
    /// OffsetCommit (every partition of the request alike).
    Commit(Result<(), GroupError>),
    /// DeleteGroups for one group.
    DeleteGroup(Result<(), GroupError>),
    /// OffsetDelete: per partition in request order, or for the whole request.
    DeleteOffsets(Result<Vec<Result<(), GroupError>>, GroupError>),
    /// ConsumerGroupHeartbeat.
    ConsumerHeartbeat(Result<Beat, ConsumerHeartbeatError>),
}

/// The group coordinator's shard of one `__consumer_offsets` partition.
#[derive(Debug, Clone)]
pub struct GroupShard {
    shard: Shard,
    config: GroupShardConfig,
    next_expire: u64,
}

impl GroupShard {
    /// The groups and offsets (for reads).
    pub fn groups(&self) -> &Shard {
        &self.shard
    }

    /// The groups and offsets, to change directly (tests and simulation).
    pub fn groups_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }

    /// Answers of classic groups' replies, with the protocol names of `group` on syncs.
    fn replies(&self, group: Option<&str>, replies: Vec<Reply>) -> Vec<(OpId, GroupResponse)> {
        let g = group.and_then(|id| self.shard.group(id));
        let names = (
            g.and_then(|g| g.protocol_type()).map(str::to_string),
            g.and_then(|g| g.protocol()).map(str::to_string),
        );
        replies
            .into_iter()
            .map(|r| match r {
                Reply::Join { req, result } => (req, GroupResponse::Join(result)),
                Reply::Sync { req, result } => (
                    req,
                    GroupResponse::Sync {
                        result,
                        protocol_type: names.0.clone(),
                        protocol_name: names.1.clone(),
                    },
                ),
            })
            .collect()
    }

    fn join(&mut self, now: u64, op: OpId, group: &str, join: Join) -> Vec<(OpId, GroupResponse)> {
        if self.shard.is_active_consumer_group(group) {
            // A KIP-848 group of that id is active: the classic protocol cannot join it.
            let refused = Err((GroupError::InconsistentGroupProtocol, join.member_id));
            return vec![(op, GroupResponse::Join(refused))];
        }
        let replies = self.shard.group_mut(group).join(now, op, join);
        self.replies(Some(group), replies)
    }

    #[allow(clippy::too_many_arguments)]
    fn sync(
        &mut self,
        now: u64,
        op: OpId,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        expected: (Option<String>, Option<String>),
    ) -> Vec<(OpId, GroupResponse)> {
        let refuse = |e| {
            let result = Err(e);
            let (protocol_type, protocol_name) = (None, None);
            vec![(
                op,
                GroupResponse::Sync {
                    result,
                    protocol_type,
                    protocol_name,
                },
            )]
        };
        let Some(g) = self.shard.group(group) else {
            return refuse(GroupError::UnknownMemberId);
        };
        let mismatch = |given: &Option<String>, ours: Option<&str>| {
            given.as_ref().is_some_and(|x| ours.is_some_and(|o| o != x))
        };
        if mismatch(&expected.0, g.protocol_type()) || mismatch(&expected.1, g.protocol()) {
            return refuse(GroupError::InconsistentGroupProtocol);
        }
        let g = self.shard.group_mut(group);
        let replies = g.sync(now, op, member, instance, generation, assignments);
        self.replies(Some(group), replies)
    }

    fn leave(
        &mut self,
        now: u64,
        op: OpId,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<(OpId, GroupResponse)> {
        let Some(g) = self.shard.group_mut_if_exists(group) else {
            let results = vec![Err(GroupError::UnknownMemberId); members.len()];
            return vec![(op, GroupResponse::Leave(results))];
        };
        let mut results = Vec::new();
        let mut replies = Vec::new();
        for (m, inst) in members {
            let (res, rep) = g.leave(now, m, inst.as_deref());
            results.push(res);
            replies.extend(rep);
        }
        let mut out = self.replies(Some(group), replies);
        out.push((op, GroupResponse::Leave(results)));
        out
    }

    fn consumer_heartbeat(
        &mut self,
        now: u64,
        group: &str,
        heartbeat: Heartbeat,
        topics: &BTreeMap<String, i32>,
    ) -> GroupResponse {
        let res = match self.shard.consumer_group_mut(group) {
            Err(e) => Err(ConsumerHeartbeatError::Group(e)),
            Ok(g) => g
                .heartbeat(now, heartbeat, topics)
                .map_err(ConsumerHeartbeatError::Consumer),
        };
        GroupResponse::ConsumerHeartbeat(res)
    }

    /// OffsetDelete: per-partition outcomes, with the tombstones to write.
    fn delete_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
        records: &mut Vec<Record>,
    ) -> GroupResponse {
        let res = self.shard.delete_offsets(group, partitions).map(|per| {
            per.into_iter()
                .map(|(res, rec)| {
                    records.extend(rec);
                    res
                })
                .collect()
        });
        GroupResponse::DeleteOffsets(res)
    }
}

impl CoordinatorShard for GroupShard {
    type Config = GroupShardConfig;
    type Request = GroupRequest;
    type Response = GroupResponse;
    type Env = BTreeMap<String, i32>;
    type ReplayError = CodecError;

    fn create(config: &GroupShardConfig, salt: u64) -> Self {
        let mut shard = Shard::new(config.group);
        shard.set_consumer_config(config.consumer);
        // Odd, so a salt is never zero (zero means "unsalted" to the groups).
        shard.set_id_salt(salt | 1);
        GroupShard {
            shard,
            config: *config,
            next_expire: 0,
        }
    }

    fn replay(
        &mut self,
        now: u64,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CodecError> {
        self.shard.replay(offset, key, value, now)
    }

    fn handle(
        &mut self,
        now: u64,
        wall_ms: i64,
        op: OpId,
        request: GroupRequest,
    ) -> Step<GroupResponse> {
        let mut records = Vec::new();
        let answers = match request {
            GroupRequest::Join { group, join } => self.join(now, op, &group, join),
            GroupRequest::Sync {
                group,
                member,
                instance,
                generation,
                assignments,
                protocol_type,
                protocol_name,
            } => self.sync(
                now,
                op,
                &group,
                &member,
                instance.as_deref(),
                generation,
                assignments,
                (protocol_type, protocol_name),
            ),
            GroupRequest::Heartbeat {
                group,
                member,
                instance,
                generation,
            } => {
                let res = match self.shard.group_mut_if_exists(&group) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(g) => g.heartbeat(now, &member, instance.as_deref(), generation),
                };
                vec![(op, GroupResponse::Heartbeat(res))]
            }
            GroupRequest::Leave { group, members } => self.leave(now, op, &group, &members),
            GroupRequest::ConsumerHeartbeat {
                group,
                heartbeat,
                topics,
            } => vec![(op, self.consumer_heartbeat(now, &group, heartbeat, &topics))],
            GroupRequest::Commit {
                group,
                member,
                instance,
                generation,
                offsets,
            } => {
                let res = self
                    .shard
                    .commit(&group, &member, instance.as_deref(), generation, &offsets)
                    .map(|recs| records.extend(recs));
                vec![(op, GroupResponse::Commit(res))]
            }
            GroupRequest::DeleteGroup { group } => {
                let res = self.shard.delete_group(&group).map(|r| records.extend(r));
                vec![(op, GroupResponse::DeleteGroup(res))]
            }
            GroupRequest::DeleteOffsets { group, partitions } => {
                vec![(op, self.delete_offsets(&group, &partitions, &mut records))]
            }
        };
        records.extend(self.shard.metadata_writes(wall_ms));
        Step { records, answers }
    }

    fn tick(
        &mut self,
        now: u64,
        wall_ms: i64,
        topics: &BTreeMap<String, i32>,
    ) -> Step<GroupResponse> {
        let replies = self.shard.tick(now);
        self.shard.tick_consumer(now, topics);
        let mut records = self.shard.metadata_writes(wall_ms);
        if now >= self.next_expire {
            self.next_expire = now + self.config.expire_every_ms;
            records.extend(self.shard.expire(wall_ms, self.config.offsets_retention_ms));
        }
        let answers = self.replies(None, replies);
        Step { records, answers }
    }

    fn check_invariants(&self) {
        self.shard.check_invariants();
    }
}
