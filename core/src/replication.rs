//! Partition replication on one broker, sans-I/O: the leader's view of its followers (fetch
//! progress, in-sync replicas, high watermark) and the follower's truncation rule.
//!
//! Followers fetch from the leader at their log end, naming the epoch of their last batch. The
//! leader first checks that epoch against its own history ([`Leader::check_fetch`]); a follower
//! whose log diverges is told where the epoch ends and truncates there
//! ([`truncation_offset`]), so logs never fork. Only a fetch that passed the check counts as
//! progress. The high watermark is the smallest log end of the maximal ISR (the committed ISR
//! plus members a pending change adds, KIP-497), and advances only while the committed ISR has
//! at least min.insync.replicas members (KIP-966: a replica that leaves a too-small ISR then
//! still holds every committed record, so it is eligible to lead). ISR changes are proposed to the
//! controller with the partition epoch they were planned against; one is pending at a time.
//!
//! Every member a proposal against the current partition epoch adds counts towards the high
//! watermark until that epoch moves, whatever became of the proposal: a refused or lost one
//! cannot be told apart for sure from one still on its way to commit. So the leader settles
//! them itself: a replica the metadata says is fenced (or shutting down, which fences it) is
//! never proposed as an addition (KIP-841), and when the ISR it wants is the committed one
//! while proposals that added members are unresolved, it proposes the committed ISR again. That
//! proposal always applies unless the partition moved on, and either way the partition epoch
//! moves, after which nothing planned against the old one can commit and the maximal ISR is
//! the committed one again. A refusal the controller reports ([`Leader::refused`]) only lets the
//! leader plan again before the retry time.
//!
//! [`crate::replica::Replica`] drives these pieces per partition (roles, gates, the flush
//! policy that decides which of the leader's ends counts); the `log_end` a caller passes to
//! [`Leader`] is that counted end.
//!
//! Invariants: during one leadership the high watermark never decreases and never exceeds the
//! log end of any member of the maximal ISR; a follower's progress is only ever recorded for a
//! fetch offset its log shares with the leader's; no replica the last metadata called fenced
//! is proposed into the ISR; while the leader wants no change, a maximal ISR larger than the
//! committed one is proposed away at every retry.

use std::collections::BTreeMap;

use crate::catalog::PartitionState;
use crate::log::PartitionLog;

/// Settings of replication that the leader applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A follower not caught up for this long leaves the ISR (replica.lag.time.max.ms).
    pub lag_time_max_ms: u64,
    /// min.insync.replicas of the topic.
    pub min_insync_replicas: usize,
    /// A proposed ISR change not committed within this long is proposed again.
    pub isr_retry_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            isr_retry_ms: 5_000,
        }
    }
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its log end as of its last accepted fetch, or -1 before one.
    pub end: i64,
    /// Last time it was caught up with the leader's log end.
    pub caught_up_ms: u64,
    last_fetch_ms: u64,
    last_fetch_leader_end: i64,
}

impl FollowerProgress {
    fn new(now_ms: u64) -> Self {
        FollowerProgress {
            end: -1,
            caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: i64::MAX,
        }
    }
}

/// The leader's answer to a follower's fetch position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCheck {
    /// The follower's log matches up to its fetch offset: serve it.
    Accepted,
    /// The follower's log diverges: its epoch ends at `end_offset` here (`-1, -1`: unknown).
    Diverging {
        /// The largest epoch here at or below the follower's.
        epoch: i32,
        /// Where that epoch ends here.
        end_offset: i64,
    },
    /// The fetcher is not a replica of this partition.
    NotReplica,
}

/// An ISR change for the controller (an AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The new ISR.
    pub isr: Vec<i32>,
    /// The leader epoch of the proposer.
    pub leader_epoch: i32,
    /// The partition epoch it was planned against.
    pub partition_epoch: i32,
}

