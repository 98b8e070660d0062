//! Reconciliation: what one broker must do to its partitions so that they match the committed
//! catalog — open the replicas it was given, remove the ones it no longer holds (or that
//! belong to an earlier topic of the same name), and move each open one to the role the
//! catalog gives it.
//!
//! The shell calls [`plan`] while it applies a metadata record (cheap: no I/O), carries out the
//! role changes at once, and queues opens and removals for a task of their own, so a partition
//! whose recovery reads a large log never holds up the metadata quorum's driver or the catalog
//! lock. When an open completes it asks [`wanted`] again, against the catalog of that moment,
//! before it serves the partition.
//!
//! Invariants: every partition this broker holds (open or being opened) that the catalog does
//! not give it, or gives it under another topic id, is removed before it is opened again; a
//! partition is given a role only once it is open; the plan is a pure function of the catalog,
//! the broker id and what is held, in key order. A leader is told which of its partition's
//! replicas are fenced with every role, and of every ISR change the catalog refuses
//! ([`refused_isr_change`]).

use std::collections::BTreeMap;

use crate::catalog::{Catalog, MetadataRecord, PartitionState};
use crate::config::LogConfig;
use crate::replication::IsrProposal;

/// A partition: topic name and index.
pub type PartitionKey = (String, i32);

/// One thing the shell must do to a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop serving the partition and move its directory aside (it is deleted later).
    Remove {
        /// The partition.
        key: PartitionKey,
    },
    /// Open (and, after a crash, recover) the partition's files; then ask [`wanted`] for its
    /// role.
    Open {
        /// The partition.
        key: PartitionKey,
        /// The topic id the files must belong to (older files are moved aside first).
        topic_id: [u8; 16],
        /// The topic's log settings.
        config: LogConfig,
    },
    /// Move an open partition to the role `state` gives this broker.
    Role {
        /// The partition.
        key: PartitionKey,
        /// Its committed state.
        state: PartitionState,
        /// The topic's min.insync.replicas.
        min_insync: u32,
        /// Its replicas the catalog calls fenced (see [`Catalog::fenced_replicas`]).
        fenced: Vec<i32>,
    },
}

/// A partition the catalog gives this broker: its topic id, state and min.insync.replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The topic id.
    pub topic_id: [u8; 16],
    /// The partition's committed state.
    pub state: PartitionState,
    /// The topic's min.insync.replicas.
    pub min_insync: u32,
    /// Its replicas the catalog calls fenced (see [`Catalog::fenced_replicas`]).
    pub fenced: Vec<i32>,
}

/// Whether the catalog gives broker `me` a replica of `key`, and what it says of it.
pub fn wanted(catalog: &Catalog, me: i32, key: &PartitionKey) -> Option<Wanted> {
    let topic = catalog.topic(&key.0)?;
    let state = topic.parts.get(usize::try_from(key.1).ok()?)?;
    if !state.replicas.contains(&me) {
        return None;
    }
    let min_insync = catalog
        .log_config(&key.0)
        .map(|c| c.min_insync_replicas)
        .unwrap_or(1);
    Some(Wanted {
        topic_id: topic.id,
        fenced: catalog.fenced_replicas(state),
        state: state.clone(),
        min_insync,
    })
}

/// The ISR proposal `rec` carries if it is an ISR change that `catalog` (the state before
/// `rec` applies) refuses: the shell hands it to that partition's replica as
/// [`crate::replica::Input::IsrRejected`], the AlterPartition error of Kafka, so the leader
/// that proposed it plans again without waiting for its retry time.
pub fn refused_isr_change(catalog: &Catalog, rec: &MetadataRecord) -> Option<IsrProposal> {
    let MetadataRecord::IsrChanged {
        topic,
        partition,
        leader_epoch,
        partition_epoch,
        isr,
    } = rec
    else {
        return None;
    };
    catalog.check_isr_change(topic, *partition, *leader_epoch, *partition_epoch, isr)?;
    Some(IsrProposal {
        isr: isr.clone(),
        leader_epoch: *leader_epoch,
        partition_epoch: *partition_epoch,
    })
}

