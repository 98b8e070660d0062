//! The broker's metadata as a deterministic state machine over [`MetadataRecord`]s: topics,
//! partition counts, topic configs and producer-id blocks.
//!
//! Requests are validated against the current state into a record (`plan_*`); the shell makes the
//! record durable and then [`Catalog::apply`]s it. Replaying the same records in the same order
//! rebuilds the same catalog, which is what the Raft metadata log will rely on later.
//!
//! Invariants: topic names are valid and unique; every topic has at least one partition and its
//! count only grows; producer ids handed out are below the persisted block end and never reused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{validate_topic_name, ConfigError, LogConfig, TopicConfig};

/// Producer ids reserved per metadata record.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// One durable change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A topic was created.
    TopicCreated {
        /// Name.
        name: String,
        /// Topic id (a UUID as 32 hex digits).
        id: String,
        /// Partition count.
        partitions: u32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic grew to `total` partitions.
    PartitionsAdded {
        /// Name.
        name: String,
        /// New partition count.
        total: u32,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// Name.
        name: String,
    },
    /// A topic's overrides were replaced.
    ConfigAltered {
        /// Name.
        name: String,
        /// The full new override set.
        configs: BTreeMap<String, String>,
    },
    /// Producer ids in `[start, end)` are reserved for this broker.
    ProducerIdBlock {
        /// First id.
        start: i64,
        /// One past the last id.
        end: i64,
    },
}

/// Why a metadata request was refused (each maps to one Kafka error code).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_CONFIG.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
}

/// A topic as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Topic id, 16 bytes.
    pub id: [u8; 16],
    /// Partition count.
    pub partitions: u32,
    /// Overrides.
    pub config: TopicConfig,
}

/// All metadata of a single-node broker.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    defaults: LogConfig,
    topics: BTreeMap<String, Topic>,
    next_producer_id: i64,
    producer_id_end: i64,
}

fn id_from_hex(s: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = s
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    id
}

