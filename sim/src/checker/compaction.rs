//! Compaction: on a partition of a compacted topic (`cleanup.policy=compact`), records may
//! disappear, so "every record stays readable at its offset" becomes:
//!
//! 1. Offsets never change: a record read at offset `o` is the record observed at `o` before
//!    (`consistency.rs`, as on every topic, also against records seen there and cleaned away
//!    since), with the key and value (or tombstone) its producer gave it ([`check_record`]).
//! 2. Nothing at or above the high watermark or in the active segment changes: a record cleaned
//!    away lies below the *clean bound*, the largest `min(high watermark, base of the active
//!    segment)` at the start of any clean so far (the node tells it at each clean's start, as
//!    it tells log starts after a retention pass; it is not skein-core's own choice of what is
//!    cleanable, which a planted bug may get wrong). Clients read only below the high
//!    watermark, so the driver also reads as a follower would, from that bound up, at each
//!    clean's start and after each of its commits: every batch read at the start must still be
//!    there byte for byte ([`check_tail_unchanged`]).
//! 3. What supersedes a record was cleanable: when a newer record of its key is known, one lies
//!    below the clean bound (unless the record is a tombstone old enough to go anyway, 4).
//! 4. For every key, a reader from the log start sees the newest acknowledged value of that key
//!    (or a later one): a key's newest known record may be gone only if it is a tombstone at
//!    least `delete.retention.ms` old. Its age is judged by its producer's clock (when the batch
//!    was built, before it was appended) against the time of the read (after the clean), which
//!    only errs towards allowing.
//!
//! A record disappeared when a fetch covers its offset (the offsets from the fetch offset to
//! the end of its last batch) without returning it; every standing observation there is judged
//! by 2-4 ([`History::judge_missing`]) and then kept as *cleaned away* (still known, for 3 and
//! 4). The final audit reads every partition from its log start, then judges 4 for every key
//! once more ([`History::judge_keys`]).
//!
//! Records no client saw the offset of (acks=0, an answer lost or failed while the record was
//! appended, a retry's second copy, an observation a crash made volatile) may legitimately
//! supersede a record: rules 3 and 4 accept as the reason a record of the same key sent to the
//! partition with fewer copies known than it may have (one for an idempotent producer, one per
//! attempt for the others). During the run any such record will do (a later read shows it, or
//! what superseded it in turn); at the final audit, after every survivor was read, only a
//! tombstone old enough to have been dropped since.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, History, Part, Verdict};
use crate::records::{key_bytes, Decoded, KeyedSpec, RecordId};

/// What the checker tracks of one compacted partition besides its standing observations.
#[derive(Debug, Clone, Default)]
pub struct CompactPart {
    /// The clean bound (rule 2): nothing at or above it was ever cleanable.
    pub bound: i64,
    /// Observations found cleaned away: offset -> record.
    pub gone: BTreeMap<i64, RecordId>,
    /// The records of `gone`, with how many of their copies were cleaned away.
    pub gone_ids: BTreeMap<RecordId, u32>,
    /// (key, offset) of every known record: standing observations and those cleaned away.
    pub known: BTreeSet<(u32, i64)>,
    /// The key of each offset in `known`.
    pub key_at: BTreeMap<i64, u32>,
}

impl CompactPart {
    /// `offset` holds a record of `key`.
    pub fn know(&mut self, offset: i64, key: u32) {
        if let Some(old) = self.key_at.insert(offset, key) {
            self.known.remove(&(old, offset));
        }
        self.known.insert((key, offset));
        if let Some(id) = self.gone.remove(&offset) {
            // Seen again (a crash brought back the segments a clean had replaced).
            self.uncount(id);
        }
    }

    fn uncount(&mut self, id: RecordId) {
        if let Some(n) = self.gone_ids.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.gone_ids.remove(&id);
            }
        }
    }

    /// `offset`, holding `id`, was cleaned away.
    fn cleaned_away(&mut self, offset: i64, id: RecordId) {
        self.gone.insert(offset, id);
        *self.gone_ids.entry(id).or_default() += 1;
    }

    /// What was known at `offset` no longer stands (a crash, or the log start passed it).
    pub fn unknow(&mut self, offset: i64) {
        if let Some(k) = self.key_at.remove(&offset) {
            self.known.remove(&(k, offset));
        }
        if let Some(id) = self.gone.remove(&offset) {
            self.uncount(id);
        }
    }

    /// The offsets of known records of `key` above `offset`, in order.
    fn newer(&self, key: u32, offset: i64) -> impl Iterator<Item = i64> + '_ {
        self.known
            .range((key, offset + 1)..=(key, i64::MAX))
            .map(|(_, o)| *o)
    }
}