/// One partition's leadership on this broker.
#[derive(Debug, Clone)]
pub struct Leader {
    me: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    pending: Option<(Vec<i32>, u64)>,
    /// Every member of every ISR proposed against the current partition epoch: any of those
    /// proposals may still commit, so all count towards the high watermark until the
    /// partition epoch moves (a proposal planned against an older epoch can no longer apply).
    outstanding: Vec<i32>,
    /// Replicas the last metadata called fenced: not proposed as additions.
    fenced: Vec<i32>,
    epoch_start: i64,
    hw: i64,
    followers: BTreeMap<i32, FollowerProgress>,
    config: ReplicationConfig,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl Leader {
    /// Takes leadership at `state` (whose leader is `me`) over a log ending at `log_end`, with
    /// the high watermark this replica last knew.
    pub fn new(
        me: i32,
        state: &PartitionState,
        log_end: i64,
        hw: i64,
        now_ms: u64,
        config: ReplicationConfig,
    ) -> Self {
        Self::with_own_end(me, state, log_end, log_end, hw, now_ms, config)
    }

    /// Takes leadership over a log ending at `log_end` of which `own_end` counts towards the
    /// high watermark (the fsynced end under fsync-before-ack, see [`crate::replica`]).
    pub fn with_own_end(
        me: i32,
        state: &PartitionState,
        log_end: i64,
        own_end: i64,
        hw: i64,
        now_ms: u64,
        config: ReplicationConfig,
    ) -> Self {
        debug_assert_eq!(state.leader, me);
        let followers = state
            .replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| (*r, FollowerProgress::new(now_ms)))
            .collect();
        let mut l = Leader {
            me,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            outstanding: Vec::new(),
            fenced: Vec::new(),
            epoch_start: log_end,
            hw: hw.clamp(0, log_end),
            followers,
            config,
            #[cfg(feature = "canary")]
            canary: None,
        };
        l.advance(own_end.min(log_end));
        l
    }

    /// The replicas of the partition.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// When a pending ISR proposal may be proposed again, if one is pending.
    pub fn retry_at(&self) -> Option<u64> {
        self.pending
            .as_ref()
            .map(|(_, at)| at + self.config.isr_retry_ms)
    }

    /// The controller refused `proposal`: if it is the pending one, the next tick plans
    /// again (KIP-841's revert to the committed ISR). Its members keep counting towards the
    /// high watermark until the partition epoch moves (another copy of the same proposal may
    /// still commit); the next plan settles them.
    pub fn refused(&mut self, proposal: &IsrProposal) {
        let ours = proposal.leader_epoch == self.leader_epoch
            && proposal.partition_epoch == self.partition_epoch;
        if ours
            && self
                .pending
                .as_ref()
                .is_some_and(|(isr, _)| *isr == proposal.isr)
        {
            self.pending = None;
        }
    }

    /// The replicas the metadata calls fenced (or shutting down) now: none of them is proposed
    /// into the ISR.
    pub fn set_fenced(&mut self, fenced: &[i32]) {
        self.fenced = fenced.to_vec();
    }

    /// The replicas the metadata last called fenced.
    pub fn fenced(&self) -> &[i32] {
        &self.fenced
    }

    /// The leader epoch this leadership serves.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The high watermark: records below it are committed.
    pub fn hw(&self) -> i64 {
        self.hw
    }

    /// The log end when this leadership began.
    pub fn epoch_start(&self) -> i64 {
        self.epoch_start
    }

    /// Whether the high watermark has reached this leadership's first offset, so it covers
    /// everything an earlier leader may have exposed (before that, ListOffsets answers
    /// OFFSET_NOT_AVAILABLE).
    pub fn hw_settled(&self) -> bool {
        self.hw >= self.epoch_start
    }

    /// Progress of each follower.
    pub fn followers(&self) -> &BTreeMap<i32, FollowerProgress> {
        &self.followers
    }

    /// The settings in force.
    pub fn config(&self) -> ReplicationConfig {
        self.config
    }

