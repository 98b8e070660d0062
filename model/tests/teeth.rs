//! The model has teeth: each planted Raft bug that touches the controller quorum is caught
//! within a small bound, and the real code passes the same bounds. Bounds are kept small so
//! the debug build finishes in seconds; CI runs larger ones in release (ci/test.sh).

use skein_core::canary::Canary;
use skein_model::raft::{Bounds, Network, RaftModel};
use skein_model::{check, Run};

fn run(stop_on_failure: bool) -> Run {
    Run {
        depth_max: None,
        threads: 2,
        bfs: false,
        stop_on_failure,
    }
}

/// One election, one crash: enough for a forgotten vote to elect two leaders in term 1.
fn vote_bounds() -> Bounds {
    Bounds {
        term_max: 1,
        log_len_max: 1,
        in_flight_max: 2,
        timeouts_max: 2,
        crashes_max: 1,
        proposals_max: 0,
        duplicates_max: 0,
    }
}

#[test]
fn vote_twice_is_caught() {
    let v = check(
        RaftModel::new(Network::Lossy, vote_bounds(), Some(Canary::VoteTwice)),
        &run(true),
    );
    assert!(v.failed().contains(&"at most one leader per term"), "{v:?}");
}

#[test]
fn real_code_passes_the_vote_bounds() {
    let v = check(
        RaftModel::new(Network::Lossy, vote_bounds(), None),
        &run(false),
    );
    assert!(v.ok(), "{v:?}");
    assert!(v.states > 1000, "{v:?}");
}

#[test]
fn real_code_passes_a_proposal_bound() {
    let b = Bounds {
        term_max: 1,
        log_len_max: 2,
        in_flight_max: 2,
        timeouts_max: 1,
        crashes_max: 1,
        proposals_max: 1,
        duplicates_max: 1,
    };
    let v = check(RaftModel::new(Network::Lossy, b, None), &run(false));
    // Both sometimes-properties found examples: the bound is not vacuous.
    assert!(v.ok(), "{v:?}");
}

#[test]
fn reliable_network_elects_a_leader_eventually() {
    let b = Bounds {
        term_max: 2,
        log_len_max: 2,
        in_flight_max: 4,
        timeouts_max: 2,
        crashes_max: 0,
        proposals_max: 0,
        duplicates_max: 0,
    };
    let v = check(
        RaftModel::new(Network::Reliable, b.clone(), None),
        &run(false),
    );
    assert!(v.ok(), "{v:?}");
    // And the eventually property can fail: with no timeout at all nobody campaigns.
    let none = Bounds {
        timeouts_max: 0,
        ..b
    };
    let v = check(RaftModel::new(Network::Reliable, none, None), &run(false));
    assert!(
        v.failed().contains(&"a leader is elected (eventually)"),
        "{v:?}"
    );
}

// ---------------------------------------------------------------- model 2: partition

use skein_model::check_partition;
use skein_model::partition::{self, PartitionCanary, PartitionModel};

/// One record, one crash or fence, one clock advance (a follower can look stale, so the ISR
/// can shrink), one ISR proposal in flight.
fn partition_bounds(min_isr: usize) -> partition::Bounds {
    partition::Bounds {
        epoch_max: 2,
        log_len_max: 1,
        in_flight_max: 1,
        crashes_max: 1,
        advances_max: 1,
        min_isr,
    }
}

#[test]
fn elect_outside_isr_is_caught() {
    let v = check_partition(
        PartitionModel::new(partition_bounds(2), Some(PartitionCanary::ElectOutsideIsr)),
        &run(true),
    );
    let failed = v.failed();
    assert!(
        failed.contains(&"leader completeness")
            || failed.contains(&"no fork below the high watermark"),
        "{v:?}"
    );
}

#[test]
fn hw_from_leader_only_is_caught() {
    let v = check_partition(
        PartitionModel::new(partition_bounds(2), Some(PartitionCanary::HwFromLeaderOnly)),
        &run(true),
    );
    let failed = v.failed();
    assert!(
        failed.contains(&"leader completeness")
            || failed.contains(&"no fork below the high watermark"),
        "{v:?}"
    );
}

#[test]
fn real_code_passes_the_partition_bounds() {
    // The debug build is slow: the clock advance and the fault are split over two bounds
    // here; ci/test.sh runs them together in release.
    for min_isr in [2, 1] {
        for (advances_max, crashes_max) in [(0, 1), (1, 0)] {
            let b = partition::Bounds {
                advances_max,
                crashes_max,
                ..partition_bounds(min_isr)
            };
            let v = check_partition(PartitionModel::new(b, None), &run(false));
            assert!(v.failed().iter().all(|p| p.starts_with("a ")), "{v:?}");
            assert!(v.states > 1_000, "{v:?}");
            // The sometimes-properties found examples (no leader change, so no divergence,
            // and no lost write, without a fault).
            if crashes_max > 0 {
                assert!(v.ok(), "min_isr {min_isr}: {v:?}");
            } else {
                assert_eq!(
                    v.failed(),
                    vec![
                        "a leader change happens",
                        "a diverged follower truncates",
                        "a crash loses an unsynced write"
                    ],
                    "{v:?}"
                );
            }
        }
    }
}
