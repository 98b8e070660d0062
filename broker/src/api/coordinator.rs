//! FindCoordinator: the broker leading the group's `__consumer_offsets` partition.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;

use crate::broker::Broker;

use super::*;

/// FindCoordinator (GROUP keys; batched from v4): the leader of the group's
/// `__consumer_offsets` partition, creating the topic on first use.
pub async fn find_coordinator(
    b: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut answers = Vec::new();
    for key in &keys {
        let answer: Result<(i32, String, i32), (E, String)> = match req.key_type {
            0 if key.is_empty() => Err((E::InvalidRequest, "empty group id".into())),
            0 => crate::groups::coordinator_of(b, key.as_str())
                .await
                .map_err(|e| {
                    (
                        e,
                        format!("no coordinator for group '{}' yet: {e:?}", key.as_str()),
                    )
                }),
            1 => Err((
                E::InvalidRequest,
                "transactions are not supported by this broker".into(),
            )),
            t => Err((
                E::InvalidRequest,
                format!("unknown coordinator key type {t}"),
            )),
        };
        answers.push(answer);
    }
    if version >= 4 {
        r.coordinators = keys
            .iter()
            .zip(answers)
            .map(|(k, a)| {
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = k.clone();
                match a {
                    Ok((node, host, port)) => {
                        c.node_id = node.into();
                        c.host = s(host);
                        c.port = port;
                    }
                    Err((e, msg)) => {
                        c.error_code = e.code();
                        c.error_message = Some(s(msg));
                        c.node_id = (-1).into();
                        c.port = -1;
                    }
                }
                c
            })
            .collect();
    } else {
        match answers.pop().expect("one key") {
            Ok((node, host, port)) => {
                r.node_id = node.into();
                r.host = s(host);
                r.port = port;
            }
            Err((e, msg)) => {
                r.error_code = e.code();
                if version >= 1 {
                    r.error_message = Some(s(msg));
                }
                r.node_id = (-1).into();
                r.port = -1;
            }
        }
    }
    r
}
