//! The cluster as a client sees it: a bootstrap connection, connections to other brokers
//! opened on first use, and the brokers and controller named by the latest Metadata answer.
//!
//! Invariants: a connection that an error broke ([`ClientError::breaks_connection`]) is
//! forgotten, so the next request opens a new one; every retry loop here is bounded by
//! [`ATTEMPTS_MAX`] with [`RETRY_BACKOFF_MS`] between attempts; Metadata requests never
//! create topics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Client;
use crate::error::{code, is_transient_metadata_error, ClientError};

/// Attempts for an operation that keeps failing with retriable errors.
pub const ATTEMPTS_MAX: u32 = 6;
/// Pause between such attempts.
pub const RETRY_BACKOFF_MS: u64 = 250;

/// Lowest Metadata version the client sends.
pub const METADATA_VERSION_MIN: i16 = 1;
/// Highest Metadata version the client sends.
pub const METADATA_VERSION_MAX: i16 = 12;

/// A partition as metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    /// The partition number.
    pub index: i32,
    /// The leader's node id; -1 while it has none.
    pub leader: i32,
    /// The replicas' node ids.
    pub replicas: Vec<i32>,
    /// The in-sync replicas' node ids.
    pub isr: Vec<i32>,
    /// The partition's error code in the metadata answer (0: none).
    pub error_code: i16,
}

/// A topic as metadata describes it; partitions sorted by index.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id, if the broker sent one.
    pub topic_id: Option<String>,
    /// The partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The partition's leader, if metadata names one.
    pub fn leader_of(&self, partition: i32) -> Option<i32> {
        self.partitions
            .iter()
            .find(|p| p.index == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}

/// The bootstrap connection plus lazily opened connections to other brokers by node id.
pub struct Cluster {
    bootstrap_addr: String,
    bootstrap: Option<Client>,
    brokers: BTreeMap<i32, String>,
    nodes: BTreeMap<i32, Client>,
    controller_id: i32,
}

impl Cluster {
    /// Connects to the bootstrap broker (HOST:PORT) and negotiates versions.
    pub async fn connect(bootstrap_addr: &str) -> Result<Cluster, ClientError> {
        let client = Client::connect(bootstrap_addr).await?;
        Ok(Cluster {
            bootstrap_addr: bootstrap_addr.to_owned(),
            bootstrap: Some(client),
            brokers: BTreeMap::new(),
            nodes: BTreeMap::new(),
            controller_id: -1,
        })
    }

    /// The bootstrap connection, reopened if an earlier error broke it.
    pub async fn bootstrap(&mut self) -> Result<&mut Client, ClientError> {
        if self.bootstrap.is_none() {
            self.bootstrap = Some(Client::connect(&self.bootstrap_addr).await?);
        }
        Ok(self.bootstrap.as_mut().expect("set just above"))
    }

    /// Forgets a connection after an error that broke it.
    pub fn forget(&mut self, node_id: Option<i32>, err: &ClientError) {
        if !err.breaks_connection() {
            return;
        }
        match node_id {
            Some(id) => {
                self.nodes.remove(&id);
            }
            None => self.bootstrap = None,
        }
    }

    /// A connection to broker `node_id`, opened on first use.
    pub async fn node(&mut self, node_id: i32) -> Result<&mut Client, ClientError> {
        if !self.nodes.contains_key(&node_id) {
            let Some(addr) = self.brokers.get(&node_id).cloned() else {
                return Err(ClientError::kafka(
                    format!("broker {node_id}"),
                    code::BROKER_NOT_AVAILABLE,
                    Some("not in the cluster metadata"),
                ));
            };
            let client = match Client::connect(&addr).await {
                Ok(c) => c,
                // A lone broker that advertises an address we cannot reach (0.0.0.0, a
                // container hostname) is still reachable the way we bootstrapped.
                Err(e) if self.brokers.len() == 1 && addr != self.bootstrap_addr => {
                    tracing::warn!(
                        "broker {node_id} advertises {addr}, which fails ({e}); using {} instead",
                        self.bootstrap_addr
                    );
                    Client::connect(&self.bootstrap_addr).await?
                }
                Err(e) => return Err(e),
            };
            self.nodes.insert(node_id, client);
        }
        Ok(self.nodes.get_mut(&node_id).expect("inserted above"))
    }

    /// Sends Metadata for `topics` (None: all topics) and records the brokers it lists.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        let client = self.bootstrap().await?;
        let version = client
            .pick_version_between::<MetadataRequest>(METADATA_VERSION_MIN, METADATA_VERSION_MAX)?;
        let request = metadata_request(version, topics);
        let response = match client.send(request, version).await {
            Ok(r) => r,
            Err(e) => {
                self.forget(None, &e);
                return Err(e);
            }
        };
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, host_port(&b.host, b.port)))
            .collect();
        self.controller_id = response.controller_id.0;
        Ok(response)
    }

    /// Metadata for one topic, retrying while it has no leaders yet (just created).
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        let names = [name.to_owned()];
        let mut attempt = 1;
        loop {
            let response = self.metadata(Some(&names)).await?;
            match topic_info(&response, name) {
                Ok(info) => {
                    let leaderless = info.partitions.iter().any(|p| p.leader < 0);
                    if !leaderless || attempt >= ATTEMPTS_MAX {
                        return Ok(info);
                    }
                }
                Err(e) => {
                    let retriable = e.kafka_code().is_some_and(is_transient_metadata_error);
                    if !retriable || attempt >= ATTEMPTS_MAX {
                        return Err(e);
                    }
                }
            }
            attempt += 1;
            backoff().await;
        }
    }
}

