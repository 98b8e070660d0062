//! Topic configuration: the keys skein honours, their defaults, parsing and validation, and
//! Kafka's topic-name rules.
//!
//! Invariants: a [`TopicConfig`] only ever holds keys from [`KNOWN_KEYS`] with values that parsed;
//! the resolved [`LogConfig`] is always derived from those overrides over the broker defaults.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::batch::Compression;

/// A configuration refused, with Kafka's INVALID_CONFIG meaning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid config {key}={value}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub key: String,
    /// The value given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// How record timestamps are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// Overwrite with the broker's append time.
    LogAppendTime,
}

/// `cleanup.policy`: which of Kafka's two ways of dropping old records apply to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `delete`: time and size retention delete whole old segments.
    pub delete: bool,
    /// `compact`: the cleaner keeps only the newest record of each key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's default, `delete`.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Parses Kafka's list value: `delete`, `compact`, or both in either order separated by a
    /// comma (whitespace around the items is ignored, as Kafka's list parser does). Empty items,
    /// repeated items and any other word are refused.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for item in value.split(',') {
            let slot = match item.trim() {
                "delete" => &mut p.delete,
                "compact" => &mut p.compact,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        Some(p)
    }

    /// The canonical spelling (`delete`, `compact` or `compact,delete`).
    pub fn name(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// `min.cleanable.dirty.ratio`: a fraction in [0, 1], never NaN (so it is `Eq`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct DirtyRatio(f64);

// A DirtyRatio is never NaN (its constructor refuses it), so equality is reflexive.
impl Eq for DirtyRatio {}

impl DirtyRatio {
    /// The ratio if `v` lies in [0, 1].
    pub fn new(v: f64) -> Option<DirtyRatio> {
        (0.0..=1.0).contains(&v).then_some(DirtyRatio(v))
    }

    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// `compression.type` and its levels: how a leader stores the batches producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCompression {
    /// The codec batches are stored with; `None` is Kafka's `producer` (as sent).
    pub codec: Option<Compression>,
    /// `compression.gzip.level`: -1 (zlib's default) or 1-9.
    pub gzip_level: i32,
    /// `compression.lz4.level`: 1-17.
    pub lz4_level: i32,
    /// `compression.zstd.level`: -131072 to 22.
    pub zstd_level: i32,
}

impl Default for TopicCompression {
    fn default() -> Self {
        Self {
            codec: None,
            gzip_level: -1,
            lz4_level: 9,
            zstd_level: 3,
        }
    }
}

impl TopicCompression {
    /// The codec a batch sent with `sent` is stored with, when it differs.
    pub fn recode(&self, sent: Compression) -> Option<Compression> {
        self.codec.filter(|&c| c != sent)
    }
}

/// Kafka's name of a `compression.type` value.
fn codec_name(c: Option<Compression>) -> &'static str {
    c.map_or("producer", Compression::config_name)
}

/// The resolved settings a partition log runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll a segment at this size.
    pub segment_bytes: u64,
    /// Roll a segment this old.
    pub segment_ms: u64,
    /// Delete segments whose newest record is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// Delete oldest segments while the partition is larger than this; -1 keeps all.
    pub retention_bytes: i64,
    /// Largest record batch accepted.
    pub max_message_bytes: u32,
    /// CreateTime or LogAppendTime.
    pub timestamp_type: TimestampType,
    /// Under CreateTime, refuse a record older than this before the broker's time
    /// (message.timestamp.before.max.ms).
    pub timestamp_before_max_ms: i64,
    /// Under CreateTime, refuse a record newer than this after the broker's time
    /// (message.timestamp.after.max.ms).
    pub timestamp_after_max_ms: i64,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// In-sync replicas an acks=all write needs (min.insync.replicas).
    pub min_insync_replicas: u32,
    /// Whether an out-of-sync replica may be elected when no in-sync one is left.
    pub unclean_leader_election: bool,
    /// `cleanup.policy`: retention deletes segments, the cleaner compacts, or both.
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone stays after the segment holding it was cleaned
    /// (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// A record younger than this is not compacted (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// Dirty data older than this is compacted whatever the dirty ratio
    /// (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: i64,
    /// Clean a log once this fraction of it is dirty (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `compression.type` and the levels it compresses with.
    pub compression: TopicCompression,
}

impl LogConfig {
    /// How old the active segment may get before it rolls: `segment.ms`, or for a compacted
    /// topic `max.compaction.lag.ms` when shorter (the active segment is never cleaned, so it
    /// must roll for the max lag to be kept), as Kafka's `maxSegmentMs`.
    pub fn max_segment_ms(&self) -> u64 {
        if self.cleanup_policy.compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms as u64)
        } else {
            self.segment_ms
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            // Kafka 4.0's defaults (KIP-937): any age, at most an hour ahead.
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            index_interval_bytes: 4096,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
            compression: TopicCompression::default(),
        }
    }
}

