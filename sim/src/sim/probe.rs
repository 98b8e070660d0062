//! Retry probes: after every restart, each idempotent producer resends its newest acknowledged
//! batch to every partition of a compacted topic it has nothing in flight to, with the same
//! producer id, epoch and sequence, as a Kafka producer does when the acknowledgement was lost
//! with the connection. The node must recognise it as a duplicate and answer with the offsets
//! it acknowledged before (`checker/duplicates.rs`, [`check_retry`]); an append at new offsets,
//! or an OUT_OF_ORDER_SEQUENCE_NUMBER, means the restart lost the producer's sequence (a clean
//! that dropped the producer's last batch, replayed by recovery without a snapshot covering it).
//!
//! Only compact-only topics are probed: retention may delete a producer's batches on the others,
//! and then forgetting the producer is right. The probe goes straight to the node (acks=1, so the
//! answer comes at once), as the final audit reads; it writes nothing when the node is right.
//!
//! Invariant: a probed batch is the newest the producer sent to that partition (nothing of its
//! own is in flight there), so the cleaner must keep its header (`batch_offsets_to_keep`).

use super::*;
use crate::checker::duplicates::check_retry;

/// A batch an idempotent producer had acknowledged.
#[derive(Debug, Clone)]
pub(super) struct Acked {
    /// Its serial.
    pub serial: u32,
    /// Its bytes as sent.
    pub bytes: Vec<u8>,
    /// The offsets it was acknowledged at.
    pub offsets: (i64, i64),
}

impl Sim {
    /// Producer `c`'s in-flight batch `i` was acknowledged at `offsets`.
    pub(super) fn note_acked(&mut self, c: usize, i: usize, offsets: (i64, i64)) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        let f = &p.inflight[i];
        if p.acked.get(&f.key).is_some_and(|a| a.serial > f.serial) {
            return;
        }
        let a = Acked {
            serial: f.serial,
            bytes: f.bytes.clone(),
            offsets,
        };
        p.acked.insert(f.key.clone(), a);
    }

    /// Sends every retry probe (see the module docs) and judges the answers.
    pub(super) fn probe_retries(&mut self) -> Verdict {
        let compact_only = |s: &Swarm, name: &str| {
            s.compaction.topics[topic_index(name)].is_some_and(|t| !t.delete_too)
        };
        let mut probes = Vec::new();
        for (c, cl) in self.clients.iter().enumerate() {
            let Client::Producer(p) = cl else { continue };
            for (key, a) in &p.acked {
                let busy = p.inflight.iter().any(|f| f.key == *key);
                if !busy && compact_only(&self.swarm, &key.0) {
                    probes.push((c, key.clone(), a.clone()));
                }
            }
        }
        for (c, key, a) in probes {
            if !self.node.is_up() || self.node.disk().is_dead() {
                break;
            }
            let req = self.new_req();
            let timeout = self.swarm.timeout_ms;
            let mut outs = self
                .node
                .produce(self.now, &key, (c, req), &a.bytes, 1, timeout);
            let mine = outs
                .iter()
                .position(|o| matches!(o, NodeOut::Reply { req: r, .. } if *r == req));
            let Some(NodeOut::Reply { result, .. }) = mine.map(|i| outs.remove(i)) else {
                unreachable!("acks=1 is answered at once")
            };
            self.node_outs(outs);
            self.log(format!(
                "probe c{c} batch{} {}-{} acked at {:?}: {result}",
                a.serial, key.0, key.1, a.offsets
            ));
            check_retry(key.1 as usize, (c as u32, a.serial), a.offsets, &result)?;
        }
        Ok(())
    }
}
