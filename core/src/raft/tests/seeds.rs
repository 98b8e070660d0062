//! Many seeds through the cluster harness, determinism, and the canaries it must catch.
//!
//! Replay one seed: `SKEIN_RAFT_SEED=<seed> SKEIN_RAFT_VOTERS=<3|5> cargo test -p skein-core
//! raft::tests::seeds::replay -- --nocapture`.

use super::cluster::Cluster;

fn run_seeds(voters: u64, seeds: std::ops::Range<u64>) {
    let (mut steps, mut max_term, mut committed, mut crashes, mut snaps) = (0, 0, 0, 0, 0);
    for seed in seeds.clone() {
        let c = Cluster::new(seed, voters);
        let swarm = c.swarm.clone();
        match c.run() {
            Ok(r) => {
                steps += r.steps;
                max_term = max_term.max(r.max_term);
                committed += r.committed;
                crashes += r.crashes;
                snaps += r.snapshots_applied;
            }
            Err(e) => panic!(
                "seed={seed} voters={voters}: {e}\n  swarm: {swarm:?}\n  replay: \
                 SKEIN_RAFT_SEED={seed} SKEIN_RAFT_VOTERS={voters} cargo test -p skein-core \
                 raft::tests::seeds::replay -- --nocapture"
            ),
        }
    }
    eprintln!(
        "voters={voters} seeds={seeds:?}: steps={steps} max_term={max_term} \
         committed={committed} crashes={crashes} snapshots_applied={snaps}"
    );
}

#[test]
fn three_voters_many_seeds() {
    run_seeds(3, 0..150);
}

#[test]
fn five_voters_many_seeds() {
    run_seeds(5, 1000..1100);
}

#[test]
fn same_seed_same_trace() {
    for (seed, voters) in [(3, 3), (1004, 5)] {
        let a = Cluster::new(seed, voters).run().unwrap();
        let b = Cluster::new(seed, voters).run().unwrap();
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.steps, b.steps);
    }
}

#[test]
fn replay() {
    let Ok(seed) = std::env::var("SKEIN_RAFT_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("SKEIN_RAFT_SEED is a u64");
    let voters = std::env::var("SKEIN_RAFT_VOTERS").map_or(3, |v| v.parse().unwrap());
    #[allow(unused_mut)]
    let mut c = Cluster::new(seed, voters);
    #[cfg(feature = "canary")]
    if let Ok(name) = std::env::var("SKEIN_RAFT_CANARY") {
        use crate::canary::Canary;
        let canary = [
            Canary::VoteTwice,
            Canary::CommitOldTerm,
            Canary::NoCheckQuorum,
        ]
        .into_iter()
        .find(|c| format!("{c:?}") == name)
        .expect("SKEIN_RAFT_CANARY names a Raft canary");
        c.set_canary(Some(canary));
    }
    eprintln!("seed={seed} voters={voters} swarm={:?}", c.swarm);
    let r = c.run();
    eprintln!("{r:?}");
    r.unwrap();
}

#[cfg(feature = "canary")]
mod canaries {
    use super::Cluster;
    use crate::canary::Canary;

    /// Runs seeds until one catches `canary`; returns (seed, voters, violation).
    fn first_catch(canary: Canary, voters: u64, seeds: std::ops::Range<u64>) -> (u64, String) {
        for seed in seeds.clone() {
            let mut c = Cluster::new(seed, voters);
            c.set_canary(Some(canary));
            if let Err(e) = c.run() {
                eprintln!("{canary:?} caught by seed={seed} voters={voters}: {e}");
                return (seed, e);
            }
        }
        panic!("{canary:?} not caught by seeds {seeds:?} with {voters} voters");
    }

    /// How often each canary is caught: `SKEIN_RAFT_SOAK=<seeds> cargo test --release -p
    /// skein-core --features canary canary_rates -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn canary_rates() {
        let n: u64 = std::env::var("SKEIN_RAFT_SOAK").map_or(500, |v| v.parse().unwrap());
        let only = std::env::var("SKEIN_RAFT_CANARY").ok();
        for canary in [
            Canary::VoteTwice,
            Canary::CommitOldTerm,
            Canary::NoCheckQuorum,
        ] {
            if only.as_ref().is_some_and(|o| *o != format!("{canary:?}")) {
                continue;
            }
            for voters in [3, 5] {
                let mut caught = Vec::new();
                let mut old_term_commits = 0;
                for seed in 0..n {
                    let mut c = Cluster::new(seed, voters);
                    c.set_canary(Some(canary));
                    match c.run() {
                        Err(e) => caught.push((seed, e.lines().next().unwrap_or("").to_string())),
                        Ok(r) => old_term_commits += r.old_term_commits,
                    }
                }
                eprintln!("  old-term commits in passing runs: {old_term_commits}");
                eprintln!(
                    "{canary:?} voters={voters}: caught by {}/{n} seeds, first: {:?}",
                    caught.len(),
                    caught.first()
                );
            }
        }
    }

    #[test]
    fn vote_twice_is_caught() {
        let (_, e) = first_catch(Canary::VoteTwice, 3, 0..300);
        assert!(e.contains("election safety"), "{e}");
    }

    #[test]
    fn commit_old_term_is_caught() {
        let (_, e) = first_catch(Canary::CommitOldTerm, 3, 0..400);
        assert!(
            e.contains("commit safety")
                || e.contains("leader completeness")
                || e.contains("committed entry")
                || e.contains("state machine safety"),
            "{e}"
        );
    }

    #[test]
    fn no_check_quorum_is_caught() {
        let (_, e) = first_catch(Canary::NoCheckQuorum, 3, 0..50);
        assert!(e.contains("check-quorum"), "{e}");
    }
}

/// A longer batch: `SKEIN_RAFT_SOAK=<seeds> cargo test --release -p skein-core soak --
/// --ignored --nocapture` runs that many seeds with 3 and with 5 voters.
#[test]
#[ignore]
fn soak() {
    let n: u64 = std::env::var("SKEIN_RAFT_SOAK").map_or(2000, |v| v.parse().unwrap());
    run_seeds(3, 10_000..10_000 + n);
    run_seeds(5, 20_000..20_000 + n);
}
