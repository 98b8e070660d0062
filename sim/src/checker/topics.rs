//! Topics: a topic whose creation was acknowledged stays, with every acknowledged partition,
//! until a delete is sent for it; nothing sent after a delete was acknowledged reaches it.

use super::{violation, History, Part, TopicHistory, Verdict};
use crate::node::TopicId;

/// A CreateTopics (or the driver's initial topic) was acknowledged with `id`.
pub fn created(h: &mut History, id: TopicId, name: &str, partitions: u32) {
    h.topics.insert(
        id,
        TopicHistory {
            name: name.to_string(),
            partitions,
            ..Default::default()
        },
    );
}

/// CreatePartitions of `id` to `total` was acknowledged.
pub fn grown(h: &mut History, id: TopicId, total: u32) {
    if let Some(t) = h.topics.get_mut(&id) {
        t.partitions = t.partitions.max(total);
    }
}

/// A delete of `name` was sent: every topic of that name known so far is no longer owed.
pub fn delete_sent(h: &mut History, name: &str) {
    for t in h.topics.values_mut().filter(|t| t.name == name) {
        t.delete_sent = true;
    }
}

/// A delete was acknowledged, deleting `id`, at `now_ms`.
pub fn deleted(h: &mut History, id: TopicId, now_ms: u64) {
    if let Some(t) = h.topics.get_mut(&id) {
        t.delete_sent = true;
        t.deleted_at.get_or_insert(now_ms);
    }
}

/// A produce or fetch sent at `sent_ms` was answered from topic `id`: it must not have been
/// deleted (acknowledged) before the request was sent.
pub fn check_reached(h: &History, id: TopicId, sent_ms: u64, what: &str) -> Verdict {
    if let Some(t) = h.topics.get(&id) {
        if let Some(at) = t.deleted_at.filter(|at| *at < sent_ms) {
            return Err(violation(
                "topics",
                format!(
                    "a {what} sent at {sent_ms} ms reached topic {} ({:08x}) whose delete was acknowledged at {at} ms",
                    t.name, id as u32
                ),
            ));
        }
    }
    Ok(())
}

/// After a restart or at the end, with the node's partitions: every owed topic is there with
/// at least its acknowledged partitions.
pub fn check_present(h: &History, parts: &[(Part, i64, i64)]) -> Verdict {
    for (id, t) in h.topics.iter().filter(|(_, t)| !t.delete_sent) {
        let have = parts.iter().filter(|((tid, _), _, _)| tid == id).count() as u32;
        if have < t.partitions {
            return Err(violation(
                "topics",
                format!(
                    "topic {} ({:08x}) has {have} partitions after a restart; {} were acknowledged and no delete was sent",
                    t.name, *id as u32, t.partitions
                ),
            ));
        }
    }
    Ok(())
}
