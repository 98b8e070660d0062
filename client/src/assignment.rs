//! Consumer group assignments as the Java consumer writes them (ConsumerProtocolAssignment,
//! any version): which partitions of which topics a member owns.
//!
//! Invariant: decoding never panics and never allocates for a count the remaining bytes
//! cannot hold; bytes that do not parse are an error that says where.

use crate::error::ClientError;

/// A member's partitions, by topic, in the order the assignment lists them.
pub type Assignment = Vec<(String, Vec<i32>)>;

/// Reads big-endian Kafka primitives, failing instead of panicking past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.remaining() < n {
            return Err(format!(
                "{what} at byte {} needs {n} bytes, {} left",
                self.at,
                self.remaining()
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length: -1 (null) counts as empty; a count the remaining bytes cannot hold
    /// (each element takes at least `element_bytes_min`) is refused before any allocation.
    fn count(&mut self, element_bytes_min: usize, what: &str) -> Result<usize, String> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(0);
        }
        let n = usize::try_from(n).map_err(|_| format!("{what} is negative ({n})"))?;
        if n.saturating_mul(element_bytes_min) > self.remaining() {
            return Err(format!(
                "{what} is {n}, more than the {} bytes left can hold",
                self.remaining()
            ));
        }
        Ok(n)
    }
}

/// Decodes a consumer's assignment (ConsumerProtocolAssignment, any version): version i16,
/// an array (i32 count) of topics, each a string (i16 length) and an array of i32
/// partitions, then user data and, from v1, fields not needed here. Empty bytes are an empty
/// assignment (a group between generations); bytes that do not parse are an error saying
/// where, never a panic.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, ClientError> {
    decode(bytes).map_err(|e| ClientError::Protocol(format!("consumer assignment: {e}")))
}

fn decode(bytes: &[u8]) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(format!("version {version} is negative"));
    }
    // Each topic is at least a 2-byte name length and a 4-byte partition count.
    let topics = r.count(6, "topic count")?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let len = r.i16("topic name length")?;
        let len = usize::try_from(len).map_err(|_| format!("topic name length {len}"))?;
        let name = String::from_utf8_lossy(r.take(len, "topic name")?).into_owned();
        let count = r.count(4, "partition count")?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(r.i32("partition")?);
        }
        out.push((name, partitions));
    }
    // User data and later versions' fields follow; nothing here needs them.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes an assignment as the Java consumer does (v0, null user data unless given).
    fn encode_assignment(version: i16, a: &Assignment, user_data: Option<&[u8]>) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend((a.len() as i32).to_be_bytes());
        for (t, ps) in a {
            out.extend((t.len() as i16).to_be_bytes());
            out.extend(t.as_bytes());
            out.extend((ps.len() as i32).to_be_bytes());
            for p in ps {
                out.extend(p.to_be_bytes());
            }
        }
        match user_data {
            None => out.extend((-1i32).to_be_bytes()),
            Some(d) => {
                out.extend((d.len() as i32).to_be_bytes());
                out.extend(d);
            }
        }
        out
    }

    #[test]
    fn assignments_decode() {
        let a: Assignment = vec![("orders".into(), vec![0, 2]), ("t".into(), vec![])];
        assert_eq!(
            decode_assignment(&encode_assignment(0, &a, None)).unwrap(),
            a
        );
        // v3 with user data and a trailing field (v1+ adds fields after the user data).
        let mut v3 = encode_assignment(3, &a, Some(b"ud"));
        v3.extend([0, 0, 0, 0]);
        assert_eq!(decode_assignment(&v3).unwrap(), a);
        // Empty bytes: no assignment. Only a version and no topics array: an error.
        assert_eq!(decode_assignment(&[]).unwrap(), vec![]);
        assert!(decode_assignment(&[0, 0]).is_err());
        // A topic count the bytes cannot hold is refused, not allocated.
        let err = decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff])
            .unwrap_err()
            .to_string();
        assert!(err.contains("topic count"), "{err}");
        // A truncated partition list.
        let whole = encode_assignment(0, &a, None);
        assert!(decode_assignment(&whole[..whole.len() - 10]).is_err());
        assert!(
            decode_assignment(&[0xff, 0xff, 0, 0, 0, 0]).is_err(),
            "negative version"
        );
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_assignment(&bytes);
        }

        #[test]
        fn assignments_round_trip(
            version in 0i16..4,
            a in proptest::collection::vec(
                ("[a-z0-9._-]{1,20}", proptest::collection::vec(0i32..10_000, 0..8)),
                0..6,
            ),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        ) {
            let bytes = encode_assignment(version, &a, user_data.as_deref());
            prop_assert_eq!(decode_assignment(&bytes).ok(), Some(a.clone()));
            // Any prefix short of the user data fails or decodes, never panics.
            for cut in 0..bytes.len() {
                let _ = decode_assignment(&bytes[..cut]);
            }
        }
    }
}
