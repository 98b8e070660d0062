//! One connection to one broker ([`Client`]) over a TCP stream ([`skein_sys::net::Stream`]),
//! and the request and response framing, built on the `kafka-protocol` crate.
//!
//! Calling contract:
//! - [`Client::connect`] opens the connection and negotiates versions with ApiVersions
//!   (v3 first; KIP-511 fallback to the version the broker names, or v0).
//! - [`Client::pick_version`] / [`Client::pick_version_between`] choose the highest version that
//!   the crate, the broker and the caller all support.
//! - [`Client::send`] sends one request and waits for its response (one request in flight);
//!   [`Client::send_without_response`] is for the one request that has no answer (Produce
//!   with acks=0).
//!
//! After an I/O error, a timeout, a frame that is too large or a correlation id mismatch the
//! connection is out of step with the broker, so the client refuses further requests
//! ([`ClientError::Broken`]); make a new one. A response body that fails to decode leaves the
//! connection usable, because its frame was read whole.
//!
//! Nothing the broker sends can make this module panic: sizes are checked before allocating
//! and decoding runs under `catch_unwind` as a last resort. (The crate's decoders still
//! pre-allocate arrays from the length on the wire; a hostile array length inside a response
//! under [`RESPONSE_BYTES_MAX`] can therefore ask for a large allocation.)

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use skein_sys::net::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{check_error_code, code, ClientError};

/// Largest response frame (after the 4-byte length) the client accepts.
pub const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Highest ApiVersions version the client asks with first (KIP-511 client software fields).
pub const API_VERSIONS_VERSION_MAX: i16 = 3;

/// Default bound on one request's round trip (connect, write, wait, read).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Default client id sent in every request header.
pub const CLIENT_ID_DEFAULT: &str = "skein-cli";

/// A readable name for an API key ("Produce", "Fetch", or "api key N").
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("api key {key}"),
    }
}

/// The highest version in `client` ∩ `broker`; `None` if they do not overlap or the broker
/// does not list the API.
pub fn negotiate_version(client: VersionRange, broker: Option<VersionRange>) -> Option<i16> {
    let both = client.intersect(&broker?);
    if both.is_empty() {
        None
    } else {
        Some(both.max)
    }
}

/// Encodes one request frame: 4-byte length, request header at `R::header_version(version)`,
/// then the body at `version`.
pub fn encode_request_frame<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<BytesMut, ClientError> {
    let api = api_name(R::KEY);
    let encode_err = |message: String| ClientError::Encode {
        api: api.clone(),
        version,
        message,
    };
    if version < R::VERSIONS.min || version > R::VERSIONS.max {
        return Err(encode_err(format!(
            "version outside the crate's range {}",
            R::VERSIONS
        )));
    }
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|s| StrBytes::from_string(s.to_owned())));
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // length, filled below
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| encode_err(format!("header: {e:#}")))?;
    req.encode(&mut buf, version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    let body_len = buf.len() - 4;
    let body_len = i32::try_from(body_len)
        .map_err(|_| encode_err(format!("request of {body_len} bytes is too large")))?;
    buf[0..4].copy_from_slice(&body_len.to_be_bytes());
    Ok(buf)
}

