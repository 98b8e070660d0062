//! The partition-replication simulation as a harness scenario: `skein-sim replication` with
//! `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use super::{run_with, Options, Outcome, ReplCanary};

crate::seed_and_canary_scenario!(
    /// The partition-replication simulation.
    ReplScenario,
    ReplArgs,
    ReplCanary,
    name = "replication",
    command = "replication",
    about = "The partition-replication simulation: one topic replicated over 3-5 brokers with a simulated controller, under crashes, pauses, partitions, slow links, loss and duplication",
);
