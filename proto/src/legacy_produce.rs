//! Produce v0-v2: listed by ApiVersions for old librdkafka (KAFKA-18659) but never served. A
//! request at one of these versions gets UNSUPPORTED_VERSION for each partition it names, in
//! its own wire format (kafka-protocol's Produce messages start at v3).

use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError as E;

/// The answer to a Produce request at one of the versions listed but not served (v0-v2): every
/// partition asked about gets UNSUPPORTED_VERSION, in the request's own wire format, which
/// kafka-protocol does not encode (its Produce messages start at v3).
#[derive(Debug, Default, PartialEq)]
pub struct LegacyProduceRefusal {
    /// Each topic named in the request, with the partition indexes asked for.
    pub topics: Vec<(StrBytes, Vec<i32>)>,
}

/// Reads a Produce v0-v2 body (after the request header) and builds its refusal; `None` for
/// acks=0, which gets no answer. A v0-v2 body is a v3 body without the leading
/// `transactional_id`, so it is decoded as v3 behind a null one.
pub fn legacy_produce_refusal(
    body: &[u8],
    version: i16,
) -> Result<Option<LegacyProduceRefusal>, String> {
    if !(0..=2).contains(&version) {
        return Err(format!("Produce v{version} is not a legacy version"));
    }
    let mut v3 = bytes::BytesMut::with_capacity(body.len() + 2);
    v3.extend_from_slice(&(-1i16).to_be_bytes());
    v3.extend_from_slice(body);
    let req = ProduceRequest::decode(&mut v3.freeze(), 3)
        .map_err(|e| format!("malformed Produce v{version} request: {e}"))?;
    if req.acks == 0 {
        return Ok(None);
    }
    Ok(Some(LegacyProduceRefusal {
        topics: req
            .topic_data
            .into_iter()
            .map(|t| (t.name.0, t.partition_data.iter().map(|p| p.index).collect()))
            .collect(),
    }))
}

impl Encodable for LegacyProduceRefusal {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        if !(0..=2).contains(&version) {
            anyhow::bail!("the legacy Produce refusal is encoded at v0-v2, not v{version}");
        }
        buf.put_i32(self.topics.len() as i32);
        for (name, partitions) in &self.topics {
            let name = name.as_bytes();
            buf.put_i16(i16::try_from(name.len())?);
            buf.put_slice(name);
            buf.put_i32(partitions.len() as i32);
            for index in partitions {
                buf.put_i32(*index);
                buf.put_i16(E::UnsupportedVersion.code());
                buf.put_i64(-1); // base_offset
                if version >= 2 {
                    buf.put_i64(-1); // log_append_time_ms
                }
            }
        }
        if version >= 1 {
            buf.put_i32(0); // throttle_time_ms
        }
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let partition = 4 + 2 + 8 + if version >= 2 { 8 } else { 0 };
        let topics: usize = self
            .topics
            .iter()
            .map(|(name, ps)| 2 + name.len() + 4 + ps.len() * partition)
            .sum();
        Ok(4 + topics + if version >= 1 { 4 } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_string())
    }

    /// A Produce v0-v2 body: acks, timeout, then topics of (name, [(partition, records)]).
    fn legacy_body(acks: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_i16(acks);
        b.put_i32(1500);
        b.put_i32(topics.len() as i32);
        for (name, parts) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(parts.len() as i32);
            for p in *parts {
                b.put_i32(*p);
                b.put_i32(3); // a record set kafka-protocol does not look into
                b.put_slice(b"xyz");
            }
        }
        b
    }

    #[test]
    fn legacy_produce_is_refused_per_partition_in_its_own_format() {
        let body = legacy_body(1, &[("a", &[0, 2]), ("bb", &[7])]);
        for version in 0..=2i16 {
            let refusal = legacy_produce_refusal(&body, version).unwrap().unwrap();
            assert_eq!(
                refusal.topics,
                vec![(s("a"), vec![0, 2]), (s("bb"), vec![7])]
            );
            let mut buf = bytes::BytesMut::new();
            refusal.encode(&mut buf, version).unwrap();
            assert_eq!(buf.len(), refusal.compute_size(version).unwrap());
            let mut want = Vec::new();
            want.put_i32(2);
            for (name, parts) in [("a", &[0, 2][..]), ("bb", &[7][..])] {
                want.put_i16(name.len() as i16);
                want.put_slice(name.as_bytes());
                want.put_i32(parts.len() as i32);
                for p in parts {
                    want.put_i32(*p);
                    want.put_i16(35); // UNSUPPORTED_VERSION
                    want.put_i64(-1);
                    if version >= 2 {
                        want.put_i64(-1);
                    }
                }
            }
            if version >= 1 {
                want.put_i32(0);
            }
            assert_eq!(&buf[..], &want[..], "v{version}");
        }
    }

    #[test]
    fn legacy_produce_acks_0_truncated_and_served_versions() {
        let body = legacy_body(0, &[("a", &[0])]);
        assert_eq!(legacy_produce_refusal(&body, 2).unwrap(), None);
        let body = legacy_body(-1, &[("a", &[0])]);
        assert!(legacy_produce_refusal(&body[..body.len() - 2], 1).is_err());
        assert!(legacy_produce_refusal(&body, 3).is_err());
        assert!(legacy_produce_refusal(&body, -1).is_err());
        assert!(LegacyProduceRefusal::default()
            .encode(&mut bytes::BytesMut::new(), 3)
            .is_err());
    }
}