/// Decodes one response frame body (the bytes after the 4-byte length) for request `R`
/// sent at `version`, returning the header's correlation id and the body.
///
/// For ApiVersions it applies KIP-511: a broker that does not know the version answers in
/// the v0 format with UNSUPPORTED_VERSION, so such a body is decoded as v0.
pub fn decode_response_frame<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<(i32, R::Response), ClientError> {
    let api = api_name(R::KEY);
    let decode_err = |message: String| ClientError::Decode {
        api: api.clone(),
        version,
        message,
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header: ResponseHeader = guarded_decode(&mut frame, header_version)
        .map_err(|e| decode_err(format!("header: {e}")))?;
    let body = frame;
    let response = if R::KEY == ApiKey::ApiVersions as i16 && version > 0 {
        let error_code = if body.len() >= 2 {
            i16::from_be_bytes([body[0], body[1]])
        } else {
            0
        };
        if error_code == code::UNSUPPORTED_VERSION {
            guarded_decode(&mut body.clone(), 0)
        } else {
            // Java's ApiVersionsResponse.parse also retries v0 when the real version fails.
            guarded_decode(&mut body.clone(), version)
                .or_else(|_| guarded_decode(&mut body.clone(), 0))
        }
    } else {
        guarded_decode(&mut body.clone(), version)
    }
    .map_err(decode_err)?;
    Ok((header.correlation_id, response))
}

/// Decodes `T` at `version`, turning both errors and (defensively) panics into `Err`.
fn guarded_decode<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(|| T::decode(buf, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("decoder panicked on malformed data".to_owned()),
    }
}

/// The ApiVersions request this client sends at `version`.
fn api_versions_request(version: i16) -> ApiVersionsRequest {
    let req = ApiVersionsRequest::default();
    if version >= 3 {
        req.with_client_software_name(StrBytes::from_static_str("skein"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
    } else {
        req
    }
}

/// The version to retry ApiVersions with after UNSUPPORTED_VERSION (KIP-511): the highest
/// the broker lists for ApiVersions, capped at ours; v0 if it lists none.
pub fn api_versions_fallback(resp: &ApiVersionsResponse) -> i16 {
    resp.api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .map(|k| k.max_version.clamp(0, API_VERSIONS_VERSION_MAX))
        .unwrap_or(0)
}

/// One connection to one broker, with the broker's version ranges.
#[derive(Debug)]
pub struct Client {
    addr: String,
    stream: Stream,
    client_id: String,
    correlation_id_next: i32,
    request_timeout: Duration,
    broker_versions: BTreeMap<i16, VersionRange>,
    broken: bool,
}

impl Client {
    /// Connects to `addr` (HOST:PORT) and negotiates versions, with the default client id and
    /// timeout.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with(
            addr,
            CLIENT_ID_DEFAULT,
            Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
        )
        .await
    }

    /// Connects to `addr` with a client id and a per-request timeout, then sends ApiVersions.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connect = Stream::connect(addr);
        let stream = match tokio::time::timeout(request_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    error,
                })
            }
            Err(_) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    error: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        // Requests are small and strictly alternate with responses: do not let Nagle delay them.
        stream.set_nodelay(true).map_err(|error| ClientError::Io {
            addr: addr.to_owned(),
            error,
        })?;
        let mut client = Client {
            addr: addr.to_owned(),
            stream,
            client_id: client_id.to_owned(),
            correlation_id_next: 0,
            request_timeout,
            broker_versions: BTreeMap::new(),
            broken: false,
        };
        client.negotiate_api_versions().await?;
        Ok(client)
    }

    /// Sends ApiVersions (v3, falling back per KIP-511) and records the broker's ranges.
    async fn negotiate_api_versions(&mut self) -> Result<(), ClientError> {
        let mut version = API_VERSIONS_VERSION_MAX;
        // Bound: the first try, and one retry at the version the broker names.
        for _ in 0..2 {
            let resp = self.send(api_versions_request(version), version).await?;
            if resp.error_code == code::UNSUPPORTED_VERSION && version > 0 {
                let fallback = api_versions_fallback(&resp);
                // A broker that rejects vN but claims to support vN would loop us; go to v0.
                version = if fallback >= version { 0 } else { fallback };
                continue;
            }
            check_error_code(
                resp.error_code,
                || format!("ApiVersions v{version} to {}", self.addr),
                None,
            )?;
            self.broker_versions = resp
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            return Ok(());
        }
        Err(ClientError::kafka(
            format!("ApiVersions to {}", self.addr),
            code::UNSUPPORTED_VERSION,
            Some("the broker rejected every ApiVersions version tried"),
        ))
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's advertised version range for `api_key`, if it listed it.
    pub fn broker_versions(&self, api_key: i16) -> Option<VersionRange> {
        self.broker_versions.get(&api_key).copied()
    }

    /// All version ranges the broker advertised, by API key.
    pub fn all_broker_versions(&self) -> &BTreeMap<i16, VersionRange> {
        &self.broker_versions
    }

    /// Whether the broker advertises request type `R` at all.
    pub fn supports<R: Request>(&self) -> bool {
        self.broker_versions.contains_key(&R::KEY)
    }

    /// The highest version of `R` that the crate and the broker support, capped at `max`.
    pub fn pick_version<R: Request>(&self, max: i16) -> Result<i16, ClientError> {
        self.pick_version_between::<R>(R::VERSIONS.min, max)
    }

    /// The highest version of `R` in `min..=max` that the crate and the broker support.
    pub fn pick_version_between<R: Request>(&self, min: i16, max: i16) -> Result<i16, ClientError> {
        let client = R::VERSIONS.intersect(&VersionRange { min, max });
        let broker = self.broker_versions(R::KEY);
        negotiate_version(client, broker).ok_or_else(|| ClientError::UnsupportedVersion {
            api: api_name(R::KEY),
            client,
            broker: broker.map_or_else(|| "none".to_owned(), |b| b.to_string()),
        })
    }

    /// Sets the bound on each request's round trip.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Sends `req` at `version` and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let (correlation_id, frame) = self.prepare(&req, version)?;
        let api = api_name(R::KEY);
        let timeout = self.request_timeout;
        let result = tokio::time::timeout(timeout, self.round_trip(&frame, &api)).await;
        let body = match result {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                self.broken = true;
                return Err(e);
            }
            Err(_) => {
                self.broken = true;
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
        };
        let (actual, response) = decode_response_frame::<R>(body, version)?;
        if actual != correlation_id {
            self.broken = true;
            return Err(ClientError::CorrelationMismatch {
                api,
                expected: correlation_id,
                actual,
            });
        }
        Ok(response)
    }

    /// Sends `req` at `version` without waiting for a response; only for requests the broker
    /// does not answer (Produce with acks=0).
    pub async fn send_without_response<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<(), ClientError> {
        let (_, frame) = self.prepare(&req, version)?;
        let api = api_name(R::KEY);
        let timeout = self.request_timeout;
        let write = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.broken = true;
                Err(ClientError::Io {
                    addr: self.addr.clone(),
                    error,
                })
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Checks the connection and versions, takes a correlation id and encodes the frame.
    fn prepare<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<(i32, BytesMut), ClientError> {
        if self.broken {
            return Err(ClientError::Broken {
                addr: self.addr.clone(),
            });
        }
        // ApiVersions is the one request sent before the broker's ranges are known.
        if R::KEY != ApiKey::ApiVersions as i16 {
            let broker = self.broker_versions(R::KEY);
            let fits = broker.is_some_and(|b| version >= b.min && version <= b.max);
            if !fits {
                return Err(ClientError::UnsupportedVersion {
                    api: api_name(R::KEY),
                    client: VersionRange {
                        min: version,
                        max: version,
                    },
                    broker: broker.map_or_else(|| "none".to_owned(), |b| b.to_string()),
                });
            }
        }
        let correlation_id = self.correlation_id_next;
        // Correlation ids only need to differ between requests in flight; wrap to 0.
        self.correlation_id_next = self.correlation_id_next.checked_add(1).unwrap_or(0);
        let frame = encode_request_frame(req, version, correlation_id, Some(&self.client_id))?;
        Ok((correlation_id, frame))
    }

    /// Writes one frame and reads one response frame body.
    async fn round_trip(&mut self, frame: &[u8], api: &str) -> Result<Bytes, ClientError> {
        let io_err = |addr: &str, error: std::io::Error| ClientError::Io {
            addr: addr.to_owned(),
            error,
        };
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        self.stream
            .flush()
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        let mut len_buf = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut len_buf).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ClientError::Closed {
                    addr: self.addr.clone(),
                    api: api.to_owned(),
                }
            } else {
                io_err(&self.addr, e)
            });
        }
        let size = frame_size(len_buf, api)?;
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io_err(&self.addr, e))?;
        Ok(Bytes::from(body))
    }
}

