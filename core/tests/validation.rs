//! Validation of produced batches (`records::validate_produced`): every built batch passes, any
//! flipped bit outside the base offset and leader epoch is refused, random bytes never panic.

use proptest::prelude::*;
use skein_core::batch::build::{batch, simple, SimpleRecord};
use skein_core::batch::{iter_headers, Compression};
use skein_core::records::validate_produced;

#[test]
fn built_batch_validates() {
    let b = simple(3, 1000, None);
    let h = validate_produced(&b).unwrap();
    assert_eq!(h.record_count, 3);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.size, b.len());
    assert_eq!(h.compression().unwrap(), Compression::None);
}

fn record() -> impl Strategy<Value = SimpleRecord> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..5),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..5)),
            ),
            0..3,
        ),
        0i64..1_000_000,
    )
        .prop_map(|(key, value, headers, timestamp)| SimpleRecord {
            key,
            value,
            headers,
            timestamp,
        })
}

/// Base offset and leader epoch: the bytes outside the CRC by design.
const OUTSIDE_CRC: std::ops::Range<usize> = 0..16;

proptest! {
    #[test]
    fn any_built_batch_validates(records in proptest::collection::vec(record(), 1..10)) {
        let b = batch(&records, None);
        let h = validate_produced(&b).unwrap();
        prop_assert_eq!(h.record_count as usize, records.len());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = validate_produced(&bytes);
        let _ = iter_headers(&bytes).count();
    }

    #[test]
    fn any_corruption_is_refused(records in proptest::collection::vec(record(), 1..5), at in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let mut b = batch(&records, None);
        let i = at.index(b.len());
        prop_assume!(!OUTSIDE_CRC.contains(&i));
        b[i] ^= 1 << bit;
        prop_assert!(validate_produced(&b).is_err());
    }
}
