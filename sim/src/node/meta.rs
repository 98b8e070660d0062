//! The node's metadata: skein-core's `Catalog` and the CRC-framed `meta/__metadata.log` that
//! makes each of its records durable before it is applied.
//!
//! The real broker commits metadata records through its Raft quorum; here, as a one-voter
//! quorum does, a record is made durable on the node's own disk before it is applied (a
//! CRC-framed record appended to `meta/__metadata.log` and fsynced, the framing of the
//! single-node log skein-broker still reads at its first start; `skein-sim cluster` simulates
//! the quorum itself).
//!
//! Invariant: a record is applied only once its frame is fsynced; a failed (short) append is
//! cut off again at once, and a torn or corrupt tail is cut off at the next start, so every
//! record after it stays reachable.

use std::io;

use skein_core::catalog::{Catalog, CatalogError, MetadataRecord, Placement};
use skein_core::config::LogConfig;
use skein_storage::partition::StorageError;

use super::{Node, UNKNOWN_TOPIC};

/// Directory of the broker-wide files.
pub(super) const META_DIR: &str = "meta";
/// skein-broker's `.clean-shutdown` marker.
pub(super) const CLEAN_MARKER: &str = "meta/.clean-shutdown";
/// skein-broker's `__metadata.log`.
pub(super) const METADATA_LOG: &str = "meta/__metadata.log";

/// errno ENOSPC: the disk is full.
const ENOSPC: i32 = 28;

/// One replica on the one broker.
pub(super) const ONE_REPLICA: Placement = Placement::Spread {
    replication_factor: 1,
    start: 0,
};

/// The Kafka error name of a refused metadata change.
pub(super) fn catalog_code(e: &CatalogError) -> &'static str {
    match e {
        CatalogError::TopicExists(_) => "TOPIC_ALREADY_EXISTS",
        CatalogError::UnknownTopic(_) => UNKNOWN_TOPIC,
        CatalogError::InvalidTopic(_) => "INVALID_TOPIC_EXCEPTION",
        CatalogError::InvalidPartitions(_) => "INVALID_PARTITIONS",
        CatalogError::InvalidReplicationFactor(_) => "INVALID_REPLICATION_FACTOR",
        CatalogError::InvalidReplicaAssignment(_) => "INVALID_REPLICA_ASSIGNMENT",
        CatalogError::InvalidConfig(_) => "INVALID_CONFIG",
    }
}

/// The single node's catalog before its metadata log is replayed: broker 1 registered (the
/// cluster simulation covers registration and fencing; here the one broker is always live).
pub(super) fn single_broker_catalog(config: &LogConfig) -> Catalog {
    let mut c = Catalog::new(config.clone());
    c.apply(&MetadataRecord::BrokerRegistered {
        id: super::replica::NODE_ID,
        incarnation: "sim".into(),
        host: "sim".into(),
        port: 9092,
        rack: None,
    });
    c
}

impl Node {
    /// Appends `rec` to the metadata log and fsyncs it: the one-voter quorum's commit.
    pub(super) fn append_metadata(&mut self, rec: &MetadataRecord) -> Result<(), StorageError> {
        let payload = serde_json::to_vec(rec).expect("records serialize");
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        let mut disk = self.disk_mut();
        // A failed (short) write is cut off again, or the records after it would be
        // unreachable at the next start.
        let before = disk.len(METADATA_LOG);
        if disk.append(METADATA_LOG, &frame).is_err() {
            disk.truncate(METADATA_LOG, before);
            return Err(StorageError::Io {
                path: METADATA_LOG.into(),
                source: io::Error::from_raw_os_error(ENOSPC),
            });
        }
        disk.fsync(METADATA_LOG);
        Ok(())
    }

    /// The metadata log's valid frames; a torn or corrupt tail is cut off (and synced).
    pub(super) fn read_metadata_log(&mut self) -> Vec<MetadataRecord> {
        let Some(bytes) = self.disk().read_all(METADATA_LOG) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
            let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
            let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32c::crc32c(payload) != crc {
                break;
            }
            match serde_json::from_slice(payload) {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
            pos += 8 + len;
        }
        if pos < bytes.len() {
            self.disk_mut().truncate(METADATA_LOG, pos as u64);
        }
        out
    }
}
