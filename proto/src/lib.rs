//! skein-proto: Kafka protocol glue shared by the broker and the client — request framing
//! ([`framing`]), response frames ([`wire`]), the API version table ([`versions`]), the map
//! from core errors to Kafka error codes ([`errors`]), the request context every handler
//! receives ([`context`]), and the refusal of Produce v0-v2 ([`legacy_produce`]).
//!
//! Architecture invariant: skein-proto, skein-client and skein-broker are the only crates that
//! know the Kafka wire format; skein-core never sees it.

pub mod context;
pub mod errors;
pub mod framing;
pub mod legacy_produce;
pub mod versions;
pub mod wire;