    /// Replaces the settings (the topic's config changed).
    pub fn set_config(&mut self, config: ReplicationConfig, log_end: i64) {
        self.config = config;
        self.advance(log_end);
    }

    /// Whether an acks=all write may be appended: the committed ISR has at least
    /// min.insync.replicas members.
    pub fn enough_replicas(&self) -> bool {
        self.isr.len() >= self.config.min_insync_replicas
    }

    /// The committed ISR plus members any proposal that may still commit adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut m = self.isr.clone();
        for r in &self.outstanding {
            if !m.contains(r) {
                m.push(*r);
            }
        }
        m
    }

    /// The catalog moved on within this leadership (same leader epoch): a new ISR, partition
    /// epoch or replica set. A committed change ends the pending one. A follower that left the
    /// ISR (the controller fenced it, or a shrink committed) forgets its progress: it rejoins
    /// only after a fetch made since, so a broker that died caught up (its last fetch within
    /// replica.lag.time.max.ms) is not proposed back, which the controller would refuse while
    /// the proposal kept holding back the high watermark.
    pub fn update(&mut self, state: &PartitionState, log_end: i64, now_ms: u64) {
        if state.partition_epoch != self.partition_epoch {
            self.pending = None;
            self.outstanding.clear();
        }
        for r in &self.isr {
            if !state.isr.contains(r) {
                if let Some(f) = self.followers.get_mut(r) {
                    *f = FollowerProgress::new(now_ms);
                }
            }
        }
        self.partition_epoch = state.partition_epoch;
        self.isr = state.isr.clone();
        self.replicas = state.replicas.clone();
        let me = self.me;
        self.followers
            .retain(|r, _| state.replicas.contains(r) && *r != me);
        for r in &state.replicas {
            if *r != me {
                self.followers
                    .entry(*r)
                    .or_insert_with(|| FollowerProgress::new(now_ms));
            }
        }
        self.advance(log_end);
    }

    /// Checks a follower's fetch position (`fetch_offset`, epoch of its last batch) against
    /// this leader's log.
    pub fn check_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        log: &PartitionLog,
    ) -> FetchCheck {
        if replica == self.me || !self.followers.contains_key(&replica) {
            return FetchCheck::NotReplica;
        }
        if last_fetched_epoch < 0 || fetch_offset <= log.log_start_offset() {
            return FetchCheck::Accepted;
        }
        let (epoch, end_offset) = log.end_offset_for_epoch(last_fetched_epoch);
        if epoch != last_fetched_epoch || end_offset < fetch_offset {
            return FetchCheck::Diverging { epoch, end_offset };
        }
        FetchCheck::Accepted
    }

    /// Records an accepted fetch at `fetch_offset` (the follower holds everything below it);
    /// returns whether the high watermark advanced. `ends` is the leader's (written, counted)
    /// end: the follower's progress and lag are measured against what the leader wrote, the
    /// high watermark against what it counts (under fsync-before-ack its fsynced end), so a
    /// follower that reports an end the leader has not fsynced yet keeps it for the leader's
    /// fsync to release.
    pub fn on_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        (written, counted): (i64, i64),
        now_ms: u64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&replica) else {
            return false;
        };
        let fetch_offset = fetch_offset.min(written);
        if fetch_offset >= written {
            f.caught_up_ms = f.caught_up_ms.max(now_ms);
        } else if fetch_offset >= f.last_fetch_leader_end {
            f.caught_up_ms = f.caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_ms = now_ms;
        f.last_fetch_leader_end = written;
        f.end = fetch_offset;
        self.advance(counted)
    }

    /// The leader's own log grew to `log_end`; returns whether the high watermark advanced.
    pub fn on_append(&mut self, log_end: i64) -> bool {
        self.advance(log_end)
    }

    fn advance(&mut self, log_end: i64) -> bool {
        // Only the committed ISR counts towards min.insync.replicas: a pending addition may
        // never commit, and then its member is neither in the ISR nor eligible to lead.
        let needed = self.config.min_insync_replicas.min(self.replicas.len());
        if self.isr.len() < needed {
            return false;
        }
        let maximal = self.maximal_isr();
        let candidate = maximal
            .iter()
            .map(|r| {
                if *r == self.me {
                    log_end
                } else {
                    self.followers.get(r).map(|f| f.end).unwrap_or(-1)
                }
            })
            .min()
            .unwrap_or(log_end);
        if candidate > self.hw {
            self.hw = candidate;
            true
        } else {
            false
        }
    }

    /// The ISR change due now, if any: followers not caught up for replica.lag.time.max.ms
    /// leave; replicas that are not fenced and reached the high watermark (and this
    /// leadership's start) in a fetch made since they last left the ISR join. With no change
    /// due while earlier proposals that added members are unresolved, the committed ISR is
    /// proposed again to settle them (see the module doc).
    pub fn tick(&mut self, now_ms: u64) -> Option<IsrProposal> {
        if let Some((_, at)) = &self.pending {
            if now_ms.saturating_sub(*at) < self.config.isr_retry_ms {
                return None;
            }
            self.pending = None;
        }
        let next = self.wanted_isr(now_ms);
        let mut current = self.isr.clone();
        current.sort_unstable();
        let mut sorted = next.clone();
        sorted.sort_unstable();
        #[cfg(feature = "canary")]
        let settle = self.canary != Some(crate::canary::Canary::KeepRefusedIsr);
        #[cfg(not(feature = "canary"))]
        let settle = true;
        if sorted == current && (!settle || self.maximal_isr().len() == self.isr.len()) {
            return None;
        }
        self.pending = Some((next.clone(), now_ms));
        for r in &next {
            if !self.outstanding.contains(r) {
                self.outstanding.push(*r);
            }
        }
        Some(IsrProposal {
            isr: next,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        })
    }
}

