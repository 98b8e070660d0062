//! Integrity: every batch served passes its CRC and is whole (what a Kafka client with
//! `check.crcs=true` demands).

use skein_core::batch;

use super::{violation, Verdict, Violation};

/// Splits fetched bytes into batches, each CRC-checked; a bad or partial batch is a violation.
pub fn check(p: usize, bytes: &[u8]) -> Result<Vec<Vec<u8>>, Violation> {
    let mut out = Vec::new();
    for item in batch::iter_headers(bytes) {
        let (pos, h) = item.map_err(|e| {
            violation(
                "integrity",
                format!("p{p} fetch returned a broken batch: {e}"),
            )
        })?;
        let stored = &bytes[pos..pos + h.size];
        verify(p, h.base_offset, stored)?;
        out.push(stored.to_vec());
    }
    Ok(out)
}

fn verify(p: usize, base: i64, stored: &[u8]) -> Verdict {
    batch::verify_stored(stored).map(|_| ()).map_err(|e| {
        violation(
            "integrity",
            format!("p{p} fetch served a corrupt batch at offset {base}: {e}"),
        )
    })
}