/// A record read from a compacted partition has the key, and the value or null, its producer
/// gave record `id`.
pub fn check_record(p: usize, r: &Decoded, id: RecordId, spec: Option<&KeyedSpec>) -> Verdict {
    let bad = |d: String| {
        Err(violation(
            "integrity",
            format!("p{p} offset {} ({id}): {d}", r.offset),
        ))
    };
    let Some(spec) = spec else {
        return bad("no client produced it for a compacted topic".into());
    };
    if r.key.as_deref() != Some(&key_bytes(spec.key)[..]) {
        return bad(format!(
            "key {:?}, its producer gave k{}",
            r.key.as_deref().map(String::from_utf8_lossy),
            spec.key
        ));
    }
    if r.value.is_none() != spec.tombstone {
        return bad(format!(
            "value {}, its producer sent {}",
            if r.value.is_none() { "null" } else { "set" },
            if spec.tombstone {
                "a tombstone"
            } else {
                "a value"
            }
        ));
    }
    if let Some(v) = &r.value {
        if RecordId::parse(v) != Some(id) {
            return bad("its value names another record".into());
        }
    }
    Ok(())
}

impl History {
    /// The `delete.retention.ms` of topic `name` if it is compacted.
    pub fn compacted(&self, name: &str) -> Option<i64> {
        self.compacted.get(name).copied()
    }

    /// True when record `id` (a tombstone) is at least `retention_ms` old at `now_ms` by its
    /// producer's clock.
    fn old_enough(&self, id: &RecordId, now_ms: u64, retention_ms: i64) -> bool {
        self.stamps
            .get(&(id.client, id.serial))
            .is_some_and(|ts| now_ms as i64 - ts >= retention_ms)
    }

    /// A record of `key` sent to partition `p` of `name` with a copy whose offset no client knows
    /// may have superseded a record of part `part`: any such record, or with `tombstones_only`
    /// only a tombstone old enough to have been dropped since.
    fn unseen_may_supersede(
        &self,
        (name, part): (&str, Part),
        key: u32,
        now_ms: u64,
        tombstones_only: bool,
    ) -> bool {
        let Some(ids) = self.sent.get(&(name.to_string(), part.1, key)) else {
            return false;
        };
        let Some(ph) = self.parts.get(&part) else {
            return true;
        };
        let dr = self.compacted(name).unwrap_or(0);
        let gone = ph.compact.as_ref().map(|c| &c.gone_ids);
        ids.iter().rev().any(|id| {
            let known = ph.placed.get(id).map_or(0, BTreeSet::len) as u32
                + gone.and_then(|g| g.get(id)).copied().unwrap_or(0);
            let copies = if self.idempotent.contains(&id.client) {
                1
            } else {
                self.attempts
                    .get(&(id.client, id.serial))
                    .copied()
                    .unwrap_or(0)
            };
            if known >= copies {
                return false;
            }
            match self.specs.get(id) {
                // During the run any such record may be what superseded it: a later read shows
                // it (or what superseded it in turn); at the end only a dropped tombstone can
                // have superseded it without a trace.
                Some(_) if !tombstones_only => true,
                Some(s) => s.tombstone && self.old_enough(id, now_ms, dr),
                None => false,
            }
        })
    }

