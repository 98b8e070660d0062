//! The cleaner's key map: from a key's hash to the offset of its newest record in the range
//! indexed so far, in a fixed memory budget (`log.cleaner.dedupe.buffer.size`).
//!
//! An open-addressing table with linear probing over one flat array of (hash, offset) slots: 24
//! bytes a slot, at most `budget / 24` slots, filled to at most Kafka's load factor 0.9 so a
//! probe always meets an empty slot quickly. The table starts small and doubles (rehashing)
//! as keys arrive, up to the budget: a log with few keys is deduplicated in a table that stays
//! in the CPU's caches instead of one spread over the whole budget (where every probe missed
//! the cache and the TLB). The hash is [`super::hash::key_hash`] (16 bytes of SHA-256); its
//! first 8 bytes pick the starting slot.
//!
//! The builder asks [`KeyMap::has_room_for`] before indexing a batch and ends the pass at that
//! batch when the answer is no, so a pass always ends at the last offset fully indexed.
//!
//! Invariants ([`KeyMap::check_invariants`]): `len <= capacity < slots <= max_slots`, and
//! `len <= 90%` of the slots in use; an occupied slot holds an offset >= 0 and is reachable
//! from its hash's starting slot without crossing an empty slot; no hash occupies two slots;
//! offsets are put in non-decreasing order, and `latest_offset` is the largest put.

use super::hash::{KeyHash, HASH_BYTES};

/// Bytes one slot takes: the hash and an 8-byte offset (Kafka's `SkimpyOffsetMap` layout).
pub const ENTRY_BYTES: u64 = HASH_BYTES as u64 + 8;
/// The fraction of slots the map fills at most, as Kafka's `log.cleaner.io.buffer.load.factor`.
pub const LOAD_FACTOR_PERCENT: u64 = 90;
/// Slots a map starts with (when its budget allows): 192 KiB.
const INITIAL_SLOTS: usize = 8 << 10;

const EMPTY: i64 = -1;

/// A bounded map from key hash to the newest offset seen for it.
#[derive(Debug, Clone)]
pub struct KeyMap {
    /// (hash, newest offset) per slot, side by side so a probe touches one cache line.
    slots: Vec<(KeyHash, i64)>,
    len: usize,
    /// The most keys the whole budget holds.
    capacity: usize,
    /// The most slots the budget pays for.
    max_slots: usize,
    latest: i64,
}

/// The most keys `slots` slots hold at the load factor (at least 1, fewer than `slots`).
fn fill_limit(slots: usize) -> usize {
    ((slots as u64 * LOAD_FACTOR_PERCENT / 100) as usize).clamp(1, slots - 1)
}

impl KeyMap {
    /// A map in `budget_bytes` of memory: up to `budget / 24` slots (at least 2), of which at
    /// most 90% are used.
    pub fn with_budget(budget_bytes: u64) -> KeyMap {
        let max_slots = (budget_bytes / ENTRY_BYTES).clamp(2, 1 << 31) as usize;
        KeyMap {
            slots: vec![([0; HASH_BYTES], EMPTY); max_slots.min(INITIAL_SLOTS)],
            len: 0,
            capacity: fill_limit(max_slots),
            max_slots,
            latest: EMPTY,
        }
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `n` more keys, all new, would still fit.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.len.saturating_add(n) <= self.capacity
    }

    /// The largest offset put, if any.
    pub fn latest_offset(&self) -> Option<i64> {
        (self.latest >= 0).then_some(self.latest)
    }

    /// The starting slot of `hash` among `slots` (multiply-shift: no division).
    fn start(hash: &KeyHash, slots: usize) -> usize {
        let h = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        ((u128::from(h) * slots as u128) >> 64) as usize
    }

    /// The slot holding `hash`, or the empty slot where it would go.
    fn slot(&self, hash: &KeyHash) -> usize {
        let slots = self.slots.len();
        let mut i = Self::start(hash, slots);
        loop {
            let (h, off) = &self.slots[i];
            if *off == EMPTY || h == hash {
                return i;
            }
            i = if i + 1 == slots { 0 } else { i + 1 };
        }
    }

