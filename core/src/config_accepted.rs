//! Topic configs Kafka 4 documents for which skein has no mechanism: accepted when their value
//! is valid (as Kafka validates it) and shown by DescribeConfigs, but they change nothing
//! (file deletion delays, per-topic flushing, replication throttles, index preallocation,
//! segment jitter, tiered storage settings while tiered storage is off). A value that would ask
//! for a mechanism skein lacks (`remote.storage.enable=true`) is refused, so no client believes
//! it has it.
//!
//! Invariant: every key here is absent from [`crate::config`]'s own keys, and every default
//! passes its own check.

/// One accepted config: key, Kafka's default, its type (Kafka's ConfigType: BOOLEAN 1,
/// STRING 2, INT 3, LONG 5, LIST 7) and the check of a value.
pub struct Accepted {
    /// The key.
    pub key: &'static str,
    /// Kafka 4's default value.
    pub default: &'static str,
    /// Kafka's ConfigType code.
    pub config_type: i8,
    check: fn(&str) -> Result<(), String>,
}

fn int_in(v: &str, min: i64, max: i64) -> Result<(), String> {
    let n: i64 = v.trim().parse().map_err(|_| "not an integer".to_string())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(())
}

fn boolean(v: &str) -> Result<(), String> {
    match v.trim() {
        "true" | "false" => Ok(()),
        _ => Err("must be true or false".into()),
    }
}

/// Kafka's throttled-replicas list: empty, `*`, or `partition:broker` pairs.
fn throttled(v: &str) -> Result<(), String> {
    let v = v.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    let ok = v.split(',').all(|pair| {
        pair.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err("must be *, or a list of partition:broker pairs".into())
    }
}

fn remote_storage(v: &str) -> Result<(), String> {
    boolean(v)?;
    if v.trim() == "true" {
        return Err("tiered storage is not supported".into());
    }
    Ok(())
}

const LONG_MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

/// Every accepted config, sorted by key.
pub const ACCEPTED: &[Accepted] = &[
    Accepted {
        key: "file.delete.delay.ms",
        default: "60000",
        config_type: 5,
        check: |v| int_in(v, 0, LONG_MAX),
    },
    Accepted {
        key: "flush.messages",
        default: "9223372036854775807",
        config_type: 5,
        check: |v| int_in(v, 1, LONG_MAX),
    },
    Accepted {
        key: "flush.ms",
        default: "9223372036854775807",
        config_type: 5,
        check: |v| int_in(v, 0, LONG_MAX),
    },
    Accepted {
        key: "follower.replication.throttled.replicas",
        default: "",
        config_type: 7,
        check: throttled,
    },
    Accepted {
        key: "leader.replication.throttled.replicas",
        default: "",
        config_type: 7,
        check: throttled,
    },
    Accepted {
        key: "local.retention.bytes",
        default: "-2",
        config_type: 5,
        check: |v| int_in(v, -2, LONG_MAX),
    },
    Accepted {
        key: "local.retention.ms",
        default: "-2",
        config_type: 5,
        check: |v| int_in(v, -2, LONG_MAX),
    },
    Accepted {
        key: "preallocate",
        default: "false",
        config_type: 1,
        check: boolean,
    },
    Accepted {
        key: "remote.log.copy.disable",
        default: "false",
        config_type: 1,
        check: boolean,
    },
    Accepted {
        key: "remote.log.delete.on.disable",
        default: "false",
        config_type: 1,
        check: boolean,
    },
    Accepted {
        key: "remote.storage.enable",
        default: "false",
        config_type: 1,
        check: remote_storage,
    },
    Accepted {
        key: "segment.index.bytes",
        default: "10485760",
        config_type: 3,
        check: |v| int_in(v, 4, INT_MAX),
    },
    Accepted {
        key: "segment.jitter.ms",
        default: "0",
        config_type: 5,
        check: |v| int_in(v, 0, LONG_MAX),
    },
];

/// The accepted config named `key`, if it is one.
pub fn find(key: &str) -> Option<&'static Accepted> {
    ACCEPTED.iter().find(|a| a.key == key)
}

impl Accepted {
    /// Checks a value as Kafka would (and refuses what skein cannot do); the reason if not.
    pub fn check(&self, value: &str) -> Result<(), String> {
        (self.check)(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_keys_are_sorted_and_new() {
        for a in ACCEPTED {
            assert_eq!(a.check(a.default), Ok(()), "{}", a.key);
            assert!(!crate::config::KNOWN_KEYS.contains(&a.key), "{}", a.key);
        }
        assert!(ACCEPTED.windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn values_are_checked_as_kafka_does() {
        let check = |k: &str, v: &str| find(k).unwrap().check(v);
        assert!(check("flush.messages", "0").is_err());
        assert!(check("follower.replication.throttled.replicas", "0:1, 1:2").is_ok());
        assert!(check("follower.replication.throttled.replicas", "*").is_ok());
        assert!(check("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(check("remote.storage.enable", "true").is_err());
        assert!(check("preallocate", "yes").is_err());
        assert!(check("segment.index.bytes", "3").is_err());
        assert!(find("no.such.config").is_none());
    }
}
