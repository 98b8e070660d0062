//! The Kafka listener: accepts connections, reads size-prefixed frames, decodes requests,
//! dispatches them to [`crate::api`], and writes responses back in request order.
//!
//! Limits (each a setting): connections at once, frame size, requests in flight per connection,
//! and request bytes in flight across the broker. A client that breaks the protocol loses its
//! own connection, with a log line naming the cause; nothing it sends can stop other clients.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError as E;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::api;
use crate::broker::Broker;
use crate::groups;
use crate::sys::{
    self,
    net::{Listener, ReadHalf, Stream},
};

type Pending = Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + Send>>;

/// Accepts clients until `shutdown` turns true.
pub async fn serve(broker: Arc<Broker>, listener: Listener, mut shutdown: watch::Receiver<bool>) {
    let conns = Arc::new(Semaphore::new(broker.settings.max_connections));
    // The budget must hold at least one largest frame, or such a frame would wait forever.
    let bytes_budget = (broker.settings.queued_max_request_bytes as usize)
        .max(broker.settings.socket_request_max_bytes as usize)
        .min(Semaphore::MAX_PERMITS);
    let bytes = Arc::new(Semaphore::new(bytes_budget));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            warn!(%peer, limit = broker.settings.max_connections, "connection refused: max.connections reached");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (b, bytes, stop) = (broker.clone(), bytes.clone(), shutdown.clone());
        tokio::spawn(async move {
            match connection(b, sock, peer, bytes, stop).await {
                Ok(()) => debug!(%peer, "connection closed"),
                Err(why) => info!(%peer, reason = %why, "closing connection"),
            }
            drop(permit);
        });
    }
}