impl Leader {
    /// The ISR this leader wants now, in replica order (see [`Leader::tick`]).
    fn wanted_isr(&self, now_ms: u64) -> Vec<i32> {
        let lag = self.config.lag_time_max_ms;
        #[cfg(feature = "canary")]
        let heed_fencing = self.canary != Some(crate::canary::Canary::KeepRefusedIsr);
        #[cfg(not(feature = "canary"))]
        let heed_fencing = true;
        let mut next: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| {
                if *r == self.me {
                    return true;
                }
                let Some(f) = self.followers.get(r) else {
                    return false;
                };
                if self.isr.contains(r) {
                    now_ms.saturating_sub(f.caught_up_ms) <= lag
                } else {
                    f.end >= 0
                        && f.end >= self.hw
                        && f.end >= self.epoch_start
                        && now_ms.saturating_sub(f.caught_up_ms) <= lag
                        && !(heed_fencing && self.fenced.contains(r))
                }
            })
            .collect();
        next.dedup();
        next
    }

    /// Turns on a planted bug (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }
}

/// Where a follower truncates when the leader says its log diverges: told that epoch
/// `leader_epoch` ends at `leader_end` on the leader, it keeps what both logs hold of that
/// epoch; if it never had that epoch it cuts where its own earlier epoch ends (the next fetch
/// checks again from there). When the leader has no epoch in common with it (after an unclean
/// election, say) nothing can be shown to match, so it keeps nothing. Never above its log end.
pub fn truncation_offset(log: &PartitionLog, leader_epoch: i32, leader_end: i64) -> i64 {
    let end = log.log_end_offset();
    let cut = if leader_epoch < 0 {
        log.log_start_offset()
    } else {
        match log.end_offset_for_epoch(leader_epoch) {
            (-1, _) => log.log_start_offset(),
            (e, own_end) if e == leader_epoch => own_end.min(leader_end),
            (_, own_end) => own_end,
        }
    };
    cut.clamp(log.log_start_offset(), end)
}

