//! The API version table: every Kafka API skein serves, with the versions it serves and the
//! ones ApiVersions lists.
//!
//! Invariant: a request is decoded only at a version inside its served range; ApiVersions
//! lists exactly the served ranges, except Produce (listed from v0, served from v3; see
//! [`PRODUCE_ADVERTISED_MIN`]).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError as E;

/// Every API the broker serves, with the versions it advertises: (key, min, max).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeQuorum, 0, 1),
];

/// The lowest Produce version ApiVersions lists, below the lowest one served (v3).
///
/// librdkafka up to 2.11 compresses with gzip, snappy and lz4 only for a broker whose Produce
/// range includes v0, and otherwise sends those batches uncompressed. Apache Kafka 4.0 removed
/// Produce v0-v2 (KIP-896) and lists them anyway for this reason (KAFKA-18659,
/// `ApiKeys.PRODUCE_API_VERSIONS_RESPONSE_MIN_VERSION`); skein does the same. A request at
/// v0-v2 is refused ([`legacy_produce_refusal`]), never served.
pub const PRODUCE_ADVERTISED_MIN: i16 = 0;

/// The served version range of an API key, if served (Produce is listed from
/// [`PRODUCE_ADVERTISED_MIN`] but served from here).
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// The ApiVersions answer; `error` set for the KIP-511 UNSUPPORTED_VERSION fallback.
pub fn api_versions(error: Option<E>) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error.map(|e| e.code()).unwrap_or(0);
    r.api_keys = SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = if *k == ApiKey::Produce {
                PRODUCE_ADVERTISED_MIN
            } else {
                *lo
            };
            v.max_version = *hi;
            v
        })
        .collect();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_lists_produce_from_v0_but_serves_from_v3() {
        let r = api_versions(None);
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .expect("Produce listed");
        assert_eq!((produce.min_version, produce.max_version), (0, 9));
        assert_eq!(supported_range(ApiKey::Produce), Some((3, 9)));
        // Every other API is listed exactly as served.
        for k in &r.api_keys {
            if k.api_key != ApiKey::Produce as i16 {
                let key = ApiKey::try_from(k.api_key).unwrap();
                assert_eq!(supported_range(key), Some((k.min_version, k.max_version)));
            }
        }
    }
}
