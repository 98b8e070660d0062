//! The Kafka listener: accepts connections, reads size-prefixed frames, decodes requests,
//! dispatches them to [`crate::api`], and writes responses back in request order.
//!
//! Limits (each a setting): connections at once, frame size, requests in flight per connection,
//! and request bytes in flight across the broker. A client that breaks the protocol loses its
//! own connection, with a log line naming the cause; nothing it sends can stop other clients.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError as E;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::api;
use crate::broker::Broker;
use crate::groups;
use skein_proto::context::RequestContext;
use skein_proto::framing::{FrameReader, RequestPrefix};
use skein_proto::legacy_produce::legacy_produce_refusal;
use skein_proto::versions;
use skein_proto::wire::{self, Frame};
use skein_sys as sys;
use skein_sys::net::{Listener, Stream};

type Pending = Pin<Box<dyn Future<Output = Result<Option<Frame>, String>> + Send>>;

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
                tokio::time::sleep(crate::limits::ACCEPT_BACKOFF).await;
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
    let mut frames = FrameReader::default();
    loop {
        let can_read = reading && pending.len() < max_inflight;
        tokio::select! {
            frame = frames.next(&mut rd, max_frame, &budget), if can_read => {
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
                    Ok(Some(resp)) => wire::write_frame(&mut wr, resp).await.map_err(|e| format!("write failed: {e}"))?,
                    Ok(None) => {}
                    Err(why) => return Err(why),
                }
                if !reading && pending.is_empty() { return Ok(()); }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

fn frame<R: Encodable + std::fmt::Debug>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<Frame, String> {
    frame_sharing(correlation_id, header_version, body, version, Vec::new())
}

/// [`frame`], keeping the `shared` buffers the body holds (fetched records) by reference.
fn frame_sharing<R: Encodable + std::fmt::Debug>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
    shared: Vec<Bytes>,
) -> Result<Frame, String> {
    wire::encode_frame(correlation_id, header_version, body, version, shared).map_err(|e| {
        // A bug of ours, not the client's: say exactly what could not be encoded.
        tracing::error!(?body, version, error = %e, "cannot encode response");
        e
    })
}

fn dispatch(
    broker: Arc<Broker>,
    mut body: Bytes,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
) -> Pending {
    Box::pin(async move {
        let _permit = permit;
        let Some(prefix) = RequestPrefix::peek(&body) else {
            return Err("frame too short for a request header".into());
        };
        let (key_raw, version) = (prefix.api_key, prefix.api_version);
        let correlation_id = prefix.correlation_id;
        let Ok(key) = ApiKey::try_from(key_raw) else {
            return Err(format!("unknown api key {key_raw}"));
        };
        let Some((lo, hi)) = versions::supported_range(key) else {
            return Err(format!("api {key:?} is not supported"));
        };
        if version < lo || version > hi {
            if key == ApiKey::ApiVersions {
                // KIP-511: answer a too-new ApiVersions with v0 and UNSUPPORTED_VERSION, listing ours.
                let r = versions::api_versions(Some(E::UnsupportedVersion));
                return frame(correlation_id, 0, &r, 0).map(Some);
            }
            if key == ApiKey::Produce && (0..lo).contains(&version) {
                return refuse_legacy_produce(body, version, correlation_id, peer);
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
        let ctx = RequestContext::plaintext(key, version, correlation_id, client.clone(), peer);
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
                reply!(versions::api_versions(None))
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
                let r = api::fetch(b, req, version).await;
                // The fetched batches go out as the buffers they were read into.
                let records = r
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter_map(|p| p.records.clone())
                    .collect();
                frame_sharing(correlation_id, rh, &r, version, records).map(Some)
            }
            ApiKey::ListOffsets => {
                let req = decode!(ListOffsetsRequest);
                reply!(blocking(move || api::list_offsets(&b, req, version)).await?)
            }
            ApiKey::DeleteRecords => {
                let req = decode!(DeleteRecordsRequest);
                reply!(blocking(move || api::delete_records(&b, req)).await?)
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
                reply!(api::describe_quorum_from_any(&b, req, &ctx).await)
            }
            ApiKey::DescribeCluster => {
                let req = decode!(DescribeClusterRequest);
                reply!(api::describe_cluster(&b, req))
            }
            ApiKey::JoinGroup => {
                let req = decode!(JoinGroupRequest);
                reply!(groups::join_group(&b, req, &ctx).await)
            }
            ApiKey::SyncGroup => {
                let req = decode!(SyncGroupRequest);
                reply!(groups::sync_group(&b, req, version).await)
            }
            ApiKey::Heartbeat => {
                let req = decode!(HeartbeatRequest);
                reply!(groups::heartbeat(&b, req).await)
            }
            ApiKey::LeaveGroup => {
                let req = decode!(LeaveGroupRequest);
                reply!(groups::leave_group(&b, req, version).await)
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
                reply!(groups::consumer_group_heartbeat(&b, req, &ctx).await)
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

/// A Produce request at v0-v2, listed by ApiVersions for old librdkafka (KAFKA-18659) but not
/// served: UNSUPPORTED_VERSION for each of its partitions, or, for acks=0 (which expects no
/// answer), a closed connection, as for any failed acks=0 produce.
fn refuse_legacy_produce(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
    peer: SocketAddr,
) -> Result<Option<Frame>, String> {
    let header = RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(version))
        .map_err(|e| format!("malformed Produce v{version} request header: {e}"))?;
    let client = header.client_id.as_deref().unwrap_or_default().to_string();
    let (lo, _) = versions::supported_range(ApiKey::Produce).unwrap_or((3, 3));
    let why = format!("Produce v{version} is not served (only v{lo} and up; v0-v{} are listed for old librdkafka)", lo - 1);
    match legacy_produce_refusal(&body, version)? {
        None => Err(format!("acks=0 {why}")),
        Some(refusal) => {
            info!(%peer, client, "refused with UNSUPPORTED_VERSION: {why}");
            // Produce v0-v2 answers with response header v0.
            frame(correlation_id, 0, &refusal, version).map(Some)
        }
    }
}

/// Runs metadata work (which may create files and fsync) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    sys::blocking(f)
        .await
        .map_err(|e| format!("handler failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use tokio::io::AsyncWriteExt;

    /// Frames survive a reader whose `next` is dropped after every single poll, as the
    /// connection loop drops it whenever a response completes first.
    #[tokio::test]
    async fn frame_reader_is_cancellation_safe() {
        let (mut client, mut server) = tokio::io::duplex(777);
        let frames: Vec<Vec<u8>> = (0..300u32)
            .map(|i| (0..(i * 37 % 5000 + 4)).map(|j| (i + j) as u8).collect())
            .collect();
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            for f in &sent {
                let mut wire = (f.len() as i32).to_be_bytes().to_vec();
                wire.extend_from_slice(f);
                // Odd-sized pieces so length prefixes and bodies split across reads.
                for piece in wire.chunks(113) {
                    client.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        while got.len() < frames.len() {
            match reader.next(&mut server, 1 << 20, &budget).now_or_never() {
                Some(r) => got.push(r.unwrap().expect("a frame").0.to_vec()),
                None => tokio::task::yield_now().await,
            }
        }
        writer.await.unwrap();
        assert_eq!(got, frames);
        assert!(reader
            .next(&mut server, 1 << 20, &budget)
            .await
            .unwrap()
            .is_none());
    }

    /// A frame's budget permit is held from its length prefix on and handed out with it.
    #[tokio::test]
    async fn frame_reader_takes_the_budget_for_each_frame() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let budget = Arc::new(Semaphore::new(100));
        client.write_all(&60i32.to_be_bytes()).await.unwrap();
        client.write_all(&[7u8; 60]).await.unwrap();
        client.write_all(&60i32.to_be_bytes()).await.unwrap();
        let mut reader = FrameReader::default();
        let (body, permit) = reader
            .next(&mut server, 1000, &budget)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body.len(), 60);
        assert_eq!(budget.available_permits(), 40);
        // The second frame needs 60 more than the 40 left: it waits until the first is done.
        assert!(reader
            .next(&mut server, 1000, &budget)
            .now_or_never()
            .is_none());
        drop(permit);
        client.write_all(&[8u8; 60]).await.unwrap();
        let (body, _p) = reader
            .next(&mut server, 1000, &budget)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&body[..], &[8u8; 60]);
        drop(client);
        assert!(reader
            .next(&mut server, 1000, &budget)
            .await
            .unwrap()
            .is_none());
    }
}
