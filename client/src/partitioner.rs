//! The Java client's partitioner for keyed records: `toPositive(murmur2(key)) % partitions`,
//! so a key lands on the same partition whichever of skein's or Java's clients wrote it.
//!
//! Invariant: [`partition_for_key`] returns a value in `0..partition_count` (for a count of at
//! least 1) and depends on nothing but the key bytes and the count.

/// The Java client's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java hashes the int length; keys are far below 2^31 bytes.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's key partitioner: `toPositive(murmur2(key)) % numPartitions`; `None`
/// for a partition count below 1.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> Option<i32> {
    (partition_count > 0).then(|| (murmur2(key) & 0x7fff_ffff) % partition_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // org.apache.kafka.common.utils.UtilsTest.testMurmur2
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        // kafkajs's Java-compatible partitioner data, generated with the Java client.
        assert_eq!(murmur2(b"0"), 971_027_396);
        assert_eq!(murmur2(b"1"), -1_993_445_489);
        assert_eq!(murmur2(b"128"), -326_012_175);
        assert_eq!(murmur2(b"16384"), -325_739_742);
        assert_eq!(murmur2(b"279936"), 1_462_227_128);
        assert_eq!(murmur2(b"10000000"), -1_830_336_757);
        assert_eq!(murmur2(b"100:48069"), 1_009_543_857);
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn key_partitioner_matches_the_java_client() {
        // toPositive(murmur2(key)) % numPartitions
        assert_eq!(
            partition_for_key(b"21", 4),
            Some((-973_932_308i32 & 0x7fff_ffff) % 4)
        );
        assert_eq!(
            partition_for_key(b"foobar", 3),
            Some((-790_332_482i32 & 0x7fff_ffff) % 3)
        );
        assert_eq!(partition_for_key(b"0", 10), Some(971_027_396 % 10));
        assert_eq!(
            partition_for_key(b"1", 6),
            Some((-1_993_445_489i32 & 0x7fff_ffff) % 6)
        );
        assert_eq!(partition_for_key(b"", 7), Some(275_646_681 % 7));
        for key in [&b"a"[..], b"key-1", b"\xff\xfe"] {
            assert_eq!(partition_for_key(key, 1), Some(0));
            assert!((0..13).contains(&partition_for_key(key, 13).unwrap()));
            assert_eq!(partition_for_key(key, 0), None);
            assert_eq!(partition_for_key(key, -3), None);
        }
    }
}
