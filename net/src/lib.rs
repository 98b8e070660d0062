//! skein-net: the tokio shell around skein-core — the Kafka wire protocol, files, timers,
//! configuration, and the `skein` binary (broker and admin CLI).
//!
//! Architecture invariant: this is the only crate that knows the Kafka wire format. It carries
//! out the storage work skein-core decides and passes it the wall-clock time.

pub mod alloc;
pub mod api;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod groups;
pub mod observer;
pub mod peer;
pub mod quorum;
pub mod raft_store;
pub mod replica;
pub mod server;
pub mod storage;
pub mod sys;
pub mod wire;
