//! skein-proto: Kafka protocol glue shared by the broker and the client: response frames
//! ([`wire`]).
//!
//! Architecture invariant: skein-proto, skein-broker and skein-client are the only crates that
//! know the Kafka wire format; skein-core never sees it.

pub mod wire;
