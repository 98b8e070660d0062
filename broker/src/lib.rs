//! skein-broker: the tokio shell of a skein broker — the Kafka listener and API handlers, the
//! replica fetchers, the metadata quorum's driver, the group coordinator runtime, timers and
//! configuration. It carries out the storage work skein-core decides (through skein-storage)
//! and passes it the wall-clock time.

pub mod api;
pub mod broker;
pub mod cleaner;
pub mod clock;
pub mod config;
pub mod dirs;
pub mod group_runtime;
pub mod groups;
pub mod limits;
pub mod observer;
pub mod partition;
pub mod peer;
pub mod quorum;
pub mod reconciler;
pub mod replica;
pub mod server;
