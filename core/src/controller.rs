//! The active controller's broker liveness: heartbeats in, fencing records out.
//!
//! Every broker heartbeats the quorum leader. The leader's [`Controller`] remembers when it last
//! heard each incarnation and, when polled, proposes [`MetadataRecord::BrokerFenced`] for a
//! registered, unfenced broker silent for longer than the session timeout and
//! [`MetadataRecord::BrokerUnfenced`] for a fenced one heard from again. It holds no durable
//! state: a newly elected leader starts every broker's clock at its election, so nobody is
//! fenced for the time it took to elect it.
//!
//! [`Controller::round`] is the whole periodic round of a broker's controller: it notes
//! whether this node leads, counts its own heartbeat, and (as leader) returns the records to
//! propose — the cluster id while none is committed, fences and unfences, and every
//! [`Controller::with_rebalance_every`] the preferred-leader elections — plus whether this
//! broker must register again because the catalog names an earlier incarnation of it. The
//! broker's shell and the cluster simulation both run their rounds through it.
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
    /// Preferred-leader elections every this many ms (0: never).
    rebalance_every_ms: u64,
    /// When the last preferred-leader check ran.
    last_rebalance_ms: u64,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

/// What this node brings to one controller round.
#[derive(Debug, Clone, Copy)]
pub struct RoundInput<'a> {
    /// This broker's id.
    pub me: i32,
    /// This broker's incarnation (fresh per process start).
    pub incarnation: &'a str,
    /// Whether this node leads the metadata quorum now.
    pub leading: bool,
    /// Whether this broker is shutting down (it no longer heartbeats or re-registers).
    pub stopping: bool,
    /// The cluster id this node's data directory holds, proposed while none is committed.
    pub local_cluster_id: &'a str,
}

/// The outcome of one controller round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// The catalog names an earlier incarnation of this broker: propose its registration again.
    pub register_again: bool,
    /// Records to propose, in order.
    pub proposals: Vec<MetadataRecord>,
}

impl Controller {
    /// A controller that fences brokers silent for `session_timeout_ms`.
    pub fn new(session_timeout_ms: u64) -> Self {
        Controller {
            session_timeout_ms,
            leader_since: None,
            heard: BTreeMap::new(),
            fenced_seen: BTreeMap::new(),
            rebalance_every_ms: 0,
            last_rebalance_ms: 0,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// The same controller, running preferred-leader elections every `ms` (0: never).
    pub fn with_rebalance_every(mut self, ms: u64) -> Self {
        self.rebalance_every_ms = ms;
        self
    }

    /// One controller round at `now_ms` over the committed `catalog`.
    pub fn round(&mut self, now_ms: u64, catalog: &Catalog, input: RoundInput<'_>) -> Round {
        // A registration of an earlier incarnation committed after ours would leave this broker
        // fenced for good (its heartbeats name another incarnation): register again.
        let register_again = !input.stopping
            && catalog
                .broker(input.me)
                .is_some_and(|b| b.incarnation != input.incarnation);
        self.set_leader(now_ms, input.leading);
        if !input.leading {
            return Round {
                register_again,
                proposals: Vec::new(),
            };
        }
        if !input.stopping {
            self.heartbeat(now_ms, input.me, input.incarnation);
        }
        let rebalance = self.rebalance_every_ms > 0
            && now_ms.saturating_sub(self.last_rebalance_ms) >= self.rebalance_every_ms;
        if rebalance {
            self.last_rebalance_ms = now_ms;
        }
        let mut proposals = Vec::new();
        if catalog.cluster_id().is_none() {
            proposals.push(MetadataRecord::ClusterId {
                id: input.local_cluster_id.to_string(),
            });
        }
        proposals.extend(self.poll(now_ms, catalog));
        if rebalance {
            // Preferred-leader election: leadership goes back to the first replica once it is
            // live and in sync again.
            for (topic, partition, partition_epoch, leader) in catalog.imbalanced() {
                proposals.push(MetadataRecord::LeaderMoved {
                    topic,
                    partition,
                    partition_epoch,
                    leader,
                });
            }
        }
        Round {
            register_again,
            proposals,
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

    /// Asserts the controller's invariants: it remembers heartbeats and fences only while it
    /// leads, and only from its own leadership.
    pub fn check_invariants(&self) {
        match self.leader_since {
            None => assert!(
                self.heard.is_empty() && self.fenced_seen.is_empty(),
                "controller: a follower remembers heartbeats or fences"
            ),
            Some(since) => {
                for (id, (_, at)) in self.heard.iter().chain(&self.fenced_seen) {
                    assert!(
                        *at >= since,
                        "controller: broker {id} noted at {at}, before this leadership ({since})"
                    );
                }
            }
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

    fn input<'a>(leading: bool, incarnation: &'a str) -> RoundInput<'a> {
        RoundInput {
            me: 1,
            incarnation,
            leading,
            stopping: false,
            local_cluster_id: "local",
        }
    }

    #[test]
    fn a_round_proposes_the_cluster_id_first_and_asks_a_stale_broker_to_register() {
        let mut cat = Catalog::new(LogConfig::default());
        register(&mut cat, 1, "old");
        let mut ctl = Controller::new(1000);
        let r = ctl.round(0, &cat, input(false, "new"));
        assert_eq!((r.register_again, r.proposals.len()), (true, 0));
        let r = ctl.round(10, &cat, input(true, "new"));
        assert_eq!(
            r.proposals.first(),
            Some(&MetadataRecord::ClusterId { id: "local".into() })
        );
        let mut stopping = input(true, "new");
        stopping.stopping = true;
        assert!(!ctl.round(20, &cat, stopping).register_again);
        register(&mut cat, 1, "new");
        assert!(!ctl.round(30, &cat, input(true, "new")).register_again);
    }

    #[test]
    fn preferred_leaders_are_checked_on_their_schedule_only() {
        let mut cat = Catalog::new(LogConfig::default());
        cat.apply(&MetadataRecord::ClusterId { id: "c".into() });
        register(&mut cat, 1, "a");
        register(&mut cat, 2, "b");
        let rec = cat
            .plan_create(
                "t",
                1,
                &crate::catalog::Placement::Manual(vec![vec![1, 2]]),
                &[],
                [1; 16],
            )
            .unwrap();
        cat.apply(&rec);
        // Broker 1 is fenced and comes back: leadership stays with broker 2 until a check.
        cat.apply(&MetadataRecord::BrokerFenced {
            id: 1,
            incarnation: "a".into(),
        });
        cat.apply(&MetadataRecord::BrokerUnfenced {
            id: 1,
            incarnation: "a".into(),
        });
        // Broker 2 (leading now) takes broker 1 back into the ISR.
        let p = cat.topic("t").unwrap().parts[0].clone();
        assert_eq!(p.leader, 2);
        cat.apply(&MetadataRecord::IsrChanged {
            topic: "t".into(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2],
        });
        assert_eq!(cat.imbalanced().len(), 1);
        let mut ctl = Controller::new(1_000_000).with_rebalance_every(300);
        let moved = |r: &Round| {
            r.proposals
                .iter()
                .filter(|p| matches!(p, MetadataRecord::LeaderMoved { .. }))
                .count()
        };
        ctl.round(0, &cat, input(true, "a"));
        assert_eq!(moved(&ctl.round(100, &cat, input(true, "a"))), 0);
        assert_eq!(moved(&ctl.round(300, &cat, input(true, "a"))), 1);
        assert_eq!(moved(&ctl.round(400, &cat, input(true, "a"))), 0);
    }
}
