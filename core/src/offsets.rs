//! The records of `__consumer_offsets`, in Kafka's own formats so Kafka tools can read them:
//! offset commits (key version 1: group, topic, partition; value version 3: offset, leader
//! epoch, metadata, commit time) and group metadata (key version 2: group; value version 3:
//! protocol type, generation, protocol, leader, state time, members with their subscription
//! and assignment). A record with no value is a tombstone: the key's offset or group is gone.
//!
//! Invariants: `decode_key(encode_*_key(..))` and `decode_*_value(encode_*_value(..))` give
//! back what was encoded; decoding never panics, whatever the bytes.

use crate::batch::{self, BatchError};

/// Why a record of the offsets topic could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes end inside a field.
    #[error("record truncated")]
    Truncated,
    /// A version this broker does not know.
    #[error("unknown {0} version {1}")]
    UnknownVersion(&'static str, i16),
    /// A string that is not UTF-8, or a negative length.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// What a key of the offsets topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A group's committed offset for one partition.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's metadata.
    Group(String),
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// Wall-clock time of the commit (ms).
    pub commit_ms: i64,
}

/// One member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Metadata for the chosen protocol.
    pub subscription: Vec<u8>,
    /// Assignment of the generation.
    pub assignment: Vec<u8>,
}

/// A group's metadata as stored (at the end of each rebalance and when it empties).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the state was entered (ms).
    pub state_ms: i64,
    /// Members.
    pub members: Vec<MemberValue>,
}

struct W(Vec<u8>);

impl W {
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        let n = s.len().min(i16::MAX as usize);
        self.i16(n as i16);
        self.0.extend_from_slice(&s.as_bytes()[..n]);
        self
    }
    fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.i16(-1),
            Some(s) => self.str(s),
        }
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, CodecError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| CodecError::Malformed(what))
    }
    fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        self.opt_str(what)?.ok_or(CodecError::Malformed(what))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, CodecError> {
        let n = self.i32()?;
        if n < 0 {
            return Err(CodecError::Malformed(what));
        }
        Ok(self.take(n as usize)?.to_vec())
    }
}

/// The key of a committed offset.
pub fn encode_offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.i16(1).str(group).str(topic).i32(partition);
    w.0
}

/// The key of a group's metadata.
pub fn encode_group_key(group: &str) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.i16(2).str(group);
    w.0
}

/// Reads a key.
pub fn decode_key(b: &[u8]) -> Result<Key, CodecError> {
    let mut r = R(b);
    match r.i16()? {
        0 | 1 => Ok(Key::Offset {
            group: r.str("group id")?,
            topic: r.str("topic")?,
            partition: r.i32()?,
        }),
        2 => Ok(Key::Group(r.str("group id")?)),
        v => Err(CodecError::UnknownVersion("key", v)),
    }
}

/// A committed offset's value (version 3).
pub fn encode_offset_value(v: &OffsetValue) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.i16(3)
        .i64(v.offset)
        .i32(v.leader_epoch)
        .str(&v.metadata)
        .i64(v.commit_ms);
    w.0
}

/// Reads a committed offset's value (versions 0 to 3).
pub fn decode_offset_value(b: &[u8]) -> Result<OffsetValue, CodecError> {
    let mut r = R(b);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(CodecError::UnknownVersion("offset value", version));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str("metadata")?;
    let commit_ms = r.i64()?;
    if version == 1 {
        r.i64()?; // expire timestamp, unused since Kafka 2.1
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_ms,
    })
}

/// A group's metadata value (version 3).
pub fn encode_group_value(v: &GroupValue) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.i16(3)
        .str(&v.protocol_type)
        .i32(v.generation)
        .opt_str(v.protocol.as_deref())
        .opt_str(v.leader.as_deref())
        .i64(v.state_ms)
        .i32(v.members.len() as i32);
    for m in &v.members {
        w.str(&m.member_id)
            .opt_str(m.instance_id.as_deref())
            .str(&m.client_id)
            .str(&m.client_host)
            .i32(m.rebalance_timeout_ms)
            .i32(m.session_timeout_ms)
            .bytes(&m.subscription)
            .bytes(&m.assignment);
    }
    w.0
}

/// Reads a group's metadata value (versions 0 to 3).
pub fn decode_group_value(b: &[u8]) -> Result<GroupValue, CodecError> {
    let mut r = R(b);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(CodecError::UnknownVersion("group value", version));
    }
    let protocol_type = r.str("protocol type")?;
    let generation = r.i32()?;
    let protocol = r.opt_str("protocol")?;
    let leader = r.opt_str("leader")?;
    let state_ms = if version >= 2 { r.i64()? } else { -1 };
    let n = r.i32()?;
    if n < 0 || n as usize > r.0.len() {
        return Err(CodecError::Malformed("member count"));
    }
    let mut members = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let member_id = r.str("member id")?;
        let instance_id = if version >= 3 {
            r.opt_str("instance id")?
        } else {
            None
        };
        let client_id = r.str("client id")?;
        let client_host = r.str("client host")?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_ms,
        members,
    })
}

