//! The request context: who sent a request and how, handed to every handler with the decoded
//! request. Today every connection is PLAINTEXT and every principal anonymous, as in Kafka's
//! PLAINTEXT listeners; TLS and SASL will fill the protocol and the principal in, and the
//! authorizer will read them here.

use std::fmt;
use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;

/// The authenticated identity of a connection, as Kafka names it (`User:NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No authentication took place (Kafka's `User:ANONYMOUS`).
    Anonymous,
    /// A user authenticated by the connection's security protocol.
    User(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
            Principal::User(name) => write!(f, "User:{name}"),
        }
    }
}

/// The security protocol of the connection a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication.
    Plaintext,
}

/// One request's origin and header fields.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The API called.
    pub api_key: ApiKey,
    /// The version it was called at.
    pub api_version: i16,
    /// The correlation id the response carries.
    pub correlation_id: i32,
    /// The header's client id ("" when the client sent none).
    pub client_id: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the connection authenticated as.
    pub principal: Principal,
    /// How the connection is secured.
    pub protocol: SecurityProtocol,
}

impl RequestContext {
    /// A context for a request on a PLAINTEXT connection from `peer`.
    pub fn plaintext(
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        client_id: String,
        peer: SocketAddr,
    ) -> RequestContext {
        RequestContext {
            api_key,
            api_version,
            correlation_id,
            client_id,
            peer,
            principal: Principal::Anonymous,
            protocol: SecurityProtocol::Plaintext,
        }
    }

    /// The client's host as Kafka shows it in group descriptions (`/127.0.0.1`).
    pub fn client_host(&self) -> String {
        format!("/{}", self.peer.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_and_hosts_are_named_like_kafka() {
        assert_eq!(Principal::Anonymous.to_string(), "User:ANONYMOUS");
        assert_eq!(Principal::User("alice".into()).to_string(), "User:alice");
        let ctx = RequestContext::plaintext(
            ApiKey::Metadata,
            12,
            7,
            "c".into(),
            "127.0.0.1:5000".parse().unwrap(),
        );
        assert_eq!(ctx.client_host(), "/127.0.0.1");
        assert_eq!(ctx.principal, Principal::Anonymous);
    }
}
