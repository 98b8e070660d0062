//! After the faults heal and a quiet period, the metadata converges everywhere:
//! - every running voter's catalog equals the catalog the whole committed history builds;
//! - every broker that is running and heartbeating is registered with its current incarnation
//!   and unfenced;
//! - every broker that stayed silent or dead through the quiet period is fenced (or was never
//!   registered);
//! - every partition with a live (registered, unfenced) broker in its ISR has a leader.

use skein_core::catalog::Catalog;
use skein_core::raft::NodeId;

use crate::checker::{violation, Verdict};

/// A broker as the harness knows it at the end.
#[derive(Debug, Clone)]
pub struct BrokerEnd {
    /// Broker (node) id.
    pub id: i32,
    /// Its current incarnation.
    pub incarnation: String,
    /// Running and heartbeating through the quiet period.
    pub live: bool,
}

/// Judges the converged state.
pub fn check(
    catalogs: &[(NodeId, &Catalog)],
    reference: &Catalog,
    index: u64,
    brokers: &[BrokerEnd],
) -> Verdict {
    for (id, c) in catalogs {
        if *c != reference {
            return Err(violation(
                "convergence",
                format!(
                    "node {id}'s catalog differs from the one the {index} committed entries \
                     build:\n  node:    {c:?}\n  records: {reference:?}"
                ),
            ));
        }
    }
    for t in reference.topics() {
        for (i, p) in t.parts.iter().enumerate() {
            let live = |r: &i32| reference.broker(*r).is_some_and(|b| !b.fenced);
            if p.leader < 0 && p.isr.iter().any(live) {
                return Err(violation(
                    "partition-leadership",
                    format!(
                        "{}-{i} has no leader though its ISR holds a live broker: {p:?}",
                        t.name
                    ),
                ));
            }
        }
    }
    for b in brokers {
        let reg = reference.broker(b.id);
        if b.live {
            match reg {
                Some(r) if r.incarnation == b.incarnation && !r.fenced => {}
                other => {
                    return Err(violation(
                        "convergence",
                        format!(
                            "broker {} (incarnation {}) is live but registered as {other:?}",
                            b.id, b.incarnation
                        ),
                    ))
                }
            }
        } else if let Some(r) = reg.filter(|r| !r.fenced) {
            return Err(violation(
                "convergence",
                format!(
                    "broker {} stayed dead through the quiet period but is unfenced: {r:?}",
                    b.id
                ),
            ));
        }
    }
    Ok(())
}
