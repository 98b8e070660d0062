//! The classic consumer-group simulation as a harness scenario: `skein-sim groups` (or
//! `groups --protocol classic`) with `--canary NAME`, plus the shared `--trace`, `shrink` and
//! `--replay`.

use super::{run_with, GroupsCanary, Options, Outcome};

crate::seed_and_canary_scenario!(
    /// The classic (JoinGroup/SyncGroup) consumer-group simulation.
    GroupsScenario,
    GroupsArgs,
    GroupsCanary,
    name = "groups",
    command = "groups",
    about = "The classic consumer-group simulation: JoinGroup/SyncGroup members against the group coordinator under crashes, pauses, leaves, failovers, loss and delays",
);