/// A follower's high watermark: the leader's, capped at what it holds.
pub fn follower_hw(leader_hw: i64, log_end: i64) -> i64 {
    leader_hw.min(log_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use proptest::prelude::*;

    fn state(isr: &[i32], leader_epoch: i32, partition_epoch: i32) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            elr: vec![],
            leader: 1,
            leader_epoch,
            partition_epoch,
        }
    }

    fn cfg(min: usize) -> ReplicationConfig {
        ReplicationConfig {
            lag_time_max_ms: 1000,
            min_insync_replicas: min,
            isr_retry_ms: 500,
        }
    }

    #[test]
    fn hw_is_the_smallest_isr_end() {
        let mut l = Leader::new(1, &state(&[1, 2, 3], 0, 0), 10, 0, 0, cfg(2));
        assert_eq!(l.hw(), 0);
        assert!(!l.on_fetch(2, 10, (10, 10), 1));
        assert!(l.on_fetch(3, 7, (10, 10), 1));
        assert_eq!(l.hw(), 7);
        l.on_fetch(3, 10, (10, 10), 2);
        assert_eq!(l.hw(), 10);
        assert!(l.hw_settled());
    }

    #[test]
    fn a_lagging_follower_leaves_and_a_caught_up_one_joins() {
        let mut l = Leader::new(1, &state(&[1, 2, 3], 0, 0), 10, 10, 0, cfg(2));
        l.on_fetch(2, 10, (10, 10), 100);
        assert_eq!(l.tick(500), None);
        let p = l.tick(1_050).expect("3 lags");
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(l.tick(1_060), None, "one change pending at a time");
        l.update(&state(&[1, 2], 0, 1), 10, 1_070);
        assert_eq!(l.isr(), &[1, 2]);
        l.on_fetch(2, 10, (10, 10), 1_080);
        l.on_fetch(3, 10, (10, 10), 1_080);
        let p = l.tick(1_090).expect("3 caught up");
        assert_eq!((p.isr, p.partition_epoch), (vec![1, 2, 3], 1));
    }

    #[test]
    fn hw_stops_below_min_insync() {
        let mut l = Leader::new(1, &state(&[1], 0, 0), 10, 5, 0, cfg(2));
        assert_eq!(l.hw(), 5);
        assert!(!l.on_append(20));
        assert!(!l.enough_replicas());
        let mut one = Leader::new(1, &state(&[1], 0, 0), 10, 5, 0, cfg(1));
        assert!(one.on_append(20));
        assert_eq!(one.hw(), 20);
    }

    /// Replicas [1, 2], both in sync, 1 leading at `leader_epoch`.
    fn pair(leader_epoch: i32) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            elr: vec![],
            leader: 1,
            leader_epoch,
            partition_epoch: 0,
        }
    }

    fn log_with(epochs: &[(i32, usize)]) -> PartitionLog {
        // Appends `n` one-record batches at each epoch in turn.
        let mut log = PartitionLog::new(LogConfig::default(), 0);
        for (e, n) in epochs {
            log.set_leader_epoch(*e);
            for _ in 0..*n {
                let mut b = crate::batch::build::simple(1, 0, None);
                log.append(0, &mut b).unwrap();
            }
        }
        log
    }

    #[test]
    fn divergence_and_truncation() {
        // Leader: epoch 0 holds 0..5, epoch 2 holds 5..8. Follower: epoch 0 holds 0..5,
        // epoch 1 (a leader that never committed) holds 5..9.
        let leader_log = log_with(&[(0, 5), (2, 3)]);
        let follower_log = log_with(&[(0, 5), (1, 4)]);
        let l = Leader::new(1, &pair(2), 8, 5, 0, cfg(1));
        let check = l.check_fetch(2, 9, follower_log.last_epoch(), &leader_log);
        assert_eq!(
            check,
            FetchCheck::Diverging {
                epoch: 0,
                end_offset: 5
            }
        );
        assert_eq!(truncation_offset(&follower_log, 0, 5), 5);
        assert_eq!(
            truncation_offset(&follower_log, -1, -1),
            0,
            "no common epoch"
        );
        assert_eq!(l.check_fetch(2, 5, 0, &leader_log), FetchCheck::Accepted);
        assert_eq!(l.check_fetch(2, 8, 2, &leader_log), FetchCheck::Accepted);
        assert_eq!(l.check_fetch(3, 8, 2, &leader_log), FetchCheck::NotReplica);
    }

    #[test]
    fn a_follower_relabels_over_an_empty_epoch_it_led() {
        // This replica led epoch 4 without writing; the new leader sends epoch-2 batches.
        let mut log = log_with(&[(0, 2)]);
        log.set_leader_epoch(4);
        let leader = log_with(&[(0, 2), (2, 2)]);
        assert_eq!(log.last_epoch(), 0);
        let l = Leader::new(1, &pair(5), 4, 0, 0, cfg(1));
        assert_eq!(
            l.check_fetch(2, 2, log.last_epoch(), &leader),
            FetchCheck::Accepted
        );
        let mut b = crate::batch::build::simple(1, 0, None);
        crate::batch::assign_offset(&mut b, 2, 2);
        log.append_replicated(0, &b).unwrap();
        assert_eq!(log.epochs(), &[(0, 0), (2, 2)]);
        assert_eq!(log.last_epoch(), 2);
    }

    /// Found by skein-sim replication: a proposal retried after `isr_retry_ms` may still
    /// commit, so its members keep counting towards the high watermark.
    #[test]
    fn a_retried_expansion_still_holds_back_the_high_watermark() {
        let mut l = Leader::new(1, &state(&[1, 2], 0, 0), 10, 10, 0, cfg(1));
        l.on_fetch(2, 10, (10, 10), 1);
        l.on_fetch(3, 10, (10, 10), 1);
        assert_eq!(l.tick(2).unwrap().isr, vec![1, 2, 3]);
        // Nothing answers; the proposal times out and another replaces it.
        l.on_append(20);
        l.on_fetch(2, 20, (20, 20), 600);
        assert!(l.tick(2_000).is_some());
        assert_eq!(
            l.hw(),
            10,
            "3 may be in the committed ISR: the old proposal may commit"
        );
        l.update(&state(&[1, 2], 0, 1), 20, 2_100);
        assert_eq!(
            l.hw(),
            20,
            "the partition epoch moved: that proposal can no longer apply"
        );
    }

    /// The e2e "broker killed" flake: the controller fences a follower that died caught up and
    /// takes it out of the ISR; its last fetch is still within the lag, but it is not proposed
    /// back (the controller would refuse, and the proposal would hold back the high watermark).
    #[test]
    fn a_follower_the_controller_removed_rejoins_only_after_a_new_fetch() {
        let mut l = Leader::new(1, &state(&[1, 2, 3], 0, 0), 10, 10, 0, cfg(1));
        l.on_fetch(2, 10, (10, 10), 100);
        l.on_fetch(3, 10, (10, 10), 100);
        // 3 dies; the controller fences it: ISR [1, 2] at the same leader epoch.
        l.update(&state(&[1, 2], 0, 1), 10, 300);
        assert_eq!(l.tick(400), None, "3 has not fetched since it left the ISR");
        l.on_append(20);
        l.on_fetch(2, 20, (20, 20), 500);
        assert_eq!(
            l.hw(),
            20,
            "only the committed ISR holds back the high watermark"
        );
        assert_eq!(l.tick(600), None);
        // 3 comes back and catches up: it rejoins.
        l.on_fetch(3, 20, (20, 20), 700);
        assert_eq!(l.tick(800).expect("3 caught up").isr, vec![1, 2, 3]);
    }

    /// A proposal that added a member and was lost (or refused) is settled by proposing the
    /// committed ISR once the leader no longer wants the member: the partition epoch moves.
    #[test]
    fn an_unresolved_addition_is_settled_by_proposing_the_committed_isr() {
        let mut l = Leader::new(1, &state(&[1, 2], 0, 0), 10, 10, 0, cfg(1));
        l.on_fetch(2, 10, (10, 10), 1);
        l.on_fetch(3, 10, (10, 10), 1);
        let p = l.tick(2).expect("3 caught up");
        assert_eq!(p.isr, vec![1, 2, 3]);
        // The proposal is lost; 3 goes silent, 2 keeps up.
        l.on_append(20);
        l.on_fetch(2, 20, (20, 20), 600);
        assert_eq!(l.hw(), 10, "the lost proposal may still commit");
        let p = l.tick(1_100).expect("the committed ISR, proposed again");
        assert_eq!((p.isr, p.partition_epoch), (vec![1, 2], 0));
        assert_eq!(l.tick(1_200), None, "pending");
        l.update(&state(&[1, 2], 0, 1), 20, 1_300);
        assert_eq!(l.hw(), 20);
        assert_eq!(l.tick(1_400), None, "settled: nothing more to propose");
    }

    #[test]
    fn a_refusal_of_the_pending_proposal_lets_the_leader_plan_again() {
        let mut l = Leader::new(1, &state(&[1, 2], 0, 0), 10, 10, 0, cfg(1));
        l.on_fetch(3, 10, (10, 10), 1);
        let p = l.tick(2).expect("3 caught up");
        let stale = IsrProposal {
            partition_epoch: 7,
            ..p.clone()
        };
        l.refused(&stale);
        assert_eq!(l.tick(3), None, "not ours: still pending");
        l.set_fenced(&[3]);
        l.refused(&p);
        let again = l.tick(4).expect("plans again at once");
        assert_eq!(
            again.isr,
            vec![1, 2],
            "3 is fenced: the committed ISR settles it"
        );
        assert_eq!(l.hw(), 10);
    }

    #[test]
    fn a_pending_addition_does_not_count_towards_min_insync() {
        let mut l = Leader::new(1, &state(&[1], 0, 0), 10, 0, 0, cfg(2));
        l.on_fetch(2, 10, (10, 10), 1);
        let p = l.tick(2).expect("2 caught up");
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(l.hw(), 0, "not while the addition is pending");
        l.update(&state(&[1, 2], 0, 1), 10, 3);
        assert_eq!(l.hw(), 10);
    }

    proptest! {
        /// Random fetches, appends, fsyncs, ticks and committed ISR changes: the high watermark
        /// never falls, never passes the leader's counted (fsynced) end or a maximal-ISR
        /// member's end, and stays put while the committed ISR is below min ISR.
        #[test]
        fn hw_safety(ops in proptest::collection::vec((0u8..6, 0u8..3, 0i64..20), 1..200), min in 1usize..4) {
            let mut st = state(&[1, 2, 3], 0, 0);
            let (mut written, mut counted) = (0i64, 0i64);
            let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
            let mut now = 0u64;
            let mut l = Leader::new(1, &st, counted, 0, now, cfg(min));
            for (op, who, n) in ops {
                now += 100;
                let before = l.hw();
                let f = 2 + i32::from(who % 2);
                match op {
                    0 => written += n,
                    5 => { counted = (counted + n).min(written); l.on_append(counted); }
                    1 | 2 => {
                        let e = ends.entry(f).or_insert(0);
                        *e = (*e + n).min(written);
                        let at = *e;
                        l.on_fetch(f, at, (written, counted), now);
                    }
                    3 => {
                        if let Some(p) = l.tick(now) {
                            st.isr = p.isr;
                            st.partition_epoch += 1;
                            l.update(&st, counted, now);
                        }
                    }
                    _ => { l.tick(now); }
                }
                prop_assert!(l.hw() >= before);
                prop_assert!(l.hw() <= counted);
                for r in l.maximal_isr() {
                    if r != 1 && l.hw() > before {
                        prop_assert!(l.hw() <= ends.get(&r).copied().unwrap_or(0));
                    }
                }
                if l.hw() > before {
                    prop_assert!(l.isr().len() >= min.min(3));
                }
            }
        }
    }
}
