//! The cluster simulation's checkers, apart from the harness, one file per property:
//!
//! - `raft.rs`: vote safety, election safety, log matching, leader completeness, commit safety (after every
//!   step);
//! - `metadata.rs`: every node applies the same committed records in the same order, snapshots
//!   restore the catalog those records build, `Catalog::check_invariants`, producer-id blocks
//!   never overlap (after every apply and restore);
//! - `clients.rs`: what admin clients saw: acknowledged proposals are committed and, at the end,
//!   reflected in the catalog;
//! - `converge.rs`: after heal and a quiet period, every catalog is the same, live brokers are
//!   registered and unfenced, dead ones fenced.
//!
//! Violations use the single-node simulator's [`crate::checker::Violation`]; the property names
//! are the ones above (`vote-safety`, `election-safety`, `log-matching`, `leader-completeness`,
//! `commit-safety`, `state-machine-safety`, `snapshot`, `producer-ids`, `client-acks`,
//! `convergence`) plus the harness's own `check-quorum`, `liveness` and `node-invariant`
//! (a panic inside skein-core, e.g. `Raft::check_invariants` or `Catalog::check_invariants`).

pub mod clients;
pub mod converge;
pub mod metadata;
pub mod raft;
