//! Faults found at a crash: power loss ([`Node::crash`]), and the sector corruption
//! ([`Node::rot`]) and misdirected writes ([`Node::misdirect`]) a crash may reveal.
//!
//! Fault-injection rule for sector corruption and misdirected writes (why it is safe to check
//! strictly): both are injected only at a crash, only into the durable bytes of batches at or
//! above the durable frontier the checker holds, and only where recovery must scan (the
//! active segment, or a sealed segment after its last index point). So the checker may forget
//! everything at or above the frontier at a crash (see `checker/durability.rs`) and still
//! demand that no corrupt batch is ever served. On a compacted partition the floor is also the
//! clean bound (`History::damage_floor`): a clean may have dropped promised records in favour
//! of newer, committed ones the clients were not yet promised, and damaging those would lose
//! the promised values too. Corruption before a sealed segment's last index
//! point is not injected: neither Kafka nor skein re-verifies sealed segments on recovery, so it
//! would be served (a Kafka client's CRC check would catch it); that needs a scrubber or
//! fetch-side checks first.
//!
//! Where recovery scans is read from the stores' core logs before the crash (the segments and
//! their index points); `PartitionStore::open` scans at least that much: more only when it
//! finds an index missing or wrong, which only widens what it checks.

use skein_core::batch;
use skein_storage::partition::file_name;

use super::{dir, Node, TopicId};
use crate::disk::CrashReport;
use crate::rng::Rng;
use crate::swarm::Swarm;

/// Where recovery will scan a segment, noted before a crash (see the module docs).
#[derive(Debug, Clone)]
pub struct Scanned {
    topic_id: TopicId,
    partition: u32,
    /// The segment's log file on the disk.
    name: String,
    /// The first byte recovery scans.
    from: u64,
}

impl Node {
    /// Power loss: volatile state is gone, the disk keeps what it keeps. Returns where recovery
    /// will scan, for [`Node::rot`] and [`Node::misdirect`].
    pub fn crash(&mut self, r: &mut Rng, swarm: &Swarm) -> (CrashReport, Vec<Scanned>) {
        // Where recovery will scan, from the in-memory state before it is lost.
        let mut scanned = Vec::new();
        for (key, ps) in &self.parts {
            let log = ps.store.log();
            let n = log.segments().count();
            for (i, s) in log.segments().enumerate() {
                let from = if i + 1 == n {
                    0
                } else {
                    s.points().last().map_or(0, |pt| u64::from(pt.position))
                };
                scanned.push(Scanned {
                    topic_id: ps.topic_id,
                    partition: key.1,
                    name: format!("{}/{}", dir(key), file_name(s.base_offset, "log")),
                    from,
                });
            }
        }
        self.stop();
        let rep = self.disk_mut().crash(r, swarm);
        (rep, scanned)
    }

    /// Batches recovery will scan whose base offset is at or above their partition's acks=all
    /// frontier: (file, position, size).
    fn damageable(
        &self,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Vec<(String, u64, usize)> {
        let mut candidates = Vec::new();
        for s in scanned {
            let Some(bytes) = self.disk().read_all(&s.name) else {
                continue;
            };
            let f = frontier(s.topic_id, s.partition);
            for item in batch::iter_headers(&bytes) {
                let Ok((pos, h)) = item else { break };
                if pos as u64 >= s.from && h.base_offset >= f {
                    candidates.push((s.name.clone(), pos as u64, h.size));
                }
            }
        }
        candidates
    }

    /// Bit rot at a crash: flips one bit inside the CRC-covered part of one batch recovery will
    /// scan, at or above its partition's durable frontier.
    pub fn rot(
        &mut self,
        r: &mut Rng,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Option<String> {
        let candidates = self.damageable(scanned, frontier);
        if candidates.is_empty() {
            return None;
        }
        let (name, pos, size) = candidates[r.below(candidates.len() as u64) as usize].clone();
        // Inside the CRC-covered part (the CRC field and after); the base offset and leader
        // epoch sit outside the CRC by Kafka's design.
        let at = pos + r.range(17, size as u64 - 1);
        let bit = r.below(8) as u8;
        self.disk_mut().flip_bit(&name, at, bit);
        Some(format!("{name}@{at}.{bit}"))
    }

    /// A misdirected write found at a crash: a piece of some segment file's bytes (from this or
    /// another file) landed inside the CRC-covered part of one batch recovery will scan, at or
    /// above its partition's durable frontier, where it was never meant to go.
    pub fn misdirect(
        &mut self,
        r: &mut Rng,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Option<String> {
        let candidates = self.damageable(scanned, frontier);
        if candidates.is_empty() {
            return None;
        }
        let (name, pos, size) = candidates[r.below(candidates.len() as u64) as usize].clone();
        let src_name = &scanned[r.below(scanned.len() as u64) as usize].name;
        let src_bytes = self.disk().read_all(src_name).unwrap_or_default();
        let at = pos + r.range(17, size as u64 - 1);
        let room = (pos + size as u64 - at) as usize;
        let len = (r.range(1, 512) as usize).min(room);
        let from = r.below(src_bytes.len().max(1) as u64) as usize;
        let mut piece: Vec<u8> = src_bytes.iter().skip(from).take(len).copied().collect();
        piece.resize(len, 0);
        let old = self.disk().read(&name, at, len as u64);
        if old == piece {
            // Landing on identical bytes changes nothing: make the damage real.
            piece[0] ^= 0xff;
        }
        self.disk_mut().clobber(&name, at, &piece);
        Some(format!("{src_name}@{from}->{name}@{at}+{len}"))
    }
}
