//! Client errors and Kafka error codes.
//!
//! Every failure the library reports is a [`ClientError`]; a Kafka error code stays a code
//! ([`ClientError::Kafka`]) and is shown the way Kafka names it (`NOT_LEADER_OR_FOLLOWER
//! (error code 6)`). Which codes are worth a retry is decided here, in one place
//! ([`ClientError::is_retriable`], [`is_leadership_error`]), for the producer, the consumer
//! and the cluster's lookups alike.

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::VersionRange;

/// Kafka error codes the client treats specially.
pub mod code {
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// LEADER_NOT_AVAILABLE.
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// BROKER_NOT_AVAILABLE.
    pub const BROKER_NOT_AVAILABLE: i16 = 8;
    /// REPLICA_NOT_AVAILABLE.
    pub const REPLICA_NOT_AVAILABLE: i16 = 9;
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// COORDINATOR_NOT_AVAILABLE.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// NOT_COORDINATOR.
    pub const NOT_COORDINATOR: i16 = 16;
    /// ILLEGAL_GENERATION.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// UNKNOWN_MEMBER_ID.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// NOT_CONTROLLER.
    pub const NOT_CONTROLLER: i16 = 41;
    /// DUPLICATE_SEQUENCE_NUMBER.
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    /// NON_EMPTY_GROUP.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// GROUP_ID_NOT_FOUND.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// KAFKA_STORAGE_ERROR.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// FENCED_LEADER_EPOCH.
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    /// UNKNOWN_LEADER_EPOCH.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
}

/// Errors from the client. Kafka error codes are named the way Kafka names them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    // The I/O error is shown in the message rather than exposed as `source`, so that
    // anyhow's `{:#}` does not print it twice.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("I/O error talking to {addr}: {error}")]
    Io {
        /// The broker address.
        addr: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The broker closed the connection before answering.
    #[error("connection to {addr} closed by the broker while waiting for a {api} response")]
    Closed {
        /// The broker address.
        addr: String,
        /// The request that was waiting.
        api: String,
    },
    /// No answer within the request timeout.
    #[error("{api} request to {addr} timed out after {timeout_ms} ms")]
    Timeout {
        /// The broker address.
        addr: String,
        /// The request that timed out.
        api: String,
        /// The timeout in force.
        timeout_ms: u64,
    },
    /// An earlier failure left the connection out of step; open a new client.
    #[error("connection to {addr} is unusable after an earlier error")]
    Broken {
        /// The broker address.
        addr: String,
    },
    /// The request could not be encoded at the chosen version.
    #[error("cannot encode {api} v{version}: {message}")]
    Encode {
        /// The request.
        api: String,
        /// The version asked for.
        version: i16,
        /// What went wrong.
        message: String,
    },
    /// The response could not be decoded.
    #[error("cannot decode {api} v{version} response: {message}")]
    Decode {
        /// The request whose response failed.
        api: String,
        /// The version used.
        version: i16,
        /// What went wrong.
        message: String,
    },
    /// The response frame declared a length that is negative or over the limit.
    #[error("broker sent a {api} response frame of {size_bytes} bytes (limit {max_bytes})")]
    BadFrameSize {
        /// The request whose response it was.
        api: String,
        /// The declared size.
        size_bytes: i64,
        /// The limit ([`crate::RESPONSE_BYTES_MAX`]).
        max_bytes: usize,
    },
    /// The response carried a correlation id other than the request's.
    #[error("{api} response has correlation id {actual}, expected {expected}")]
    CorrelationMismatch {
        /// The request.
        api: String,
        /// The id sent.
        expected: i32,
        /// The id received.
        actual: i32,
    },
    /// No version is supported by the client, the broker and the caller alike.
    #[error("no common version for {api}: this client takes {client}, the broker {broker}")]
    UnsupportedVersion {
        /// The request.
        api: String,
        /// What the client (crate and caller) can use.
        client: VersionRange,
        /// What the broker advertised ("none" if it did not list the API).
        broker: String,
    },
    /// The broker's answer does not follow the protocol (e.g. it leaves out a partition
    /// that was asked about).
    #[error("{0}")]
    Protocol(String),
    /// Record batches that cannot be read (bad CRC, old format, impossible counts).
    #[error("{0}")]
    InvalidRecords(String),
    /// The caller asked for something the cluster does not have (e.g. a partition number
    /// past the topic's count).
    #[error("{0}")]
    Invalid(String),
    /// The broker lacks a request that the operation needs.
    #[error("the broker does not support {api}, which {needed_by} needs")]
    NotSupported {
        /// The request the broker does not list.
        api: String,
        /// What needs it.
        needed_by: String,
    },
    /// An operation failed, for the reason in `source`.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<ClientError>,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {}", describe_error_code(*.code, .message.as_deref()))]
    Kafka {
        /// What was being done.
        context: String,
        /// The Kafka error code.
        code: i16,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
}

impl ClientError {
    /// A Kafka error-code error; `message` is the broker's optional error text.
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<&str>) -> Self {
        ClientError::Kafka {
            context: context.into(),
            code,
            message: message.map(str::to_owned),
        }
    }

    /// The same error, shown after `context` (`context: error`).
    pub fn context(self, context: impl Into<String>) -> Self {
        ClientError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The Kafka error code, if this is a Kafka error (under any context).
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            ClientError::Context { source, .. } => source.kafka_code(),
            _ => None,
        }
    }

    /// Whether it is worth refreshing metadata and trying again: lost connections, unknown
    /// brokers, leadership changes.
    pub fn is_retriable(&self) -> bool {
        self.breaks_connection()
            || self
                .kafka_code()
                .is_some_and(|c| c == code::BROKER_NOT_AVAILABLE || is_leadership_error(c))
    }

    /// Whether the connection must be replaced before sending again.
    pub fn breaks_connection(&self) -> bool {
        if let ClientError::Context { source, .. } = self {
            return source.breaks_connection();
        }
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Io { .. }
                | ClientError::Closed { .. }
                | ClientError::Timeout { .. }
                | ClientError::Broken { .. }
                | ClientError::BadFrameSize { .. }
                | ClientError::CorrelationMismatch { .. }
        )
    }
}

