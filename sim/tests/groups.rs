//! The classic consumer-group simulation (`skein-sim groups`): seeds 0..200 pass without
//! canaries and exercise what they claim to (regression seeds, canaries and determinism:
//! `sims.rs`).

use skein_sim::groups::{run, GroupsCanary, Options, Outcome};

fn run_with(seed: u64, canary: Option<GroupsCanary>) -> Outcome {
    run(Options { seed, canary })
}

fn describe(o: &Outcome) -> String {
    format!("{}\n{}", o.summary(), o.report())
}

#[test]
fn seeds_0_to_200_pass_without_canaries() {
    let (mut commits, mut syncs, mut failovers) = (0, 0, 0);
    let (mut duplicates, mut fenced) = (0, 0);
    for seed in 0..200 {
        let o = run_with(seed, None);
        assert!(o.violation.is_none(), "{}", describe(&o));
        commits += o.stats.commits;
        syncs += o.stats.syncs;
        failovers += o.stats.failovers;
        duplicates += o.stats.duplicates;
        fenced += o.stats.fenced;
    }
    println!("duplicates={duplicates} fenced={fenced}");
    assert!(duplicates > 150, "only {duplicates} duplicate processes");
    assert!(fenced > 150, "only {fenced} processes fenced");
    // The batch exercises what it claims to.
    assert!(commits > 20_000, "only {commits} commits accepted");
    assert!(syncs > 2_000, "only {syncs} assignments handed out");
    assert!(failovers > 200, "only {failovers} coordinator failovers");
}

/// The KIP-848 scenario (`skein-sim groups --protocol consumer`): seeds 0..300 pass and
/// exercise revocations, fences, leaves, crashes and subscription changes.
#[test]
fn consumer_protocol_seeds_0_to_300_pass() {
    use skein_sim::groups::kip848;
    let mut s = kip848::Stats::default();
    let mut statics = 0;
    for seed in 0..300 {
        let o = kip848::run(kip848::Options { seed, canary: None });
        assert!(o.violation.is_none(), "{}\n{}", o.summary(), o.report());
        s.revoked += o.stats.revoked;
        s.fenced += o.stats.fenced;
        s.leaves += o.stats.leaves;
        s.crashes += o.stats.crashes;
        s.resubscribes += o.stats.resubscribes;
        statics += u64::from(o.swarm.static_pm > 0);
    }
    assert!(s.revoked > 1_000, "only {} partitions revoked", s.revoked);
    assert!(s.fenced > 300, "only {} members fenced", s.fenced);
    assert!(s.leaves > 300 && s.crashes > 300, "{s:?}");
    assert!(s.resubscribes > 300, "{s:?}");
    assert!(statics > 100, "only {statics} runs with static members");
}