/// Every topic config key skein accepts.
pub const KNOWN_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Default value string for a known key, under the given broker defaults.
fn default_value(key: &str, d: &LogConfig) -> String {
    match key {
        "cleanup.policy" => d.cleanup_policy.name().into(),
        "compression.type" => codec_name(d.compression.codec).into(),
        "compression.gzip.level" => d.compression.gzip_level.to_string(),
        "compression.lz4.level" => d.compression.lz4_level.to_string(),
        "compression.zstd.level" => d.compression.zstd_level.to_string(),
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => d.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => d.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => d.min_cleanable_dirty_ratio.get().to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => ts_name(d.timestamp_type).into(),
        "message.timestamp.before.max.ms" => d.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => d.timestamp_after_max_ms.to_string(),
        "min.insync.replicas" => d.min_insync_replicas.to_string(),
        "unclean.leader.election.enable" => d.unclean_leader_election.to_string(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        _ => crate::config_accepted::find(key)
            .map(|a| a.default.to_string())
            .unwrap_or_else(|| unreachable!("default_value called with unknown key {key}")),
    }
}

fn ts_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

fn err(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_int(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| err(key, value, "not an integer"))?;
    if v < min || v > max {
        return Err(err(key, value, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

/// Applies one key to a log config, validating it.
fn apply(cfg: &mut LogConfig, key: &str, value: &str) -> Result<(), ConfigError> {
    match key {
        "cleanup.policy" => {
            let policy = CleanupPolicy::parse(value)
                .ok_or_else(|| err(key, value, "must be delete, compact, or compact,delete"))?;
            cfg.cleanup_policy = policy;
        }
        "compression.type" => {
            let v = value.trim();
            cfg.compression.codec =
                match Compression::ALL.into_iter().find(|c| c.config_name() == v) {
                    Some(c) => Some(c),
                    None if v == "producer" => None,
                    None => {
                        return Err(err(
                            key,
                            value,
                            "must be uncompressed, gzip, snappy, lz4, zstd or producer",
                        ))
                    }
                }
        }
        "compression.gzip.level" => {
            let v = parse_int(key, value, -1, 9)
                .ok()
                .filter(|v| *v != 0)
                .ok_or_else(|| err(key, value, "must be -1 or between 1 and 9"))?;
            cfg.compression.gzip_level = v as i32;
        }
        "compression.lz4.level" => cfg.compression.lz4_level = parse_int(key, value, 1, 17)? as i32,
        "compression.zstd.level" => {
            cfg.compression.zstd_level = parse_int(key, value, -131_072, 22)? as i32
        }
        "delete.retention.ms" => cfg.delete_retention_ms = parse_int(key, value, 0, i64::MAX)?,
        "min.compaction.lag.ms" => cfg.min_compaction_lag_ms = parse_int(key, value, 0, i64::MAX)?,
        "max.compaction.lag.ms" => cfg.max_compaction_lag_ms = parse_int(key, value, 1, i64::MAX)?,
        "min.cleanable.dirty.ratio" => {
            cfg.min_cleanable_dirty_ratio = value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(DirtyRatio::new)
                .ok_or_else(|| err(key, value, "must be a number between 0 and 1"))?
        }
        "index.interval.bytes" => {
            cfg.index_interval_bytes = parse_int(key, value, 0, i32::MAX as i64)? as u32
        }
        "max.message.bytes" => {
            cfg.max_message_bytes = parse_int(key, value, 0, i32::MAX as i64)? as u32
        }
        "message.timestamp.type" => {
            cfg.timestamp_type = match value.trim() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(err(key, value, "must be CreateTime or LogAppendTime")),
            }
        }
        "message.timestamp.before.max.ms" => {
            cfg.timestamp_before_max_ms = parse_int(key, value, 0, i64::MAX)?
        }
        "message.timestamp.after.max.ms" => {
            cfg.timestamp_after_max_ms = parse_int(key, value, 0, i64::MAX)?
        }
        "min.insync.replicas" => {
            cfg.min_insync_replicas = parse_int(key, value, 1, i32::MAX as i64)? as u32
        }
        "unclean.leader.election.enable" => {
            cfg.unclean_leader_election = match value.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(err(key, value, "must be true or false")),
            }
        }
        "retention.bytes" => cfg.retention_bytes = parse_int(key, value, -1, i64::MAX)?,
        "retention.ms" => cfg.retention_ms = parse_int(key, value, -1, i64::MAX)?,
        "segment.bytes" => cfg.segment_bytes = parse_int(key, value, 14, i32::MAX as i64)? as u64,
        "segment.ms" => cfg.segment_ms = parse_int(key, value, 1, i64::MAX)? as u64,
        _ => match crate::config_accepted::find(key) {
            Some(a) => a.check(value).map_err(|r| err(key, value, r))?,
            None => return Err(err(key, value, "unknown topic config")),
        },
    }
    Ok(())
}

/// True for every topic config key skein accepts (its own and those it accepts without a
/// mechanism, see [`crate::config_accepted`]).
pub fn is_topic_config(key: &str) -> bool {
    KNOWN_KEYS.contains(&key) || crate::config_accepted::find(key).is_some()
}

/// One row of a config description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Effective value.
    pub value: String,
    /// True when it comes from the defaults rather than a topic override.
    pub is_default: bool,
}

/// A topic's overrides and the log settings they resolve to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Validates `overrides` against `defaults`.
    pub fn new<'a>(
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
        defaults: &LogConfig,
    ) -> Result<Self, ConfigError> {
        let mut cfg = TopicConfig::default();
        for (k, v) in overrides {
            cfg.overrides.insert(k.to_string(), v.to_string());
        }
        cfg.resolve(defaults)?;
        Ok(cfg)
    }

    /// The overrides, sorted by key.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Resolves to log settings.
    pub fn resolve(&self, defaults: &LogConfig) -> Result<LogConfig, ConfigError> {
        let mut cfg = defaults.clone();
        for (k, v) in &self.overrides {
            apply(&mut cfg, k, v)?;
        }
        // Kafka refuses a minimum lag above the maximum, whichever of the two was set.
        if cfg.min_compaction_lag_ms > cfg.max_compaction_lag_ms {
            let key = "min.compaction.lag.ms";
            let value = cfg.min_compaction_lag_ms.to_string();
            return Err(err(
                key,
                &value,
                format!(
                    "must not exceed max.compaction.lag.ms ({})",
                    cfg.max_compaction_lag_ms
                ),
            ));
        }
        Ok(cfg)
    }

    /// Sets (`Some`) or removes (`None`) keys, validating the result; unchanged on error.
    pub fn alter<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        defaults: &LogConfig,
    ) -> Result<TopicConfig, ConfigError> {
        let mut next = self.clone();
        for (k, v) in changes {
            match v {
                Some(v) => {
                    next.overrides.insert(k.to_string(), v.to_string());
                }
                None => {
                    if !is_topic_config(k) {
                        return Err(err(k, "", "unknown topic config"));
                    }
                    next.overrides.remove(k);
                }
            }
        }
        next.resolve(defaults)?;
        Ok(next)
    }

    /// Every known key with its effective value.
    pub fn describe(&self, defaults: &LogConfig) -> Vec<ConfigEntry> {
        let mut keys: Vec<&str> = KNOWN_KEYS.to_vec();
        keys.extend(crate::config_accepted::ACCEPTED.iter().map(|a| a.key));
        keys.sort_unstable();
        keys.into_iter()
            .map(|k| match self.overrides.get(k) {
                Some(v) => ConfigEntry {
                    name: k.to_string(),
                    value: v.clone(),
                    is_default: false,
                },
                None => ConfigEntry {
                    name: k.to_string(),
                    value: default_value(k, defaults),
                    is_default: true,
                },
            })
            .collect()
    }
}