/// Kafka's name for an error code, e.g. 3 -> "UNKNOWN_TOPIC_OR_PARTITION", 0 -> "NONE".
pub fn error_code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(_)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        // The crate's Display is the CamelCase variant name; Kafka's is SCREAMING_SNAKE.
        Some(err) => camel_to_screaming_snake(&err.to_string()),
    }
}

/// "NAME (error code N): message", the form every Kafka error is shown in.
pub fn describe_error_code(code: i16, message: Option<&str>) -> String {
    let name = error_code_name(code);
    match message {
        Some(m) if !m.is_empty() => format!("{name} (error code {code}): {m}"),
        _ => format!("{name} (error code {code})"),
    }
}

/// Whether Kafka marks this error code as retriable.
pub fn error_code_is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// `Ok` for error code 0, otherwise a [`ClientError::Kafka`] naming the code.
pub fn check_error_code(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&str>,
) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ClientError::kafka(context(), code, message))
    }
}

fn camel_to_screaming_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Errors that mean "metadata is stale or the leader is moving": refresh and retry.
pub fn is_leadership_error(code: i16) -> bool {
    use code::*;
    matches!(
        code,
        LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REPLICA_NOT_AVAILABLE
            | KAFKA_STORAGE_ERROR
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
    ) || (code != OFFSET_OUT_OF_RANGE
        && code != UNKNOWN_TOPIC_OR_PARTITION
        && error_code_is_retriable(code))
}

/// Errors that a metadata lookup may show briefly while a topic is being set up.
pub fn is_transient_metadata_error(code: i16) -> bool {
    // UNKNOWN_TOPIC_OR_PARTITION is retriable in Kafka, but here it means "no such topic".
    code != code::UNKNOWN_TOPIC_OR_PARTITION && error_code_is_retriable(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_like_kafka() {
        assert_eq!(error_code_name(0), "NONE");
        assert_eq!(error_code_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_code_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_code_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_code_name(35), "UNSUPPORTED_VERSION");
        assert_eq!(error_code_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_code_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_code_name(32000), "UNKNOWN_ERROR_CODE_32000");
        let e = ClientError::kafka("produce to t-0", 3, Some("no such topic"));
        assert_eq!(
            e.to_string(),
            "produce to t-0: UNKNOWN_TOPIC_OR_PARTITION (error code 3): no such topic"
        );
        assert!(error_code_is_retriable(6));
        assert!(!error_code_is_retriable(36));
    }

    #[test]
    fn leadership_errors_are_retried_and_context_keeps_the_code() {
        for c in [5, 6, 9, 56, 74, 75] {
            assert!(is_leadership_error(c), "{c}");
        }
        // Out of range and unknown topic are answers, not leadership changes.
        assert!(!is_leadership_error(1) && !is_leadership_error(3));
        assert!(!is_transient_metadata_error(3));
        assert!(is_transient_metadata_error(5));
        let e = ClientError::kafka("fetch t-0", 6, None).context("consuming 't' failed");
        assert_eq!(e.kafka_code(), Some(6));
        assert!(e.is_retriable());
        assert_eq!(e.to_string(), "consuming 't' failed");
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert_eq!(source, "fetch t-0: NOT_LEADER_OR_FOLLOWER (error code 6)");
        assert!(!ClientError::kafka("x", 36, None).is_retriable());
        assert!(ClientError::kafka("x", code::BROKER_NOT_AVAILABLE, None).is_retriable());
    }
}