/// One record of an uncompressed batch: offset, key and value.
pub type Rec<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// The records of one stored, uncompressed batch (the offsets topic is only written by the
/// coordinator, uncompressed); compressed or control batches give none.
pub fn batch_records(b: &[u8]) -> Result<Vec<Rec<'_>>, BatchError> {
    let h = batch::parse_header(b)?;
    if h.is_control() || h.compression()? != batch::Compression::None || b.len() < h.size {
        return Ok(Vec::new());
    }
    let mut body = &b[batch::HEADER_LEN..h.size];
    let mut out = Vec::new();
    let field = |rec: &mut &'_ [u8]| -> Result<Option<std::ops::Range<usize>>, BatchError> {
        let (len, n) = batch::read_varint(rec)?;
        *rec = &rec[n..];
        if len < 0 {
            return Ok(None);
        }
        if rec.len() < len as usize {
            return Err(BatchError::Invalid("field overruns record"));
        }
        Ok(Some(0..len as usize))
    };
    while !body.is_empty() {
        let (len, n) = batch::read_varint(body)?;
        if len < 1 || body.len() < n + len as usize {
            return Err(BatchError::Invalid("record overruns batch"));
        }
        let whole = &body[n..n + len as usize];
        body = &body[n + len as usize..];
        let mut rec = &whole[1..];
        let (_, n) = batch::read_varlong(rec)?;
        rec = &rec[n..];
        let (delta, n) = batch::read_varint(rec)?;
        rec = &rec[n..];
        let key = field(&mut rec)?.map(|r| {
            let k = &rec[r.clone()];
            rec = &rec[r.end..];
            k
        });
        let value = field(&mut rec)?.map(|r| {
            let v = &rec[r.clone()];
            rec = &rec[r.end..];
            v
        });
        out.push((h.base_offset + i64::from(delta), key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build::{batch, SimpleRecord};
    use proptest::prelude::*;

    #[test]
    fn kafka_offset_key_layout() {
        // Kafka's OffsetCommitKey v1 for ("g", "t", 3).
        assert_eq!(
            encode_offset_key("g", "t", 3),
            vec![0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]
        );
        assert_eq!(encode_group_key("g"), vec![0, 2, 0, 1, b'g']);
    }

    #[test]
    fn records_of_a_batch() {
        let recs = [
            SimpleRecord {
                key: Some(encode_group_key("a")),
                value: None,
                ..Default::default()
            },
            SimpleRecord {
                key: Some(encode_offset_key("a", "t", 0)),
                value: Some(vec![1, 2]),
                ..Default::default()
            },
        ];
        let mut b = batch(&recs, None);
        batch::assign_offset(&mut b, 40, 0);
        let got = batch_records(&b).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (40, Some(&recs[0].key.as_ref().unwrap()[..]), None));
        assert_eq!(got[1].0, 41);
        assert_eq!(got[1].2, Some(&[1u8, 2][..]));
    }

    proptest! {
        #[test]
        fn round_trips(group in ".{0,20}", topic in "[a-z]{1,10}", partition in any::<i32>(),
                       offset in any::<i64>(), epoch in any::<i32>(), meta in ".{0,10}",
                       gen in any::<i32>(), subs in proptest::collection::vec(any::<u8>(), 0..20)) {
            prop_assert_eq!(decode_key(&encode_offset_key(&group, &topic, partition)).unwrap(),
                Key::Offset { group: group.clone(), topic, partition });
            prop_assert_eq!(decode_key(&encode_group_key(&group)).unwrap(), Key::Group(group.clone()));
            let o = OffsetValue { offset, leader_epoch: epoch, metadata: meta.clone(), commit_ms: offset ^ 7 };
            prop_assert_eq!(decode_offset_value(&encode_offset_value(&o)).unwrap(), o);
            let g = GroupValue {
                protocol_type: "consumer".into(),
                generation: gen,
                protocol: Some(meta.clone()),
                leader: None,
                state_ms: 5,
                members: vec![MemberValue {
                    member_id: group.clone(),
                    instance_id: Some(meta),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 1,
                    session_timeout_ms: 2,
                    subscription: subs.clone(),
                    assignment: subs,
                }],
            };
            prop_assert_eq!(decode_group_value(&encode_group_value(&g)).unwrap(), g);
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&b);
            let _ = decode_offset_value(&b);
            let _ = decode_group_value(&b);
        }
    }
}
