//! Shrinking works: a canary's failing seed shrinks to a smaller schedule that still fails with
//! the same violated property, and its replay file round-trips and replays the same failure.

use skein_sim::{run, shrink_with, Replay, SimCanary};

#[test]
fn a_canary_seed_shrinks_and_replays() {
    let seed = 2;
    let canary = Some(SimCanary::AckBeforeFsync);
    let s = shrink_with(seed, canary, false, 150).expect("seed 2 catches ack-before-fsync");
    let o = &s.outcome;
    let v = o.violation.as_ref().expect("the shrunk run still fails");
    assert_eq!(v.property, s.replay.property);
    let sched = &s.replay.schedule;
    let smaller_shape = sched.safety_ms.is_some()
        || sched.producers.is_some()
        || sched.fetchers.is_some()
        || sched.partitions.is_some();
    assert!(
        o.decisions.len() < s.decisions_before || smaller_shape,
        "nothing shrank: {} decisions, schedule {sched:?}",
        s.decisions_before
    );
    let back = Replay::from_json(&s.replay.to_json()).expect("the file parses");
    assert_eq!(back, s.replay);
    let again = run(back.options());
    assert_eq!(again.violation, o.violation);
    assert_eq!(again.trace_hash, o.trace_hash);
}

#[test]
fn bad_replay_files_are_refused_clearly() {
    assert!(Replay::from_json("nope").unwrap_err().contains("not JSON"));
    assert!(Replay::from_json("{}").unwrap_err().contains("seed"));
    let e = Replay::from_json(r#"{"seed": 1, "canary": "bogus"}"#).unwrap_err();
    assert!(e.contains("unknown canary"), "{e}");
    let e = Replay::from_json(r#"{"seed": 1, "partitions": 0}"#).unwrap_err();
    assert!(e.contains("partitions"), "{e}");
}