impl Cluster {
    /// The brokers the latest Metadata answer listed (and coordinators found since), by node
    /// id, as HOST:PORT.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    /// Records a broker's address unless one is known already (e.g. a coordinator that the
    /// metadata did not list).
    pub fn add_broker(&mut self, node_id: i32, addr: String) {
        self.brokers.entry(node_id).or_insert(addr);
    }

    /// The controller the latest Metadata answer named; -1 if none yet.
    pub fn controller_id(&self) -> i32 {
        self.controller_id
    }

    /// Closes the connection to `node_id`, if open; the next request opens a new one.
    pub fn close_node(&mut self, node_id: i32) {
        self.nodes.remove(&node_id);
    }

    /// Where admin requests go: the controller once one has refused with NOT_CONTROLLER.
    async fn admin_client(&mut self, use_controller: bool) -> Result<&mut Client, ClientError> {
        if use_controller && self.controller_id >= 0 {
            let id = self.controller_id;
            self.node(id).await
        } else {
            self.bootstrap().await
        }
    }

    /// Sends an admin request that only the controller may answer, retrying on
    /// NOT_CONTROLLER after refreshing metadata; `call` returns the Kafka error code and
    /// message of the answer, and a code other than 0 becomes an error saying `what` failed.
    pub async fn controller_call(
        &mut self,
        what: String,
        mut call: impl AsyncFnMut(&mut Client) -> Result<(i16, Option<String>), ClientError>,
    ) -> Result<(), ClientError> {
        let mut use_controller = false;
        for attempt in 1..=ATTEMPTS_MAX {
            let client = self.admin_client(use_controller).await?;
            let (code, message) = call(client).await?;
            if code == 0 {
                return Ok(());
            }
            if code == code::NOT_CONTROLLER && attempt < ATTEMPTS_MAX {
                self.metadata(Some(&[])).await?;
                use_controller = true;
                backoff().await;
                continue;
            }
            return Err(ClientError::kafka(what, code, message.as_deref()));
        }
        unreachable!("the last attempt returns")
    }
}

/// HOST:PORT, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A Metadata request for `topics` (None: all) that never creates a topic by accident.
pub fn metadata_request(version: i16, topics: Option<&[String]>) -> MetadataRequest {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect()
    });
    MetadataRequest::default()
        .with_topics(topics)
        // Commands never create topics by accident; v0-3 cannot say so (and must not be asked).
        .with_allow_auto_topic_creation(version < 4)
}

/// A topic name as the protocol types carry it.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Pulls one topic out of a Metadata response, with its partitions sorted by index.
pub fn topic_info(response: &MetadataResponse, name: &str) -> Result<TopicInfo, ClientError> {
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(name))
        .ok_or_else(|| {
            ClientError::kafka(
                format!("topic '{name}'"),
                3,
                Some("the broker's metadata does not list it"),
            )
        })?;
    if topic.error_code != 0 {
        return Err(ClientError::kafka(
            format!("metadata for topic '{name}'"),
            topic.error_code,
            None,
        ));
    }
    let mut partitions: Vec<PartitionInfo> = topic
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    let topic_id = (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string());
    Ok(TopicInfo {
        name: name.to_owned(),
        topic_id,
        partitions,
    })
}

/// The pause between attempts of an operation that failed retriably.
pub async fn backoff() {
    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    #[test]
    fn metadata_requests_fit_every_version() {
        let names = ["t".to_owned()];
        for version in METADATA_VERSION_MIN..=METADATA_VERSION_MAX {
            for topics in [None, Some(&names[..])] {
                let req = metadata_request(version, topics);
                crate::encode_request_frame(&req, version, 0, None).unwrap();
                assert_eq!(req.allow_auto_topic_creation, version < 4);
            }
        }
    }

    #[test]
    fn topic_info_sorts_partitions_and_names_errors() {
        let partition = |index: i32, leader: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        };
        let response = MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(topic_name("t")))
                .with_partitions(vec![partition(1, -1), partition(0, 2)]),
            MetadataResponseTopic::default()
                .with_name(Some(topic_name("bad")))
                .with_error_code(code::LEADER_NOT_AVAILABLE),
        ]);
        let info = topic_info(&response, "t").unwrap();
        assert_eq!(
            info.partitions.iter().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(info.topic_id, None);
        assert_eq!(info.leader_of(0), Some(2));
        assert_eq!(info.leader_of(1), None, "no leader yet");
        assert_eq!(info.leader_of(7), None, "no such partition");
        let err = topic_info(&response, "bad").unwrap_err();
        assert_eq!(err.kafka_code(), Some(code::LEADER_NOT_AVAILABLE));
        let err = topic_info(&response, "missing").unwrap_err();
        assert_eq!(err.kafka_code(), Some(code::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
        assert_eq!(host_port("h", 1), "h:1");
    }
}