async fn connection(
    broker: Arc<Broker>,
    sock: Stream,
    peer: SocketAddr,
    budget: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (mut rd, mut wr) = sock.into_split();
    let max_frame = broker.settings.socket_request_max_bytes as usize;
    let max_inflight = broker.settings.max_inflight_requests;
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        let can_read = reading && pending.len() < max_inflight;
        tokio::select! {
            frame = read_frame(&mut rd, max_frame, &budget), if can_read => {
                match frame? {
                    None => {
                        // The client closed its side: finish what it asked for, then stop.
                        reading = false;
                        if pending.is_empty() { return Ok(()); }
                    }
                    Some((body, permit)) => pending.push_back(dispatch(broker.clone(), body, permit, peer)),
                }
            }
            done = pending.next(), if !pending.is_empty() => {
                match done.expect("non-empty") {
                    Ok(Some(resp)) => wr.write_all(&resp).await.map_err(|e| format!("write failed: {e}"))?,
                    Ok(None) => {}
                    Err(why) => return Err(why),
                }
                if !reading && pending.is_empty() { return Ok(()); }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Reads one frame; `None` on a clean end of stream between frames.
async fn read_frame(
    rd: &mut ReadHalf,
    max_frame: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read failed: {e}")),
    }
    let len = i32::from_be_bytes(len);
    if len < 4 {
        return Err(format!("invalid frame size {len}"));
    }
    let len = len as usize;
    if len > max_frame {
        return Err(format!(
            "frame of {len} bytes is larger than socket.request.max.bytes {max_frame}"
        ));
    }
    let permit = budget
        .clone()
        .acquire_many_owned(len as u32)
        .await
        .map_err(|_| "shutting down".to_string())?;
    let mut buf = BytesMut::zeroed(len);
    rd.read_exact(&mut buf)
        .await
        .map_err(|e| format!("truncated frame ({len} bytes announced): {e}"))?;
    Ok(Some((buf.freeze(), permit)))
}

fn frame<R: Encodable + std::fmt::Debug>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    h.encode(&mut buf, header_version)
        .map_err(|e| format!("encoding response header: {e}"))?;
    body.encode(&mut buf, version).map_err(|e| {
        // A bug of ours, not the client's: say exactly what could not be encoded.
        tracing::error!(?body, version, "cannot encode response");
        format!("encoding response v{version}: {e}")
    })?;
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    Ok(buf.freeze())
}

fn dispatch(
    broker: Arc<Broker>,
    mut body: Bytes,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
) -> Pending {
    Box::pin(async move {
        let _permit = permit;
        if body.len() < 8 {
            return Err("frame too short for a request header".into());
        }
        let key_raw = i16::from_be_bytes([body[0], body[1]]);
        let version = i16::from_be_bytes([body[2], body[3]]);
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let Ok(key) = ApiKey::try_from(key_raw) else {
            return Err(format!("unknown api key {key_raw}"));
        };
        let Some((lo, hi)) = api::supported_range(key) else {
            return Err(format!("api {key:?} is not supported"));
        };
        if version < lo || version > hi {
            if key == ApiKey::ApiVersions {
                // KIP-511: answer a too-new ApiVersions with v0 and UNSUPPORTED_VERSION, listing ours.
                let r = api::api_versions(Some(E::UnsupportedVersion));
                return frame(correlation_id, 0, &r, 0).map(Some);
            }
            return Err(format!(
                "{key:?} v{version} is not supported (supported: v{lo}-v{hi})"
            ));
        }
        let header = RequestHeader::decode(&mut body, key.request_header_version(version))
            .map_err(|e| format!("malformed {key:?} v{version} request header: {e}"))?;
        let client = header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let rh = key.response_header_version(version);
        macro_rules! decode {
            ($t:ty) => {
                <$t>::decode(&mut body, version).map_err(|e| {
                    format!("malformed {key:?} v{version} request from client '{client}': {e}")
                })?
            };
        }
        macro_rules! reply {
            ($r:expr) => {
                frame(correlation_id, rh, &$r, version).map(Some)
            };
        }
        let b = broker;
        let result = match key {
            ApiKey::ApiVersions => {
                let _ = decode!(ApiVersionsRequest);
                reply!(api::api_versions(None))
            }
            ApiKey::Metadata => {
                let req = decode!(MetadataRequest);
                reply!(api::metadata(&b, req, version).await)
            }
            ApiKey::Produce => {
                let req = decode!(ProduceRequest);
                match api::produce(b, req).await? {
                    Some(r) => reply!(r),
                    None => Ok(None),
                }
            }
            ApiKey::Fetch => {
                let req = decode!(FetchRequest);
                reply!(api::fetch(b, req, version).await)
            }
            ApiKey::ListOffsets => {
                let req = decode!(ListOffsetsRequest);
                reply!(blocking(move || api::list_offsets(&b, req, version)).await?)
            }
            ApiKey::OffsetForLeaderEpoch => {
                let req = decode!(OffsetForLeaderEpochRequest);
                reply!(api::offset_for_leader_epoch(&b, req))
            }
            ApiKey::InitProducerId => {
                let req = decode!(InitProducerIdRequest);
                reply!(api::init_producer_id(&b, req).await)
            }
            ApiKey::CreateTopics => {
                let req = decode!(CreateTopicsRequest);
                reply!(api::create_topics(&b, req, version).await)
            }
            ApiKey::DeleteTopics => {
                let req = decode!(DeleteTopicsRequest);
                reply!(api::delete_topics(&b, req, version).await)
            }
            ApiKey::CreatePartitions => {
                let req = decode!(CreatePartitionsRequest);
                reply!(api::create_partitions(&b, req).await)
            }
            ApiKey::DescribeConfigs => {
                let req = decode!(DescribeConfigsRequest);
                reply!(api::describe_configs(&b, req))
            }
            ApiKey::AlterConfigs => {
                let req = decode!(AlterConfigsRequest);
                reply!(api::alter_configs(&b, req).await)
            }
            ApiKey::IncrementalAlterConfigs => {
                let req = decode!(IncrementalAlterConfigsRequest);
                reply!(api::incremental_alter_configs(&b, req).await)
            }
            ApiKey::FindCoordinator => {
                let req = decode!(FindCoordinatorRequest);
                reply!(api::find_coordinator(&b, req, version).await)
            }
            ApiKey::DescribeQuorum => {
                let req = decode!(DescribeQuorumRequest);
                reply!(api::describe_quorum(&b, req))
            }
            ApiKey::DescribeCluster => {
                let req = decode!(DescribeClusterRequest);
                reply!(api::describe_cluster(&b, req))
            }
            ApiKey::JoinGroup => {
                let req = decode!(JoinGroupRequest);
                reply!(groups::join_group(&b, req, version, &client, peer).await)
            }
            ApiKey::SyncGroup => {
                let req = decode!(SyncGroupRequest);
                reply!(groups::sync_group(&b, req, version).await)
            }
            ApiKey::Heartbeat => {
                let req = decode!(HeartbeatRequest);
                reply!(groups::heartbeat(&b, req))
            }
            ApiKey::LeaveGroup => {
                let req = decode!(LeaveGroupRequest);
                reply!(groups::leave_group(&b, req, version))
            }
            ApiKey::OffsetCommit => {
                let req = decode!(OffsetCommitRequest);
                reply!(groups::offset_commit(&b, req).await)
            }
            ApiKey::OffsetFetch => {
                let req = decode!(OffsetFetchRequest);
                reply!(groups::offset_fetch(&b, req, version))
            }
            ApiKey::ListGroups => {
                let req = decode!(ListGroupsRequest);
                reply!(groups::list_groups(&b, req, version))
            }
            ApiKey::DescribeGroups => {
                let req = decode!(DescribeGroupsRequest);
                reply!(groups::describe_groups(&b, req, version))
            }
            ApiKey::DeleteGroups => {
                let req = decode!(DeleteGroupsRequest);
                reply!(groups::delete_groups(&b, req).await)
            }
            ApiKey::OffsetDelete => {
                let req = decode!(OffsetDeleteRequest);
                reply!(groups::offset_delete(&b, req).await)
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let req = decode!(ConsumerGroupHeartbeatRequest);
                reply!(groups::consumer_group_heartbeat(&b, req, &client, peer))
            }
            ApiKey::ConsumerGroupDescribe => {
                let req = decode!(ConsumerGroupDescribeRequest);
                reply!(groups::consumer_group_describe(&b, req))
            }
            other => Err(format!("api {other:?} is not supported")),
        };
        if body.has_remaining() && result.is_ok() {
            debug!(%peer, ?key, left = body.remaining(), "request had trailing bytes");
        }
        result
    })
}

/// Runs metadata work (which may create files and fsync) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    sys::blocking(f)
        .await
        .map_err(|e| format!("handler failed: {e}"))
}