/// The actions that bring `held` (partition -> topic id, open or being opened) in line with
/// `catalog` for broker `me`, over one topic or (`None`) all: removals first, then opens and
/// role changes in key order.
pub fn plan(
    catalog: &Catalog,
    me: i32,
    held: &BTreeMap<PartitionKey, [u8; 16]>,
    topic: Option<&str>,
) -> Vec<Action> {
    let mut want: BTreeMap<PartitionKey, Wanted> = BTreeMap::new();
    let topics: Vec<_> = match topic {
        Some(n) => catalog.topic(n).into_iter().collect(),
        None => catalog.topics().collect(),
    };
    for t in topics {
        for i in 0..t.parts.len() {
            let key = (t.name.clone(), i as i32);
            if let Some(w) = wanted(catalog, me, &key) {
                want.insert(key, w);
            }
        }
    }
    let in_scope = |k: &PartitionKey| topic.is_none_or(|n| k.0 == n);
    let mut out = Vec::new();
    for (key, id) in held.iter().filter(|(k, _)| in_scope(k)) {
        if want.get(key).is_none_or(|w| w.topic_id != *id) {
            out.push(Action::Remove { key: key.clone() });
        }
    }
    for (key, w) in want {
        if held.get(&key) == Some(&w.topic_id) {
            out.push(Action::Role {
                key,
                state: w.state,
                min_insync: w.min_insync,
                fenced: w.fenced,
            });
        } else {
            let config = catalog.log_config(&key.0).expect("wanted topics exist");
            out.push(Action::Open {
                key,
                topic_id: w.topic_id,
                config,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Placement;
    use proptest::prelude::*;

    fn catalog_with(brokers: &[i32], topics: &[(&str, u32, [u8; 16])]) -> Catalog {
        let mut c = Catalog::new(LogConfig::default());
        for b in brokers {
            c.apply(&MetadataRecord::BrokerRegistered {
                id: *b,
                incarnation: format!("i{b}"),
                host: "h".into(),
                port: 9092,
                rack: None,
            });
        }
        for (name, parts, id) in topics {
            let placement = Placement::Spread {
                replication_factor: brokers.len().min(2) as i16,
                start: 0,
            };
            let rec = c
                .plan_create(name, *parts as i32, &placement, &[], *id)
                .unwrap();
            c.apply(&rec);
        }
        c
    }

    /// What `held` becomes after carrying out `actions` (every open succeeding).
    fn carry_out(held: &mut BTreeMap<PartitionKey, [u8; 16]>, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Remove { key } => {
                    held.remove(key);
                }
                Action::Open { key, topic_id, .. } => {
                    held.insert(key.clone(), *topic_id);
                }
                Action::Role { key, .. } => assert!(held.contains_key(key), "role before open"),
            }
        }
    }

    #[test]
    fn opens_what_is_given_and_removes_what_is_not() {
        let c = catalog_with(&[1, 2], &[("a", 3, [1; 16]), ("b", 1, [2; 16])]);
        let mut held = BTreeMap::new();
        held.insert(("gone".to_string(), 0), [9; 16]);
        let actions = plan(&c, 1, &held, None);
        assert_eq!(
            actions[0],
            Action::Remove {
                key: ("gone".into(), 0)
            }
        );
        let opened: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Open { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = c
            .topics()
            .flat_map(|t| {
                t.parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.replicas.contains(&1))
                    .map(|(i, _)| (t.name.clone(), i as i32))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(opened, expected);
        carry_out(&mut held, &actions);
        // Once open, the same catalog asks only for roles.
        let again = plan(&c, 1, &held, None);
        assert!(again.iter().all(|a| matches!(a, Action::Role { .. })));
        assert_eq!(again.len(), expected.len());
    }

    #[test]
    fn a_recreated_topic_is_removed_before_it_is_opened_again() {
        let c = catalog_with(&[1], &[("a", 1, [7; 16])]);
        let held = BTreeMap::from([(("a".to_string(), 0), [6; 16])]);
        let actions = plan(&c, 1, &held, Some("a"));
        assert_eq!(actions.len(), 2);
        assert_eq!(
            actions[0],
            Action::Remove {
                key: ("a".into(), 0)
            }
        );
        assert!(matches!(&actions[1], Action::Open { topic_id, .. } if *topic_id == [7; 16]));
    }

    #[test]
    fn a_scoped_plan_leaves_other_topics_alone() {
        let c = catalog_with(&[1], &[("a", 1, [1; 16])]);
        let held = BTreeMap::from([(("other".to_string(), 0), [5; 16])]);
        assert!(plan(&c, 1, &held, Some("a"))
            .iter()
            .all(|a| !matches!(a, Action::Remove { .. })));
        assert_eq!(wanted(&c, 1, &("a".into(), 1)), None);
        assert_eq!(wanted(&c, 1, &("a".into(), -1)), None);
        assert_eq!(wanted(&c, 2, &("a".into(), 0)), None);
    }

    #[test]
    fn a_refused_isr_change_is_reported_and_an_applied_one_is_not() {
        let mut c = catalog_with(&[1, 2, 3], &[]);
        let placement = Placement::Manual(vec![vec![1, 2, 3]]);
        let rec = c.plan_create("a", 1, &placement, &[], [1; 16]).unwrap();
        c.apply(&rec);
        c.apply(&MetadataRecord::BrokerFenced {
            id: 3,
            incarnation: "i3".into(),
        });
        let st = c.partition("a", 0).expect("partition").clone();
        assert_eq!(st.isr, vec![1, 2]);
        assert_eq!(c.fenced_replicas(&st), vec![3]);
        let change = |isr: Vec<i32>| MetadataRecord::IsrChanged {
            topic: "a".into(),
            partition: 0,
            leader_epoch: st.leader_epoch,
            partition_epoch: st.partition_epoch,
            isr,
        };
        assert_eq!(refused_isr_change(&c, &change(st.isr.clone())), None);
        let refused = refused_isr_change(&c, &change(vec![st.leader, 3])).expect("refused");
        assert_eq!(refused.isr, vec![st.leader, 3]);
        assert_eq!(refused.partition_epoch, st.partition_epoch);
        assert_eq!(
            refused_isr_change(&c, &MetadataRecord::TopicDeleted { name: "b".into() }),
            None
        );
    }

    proptest! {
        /// From any held set, carrying out the plan gives exactly what the catalog wants, and
        /// a second plan has nothing left to open or remove.
        #[test]
        fn a_plan_converges_in_one_pass(
            held_raw in proptest::collection::btree_map(
                (prop_oneof![Just("a"), Just("b"), Just("c")], 0i32..4),
                0u8..3,
                0..8,
            ),
            me in 1i32..4,
            scope in prop_oneof![Just(None), Just(Some("a")), Just(Some("c"))],
        ) {
            let c = catalog_with(&[1, 2, 3], &[("a", 3, [1; 16]), ("b", 2, [2; 16])]);
            let mut held: BTreeMap<PartitionKey, [u8; 16]> = held_raw
                .into_iter()
                .map(|((t, i), id)| ((t.to_string(), i), [id; 16]))
                .collect();
            let before = held.clone();
            let actions = plan(&c, me, &held, scope);
            carry_out(&mut held, &actions);
            for (key, id) in &held {
                let in_scope = scope.is_none_or(|n| key.0 == n);
                if in_scope {
                    prop_assert_eq!(wanted(&c, me, key).map(|w| w.topic_id), Some(*id));
                } else {
                    prop_assert_eq!(before.get(key), Some(id));
                }
            }
            let again = plan(&c, me, &held, scope);
            let converged = again.iter().all(|a| matches!(a, Action::Role { .. }));
            prop_assert!(converged, "left to do: {:?}", again);
        }
    }
}
