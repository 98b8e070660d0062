//! What a run reports: the event tail, one-line trace of every message, the status summary and the counters.

use super::*;

impl Cluster {
    pub(super) fn push_line(&mut self, line: Line) {
        if let Some(out) = &mut self.trace_out {
            let obj = match &line {
                Line::Deliver { t, from, to, what } => {
                    serde_json::json!({ "t": t, "from": from, "to": to, "event": what })
                }
                Line::Note { t, text } => serde_json::json!({ "t": t, "event": text }),
            };
            let _ = writeln!(out, "{obj}");
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The trace hash so far.
    pub(in crate::cluster) fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The last event lines.
    pub(in crate::cluster) fn tail(&self) -> Vec<String> {
        self.tail
            .iter()
            .map(|l| match l {
                Line::Deliver { t, from, to, what } => format!("t={t} {from}->{to} {what}"),
                Line::Note { t, text } => format!("t={t} {text}"),
            })
            .collect()
    }

    /// One line per node.
    pub(in crate::cluster) fn status(&self) -> String {
        let mut out = format!("t={} blocked={:?}\n", self.now, self.net.blocked());
        for n in &self.nodes {
            let kind = if n.voter { "voter" } else { "broker" };
            let _ = write!(
                out,
                "  node {} ({kind}, inc {}{}{}{}): ",
                n.id,
                n.incarnation,
                if n.paused { ", paused" } else { "" },
                if n.stay_dead { ", dead for good" } else { "" },
                if n.registered { ", registered" } else { "" },
            );
            match (&n.raft, n.up) {
                (_, false) => out.push_str("down\n"),
                (None, true) => {
                    let _ = writeln!(out, "up, believes leader {:?}", n.believed_leader);
                }
                (Some(r), true) => {
                    let _ = writeln!(
                        out,
                        "{:?} term={} leader={:?} commit={} applied={} last={} persisted={} \
                         snapshot={} brokers={:?}",
                        r.role(),
                        r.term(),
                        r.leader_id(),
                        r.commit_index(),
                        n.applied,
                        r.last_index(),
                        r.persisted_index(),
                        r.snapshot().index,
                        n.catalog
                            .brokers()
                            .map(|b| format!(
                                "{}@{}{}",
                                b.id,
                                b.incarnation,
                                if b.fenced { "/fenced" } else { "" }
                            ))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        out
    }

    /// Fills the counters the history decides.
    pub(in crate::cluster) fn finish_stats(&mut self) {
        self.stats.committed = self.meta.len();
        (self.stats.acked, self.stats.lost, _) = self.clients.counts();
        self.stats.proposals = self.clients.ops.len() as u64;
        for a in self.meta.history() {
            match &a.record {
                Some(MetadataRecord::BrokerRegistered { .. }) => self.stats.registrations += 1,
                Some(MetadataRecord::BrokerFenced { .. }) => self.stats.fences += 1,
                Some(MetadataRecord::BrokerUnfenced { .. }) => self.stats.unfences += 1,
                _ => {}
            }
        }
    }
}

pub(super) fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Raft(m) => match m {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => format!("PreVote t{term} last=({last_log_term},{last_log_index})"),
            Message::PreVoteResponse { term, granted } => {
                format!("PreVoteResponse t{term} granted={granted}")
            }
            Message::Vote {
                term,
                last_log_index,
                last_log_term,
            } => format!("Vote t{term} last=({last_log_term},{last_log_index})"),
            Message::VoteResponse { term, granted } => {
                format!("VoteResponse t{term} granted={granted}")
            }
            Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => format!(
                "AppendEntries t{term} prev=({prev_log_term},{prev_log_index}) n={} commit={leader_commit}",
                entries.len()
            ),
            Message::AppendEntriesResponse { term, result } => match result {
                AppendResult::Success { match_index } => {
                    format!("AppendEntriesResponse t{term} ok match={match_index}")
                }
                AppendResult::Reject {
                    prev_log_index,
                    conflict_term,
                    conflict_index,
                } => format!(
                    "AppendEntriesResponse t{term} reject prev={prev_log_index} conflict={conflict_term:?}@{conflict_index}"
                ),
            },
            Message::InstallSnapshot { term, snapshot } => format!(
                "InstallSnapshot t{term} ({},{})",
                snapshot.term, snapshot.index
            ),
            Message::InstallSnapshotResponse { term, match_index } => {
                format!("InstallSnapshotResponse t{term} match={match_index}")
            }
        },
        Msg::Forward { req, data } => {
            format!("Forward req={req} {}", String::from_utf8_lossy(data))
        }
        Msg::Forwarded { req, result } => format!("Forwarded req={req} {result:?}"),
        Msg::Heartbeat {
            broker,
            incarnation,
            register,
        } => format!("Heartbeat broker={broker} inc={incarnation} register={register}"),
        Msg::HeartbeatAck {
            incarnation,
            leader,
            registered,
        } => format!("HeartbeatAck inc={incarnation} leader={leader} registered={registered}"),
        Msg::Observe { next } => format!("Observe next={next}"),
        Msg::Observed(a) => format!(
            "Observed t{} leader={:?} commit={} snapshot={:?} n={}",
            a.term,
            a.leader,
            a.commit,
            a.snapshot.as_ref().map(|s| (s.term, s.index)),
            a.entries.len()
        ),
    }
}
