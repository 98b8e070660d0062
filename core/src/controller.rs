//! The active controller's broker liveness: heartbeats in, fencing records out.
//!
//! Every broker heartbeats the quorum leader. The leader's [`Controller`] remembers when it last
//! heard each incarnation and, when polled, proposes [`MetadataRecord::BrokerFenced`] for a
//! registered, unfenced broker silent for longer than the session timeout and
//! [`MetadataRecord::BrokerUnfenced`] for a fenced one heard from again. It holds no durable
//! state: a newly elected leader starts every broker's clock at its election, so nobody is
//! fenced for the time it took to elect it.
//!
//! Invariants: only a controller that is leader proposes; it proposes for a broker only what
//! the committed catalog does not already say, and names the incarnation it judged, so a stale
//! proposal committed after a re-registration changes nothing.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, MetadataRecord};

/// Broker liveness as the active controller sees it.
#[derive(Debug, Clone)]
pub struct Controller {
    session_timeout_ms: u64,
    /// When this node became leader (`None`: not leader).
    leader_since: Option<u64>,
    /// Last heartbeat per broker: (incarnation, time).
    heard: BTreeMap<i32, (String, u64)>,
    /// When this controller first saw each fenced incarnation fenced: only a heartbeat after
    /// that unfences it (one sent before a controlled shutdown's fence must not).
    fenced_seen: BTreeMap<i32, (String, u64)>,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl Controller {
    /// A controller that fences brokers silent for `session_timeout_ms`.
    pub fn new(session_timeout_ms: u64) -> Self {
        Controller {
            session_timeout_ms,
            leader_since: None,
            heard: BTreeMap::new(),
            fenced_seen: BTreeMap::new(),
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    fn fencing_disabled(&self) -> bool {
        #[cfg(feature = "canary")]
        {
            self.canary == Some(crate::canary::Canary::NoFencing)
        }
        #[cfg(not(feature = "canary"))]
        {
            false
        }
    }

    /// The session timeout.
    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// Tells the controller whether this node leads the quorum now.
    pub fn set_leader(&mut self, now_ms: u64, leader: bool) {
        match (leader, self.leader_since) {
            (true, None) => {
                self.leader_since = Some(now_ms);
                self.heard.clear();
                self.fenced_seen.clear();
            }
            (false, Some(_)) => {
                self.leader_since = None;
                self.heard.clear();
                self.fenced_seen.clear();
            }
            _ => {}
        }
    }

    /// Whether this controller is active.
    pub fn is_leader(&self) -> bool {
        self.leader_since.is_some()
    }

    /// A heartbeat from `broker`'s incarnation.
    pub fn heartbeat(&mut self, now_ms: u64, broker: i32, incarnation: &str) {
        if self.leader_since.is_none() {
            return;
        }
        self.heard.insert(broker, (incarnation.to_string(), now_ms));
    }

    /// Records to propose now: fences of silent brokers, unfences of returned ones.
    pub fn poll(&mut self, now_ms: u64, catalog: &Catalog) -> Vec<MetadataRecord> {
        let Some(since) = self.leader_since else {
            return Vec::new();
        };
        self.fenced_seen.retain(|id, (inc, _)| {
            catalog
                .broker(*id)
                .is_some_and(|b| b.fenced && b.incarnation == *inc)
        });
        for b in catalog.brokers().filter(|b| b.fenced) {
            self.fenced_seen
                .entry(b.id)
                .or_insert_with(|| (b.incarnation.clone(), now_ms));
        }
        let mut out = Vec::new();
        for b in catalog.brokers() {
            let heard = match self.heard.get(&b.id) {
                Some((inc, at)) if *inc == b.incarnation => Some(*at),
                _ => None,
            };
            let last = heard.unwrap_or(since).max(since);
            let silent = now_ms.saturating_sub(last) > self.session_timeout_ms;
            if !b.fenced && silent && !self.fencing_disabled() {
                out.push(MetadataRecord::BrokerFenced {
                    id: b.id,
                    incarnation: b.incarnation.clone(),
                });
            } else if b.fenced
                && heard.is_some_and(|at| {
                    self.fenced_seen
                        .get(&b.id)
                        .is_none_or(|(_, seen)| at > *seen)
                })
                && !silent
            {
                out.push(MetadataRecord::BrokerUnfenced {
                    id: b.id,
                    incarnation: b.incarnation.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;

    fn register(c: &mut Catalog, id: i32, inc: &str) {
        c.apply(&MetadataRecord::BrokerRegistered {
            id,
            incarnation: inc.into(),
            host: "h".into(),
            port: 9092,
            rack: None,
        });
    }

    #[test]
    fn fences_the_silent_and_unfences_the_returned() {
        let mut cat = Catalog::new(LogConfig::default());
        register(&mut cat, 1, "a");
        register(&mut cat, 2, "b");
        let mut ctl = Controller::new(1000);
        assert!(
            ctl.poll(10_000, &cat).is_empty(),
            "not leader: no proposals"
        );
        ctl.set_leader(10_000, true);
        ctl.heartbeat(10_500, 1, "a");
        assert!(
            ctl.poll(10_900, &cat).is_empty(),
            "within the grace of the election"
        );
        ctl.heartbeat(11_400, 1, "a");
        let out = ctl.poll(11_500, &cat);
        assert_eq!(
            out,
            vec![MetadataRecord::BrokerFenced {
                id: 2,
                incarnation: "b".into()
            }]
        );
        for r in &out {
            cat.apply(r);
        }
        assert!(cat.broker(2).unwrap().fenced);
        // A heartbeat from an old incarnation does not count.
        ctl.heartbeat(11_600, 2, "old");
        ctl.heartbeat(11_600, 1, "a");
        assert!(ctl.poll(11_700, &cat).is_empty());
        ctl.heartbeat(11_800, 2, "b");
        ctl.heartbeat(11_800, 1, "a");
        let out = ctl.poll(11_900, &cat);
        assert_eq!(
            out,
            vec![MetadataRecord::BrokerUnfenced {
                id: 2,
                incarnation: "b".into()
            }]
        );
        ctl.set_leader(12_000, false);
        assert!(ctl.poll(99_000, &cat).is_empty());
    }
}
