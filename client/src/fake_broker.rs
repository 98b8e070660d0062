//! A scripted broker on a loopback port, for tests of the I/O layers: it answers ApiVersions
//! and Metadata (one topic `t` whose partitions all lead on node 0, this broker) itself, and
//! hands every other request to the test's handler.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::topic_name;

/// Answers one request (header, body after the header) with a whole response frame body
/// built by [`reply`].
pub(crate) type Handler = Arc<dyn Fn(&RequestHeader, Bytes) -> Bytes + Send + Sync>;

/// A response frame body: the header for `R` at `version`, then `resp`.
pub(crate) fn reply<R: Request>(resp: &R::Response, header: &RequestHeader) -> Bytes {
    let version = header.request_api_version;
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(
            &mut buf,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .expect("encodable header");
    resp.encode(&mut buf, version).expect("encodable response");
    buf.freeze()
}

/// Starts a broker advertising `apis` (key, min, max) besides ApiVersions and Metadata, with
/// topic `t` of `partitions` partitions; returns its address.
pub(crate) async fn start(
    apis: &[(ApiKey, i16, i16)],
    partitions: i32,
    handler: Handler,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let mut advertised = vec![api(ApiKey::ApiVersions, 0, 3), api(ApiKey::Metadata, 0, 12)];
    advertised.extend(apis.iter().map(|(k, min, max)| api(*k, *min, *max)));
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.expect("accept");
            let conn = Connection {
                addr,
                partitions,
                apis: advertised.clone(),
                handler: handler.clone(),
            };
            tokio::spawn(conn.serve(sock));
        }
    });
    addr.to_string()
}

fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(key as i16)
        .with_min_version(min)
        .with_max_version(max)
}

struct Connection {
    addr: SocketAddr,
    partitions: i32,
    apis: Vec<ApiVersion>,
    handler: Handler,
}

impl Connection {
    async fn serve(self, mut sock: TcpStream) {
        while let Some(mut frame) = read_frame(&mut sock).await {
            let header = decode_request_header_from_buffer(&mut frame).expect("request header");
            let body = match ApiKey::try_from(header.request_api_key) {
                Ok(ApiKey::ApiVersions) => {
                    let resp = ApiVersionsResponse::default().with_api_keys(self.apis.clone());
                    reply::<ApiVersionsRequest>(&resp, &header)
                }
                Ok(ApiKey::Metadata) => reply::<MetadataRequest>(&self.metadata(), &header),
                _ => (self.handler)(&header, frame),
            };
            let len = i32::try_from(body.len()).expect("small response");
            if sock.write_all(&len.to_be_bytes()).await.is_err()
                || sock.write_all(&body).await.is_err()
            {
                return;
            }
        }
    }

    fn metadata(&self) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_string(self.addr.ip().to_string()))
                .with_port(i32::from(self.addr.port()))])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(topic_name("t")))
                .with_partitions(
                    (0..self.partitions)
                        .map(|index| {
                            MetadataResponsePartition::default()
                                .with_partition_index(index)
                                .with_leader_id(BrokerId(0))
                        })
                        .collect(),
                )])
    }
}

async fn read_frame(sock: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).ok()?];
    sock.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}
