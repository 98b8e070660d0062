//! The KIP-848 consumer-group simulation as a harness scenario: `skein-sim groups --protocol
//! consumer` with `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use super::{run_with, Kip848Canary, Options, Outcome};

crate::seed_and_canary_scenario!(
    /// The KIP-848 (ConsumerGroupHeartbeat) consumer-group simulation.
    Kip848Scenario,
    Kip848Args,
    Kip848Canary,
    name = "groups-consumer",
    command = "groups --protocol consumer",
    about = "The KIP-848 consumer-group simulation: ConsumerGroupHeartbeat members against the consumer-group state machine under crashes, leaves, pauses, subscription changes, loss and delays",
);