/// Validates a response frame's 4-byte length prefix.
fn frame_size(len_buf: [u8; 4], api: &str) -> Result<usize, ClientError> {
    let declared = i32::from_be_bytes(len_buf);
    match usize::try_from(declared) {
        Ok(size) if size <= RESPONSE_BYTES_MAX => Ok(size),
        _ => Err(ClientError::BadFrameSize {
            api: api.to_owned(),
            size_bytes: i64::from(declared),
            max_bytes: RESPONSE_BYTES_MAX,
        }),
    }
}

/// Splits a buffer of 4-byte-length-prefixed frames; returns whole frame bodies and leaves
/// a trailing partial frame in `buf`. Used by tests to stand in for a broker.
#[cfg(test)]
fn split_frames(buf: &mut BytesMut) -> Vec<Bytes> {
    use bytes::Buf;
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let Ok(len) = usize::try_from(len) else { break };
        if buf.len() < 4 + len {
            break;
        }
        buf.advance(4);
        out.push(buf.split_to(len).freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use tokio::net::TcpListener;

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiate_picks_highest_common_version() {
        assert_eq!(negotiate_version(range(3, 9), Some(range(0, 12))), Some(9));
        assert_eq!(negotiate_version(range(3, 9), Some(range(0, 5))), Some(5));
        assert_eq!(negotiate_version(range(3, 9), Some(range(3, 3))), Some(3));
        assert_eq!(negotiate_version(range(3, 9), Some(range(0, 2))), None);
        assert_eq!(negotiate_version(range(3, 9), Some(range(10, 12))), None);
        assert_eq!(negotiate_version(range(3, 9), None), None);
    }

    #[test]
    fn request_frame_round_trips() {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("events"))))]))
            .with_allow_auto_topic_creation(false);
        for version in [4i16, 8, 9, 12] {
            let frame = encode_request_frame(&req, version, 77, Some("cli")).unwrap();
            let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            assert_eq!(len as usize, frame.len() - 4);
            let mut body = frame.freeze().slice(4..);
            let header = decode_request_header_from_buffer(&mut body).unwrap();
            assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 77);
            assert_eq!(header.client_id.as_deref(), Some("cli"));
            let decoded = MetadataRequest::decode(&mut body, version).unwrap();
            assert_eq!(decoded, req);
            assert!(body.is_empty(), "v{version} left {} bytes", body.len());
        }
    }

    #[test]
    fn request_header_version_follows_the_request() {
        // ApiVersions v3 is flexible: header v2 (with tagged fields) on the request.
        let frame = encode_request_frame(&api_versions_request(3), 3, 1, Some("x")).unwrap();
        let mut body = frame.freeze().slice(4..);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(header.request_api_version, 3);
        let req = ApiVersionsRequest::decode(&mut body, 3).unwrap();
        assert_eq!(req.client_software_name.as_str(), "skein");
        assert!(body.is_empty());
    }

    #[test]
    fn encode_rejects_versions_outside_the_crate() {
        let err = encode_request_frame(&ProduceRequest::default(), 2, 0, None).unwrap_err();
        assert!(matches!(err, ClientError::Encode { version: 2, .. }));
        assert!(encode_request_frame(&FetchRequest::default(), 99, 0, None).is_err());
    }

    /// Builds a response frame body: response header at the right version, then the body.
    fn response_body<R: Request>(resp: &R::Response, version: i16, correlation_id: i32) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(
                &mut buf,
                <R::Response as HeaderVersion>::header_version(version),
            )
            .unwrap();
        resp.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn response_frame_round_trips() {
        let resp = MetadataResponse::default().with_cluster_id(Some(StrBytes::from("c1")));
        for version in [2i16, 8, 9, 12] {
            let body = response_body::<MetadataRequest>(&resp, version, 5);
            let (cid, decoded) = decode_response_frame::<MetadataRequest>(body, version).unwrap();
            assert_eq!(cid, 5);
            assert_eq!(decoded.cluster_id.as_deref(), Some("c1"));
        }
    }

    #[test]
    fn api_versions_response_always_uses_header_v0() {
        assert_eq!(ApiVersionsResponse::header_version(3), 0);
        assert_eq!(MetadataResponse::header_version(9), 1);
        assert_eq!(MetadataResponse::header_version(8), 0);
    }

    #[test]
    fn unsupported_version_api_versions_answer_is_read_as_v0() {
        let resp = ApiVersionsResponse::default()
            .with_error_code(code::UNSUPPORTED_VERSION)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(2)]);
        // The broker answers a v3 request in the v0 format.
        let body = response_body::<ApiVersionsRequest>(&resp, 0, 9);
        let (cid, decoded) = decode_response_frame::<ApiVersionsRequest>(body, 3).unwrap();
        assert_eq!(cid, 9);
        assert_eq!(decoded.error_code, code::UNSUPPORTED_VERSION);
        assert_eq!(api_versions_fallback(&decoded), 2);
        assert_eq!(api_versions_fallback(&ApiVersionsResponse::default()), 0);
    }

    #[test]
    fn garbage_responses_are_errors_not_panics() {
        // Not here: an array length in the billions. kafka-protocol 0.18 pre-allocates from it
        // and the allocation failure aborts (upstream kafka-protocol-rs PRs #152/#161/#200).
        let cases: [&[u8]; 5] = [
            b"",
            b"\x00\x00",
            b"\x00\x00\x00\x01\xff\xff",
            b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x05",
            b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ];
        for case in cases {
            let body = Bytes::copy_from_slice(case);
            assert!(decode_response_frame::<MetadataRequest>(body.clone(), 12).is_err());
            assert!(decode_response_frame::<FetchRequest>(body.clone(), 12).is_err());
            let _ = decode_response_frame::<ApiVersionsRequest>(body, 3);
        }
    }

    #[test]
    fn frame_sizes_are_bounded() {
        assert_eq!(frame_size(10i32.to_be_bytes(), "Fetch").unwrap(), 10);
        let max = i32::try_from(RESPONSE_BYTES_MAX).unwrap();
        assert!(frame_size(max.to_be_bytes(), "Fetch").is_ok());
        assert!(matches!(
            frame_size((max + 1).to_be_bytes(), "Fetch"),
            Err(ClientError::BadFrameSize { .. })
        ));
        assert!(frame_size((-1i32).to_be_bytes(), "Fetch").is_err());
    }

    /// A one-connection fake broker: answers ApiVersions with `first`, and if the client
    /// retries, with `second`; then serves Metadata with an empty response.
    async fn fake_broker(
        first_unsupported: bool,
        oversized: bool,
    ) -> (String, tokio::task::JoinHandle<Vec<i16>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen_versions = Vec::new();
            let mut buf = BytesMut::new();
            loop {
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return seen_versions;
                }
                buf.extend_from_slice(&chunk[..n]);
                for mut frame in split_frames(&mut buf) {
                    let header = decode_request_header_from_buffer(&mut frame).unwrap();
                    let v = header.request_api_version;
                    let cid = header.correlation_id;
                    let body = if header.request_api_key == ApiKey::ApiVersions as i16 {
                        seen_versions.push(v);
                        if first_unsupported && v == 3 {
                            let resp = ApiVersionsResponse::default()
                                .with_error_code(code::UNSUPPORTED_VERSION)
                                .with_api_keys(vec![ApiVersion::default()
                                    .with_api_key(18)
                                    .with_max_version(1)]);
                            response_body::<ApiVersionsRequest>(&resp, 0, cid)
                        } else {
                            let resp = ApiVersionsResponse::default().with_api_keys(vec![
                                ApiVersion::default().with_api_key(18).with_max_version(3),
                                ApiVersion::default()
                                    .with_api_key(ApiKey::Metadata as i16)
                                    .with_min_version(0)
                                    .with_max_version(12),
                            ]);
                            response_body::<ApiVersionsRequest>(&resp, v, cid)
                        }
                    } else {
                        let resp = MetadataResponse::default();
                        response_body::<MetadataRequest>(&resp, v, cid)
                    };
                    let len = if oversized && header.request_api_key != 18 {
                        i32::try_from(RESPONSE_BYTES_MAX).unwrap() + 1
                    } else {
                        i32::try_from(body.len()).unwrap()
                    };
                    sock.write_all(&len.to_be_bytes()).await.unwrap();
                    sock.write_all(&body).await.unwrap();
                }
            }
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn connect_negotiates_and_sends() {
        let (addr, broker) = fake_broker(false, false).await;
        let mut client = Client::connect(&addr).await.unwrap();
        assert_eq!(client.broker_versions(3), Some(range(0, 12)));
        assert_eq!(client.pick_version::<MetadataRequest>(9).unwrap(), 9);
        assert_eq!(client.pick_version::<MetadataRequest>(20).unwrap(), 12);
        assert!(client.pick_version::<ProduceRequest>(9).is_err());
        let v = client.pick_version::<MetadataRequest>(12).unwrap();
        for _ in 0..3 {
            client.send(MetadataRequest::default(), v).await.unwrap();
        }
        // Produce is not advertised: refused before anything is sent.
        let err = client.send(ProduceRequest::default(), 9).await.unwrap_err();
        assert!(
            matches!(err, ClientError::UnsupportedVersion { .. }),
            "{err}"
        );
        drop(client);
        assert_eq!(broker.await.unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn connect_falls_back_per_kip_511() {
        let (addr, broker) = fake_broker(true, false).await;
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(client.broker_versions(3), Some(range(0, 12)));
        drop(client);
        assert_eq!(broker.await.unwrap(), vec![3, 1]);
    }

    #[tokio::test]
    async fn oversized_response_is_an_error_and_breaks_the_connection() {
        let (addr, _broker) = fake_broker(false, true).await;
        let mut client = Client::connect(&addr).await.unwrap();
        let err = client
            .send(MetadataRequest::default(), 12)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::BadFrameSize { .. }), "{err}");
        let err = client
            .send(MetadataRequest::default(), 12)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Broken { .. }), "{err}");
    }

    #[tokio::test]
    async fn connect_refused_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Client::connect(&addr).await.unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
