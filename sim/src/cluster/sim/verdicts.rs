//! Where the cluster driver meets its checkers: gathers each voter's log ends and every node's
//! end state into the views the checkers of [`super::super::check`] judge (commit safety after
//! every step; liveness and convergence at the end). A child module of the driver, so it reads
//! the driver's state without widening it.

use skein_core::catalog::Catalog;
use skein_core::raft::NodeId;

use super::super::check::converge;
use super::super::check::raft::VoterLog;
use super::super::store::{self, DurableView};
use super::Cluster;
use crate::checker::{violation, Verdict};

impl Cluster {
    pub(super) fn check_commit_safety(&self) -> Verdict {
        let Some((&index, &(term, _))) = self.raft_check.committed.last_key_value() else {
            return Ok(());
        };
        let logs: Vec<VoterLog> = self.nodes[..self.swarm.voters as usize]
            .iter()
            .map(|n| match (&n.raft, n.store.durable_view()) {
                (Some(r), DurableView::End(durable_end)) => VoterLog {
                    id: n.id,
                    has_committed: index <= r.snapshot().index || r.term_at(index) == Some(term),
                    end: (r.last_term(), r.last_index()),
                    durable_end,
                },
                (Some(_), _) => unreachable!("an up voter's store is open"),
                (None, DurableView::Recovered(d)) => VoterLog {
                    id: n.id,
                    has_committed: store::holds(d, index, term),
                    end: store::end(d),
                    durable_end: store::end(d),
                },
                // Never started: an empty disk.
                (None, DurableView::End(_)) => VoterLog {
                    id: n.id,
                    has_committed: false,
                    end: (0, 0),
                    durable_end: (0, 0),
                },
                // A store that refuses its disk fails the node's restart (a `raft-store`
                // violation): it is never elected and grants no vote meanwhile.
                (None, DurableView::Unrecoverable) => VoterLog {
                    id: n.id,
                    has_committed: true,
                    end: (0, 0),
                    durable_end: (u64::MAX, u64::MAX),
                },
            })
            .collect();
        self.raft_check.check_commit_safety(&logs)
    }

    /// Whether the cluster settled and the convergence checks pass.
    pub(super) fn converged(&self) -> Verdict {
        let Some(l) = self.leader() else {
            return Err(violation("liveness", "no leader at the end".into()));
        };
        let lr = self.node(l).raft.as_ref().expect("leader is up");
        let commit = lr.commit_index();
        if lr.last_index() != commit {
            return Err(violation(
                "liveness",
                format!(
                    "leader {l} still has entries {}..={} uncommitted",
                    commit + 1,
                    lr.last_index()
                ),
            ));
        }
        for n in self.nodes.iter().filter(|n| n.raft.is_some()) {
            if n.applied != commit {
                return Err(violation(
                    "liveness",
                    format!("node {} applied {} of {commit} committed", n.id, n.applied),
                ));
            }
        }
        if self.meta.len() != commit {
            return Err(violation(
                "liveness",
                format!(
                    "{} entries were applied somewhere, the leader commits {commit}",
                    self.meta.len()
                ),
            ));
        }
        self.clients.check_committed(&self.meta)?;
        let reference = self.meta.catalog_at(commit);
        let catalogs: Vec<(NodeId, &Catalog)> = self
            .nodes
            .iter()
            .filter(|n| n.raft.is_some() || (n.observer.is_some() && !n.paused))
            .map(|n| (n.id, &n.catalog))
            .collect();
        let brokers: Vec<converge::BrokerEnd> = self
            .nodes
            .iter()
            .map(|n| converge::BrokerEnd {
                id: n.id as i32,
                incarnation: n.incarnation.clone(),
                live: n.up && !n.paused && !n.stay_dead,
            })
            .collect();
        converge::check(&catalogs, &reference, commit, &brokers)?;
        let pending = self
            .node(l)
            .controller
            .clone()
            .poll(self.now, &self.node(l).catalog);
        if !pending.is_empty() {
            return Err(violation(
                "liveness",
                format!("the controller on leader {l} still proposes {pending:?}"),
            ));
        }
        self.clients.check_reflected(&self.meta, &reference)
    }
}
