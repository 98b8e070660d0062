//! The client side of the classic consumer protocol: ConsumerProtocolSubscription and
//! ConsumerProtocolAssignment bytes, and the range and roundrobin assignors as Kafka's Java
//! client runs them.

use std::collections::BTreeMap;

use skein_core::coordinator::subscribed_topics;

use super::swarm::Assignor;

/// The one topic the classic groups subscribe to.
pub const TOPIC: &str = "t";

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// ConsumerProtocolSubscription v0: version, topics, user data (null).
pub fn encode_subscription(topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    put_str(&mut out, topic);
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// ConsumerProtocolAssignment v0 of partitions of [`TOPIC`]: version, [topic, [partition]],
/// user data (null).
pub fn encode_assignment(parts: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    put_str(&mut out, TOPIC);
    out.extend_from_slice(&(parts.len() as i32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// The partitions of [`TOPIC`] in a ConsumerProtocolAssignment (empty bytes: none).
pub fn decode_assignment(b: &[u8]) -> Vec<i32> {
    fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    let mut out = Vec::new();
    let Some(topics) = i32_at(b, 2) else {
        return out;
    };
    let mut at = 6;
    for _ in 0..topics {
        let Some(len) = b.get(at..at + 2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]).max(0) as usize;
        let name = b.get(at + 2..at + 2 + len).unwrap_or_default();
        at += 2 + len;
        let n = i32_at(b, at).unwrap_or(0);
        at += 4;
        for _ in 0..n {
            let p = i32_at(b, at).unwrap_or(-1);
            at += 4;
            if name == TOPIC.as_bytes() {
                out.push(p);
            }
        }
    }
    out
}

/// The leader's assignment, as the Java client's assignors compute it: members subscribed to
/// [`TOPIC`], ordered by instance id (static) or member id.
pub fn assign(
    assignor: Assignor,
    members: &[(String, Option<String>, Vec<u8>)],
    partitions: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut subs: Vec<(&str, &str)> = members
        .iter()
        .filter(|(_, _, meta)| subscribed_topics(meta).iter().any(|t| t == TOPIC))
        .map(|(id, inst, _)| (inst.as_deref().unwrap_or(id), id.as_str()))
        .collect();
    subs.sort();
    let n = subs.len();
    let mut out: BTreeMap<&str, Vec<i32>> = members
        .iter()
        .map(|(id, _, _)| (id.as_str(), vec![]))
        .collect();
    match assignor {
        Assignor::Range => {
            let per = partitions.checked_div(n).unwrap_or(0);
            let extra = partitions.checked_rem(n).unwrap_or(0);
            for (i, (_, id)) in subs.iter().enumerate() {
                let start = per * i + i.min(extra);
                let len = per + usize::from(i < extra);
                out.insert(id, (start..start + len).map(|p| p as i32).collect());
            }
        }
        Assignor::RoundRobin => {
            for (p, (_, id)) in (0..partitions).zip(subs.iter().cycle()) {
                out.entry(id).or_default().push(p as i32);
            }
        }
    }
    out.into_iter()
        .map(|(id, parts)| (id.to_string(), encode_assignment(&parts)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip_and_subscriptions_parse() {
        assert_eq!(subscribed_topics(&encode_subscription("t")), vec!["t"]);
        assert_eq!(
            decode_assignment(&encode_assignment(&[0, 3, 5])),
            vec![0, 3, 5]
        );
        assert!(decode_assignment(&[]).is_empty());
    }

    #[test]
    fn range_and_roundrobin_split_like_the_java_client() {
        let m = |id: &str| (id.to_string(), None, encode_subscription("t"));
        let members = vec![m("b"), m("a"), m("c")];
        let got = |a| {
            assign(a, &members, 7)
                .into_iter()
                .map(|(id, b)| (id, decode_assignment(&b)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(Assignor::Range),
            vec![
                ("a".into(), vec![0, 1, 2]),
                ("b".into(), vec![3, 4]),
                ("c".into(), vec![5, 6])
            ]
        );
        assert_eq!(
            got(Assignor::RoundRobin),
            vec![
                ("a".into(), vec![0, 3, 6]),
                ("b".into(), vec![1, 4]),
                ("c".into(), vec![2, 5])
            ]
        );
    }
}