    /// The standing observation at `offset` of compacted partition `part` (of topic `name`) was
    /// not returned by a fetch covering it at `now_ms`: judges rules 2-4, then keeps it as
    /// cleaned away.
    pub fn judge_missing(
        &mut self,
        (name, part): (&str, Part),
        offset: i64,
        id: RecordId,
        now_ms: u64,
    ) -> Verdict {
        let p = part.1;
        let spec = *self.specs.get(&id).expect("a compacted record has a spec");
        let dr = self.compacted(name).expect("a compacted topic");
        let c = self.parts[&part].compact.as_ref().expect("compacted");
        let what = format!("p{p} offset {offset} ({id}, key k{})", spec.key);
        if offset >= c.bound {
            return Err(violation(
                "compaction",
                format!(
                    "{what} is gone, but no clean so far could reach it: every clean started with the high watermark or the active segment at or below {}",
                    c.bound
                ),
            ));
        }
        let newer: Vec<i64> = c.newer(spec.key, offset).collect();
        let unseen = |tombstones_only| {
            self.unseen_may_supersede((name, part), spec.key, now_ms, tombstones_only)
        };
        // A tombstone old enough may go whether or not anything superseded it.
        let expired = spec.tombstone && self.old_enough(&id, now_ms, dr);
        if let Some(first) = newer.first() {
            if *first >= c.bound && !expired && !unseen(false) {
                return Err(violation(
                    "compaction",
                    format!(
                        "{what} was cleaned away, but the newer records of its key (at {newer:?}) lie at or above every clean's bound {}",
                        c.bound
                    ),
                ));
            }
        } else if !expired && !unseen(false) {
            return Err(violation("compaction", newest_lost(&what, spec, dr)));
        }
        let ph = self.parts.get_mut(&part).expect("judged");
        ph.observed.remove(&offset);
        if let Some(set) = ph.placed.get_mut(&id) {
            set.remove(&offset);
            if set.is_empty() {
                ph.placed.remove(&id);
            }
        }
        ph.compact
            .as_mut()
            .expect("compacted")
            .cleaned_away(offset, id);
        Ok(())
    }

    /// After a reader read compacted partition `part` (of topic `name`) from its log start to
    /// its high watermark at `now_ms` (every record below it now observed): rule 4 for every
    /// key (its newest known record is there, or is a tombstone old enough to be dropped).
    pub fn judge_keys(&self, (name, part): (&str, Part), now_ms: u64) -> Verdict {
        let Some(c) = self.parts.get(&part).and_then(|ph| ph.compact.as_ref()) else {
            return Ok(());
        };
        let dr = self.compacted(name).expect("a compacted topic");
        let mut newest: BTreeMap<u32, i64> = BTreeMap::new();
        for (k, o) in &c.known {
            newest.insert(*k, *o);
        }
        for (k, o) in newest {
            let Some(id) = c.gone.get(&o) else {
                continue;
            };
            let spec = self.specs[id];
            let expired = spec.tombstone && self.old_enough(id, now_ms, dr);
            if !expired && !self.unseen_may_supersede((name, part), k, now_ms, true) {
                let what = format!("p{} offset {o} ({id}, key k{k})", part.1);
                return Err(violation(
                    "compaction",
                    format!(
                        "a reader from the log start misses the key: {}",
                        newest_lost(&what, spec, dr)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Rule 2 for one clean of partition `p` that started with bound `bound`: every batch a reader
/// ignoring the high watermark read at or above the bound then (`before`: base offset, last
/// offset, bytes) is in what it reads now (`after`), unless it lies below the log start now.
pub fn check_tail_unchanged(
    p: usize,
    bound: i64,
    before: &[(i64, i64, Vec<u8>)],
    after: &[(i64, i64, Vec<u8>)],
    log_start: i64,
) -> Verdict {
    let now: BTreeMap<i64, &(i64, i64, Vec<u8>)> = after.iter().map(|b| (b.0, b)).collect();
    for b in before.iter().filter(|b| b.0 >= log_start) {
        let what = match now.get(&b.0) {
            Some(a) if a.1 == b.1 && a.2 == b.2 => continue,
            Some(a) => format!("is now {}..={} of {} bytes", a.0, a.1, a.2.len()),
            None => "is gone".to_string(),
        };
        return Err(violation(
            "compaction",
            format!(
                "p{p}: the batch at {}..={} ({} bytes), at or above the high watermark or the active segment ({bound}) when a clean started, {what} after its commit",
                b.0,
                b.1,
                b.2.len()
            ),
        ));
    }
    Ok(())
}

fn newest_lost(what: &str, spec: KeyedSpec, dr: i64) -> String {
    if spec.tombstone {
        format!("{what} is gone: the newest record of its key, a tombstone younger than delete.retention.ms {dr}")
    } else {
        format!("{what} is gone: the newest value of its key")
    }
}