    /// Doubles the table (up to the budget), rehashing every key.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).min(self.max_slots);
        let old = std::mem::replace(&mut self.slots, vec![([0; HASH_BYTES], EMPTY); n]);
        for (h, off) in old.into_iter().filter(|(_, off)| *off != EMPTY) {
            let i = self.slot(&h);
            self.slots[i] = (h, off);
        }
    }

    /// Records `offset` as the newest for `hash`. Offsets must come in non-decreasing order,
    /// and a new key needs room ([`KeyMap::has_room_for`]); both are asserted.
    pub fn put(&mut self, hash: &KeyHash, offset: i64) {
        assert!(
            offset >= 0 && offset >= self.latest,
            "offsets are put in order"
        );
        let mut i = self.slot(hash);
        if self.slots[i].1 == EMPTY {
            assert!(self.len < self.capacity, "the key map is full");
            if self.len + 1 > fill_limit(self.slots.len()) {
                self.grow();
                i = self.slot(hash);
            }
            self.slots[i].0 = *hash;
            self.len += 1;
        }
        self.slots[i].1 = offset;
        self.latest = offset;
    }

    /// The newest offset recorded for `hash`.
    pub fn get(&self, hash: &KeyHash) -> Option<i64> {
        let off = self.slots[self.slot(hash)].1;
        (off != EMPTY).then_some(off)
    }

    /// Empties the map, keeping its memory.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| s.1 = EMPTY);
        self.len = 0;
        self.latest = EMPTY;
    }

    /// Asserts the module's invariants (linear in the number of slots).
    pub fn check_invariants(&self) {
        assert!(self.len <= self.capacity && self.capacity < self.max_slots);
        assert!(self.slots.len() <= self.max_slots);
        assert!(self.len <= fill_limit(self.slots.len()));
        let mut occupied = 0;
        let mut max = EMPTY;
        for (i, (h, off)) in self.slots.iter().enumerate() {
            if *off == EMPTY {
                continue;
            }
            assert!(*off >= 0);
            occupied += 1;
            max = max.max(*off);
            assert_eq!(self.slot(h), i, "slot {i} is reachable");
        }
        assert_eq!(occupied, self.len);
        assert_eq!(max, self.latest);
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::key_hash;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_table_grows_up_to_its_budget() {
        let mut m = KeyMap::with_budget(24 * 100_000);
        assert_eq!(m.slots.len(), INITIAL_SLOTS);
        for i in 0..89_000u32 {
            m.put(&key_hash(&i.to_be_bytes()), i64::from(i));
        }
        assert_eq!(m.slots.len(), 100_000, "grown to the budget, not past it");
        m.check_invariants();
        assert_eq!(m.get(&key_hash(&7u32.to_be_bytes())), Some(7));
    }

    #[test]
    fn budget_gives_capacity() {
        let m = KeyMap::with_budget(24 * 100);
        assert_eq!(m.capacity(), 90);
        assert_eq!(KeyMap::with_budget(0).capacity(), 1);
        assert!(KeyMap::with_budget(1 << 20).capacity() > 39_000);
    }

    proptest! {
        /// The map agrees with a BTreeMap model, refuses nothing it has room for, and keeps its
        /// invariants, however small.
        #[test]
        fn agrees_with_a_model(
            budget in 0u64..2000,
            keys in proptest::collection::vec(0u8..40, 0..300),
        ) {
            let mut m = KeyMap::with_budget(budget);
            let mut model = BTreeMap::new();
            for (off, k) in keys.iter().enumerate() {
                let h = key_hash(&[*k]);
                let known = model.contains_key(k);
                if !known && !m.has_room_for(1) {
                    prop_assert_eq!(model.len(), m.capacity());
                    continue;
                }
                m.put(&h, off as i64);
                model.insert(*k, off as i64);
                prop_assert_eq!(m.latest_offset(), Some(off as i64));
            }
            m.check_invariants();
            prop_assert_eq!(m.len(), model.len());
            for k in 0u8..40 {
                prop_assert_eq!(m.get(&key_hash(&[k])), model.get(&k).copied());
            }
            m.clear();
            m.check_invariants();
            prop_assert!(m.is_empty());
        }
    }
}
