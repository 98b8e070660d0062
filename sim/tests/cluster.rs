//! The metadata-quorum cluster simulation (`skein-sim cluster`): a seed batch that must pass,
//! every Raft canary caught by the property it breaks (regression seeds and determinism: `sims.rs`).

use skein_sim::cluster::{run, ClusterCanary, Options, Outcome};

/// Seeds of the debug-build batch (about 10 s).
const BATCH: std::ops::Range<u64> = 0..300;

fn describe(o: &Outcome) -> String {
    format!("{}\n{}", o.summary(), o.report())
}

fn run_with(seed: u64, voters: Option<u64>, canary: Option<ClusterCanary>) -> Outcome {
    run(Options {
        seed,
        voters,
        canary,
    })
}

#[test]
fn batch_passes() {
    let (mut threes, mut fives, mut acked, mut fences) = (0, 0, 0, 0);
    for seed in BATCH {
        let o = run_with(seed, None, None);
        assert!(o.violation.is_none(), "{}", describe(&o));
        match o.swarm.voters {
            3 => threes += 1,
            _ => fives += 1,
        }
        acked += o.stats.acked;
        fences += o.stats.fences;
    }
    // The batch covers both shapes and actually commits, acknowledges and fences.
    assert!(
        threes > 50 && fives > 50,
        "{threes} x 3 voters, {fives} x 5"
    );
    assert!(
        acked > 1000 && fences > 100,
        "acked={acked} fences={fences}"
    );
}

#[test]
fn voters_flag_overrides_only_the_shape() {
    for seed in [3, 4] {
        for voters in [3, 5] {
            let o = run_with(seed, Some(voters), None);
            assert_eq!(o.swarm.voters, voters);
            assert!(o.violation.is_none(), "{}", describe(&o));
            assert!(o.replay_command().ends_with(&format!("--voters {voters}")));
        }
        // Every other draw is the seed's own.
        let (a, b) = (run_with(seed, Some(3), None), run_with(seed, Some(5), None));
        assert_eq!(a.swarm.safety_ms, b.swarm.safety_ms);
        assert_eq!(a.swarm.drop_pm, b.swarm.drop_pm);
    }
}

#[test]
fn failing_runs_replay_identically() {
    let c = Some(ClusterCanary::CommitOldTerm);
    let (a, b) = (
        run_with(COMMIT_OLD_TERM, None, c),
        run_with(COMMIT_OLD_TERM, None, c),
    );
    assert!(a.violation.is_some());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.violation, b.violation);
    assert_eq!(a.tail, b.tail);
    assert!(a.report().contains(&format!(
        "cargo run --release -p skein-sim -- cluster --seed {COMMIT_OLD_TERM} --canary \
         commit-old-term"
    )));
}

// The first seed that catches each canary (each is also in ci/cluster-regression-seeds). A
// change to the simulation reshuffles every run: find the new first seed with
// `skein-sim cluster --seeds 0..1000 --canary NAME` and update both places.
const VOTE_TWICE: u64 = 15;
const COMMIT_OLD_TERM: u64 = 112;
const NO_CHECK_QUORUM: u64 = 0;
const NO_FENCING: u64 = 4;
const OBSERVE_UNCOMMITTED: u64 = 7;

/// `canary` is caught by `seed`, breaking one of `properties`, and `seed` passes without it.
fn check_caught(canary: ClusterCanary, seed: u64, properties: &[&str]) {
    let o = run_with(seed, None, Some(canary));
    let v = o
        .violation
        .as_ref()
        .unwrap_or_else(|| panic!("{} no longer caught by seed {seed}", canary.name()));
    assert!(properties.contains(&v.property), "{}", describe(&o));
    let clean = run_with(seed, None, None);
    assert!(clean.violation.is_none(), "{}", describe(&clean));
}

#[test]
fn vote_twice_is_caught() {
    check_caught(
        ClusterCanary::VoteTwice,
        VOTE_TWICE,
        &["vote-safety", "election-safety"],
    );
}

#[test]
fn commit_old_term_is_caught() {
    check_caught(
        ClusterCanary::CommitOldTerm,
        COMMIT_OLD_TERM,
        &[
            "commit-safety",
            "leader-completeness",
            "state-machine-safety",
        ],
    );
}

#[test]
fn observe_uncommitted_is_caught() {
    check_caught(
        ClusterCanary::ObserveUncommitted,
        OBSERVE_UNCOMMITTED,
        &["state-machine-safety"],
    );
}

#[test]
fn no_fencing_is_caught() {
    check_caught(ClusterCanary::NoFencing, NO_FENCING, &["convergence"]);
}

#[test]
fn no_check_quorum_is_caught() {
    check_caught(
        ClusterCanary::NoCheckQuorum,
        NO_CHECK_QUORUM,
        &["check-quorum"],
    );
}
