//! The one map from skein-core's errors to Kafka error codes. Every handler answers a core
//! error through here, so the same refusal gets the same code on every API.

use kafka_protocol::ResponseError as E;
use skein_core::catalog::CatalogError;
use skein_core::consumer_group::CgError;
use skein_core::coordinator::runtime::{CoordinatorError, WriteError};
use skein_core::group::GroupError;
use skein_core::log::AppendError;
use skein_core::replica::ReplicaError;

/// The Kafka error code of a refused metadata change.
pub fn catalog_error(e: &CatalogError) -> E {
    match e {
        CatalogError::TopicExists(_) => E::TopicAlreadyExists,
        CatalogError::UnknownTopic(_) => E::UnknownTopicOrPartition,
        CatalogError::InvalidTopic(_) => E::InvalidTopicException,
        CatalogError::InvalidPartitions(_) => E::InvalidPartitions,
        CatalogError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        CatalogError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        CatalogError::InvalidConfig(_) => E::InvalidConfig,
    }
}

/// The Kafka error code of a refused append (a produced batch, or a follower's fetched one).
pub fn append_error(e: &AppendError) -> E {
    match e {
        AppendError::Corrupt(_) => E::CorruptMessage,
        AppendError::InvalidRecord(_) => E::InvalidRecord,
        AppendError::TooLarge { .. } => E::MessageTooLarge,
        AppendError::LargerThanSegment { .. } => E::RecordListTooLarge,
        AppendError::OutOfOrderSequence(_) => E::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch(_) => E::InvalidProducerEpoch,
        AppendError::InvalidTimestamp { .. } => E::InvalidTimestamp,
    }
}

/// The Kafka error of a group error.
pub fn group_error(e: GroupError) -> E {
    match e {
        GroupError::MemberIdRequired => E::MemberIdRequired,
        GroupError::UnknownMemberId => E::UnknownMemberId,
        GroupError::IllegalGeneration => E::IllegalGeneration,
        GroupError::RebalanceInProgress => E::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout,
        GroupError::FencedInstanceId => E::FencedInstanceId,
        GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached,
        GroupError::NonEmptyGroup => E::NonEmptyGroup,
        GroupError::GroupIdNotFound => E::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
        GroupError::StaleMemberEpoch => E::StaleMemberEpoch,
    }
}

/// The Kafka error of a refused ConsumerGroupHeartbeat (KIP-848).
pub fn consumer_group_error(e: CgError) -> E {
    match e {
        CgError::UnknownMemberId => E::UnknownMemberId,
        CgError::FencedMemberEpoch => E::FencedMemberEpoch,
        CgError::StaleMemberEpoch => E::StaleMemberEpoch,
        CgError::GroupMaxSizeReached => E::GroupMaxSizeReached,
        CgError::UnreleasedInstanceId => E::UnreleasedInstanceId,
        CgError::FencedInstanceId => E::FencedInstanceId,
    }
}

/// What a failed append of coordinator records means to the client (Kafka's mapping).
pub fn coordinator_write_error(e: E) -> E {
    match e {
        E::NotLeaderOrFollower | E::KafkaStorageError => E::NotCoordinator,
        E::MessageTooLarge | E::RecordListTooLarge => E::InvalidCommitOffsetSize,
        _ => E::CoordinatorNotAvailable,
    }
}

/// The Kafka error of a coordinator runtime's refusal or failed write.
pub fn coordinator_error(e: CoordinatorError) -> E {
    match e {
        CoordinatorError::NotCoordinator => E::NotCoordinator,
        CoordinatorError::LoadInProgress => E::CoordinatorLoadInProgress,
        CoordinatorError::Overloaded => E::CoordinatorNotAvailable,
        CoordinatorError::Write(w) => coordinator_write_error(match w {
            WriteError::NotLeader => E::NotLeaderOrFollower,
            WriteError::Storage => E::KafkaStorageError,
            WriteError::TooLarge => E::MessageTooLarge,
            WriteError::NotEnoughReplicas => E::NotEnoughReplicasAfterAppend,
            WriteError::Timeout => E::RequestTimedOut,
        }),
    }
}

/// The Kafka error code of a replica's refusal or failed write.
pub fn replica_error(e: ReplicaError) -> E {
    match e {
        ReplicaError::NotLeaderOrFollower | ReplicaError::NotReplica => E::NotLeaderOrFollower,
        ReplicaError::FencedLeaderEpoch => E::FencedLeaderEpoch,
        ReplicaError::UnknownLeaderEpoch => E::UnknownLeaderEpoch,
        ReplicaError::NotEnoughReplicas => E::NotEnoughReplicas,
        ReplicaError::NotEnoughReplicasAfterAppend => E::NotEnoughReplicasAfterAppend,
        ReplicaError::RequestTimedOut => E::RequestTimedOut,
        ReplicaError::OffsetOutOfRange => E::OffsetOutOfRange,
        ReplicaError::InvalidRequiredAcks => E::InvalidRequiredAcks,
        ReplicaError::PolicyViolation => E::PolicyViolation,
    }
}

/// The replica error a leader's partition error code in a fetch answer stands for (codes with
/// no such meaning read as the leader no longer leading).
pub fn replica_error_of(code: i16) -> ReplicaError {
    match code {
        c if c == E::FencedLeaderEpoch.code() => ReplicaError::FencedLeaderEpoch,
        c if c == E::UnknownLeaderEpoch.code() => ReplicaError::UnknownLeaderEpoch,
        c if c == E::OffsetOutOfRange.code() => ReplicaError::OffsetOutOfRange,
        _ => ReplicaError::NotLeaderOrFollower,
    }
}
