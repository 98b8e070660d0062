//! Group coordinators: which broker coordinates a consumer group (FindCoordinator), and
//! requests sent to it that follow it when it moves.
//!
//! Invariant: a moved or loading coordinator, or a broken connection, means finding the
//! coordinator again and retrying, at most [`ATTEMPTS_MAX`] times; any other answer is the
//! caller's to interpret.

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{backoff, host_port, Cluster, ATTEMPTS_MAX};
use crate::connection::Client;
use crate::error::{code, ClientError};

const FIND_COORDINATOR_VERSION_MAX: i16 = 4;
/// FindCoordinator key type for groups.
const COORDINATOR_KEY_GROUP: i8 = 0;

/// Errors that mean "ask FindCoordinator again and retry".
pub fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        code::COORDINATOR_LOAD_IN_PROGRESS
            | code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
    )
}

/// One FindCoordinator at the bootstrap broker: the coordinator's node id, whose address is
/// added to the cluster's brokers if metadata did not list it.
async fn find_coordinator_once(cluster: &mut Cluster, group: &str) -> Result<i32, ClientError> {
    let client = cluster.bootstrap().await?;
    let version = client.pick_version::<FindCoordinatorRequest>(FIND_COORDINATOR_VERSION_MAX)?;
    let key = StrBytes::from_string(group.to_owned());
    let mut request = FindCoordinatorRequest::default().with_key_type(COORDINATOR_KEY_GROUP);
    // v4 batches keys.
    if version >= 4 {
        request.coordinator_keys = vec![key];
    } else {
        request.key = key;
    }
    let response = match client.send(request, version).await {
        Ok(r) => r,
        Err(e) => {
            cluster.forget(None, &e);
            return Err(e);
        }
    };
    let (code, message, node, host, port) = if version >= 4 {
        let c = response.coordinators.first().ok_or_else(|| {
            ClientError::kafka(
                format!("find the coordinator of group '{group}'"),
                -1,
                Some("the FindCoordinator response names no coordinator"),
            )
        })?;
        (
            c.error_code,
            c.error_message.clone(),
            c.node_id.0,
            c.host.to_string(),
            c.port,
        )
    } else {
        (
            response.error_code,
            response.error_message.clone(),
            response.node_id.0,
            response.host.to_string(),
            response.port,
        )
    };
    if code != 0 {
        return Err(ClientError::kafka(
            format!("find the coordinator of group '{group}'"),
            code,
            message.as_deref(),
        ));
    }
    cluster.add_broker(node, host_port(&host, port));
    Ok(node)
}

/// The coordinator of `group`, retried (boundedly) while `__consumer_offsets` is being
/// created or loaded.
pub async fn find_coordinator(cluster: &mut Cluster, group: &str) -> Result<i32, ClientError> {
    let mut attempt = 1;
    loop {
        match find_coordinator_once(cluster, group).await {
            Ok(node) => return Ok(node),
            Err(e) => {
                let retriable =
                    e.breaks_connection() || e.kafka_code().is_some_and(is_coordinator_error);
                if !retriable || attempt >= ATTEMPTS_MAX {
                    return Err(e);
                }
            }
        }
        attempt += 1;
        backoff().await;
    }
}

/// Sends a request to `group`'s coordinator with `call`, which answers with a group-level
/// Kafka error code and a value. A moved or loading coordinator, or a broken connection,
/// means finding the coordinator again and retrying, a bounded number of times; any other
/// error code is the caller's to interpret. Returns the coordinator's id too.
pub async fn coordinator_call<T>(
    cluster: &mut Cluster,
    group: &str,
    mut call: impl AsyncFnMut(&mut Client) -> Result<(i16, T), ClientError>,
) -> Result<(i32, i16, T), ClientError> {
    let mut attempt = 1;
    loop {
        let node = find_coordinator(cluster, group).await?;
        let result = match cluster.node(node).await {
            Ok(client) => call(client).await,
            Err(e) => Err(e),
        };
        let retriable = match &result {
            Ok((code, _)) => is_coordinator_error(*code),
            Err(e) => e.breaks_connection() || e.kafka_code().is_some_and(is_coordinator_error),
        };
        if !retriable || attempt >= ATTEMPTS_MAX {
            return match result {
                Ok((code, value)) => Ok((node, code, value)),
                Err(e) => Err(e),
            };
        }
        if let Err(e) = &result {
            cluster.forget(Some(node), e);
        }
        attempt += 1;
        backoff().await;
    }
}
