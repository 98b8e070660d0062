//! Log compaction (`cleanup.policy=compact`): the cleaner's decisions, as pure functions and
//! one step machine per clean; the storage layer carries out the file work it names.
//!
//! A clean of one partition, as Kafka's `LogCleaner`:
//! 1. [`choose::cleanable`] splits the log into a clean head and a dirty tail and finds the
//!    first uncleanable offset (the active segment, the high watermark's segment,
//!    `min.compaction.lag.ms`); [`choose::rank_dirtiest`] picks the partition to clean.
//! 2. [`job::CleanJob`] builds a [`keymap::KeyMap`] (key hash -> newest offset) over the dirty
//!    range in offset order, until the range ends or the map is full (then the pass ends at
//!    the last batch fully indexed and the next clean continues from there).
//! 3. It rewrites every segment from the log start up to the end of what the map covers, in
//!    groups of consecutive segments ([`group::group_segments`]), each into one new segment,
//!    keeping for each record only what [`filter`] decides and rewriting batches with
//!    [`rewrite`].
//! 4. It records the new first dirty offset (the cleaner checkpoint).
//!
//! Invariants of a clean (checked by the tests over random logs):
//! - Offsets never change: a survivor keeps its offset and bytes; a cleaned log has gaps.
//! - The newest record of every key below the first uncleanable offset survives, unless it is
//!   a tombstone past its retention; nothing at or above the first uncleanable offset is read
//!   for the map or rewritten.
//! - A tombstone is dropped only below the clean's first dirty offset, in a segment last
//!   modified at or before the delete horizon.
//! - Each producer's cached batches (its newest [`crate::producer::DEDUP_WINDOW`]: what
//!   recovery must find if a crash takes the newer, uncommitted ones away, and what a retry of
//!   one still in flight is recognised by) keep their
//!   headers (base offset, last offset delta, producer id, epoch, base sequence); control
//!   batches are kept whole.
//! - Every destination segment ends with a batch whose last offset is its range's last offset,
//!   so a scan of the segment after a restart finds the same offset range.
//! - Several passes with a small map keep the same records as one pass with a big map (up to
//!   tombstones whose retention ended between the passes).
//!
//! Crash safety: see [`job`] for the order of file operations and [`leftovers`] for what a
//! recovery does with the files a crash left.

pub mod choose;
pub mod decode;
pub mod filter;
pub mod group;
pub mod hash;
pub mod job;
pub mod keymap;
pub mod leftovers;
pub mod rewrite;

#[cfg(test)]
mod tests;

/// Broker-wide cleaner settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Memory for one clean's key map (`log.cleaner.dedupe.buffer.size` per cleaner thread).
    pub dedupe_buffer_bytes: u64,
    /// Bytes read from a segment at a time, grown to fit a larger batch
    /// (`log.cleaner.io.buffer.size`).
    pub read_buffer_bytes: u64,
    /// Bytes of cleaned batches gathered before one write.
    pub write_buffer_bytes: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            dedupe_buffer_bytes: 128 << 20,
            read_buffer_bytes: 512 << 10,
            write_buffer_bytes: 512 << 10,
        }
    }
}