/// Longest topic name Kafka allows.
pub const TOPIC_NAME_MAX: usize = 249;

/// Checks Kafka's topic-name rules: `[a-zA-Z0-9._-]`, 1..=249 chars, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > TOPIC_NAME_MAX {
        return Err(format!(
            "topic name is {} characters, the limit is {TOPIC_NAME_MAX}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' has the illegal character {c:?}; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_configs() {
        let d = LogConfig::default();
        let r = |kv: &[(&str, &str)]| {
            TopicConfig::new(kv.iter().copied(), &d).map(|c| c.resolve(&d).unwrap().compression)
        };
        assert_eq!(r(&[]).unwrap(), TopicCompression::default());
        assert_eq!(r(&[("compression.type", "producer")]).unwrap().codec, None);
        assert_eq!(
            r(&[("compression.type", "uncompressed")]).unwrap().codec,
            Some(Compression::None)
        );
        let z = r(&[
            ("compression.type", "zstd"),
            ("compression.zstd.level", "-5"),
        ])
        .unwrap();
        assert_eq!((z.codec, z.zstd_level), (Some(Compression::Zstd), -5));
        assert_eq!(z.recode(Compression::Gzip), Some(Compression::Zstd));
        assert_eq!(z.recode(Compression::Zstd), None);
        for bad in [
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
        ] {
            assert!(r(&[bad]).is_err(), "{bad:?}");
        }
        let described = TopicConfig::default().describe(&d);
        let value = |k: &str| {
            described
                .iter()
                .find(|e| e.name == k)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(value("compression.type"), "producer");
        assert_eq!(value("compression.gzip.level"), "-1");
        assert_eq!(value("compression.lz4.level"), "9");
        assert_eq!(value("compression.zstd.level"), "3");
    }

    #[test]
    fn compaction_configs() {
        let d = LogConfig::default();
        let policy = |v: &str| {
            TopicConfig::new([("cleanup.policy", v)], &d)
                .and_then(|c| c.resolve(&d))
                .map(|c| (c.cleanup_policy.delete, c.cleanup_policy.compact))
        };
        assert_eq!(policy("delete"), Ok((true, false)));
        assert_eq!(policy("compact"), Ok((false, true)));
        assert_eq!(policy("compact,delete"), Ok((true, true)));
        assert_eq!(policy("delete, compact"), Ok((true, true)));
        for bad in [
            "",
            ",",
            "compact,",
            "Compact",
            "compact,compact",
            "delete;compact",
            "none",
        ] {
            assert!(policy(bad).is_err(), "{bad:?}");
        }
        let r = |kv: &[(&str, &str)]| {
            TopicConfig::new(kv.iter().copied(), &d).map(|c| c.resolve(&d).unwrap())
        };
        assert_eq!(d.delete_retention_ms, 86_400_000);
        assert_eq!(d.min_compaction_lag_ms, 0);
        assert_eq!(d.max_compaction_lag_ms, i64::MAX);
        assert_eq!(d.min_cleanable_dirty_ratio.get(), 0.5);
        assert_eq!(
            r(&[("delete.retention.ms", "0")])
                .unwrap()
                .delete_retention_ms,
            0
        );
        assert!(r(&[("delete.retention.ms", "-1")]).is_err());
        assert!(r(&[("min.compaction.lag.ms", "-1")]).is_err());
        assert!(r(&[("max.compaction.lag.ms", "0")]).is_err());
        assert!(r(&[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "9")
        ])
        .is_err());
        assert!(r(&[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "10")
        ])
        .is_ok());
        let ratio = |v: &str| {
            r(&[("min.cleanable.dirty.ratio", v)]).map(|c| c.min_cleanable_dirty_ratio.get())
        };
        assert_eq!(ratio("0"), Ok(0.0));
        assert_eq!(ratio("1"), Ok(1.0));
        assert_eq!(ratio("0.25"), Ok(0.25));
        for bad in ["1.01", "-0.1", "NaN", "half", ""] {
            assert!(ratio(bad).is_err(), "{bad:?}");
        }
        let mut c = r(&[("max.compaction.lag.ms", "1000")]).unwrap();
        c.cleanup_policy = CleanupPolicy::parse("compact").unwrap();
        assert_eq!(c.max_segment_ms(), 1000);
        assert_eq!(d.max_segment_ms(), d.segment_ms);
        let rows = TopicConfig::default().describe(&d);
        assert!(rows
            .iter()
            .any(|e| e.name == "min.cleanable.dirty.ratio" && e.value == "0.5"));
        assert!(rows
            .iter()
            .any(|e| e.name == "cleanup.policy" && e.value == "delete"));
    }

    #[test]
    fn names() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn configs_validate_and_describe() {
        let d = LogConfig::default();
        let c =
            TopicConfig::new([("retention.ms", "1000"), ("segment.bytes", "2048")], &d).unwrap();
        let r = c.resolve(&d).unwrap();
        assert_eq!((r.retention_ms, r.segment_bytes), (1000, 2048));
        assert!(TopicConfig::new([("cleanup.policy", "delete,delete")], &d).is_err());
        assert!(TopicConfig::new([("retention.ms", "soon")], &d).is_err());
        assert!(TopicConfig::new([("no.such.key", "1")], &d).is_err());
        let rows = c.describe(&d);
        assert_eq!(
            rows.len(),
            KNOWN_KEYS.len() + crate::config_accepted::ACCEPTED.len()
        );
        assert!(rows
            .iter()
            .any(|e| e.name == "retention.ms" && !e.is_default));
        let c2 = c.alter([("retention.ms", None)], &d).unwrap();
        assert_eq!(c2.resolve(&d).unwrap().retention_ms, d.retention_ms);
        assert!(c.alter([("segment.ms", Some("0"))], &d).is_err());
    }
}
