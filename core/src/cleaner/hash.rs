//! The key hash of the cleaner's key map: SHA-256 (FIPS 180-4), truncated to its first 16 bytes.
//!
//! Why this hash: the map stores only a key's hash, so two keys with the same hash would be
//! taken for one and the older one's newest record dropped. Kafka keys its map by a 16-byte MD5
//! prefix; skein uses a 16-byte SHA-256 prefix. 128 bits keep an accidental collision astronomically unlikely (about n²/2¹²⁹: for a
//! billion keys in one map, below 10⁻²⁰), and unlike MD5 or a non-cryptographic hash, no one
//! who can produce to a topic can construct two keys that collide. It is deterministic: no seed.
//!
//! Invariants: [`key_hash`] is a pure function of the key bytes; [`sha256`] matches the standard
//! test vectors (see the tests).

/// Bytes of a key hash.
pub const HASH_BYTES: usize = 16;

/// A key's hash as the key map stores it.
pub type KeyHash = [u8; HASH_BYTES];

/// The SHA-256 digest of `data` (the `sha2` crate, which uses the CPU's SHA instructions where
/// it has them: about ten times the speed of a portable implementation on short keys).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// Longest message that pads into one 64-byte block (the 0x80 byte and 8 length bytes follow).
const ONE_BLOCK_MAX: usize = 55;

/// The key map's hash of a record key: the first [`HASH_BYTES`] bytes of its SHA-256. A key of
/// at most 55 bytes (most keys) is padded into one block by hand and compressed once, which
/// skips the streaming hasher's buffering: the cleaner hashes every record twice.
pub fn key_hash(key: &[u8]) -> KeyHash {
    let mut h = [0u8; HASH_BYTES];
    if key.len() > ONE_BLOCK_MAX {
        h.copy_from_slice(&sha256(key)[..HASH_BYTES]);
        return h;
    }
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    block[key.len()] = 0x80;
    block[56..].copy_from_slice(&(key.len() as u64 * 8).to_be_bytes());
    let mut state = H0;
    sha2::compress256(&mut state, &[block.into()]);
    for (out, word) in h.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn key_hash_is_the_sha256_prefix_at_every_length() {
        for n in 0..200usize {
            let key: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            assert_eq!(key_hash(&key)[..], sha256(&key)[..HASH_BYTES], "length {n}");
        }
    }

    #[test]
    fn standard_vectors() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&sha256(input)), want);
        }
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha256(&million_a)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn every_padding_length_is_distinct() {
        // Lengths around the 55/56/64-byte padding boundaries give distinct digests.
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..200 {
            assert!(seen.insert(key_hash(&vec![7u8; n])), "length {n}");
        }
    }
}
