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