/// Formats a topic id as 32 hex digits.
pub fn id_to_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// An empty catalog with these broker-wide log defaults.
    pub fn new(defaults: LogConfig) -> Self {
        Self {
            defaults,
            ..Self::default()
        }
    }

    /// The broker-wide log defaults.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// Topics by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The resolved log config of a topic.
    pub fn log_config(&self, name: &str) -> Option<LogConfig> {
        let t = self.topics.get(name)?;
        Some(
            t.config
                .resolve(&self.defaults)
                .expect("stored configs were validated"),
        )
    }

    /// Validates a CreateTopics entry; `id` is 16 random bytes from the driver.
    pub fn plan_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        id: [u8; 16],
    ) -> Result<MetadataRecord, CatalogError> {
        validate_topic_name(name).map_err(CatalogError::InvalidTopic)?;
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.into()));
        }
        if let Some(clash) = self
            .topics
            .keys()
            .find(|t| t.replace('.', "_") == name.replace('.', "_"))
        {
            return Err(CatalogError::InvalidTopic(format!(
                "topic '{name}' collides with existing topic '{clash}' ('.' and '_' are treated alike)"
            )));
        }
        if partitions < 1 || partitions as u32 > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}"
            )));
        }
        if replication_factor != 1 && replication_factor != -1 {
            return Err(CatalogError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }
        let cfg = TopicConfig::new(
            configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &self.defaults,
        )?;
        Ok(MetadataRecord::TopicCreated {
            name: name.into(),
            id: id_to_hex(&id),
            partitions: partitions as u32,
            configs: cfg.overrides().clone(),
        })
    }

    /// Validates a DeleteTopics entry.
    pub fn plan_delete(&self, name: &str) -> Result<MetadataRecord, CatalogError> {
        if !self.topics.contains_key(name) {
            return Err(CatalogError::UnknownTopic(name.into()));
        }
        Ok(MetadataRecord::TopicDeleted { name: name.into() })
    }

    /// Validates a CreatePartitions entry.
    pub fn plan_partitions(&self, name: &str, total: i32) -> Result<MetadataRecord, CatalogError> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.into()))?;
        if total <= t.partitions as i32 {
            return Err(CatalogError::InvalidPartitions(format!(
                "topic currently has {} partitions, {total} would not be an increase",
                t.partitions
            )));
        }
        if total as u32 > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(format!(
                "number of partitions must be at most {PARTITIONS_MAX}"
            )));
        }
        Ok(MetadataRecord::PartitionsAdded {
            name: name.into(),
            total: total as u32,
        })
    }

    /// Validates a config change (`None` removes a key); `replace` drops all other overrides
    /// (legacy AlterConfigs) instead of merging (IncrementalAlterConfigs).
    pub fn plan_alter(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        replace: bool,
    ) -> Result<MetadataRecord, CatalogError> {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.into()))?;
        let base = if replace {
            TopicConfig::default()
        } else {
            t.config.clone()
        };
        let next = base.alter(
            changes.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            &self.defaults,
        )?;
        Ok(MetadataRecord::ConfigAltered {
            name: name.into(),
            configs: next.overrides().clone(),
        })
    }

    /// Hands out a producer id, or asks for a new block record to be made durable and applied first.
    pub fn next_producer_id(&mut self) -> Result<i64, MetadataRecord> {
        if self.next_producer_id < self.producer_id_end {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            return Ok(id);
        }
        Err(MetadataRecord::ProducerIdBlock {
            start: self.producer_id_end,
            end: self.producer_id_end + PRODUCER_ID_BLOCK,
        })
    }

    /// After replaying the records at start-up: the last block's ids may have been handed out
    /// before the restart, so the next id comes from a fresh block.
    pub fn fence_producer_ids(&mut self) {
        self.next_producer_id = self.producer_id_end;
    }

    /// Records that rebuild this catalog when applied in order to a fresh one with the same
    /// defaults: the metadata quorum's snapshot.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out: Vec<MetadataRecord> = self
            .topics
            .values()
            .map(|t| MetadataRecord::TopicCreated {
                name: t.name.clone(),
                id: id_to_hex(&t.id),
                partitions: t.partitions,
                configs: t.config.overrides().clone(),
            })
            .collect();
        if self.producer_id_end > 0 {
            // Only the reserved frontier matters: ids below it may have been handed out.
            out.push(MetadataRecord::ProducerIdBlock {
                start: self.producer_id_end,
                end: self.producer_id_end,
            });
        }
        out
    }

    /// Applies a durable record.
    pub fn apply(&mut self, rec: &MetadataRecord) {
        match rec {
            MetadataRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                // First wins: two creates of one name can both commit when proposed from
                // different brokers; every node keeps the first, so they all agree.
                if self.topics.contains_key(name) {
                    return;
                }
                let config = TopicConfig::new(
                    configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    &self.defaults,
                )
                .unwrap_or_default();
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name: name.clone(),
                        id: id_from_hex(id),
                        partitions: *partitions,
                        config,
                    },
                );
            }
            MetadataRecord::PartitionsAdded { name, total } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions = t.partitions.max(*total);
                }
            }
            MetadataRecord::TopicDeleted { name } => {
                self.topics.remove(name);
            }
            MetadataRecord::ConfigAltered { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    if let Ok(c) = TopicConfig::new(
                        configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        &self.defaults,
                    ) {
                        t.config = c;
                    }
                }
            }
            MetadataRecord::ProducerIdBlock { start, end } => {
                self.next_producer_id = self.next_producer_id.max(*start);
                self.producer_id_end = self.producer_id_end.max(*end);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rebuild_the_catalog_and_a_second_create_of_a_name_is_ignored() {
        let mut c = Catalog::new(LogConfig::default());
        let r = c
            .plan_create("a", 2, 1, &[("retention.ms".into(), "7".into())], [3; 16])
            .unwrap();
        c.apply(&r);
        let r2 = c.plan_create("b", 1, 1, &[], [4; 16]).unwrap();
        c.apply(&r2);
        let dup = MetadataRecord::TopicCreated {
            name: "a".into(),
            id: id_to_hex(&[9; 16]),
            partitions: 5,
            configs: BTreeMap::new(),
        };
        c.apply(&dup);
        assert_eq!(c.topic("a").unwrap().id, [3; 16]);
        assert_eq!(c.topic("a").unwrap().partitions, 2);
        let Err(block) = c.next_producer_id() else {
            panic!("no block yet")
        };
        c.apply(&block);
        let first = c.next_producer_id().unwrap();
        let mut d = Catalog::new(LogConfig::default());
        for r in c.to_records() {
            d.apply(&r);
        }
        assert_eq!(d.topic("a").unwrap().id, [3; 16]);
        assert_eq!(d.log_config("a").unwrap().retention_ms, 7);
        assert_eq!(d.topic("b").unwrap().partitions, 1);
        d.fence_producer_ids();
        match d.next_producer_id() {
            Err(MetadataRecord::ProducerIdBlock { start, .. }) => assert!(start > first),
            other => panic!("ids after a snapshot must come from a fresh block: {other:?}"),
        }
    }

    #[test]
    fn create_alter_delete() {
        let mut c = Catalog::new(LogConfig::default());
        let r = c
            .plan_create("t", 3, 1, &[("retention.ms".into(), "5".into())], [1; 16])
            .unwrap();
        c.apply(&r);
        assert_eq!(c.topic("t").unwrap().partitions, 3);
        assert_eq!(c.log_config("t").unwrap().retention_ms, 5);
        assert!(matches!(
            c.plan_create("t", 1, 1, &[], [0; 16]),
            Err(CatalogError::TopicExists(_))
        ));
        assert!(matches!(
            c.plan_create("bad name", 1, 1, &[], [0; 16]),
            Err(CatalogError::InvalidTopic(_))
        ));
        assert!(matches!(
            c.plan_create("u", 0, 1, &[], [0; 16]),
            Err(CatalogError::InvalidPartitions(_))
        ));
        assert!(matches!(
            c.plan_create("u", 1, 3, &[], [0; 16]),
            Err(CatalogError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            c.plan_partitions("t", 2),
            Err(CatalogError::InvalidPartitions(_))
        ));
        c.apply(&c.plan_partitions("t", 5).unwrap());
        assert_eq!(c.topic("t").unwrap().partitions, 5);
        c.apply(
            &c.plan_alter("t", &[("segment.ms".into(), Some("100".into()))], false)
                .unwrap(),
        );
        assert_eq!(c.log_config("t").unwrap().retention_ms, 5);
        c.apply(
            &c.plan_alter("t", &[("segment.ms".into(), Some("100".into()))], true)
                .unwrap(),
        );
        assert_ne!(c.log_config("t").unwrap().retention_ms, 5);
        c.apply(&c.plan_delete("t").unwrap());
        assert!(c.topic("t").is_none());
    }

    #[test]
    fn producer_ids_never_repeat_across_replay() {
        let mut c = Catalog::new(LogConfig::default());
        let mut log = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..2500 {
            let id = loop {
                match c.next_producer_id() {
                    Ok(id) => break id,
                    Err(rec) => {
                        c.apply(&rec);
                        log.push(rec);
                    }
                }
            };
            seen.push(id);
        }
        // A restart replays the records, then fences the last block: ids only go up.
        let mut again = Catalog::new(LogConfig::default());
        for r in &log {
            again.apply(r);
        }
        again.fence_producer_ids();
        let next = loop {
            match again.next_producer_id() {
                Ok(id) => break id,
                Err(rec) => again.apply(&rec),
            }
        };
        assert!(next > *seen.iter().max().unwrap());
        assert_eq!(seen.len(), 2500);
    }
}
