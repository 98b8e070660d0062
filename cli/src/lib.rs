//! skein-cli: the admin and client subcommands of the `skein` binary: `topics`, `cluster`, `groups`
//! (in [`groups`]), `produce`, `consume`.
//!
//! Each command talks Kafka to a bootstrap broker through [`skein_client::Client`], and to
//! partition leaders where the data lives. Any Kafka error ends the command with a message
//! that names the error code the way Kafka does (e.g. `UNKNOWN_TOPIC_OR_PARTITION`);
//! retriable ones are retried a bounded number of times after refreshing metadata first.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use skein_client::{error_code_is_retriable, Client, ClientError};

mod groups;
pub use groups::{run_groups, GroupsCmd, ResetOffsetsArgs, ResetTo};

/// Attempts for an operation that keeps failing with retriable errors.
const ATTEMPTS_MAX: u32 = 6;
/// Pause between such attempts.
const RETRY_BACKOFF_MS: u64 = 250;
/// Server-side timeout given to Produce, CreateTopics and DeleteTopics.
const SERVER_TIMEOUT_MS: i32 = 30_000;

const METADATA_VERSION_MIN: i16 = 1;
const METADATA_VERSION_MAX: i16 = 12;
const CREATE_TOPICS_VERSION_MAX: i16 = 7;
const DELETE_TOPICS_VERSION_MAX: i16 = 6;
const DESCRIBE_CONFIGS_VERSION_MAX: i16 = 4;
const INIT_PRODUCER_ID_VERSION_MAX: i16 = 4;
const PRODUCE_VERSION_MIN: i16 = 3;
const PRODUCE_VERSION_MAX: i16 = 9;
const LIST_OFFSETS_VERSION_MIN: i16 = 1;
const LIST_OFFSETS_VERSION_MAX: i16 = 7;
const FETCH_VERSION_MIN: i16 = 4;
const FETCH_VERSION_MAX: i16 = 12;

/// Produce: flush pending records once no new line arrives for this long.
const PRODUCE_LINGER_MS: u64 = 20;
/// Produce: flush once this many value and key bytes are pending.
const PRODUCE_PENDING_BYTES_MAX: usize = 512 * 1024;
/// Produce: flush once this many records are pending.
const PRODUCE_PENDING_RECORDS_MAX: usize = 10_000;
/// Transaction timeout sent with InitProducerId (the Java producer's default).
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// Fetch: longest the broker may hold a fetch with no data.
const FETCH_MAX_WAIT_MS: u64 = 500;
/// Fetch: bytes asked per partition at first.
const FETCH_PARTITION_BYTES_DEFAULT: i32 = 1024 * 1024;
/// Fetch: bytes asked per partition at most, when one batch is larger than the default.
const FETCH_PARTITION_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// Fetch: bytes asked per response (under the client's 100 MiB response limit).
const FETCH_RESPONSE_BYTES_MAX: i32 = 80 * 1024 * 1024;

/// Size of a RecordBatch v2 header, from base offset through record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Smallest encoded record: length, attributes, timestamp and offset deltas, key and value
/// lengths, header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// Kafka error codes the commands treat specially.
const NOT_CONTROLLER: i16 = 41;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const CORRUPT_MESSAGE: i16 = 2;
const BROKER_NOT_AVAILABLE: i16 = 8;

/// DescribeConfigs resource type for topics.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs config source meaning "Kafka's default".
const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// ListOffsets timestamps meaning "earliest" and "latest".
const OFFSET_EARLIEST: i64 = -2;
const OFFSET_LATEST: i64 = -1;

/// `skein cluster ...`: the cluster as a whole.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCmd {
    /// Show the metadata quorum (voters, leader, term, committed offset, each voter's log end)
    /// and the live brokers.
    Status,
}

/// Runs a `skein cluster` verb.
pub async fn run_cluster(bootstrap: &str, cmd: ClusterCmd) -> anyhow::Result<()> {
    let ClusterCmd::Status = cmd;
    let mut cluster = Cluster::connect(bootstrap).await?;
    let mut attempt = 0;
    let (md, quorum) = loop {
        attempt += 1;
        let md = cluster.metadata(Some(&[])).await?;
        let leader = md.controller_id.0;
        let answer = match cluster.node(leader).await {
            Ok(client) => describe_quorum(client).await,
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(q) if q.error_code == 0 || attempt >= ATTEMPTS_MAX => break (md, q),
            Err(e) if attempt >= ATTEMPTS_MAX => return Err(e),
            Ok(_) | Err(_) => {
                cluster.nodes.remove(&leader);
                backoff().await;
            }
        }
    };
    let out = format_cluster_status(&md, &quorum);
    write_stdout(out.as_bytes())?;
    if quorum.error_code != 0 {
        return Err(ClientError::kafka(
            "describe the metadata quorum".to_string(),
            quorum.error_code,
            None,
        )
        .into());
    }
    Ok(())
}

/// The quorum partition's description (its error code lifted to the top).
struct QuorumView {
    error_code: i16,
    leader: i32,
    term: i32,
    committed: i64,
    voters: Vec<(i32, i64)>,
}

async fn describe_quorum(client: &mut Client) -> anyhow::Result<QuorumView> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::DescribeQuorumRequest;
    if !client.supports::<DescribeQuorumRequest>() {
        bail!("the broker does not support DescribeQuorum (is it a skein or KRaft broker?)");
    }
    let version = client.pick_version::<DescribeQuorumRequest>(1)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name("__cluster_metadata"))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response = client.send(request, version).await?;
    if response.error_code != 0 {
        return Ok(QuorumView {
            error_code: response.error_code,
            leader: -1,
            term: -1,
            committed: -1,
            voters: vec![],
        });
    }
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("DescribeQuorum response has no metadata partition"))?;
    Ok(QuorumView {
        error_code: p.error_code,
        leader: p.leader_id.0,
        term: p.leader_epoch,
        committed: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
    })
}

fn format_cluster_status(md: &MetadataResponse, q: &QuorumView) -> String {
    let mut out = String::new();
    let cluster_id = md.cluster_id.as_deref().unwrap_or("-");
    out.push_str(&format!("Cluster id:        {cluster_id}\n"));
    if q.error_code == 0 {
        out.push_str(&format!(
            "Quorum leader:     {} (term {})\n",
            q.leader, q.term
        ));
        out.push_str(&format!("Committed offset:  {}\n", q.committed));
        out.push_str("Voters:\n");
        out.push_str("  ID\tLOG END\tLAG\tROLE\n");
        for (id, end) in &q.voters {
            let lag = if *end >= 0 {
                (q.committed - end).max(0).to_string()
            } else {
                "-".into()
            };
            let role = if *id == q.leader {
                "leader"
            } else {
                "follower"
            };
            out.push_str(&format!("  {id}\t{end}\t{lag}\t{role}\n"));
        }
    } else {
        out.push_str("Quorum leader:     unknown (no leader answered)\n");
    }
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    out.push_str(&format!("Brokers ({} live):\n", brokers.len()));
    out.push_str("  ID\tADDRESS\tRACK\n");
    for b in brokers {
        let rack = b.rack.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "  {}\t{}:{}\t{rack}\n",
            b.node_id.0,
            b.host.as_str(),
            b.port
        ));
    }
    let missing: Vec<String> = q
        .voters
        .iter()
        .filter(|(id, _)| !md.brokers.iter().any(|b| b.node_id.0 == *id))
        .map(|(id, _)| id.to_string())
        .collect();
    if !missing.is_empty() {
        out.push_str(&format!(
            "Voters not serving as brokers (fenced or not registered): {}\n",
            missing.join(", ")
        ));
    }
    out
}

/// `skein topics ...`: create, list, describe and delete topics.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicsCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// A topic config override KEY=VALUE (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        config: Vec<(String, String)>,
        /// Replicas per partition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: i16,
    },
    /// List topic names, one per line.
    List,
    /// Show a topic's partitions (leader, replicas, ISR) and its non-default configs.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `skein produce TOPIC`: send each line of stdin as one record.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP into key and value; a line without SEP is an error.
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: murmur2 of the key like the Java
    /// client; records without a key go round-robin, one partition per batch).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements: -1 (all in-sync replicas; also "all"), 1 (leader) or 0 (none).
    #[arg(long, default_value = "-1", allow_negative_numbers = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Idempotent producer (InitProducerId and sequence numbers). Like the Java producer's
    /// default, it is only used with --acks -1; other acks produce without it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub idempotent: bool,
}

/// `skein consume TOPIC`: print record values (optionally keys) one per line.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    pub topic: String,
    /// Start at the earliest offset (default: the latest, i.e. only new records).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Consume only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,
    /// Exit after printing this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit (successfully) after this long with no new record.
    #[arg(long, default_value_t = 5000)]
    pub idle_timeout_ms: u64,
    /// Print KEY<SEP>VALUE instead of VALUE.
    #[arg(long)]
    pub print_key: bool,
    /// Separator between key and value for --print-key.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be -1 (all), 0 or 1, got '{s}'")),
    }
}

fn parse_separator(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the key separator must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

// ---------------------------------------------------------------------------------------
// Connections and metadata
// ---------------------------------------------------------------------------------------

/// A partition as metadata describes it.
#[derive(Debug, Clone, PartialEq)]
struct PartitionInfo {
    index: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    error_code: i16,
}

/// A topic as metadata describes it; partitions sorted by index.
#[derive(Debug, Clone)]
struct TopicInfo {
    name: String,
    topic_id: Option<String>,
    partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The partition's leader, if metadata names one.
    fn leader_of(&self, partition: i32) -> Option<i32> {
        self.partitions
            .iter()
            .find(|p| p.index == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}

/// The bootstrap connection plus lazily opened connections to other brokers by node id.
struct Cluster {
    bootstrap_addr: String,
    bootstrap: Option<Client>,
    brokers: BTreeMap<i32, String>,
    nodes: BTreeMap<i32, Client>,
    controller_id: i32,
}

impl Cluster {
    async fn connect(bootstrap_addr: &str) -> anyhow::Result<Cluster> {
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
    async fn bootstrap(&mut self) -> Result<&mut Client, ClientError> {
        if self.bootstrap.is_none() {
            self.bootstrap = Some(Client::connect(&self.bootstrap_addr).await?);
        }
        Ok(self.bootstrap.as_mut().expect("set just above"))
    }

    /// Forgets a connection after an error that broke it.
    fn forget(&mut self, node_id: Option<i32>, err: &ClientError) {
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
    async fn node(&mut self, node_id: i32) -> Result<&mut Client, ClientError> {
        if !self.nodes.contains_key(&node_id) {
            let Some(addr) = self.brokers.get(&node_id).cloned() else {
                return Err(ClientError::kafka(
                    format!("broker {node_id}"),
                    BROKER_NOT_AVAILABLE,
                    Some("not in the cluster metadata"),
                ));
            };
            let client = match Client::connect(&addr).await {
                Ok(c) => c,
                // A lone broker that advertises an address we cannot reach (0.0.0.0, a
                // container hostname) is still reachable the way we bootstrapped.
                Err(e) if self.brokers.len() == 1 && addr != self.bootstrap_addr => {
                    eprintln!(
                        "warning: broker {node_id} advertises {addr}, which fails ({e}); \
                         using {} instead",
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
    async fn metadata(&mut self, topics: Option<&[String]>) -> anyhow::Result<MetadataResponse> {
        let client = self.bootstrap().await?;
        let version = client
            .pick_version_between::<MetadataRequest>(METADATA_VERSION_MIN, METADATA_VERSION_MAX)?;
        let request = metadata_request(version, topics);
        let response = match client.send(request, version).await {
            Ok(r) => r,
            Err(e) => {
                self.forget(None, &e);
                return Err(e.into());
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
    async fn topic(&mut self, name: &str) -> anyhow::Result<TopicInfo> {
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
                        return Err(e.into());
                    }
                }
            }
            attempt += 1;
            backoff().await;
        }
    }
}

/// Errors that a metadata lookup may show briefly while a topic is being set up.
fn is_transient_metadata_error(code: i16) -> bool {
    // UNKNOWN_TOPIC_OR_PARTITION is retriable in Kafka, but here it means "no such topic".
    code != 3 && error_code_is_retriable(code)
}

fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn metadata_request(version: i16, topics: Option<&[String]>) -> MetadataRequest {
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

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Pulls one topic out of a Metadata response, with its partitions sorted by index.
fn topic_info(response: &MetadataResponse, name: &str) -> Result<TopicInfo, ClientError> {
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

async fn backoff() {
    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
}

// ---------------------------------------------------------------------------------------
// topics
// ---------------------------------------------------------------------------------------

/// Runs `skein topics ...` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_topics(bootstrap: &str, cmd: TopicsCmd) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    match cmd {
        TopicsCmd::Create {
            name,
            partitions,
            config,
            replication_factor,
        } => {
            create_topic(&mut cluster, &name, partitions, replication_factor, &config).await?;
            println!("Created topic {name}.");
        }
        TopicsCmd::List => {
            let response = cluster.metadata(None).await?;
            let mut names: Vec<String> = response
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            names.sort();
            let mut out = Vec::new();
            for n in names {
                writeln!(out, "{n}")?;
            }
            write_stdout(&out)?;
        }
        TopicsCmd::Describe { name } => describe_topic(&mut cluster, &name).await?,
        TopicsCmd::Delete { name } => {
            delete_topic(&mut cluster, &name).await?;
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

/// Where admin requests go: the controller once one has refused with NOT_CONTROLLER.
async fn admin_client(
    cluster: &mut Cluster,
    use_controller: bool,
) -> Result<&mut Client, ClientError> {
    if use_controller && cluster.controller_id >= 0 {
        let id = cluster.controller_id;
        cluster.node(id).await
    } else {
        cluster.bootstrap().await
    }
}

async fn create_topic(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    config: &[(String, String)],
) -> anyhow::Result<()> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            config
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    controller_call(cluster, format!("create topic '{name}'"), async |client| {
        let version = client.pick_version::<CreateTopicsRequest>(CREATE_TOPICS_VERSION_MAX)?;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic.clone()])
            .with_timeout_ms(SERVER_TIMEOUT_MS);
        let response = client.send(request, version).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.as_str() == name)
            .ok_or_else(|| anyhow!("CreateTopics response does not mention topic '{name}'"))?;
        Ok((
            result.error_code,
            result.error_message.as_deref().map(str::to_string),
        ))
    })
    .await
}

async fn delete_topic(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    controller_call(cluster, format!("delete topic '{name}'"), async |client| {
        let version = client.pick_version::<DeleteTopicsRequest>(DELETE_TOPICS_VERSION_MAX)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(SERVER_TIMEOUT_MS);
        // v6 names topics by (name, id); earlier versions by name alone.
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            request.topic_names = vec![topic_name(name)];
        }
        let response = client.send(request, version).await?;
        let result = response
            .responses
            .iter()
            .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(name))
            .or(response.responses.first())
            .ok_or_else(|| anyhow!("DeleteTopics response does not mention topic '{name}'"))?;
        Ok((
            result.error_code,
            result.error_message.as_deref().map(str::to_string),
        ))
    })
    .await
}

/// Sends an admin request that only the controller may answer, retrying on NOT_CONTROLLER after
/// refreshing metadata; `call` returns the Kafka error code and message of the answer.
async fn controller_call(
    cluster: &mut Cluster,
    what: String,
    mut call: impl AsyncFnMut(&mut Client) -> anyhow::Result<(i16, Option<String>)>,
) -> anyhow::Result<()> {
    let mut use_controller = false;
    for attempt in 1..=ATTEMPTS_MAX {
        let client = admin_client(cluster, use_controller).await?;
        let (code, message) = call(client).await?;
        if code == 0 {
            return Ok(());
        }
        if code == NOT_CONTROLLER && attempt < ATTEMPTS_MAX {
            cluster.metadata(Some(&[])).await?;
            use_controller = true;
            backoff().await;
            continue;
        }
        return Err(ClientError::kafka(what, code, message.as_deref()).into());
    }
    unreachable!("the last attempt returns")
}

async fn describe_topic(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let info = cluster.topic(name).await?;
    let configs = describe_topic_configs(cluster, name).await?;
    let out = format_topic_description(&info, configs.as_deref());
    write_stdout(out.as_bytes())?;
    Ok(())
}

/// The topic's non-default configs as `key=value`; `None` if the broker has no DescribeConfigs.
async fn describe_topic_configs(
    cluster: &mut Cluster,
    name: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let client = cluster.bootstrap().await?;
    if !client.supports::<DescribeConfigsRequest>() {
        eprintln!("warning: the broker does not support DescribeConfigs; configs not shown");
        return Ok(None);
    }
    let version = client.pick_version::<DescribeConfigsRequest>(DESCRIBE_CONFIGS_VERSION_MAX)?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None)]);
    let response = client.send(request, version).await?;
    let result = response
        .results
        .iter()
        .find(|r| r.resource_name.as_str() == name)
        .ok_or_else(|| anyhow!("DescribeConfigs response does not mention topic '{name}'"))?;
    if result.error_code != 0 {
        return Err(ClientError::kafka(
            format!("describe configs of topic '{name}'"),
            result.error_code,
            result.error_message.as_deref(),
        )
        .into());
    }
    let mut configs: Vec<String> = result
        .configs
        .iter()
        // Like Java's ConfigEntry.isDefault(): only DEFAULT_CONFIG counts as default.
        .filter(|c| c.config_source != CONFIG_SOURCE_DEFAULT)
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (Some(v), _) => v.to_string(),
                (None, true) => "<sensitive>".to_owned(),
                (None, false) => "null".to_owned(),
            };
            format!("{}={value}", c.name.as_str())
        })
        .collect();
    configs.sort();
    Ok(Some(configs))
}

/// kafka-topics.sh --describe layout: a topic line, then one line per partition.
fn format_topic_description(info: &TopicInfo, configs: Option<&[String]>) -> String {
    let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let replication_factor = info.partitions.first().map_or(0, |p| p.replicas.len());
    let mut out = format!("Topic: {}", info.name);
    if let Some(id) = &info.topic_id {
        out.push_str(&format!("\tTopicId: {id}"));
    }
    out.push_str(&format!(
        "\tPartitionCount: {}\tReplicationFactor: {replication_factor}",
        info.partitions.len()
    ));
    match configs {
        Some(c) => out.push_str(&format!("\tConfigs: {}\n", c.join(","))),
        None => out.push('\n'),
    }
    for p in &info.partitions {
        let leader = if p.leader < 0 {
            "none".to_owned()
        } else {
            p.leader.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
            info.name,
            p.index,
            join(&p.replicas),
            join(&p.isr)
        ));
        if p.error_code != 0 {
            out.push_str(&format!(
                "\tError: {}",
                skein_client::error_code_name(p.error_code)
            ));
        }
        out.push('\n');
    }
    out
}

/// Writes to stdout; `Ok(false)` if the reader went away (e.g. `| head`).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

// ---------------------------------------------------------------------------------------
// produce
// ---------------------------------------------------------------------------------------

/// The Java client's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java hashes the int length; keys are far below 2^31 bytes.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's key partitioner: `toPositive(murmur2(key)) % numPartitions`.
fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0);
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// Kafka's sequence increment: sequences wrap from i32::MAX to 0
/// (`DefaultRecordBatch.incrementSequence`).
fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// One line of stdin turned into a record, before it has a partition.
#[derive(Debug, Clone, PartialEq)]
struct LineRecord {
    key: Option<Bytes>,
    value: Bytes,
}

/// Splits a line (without its end-of-line) into key and value.
fn parse_line(
    line: &[u8],
    key_separator: Option<&str>,
    line_number: u64,
) -> anyhow::Result<LineRecord> {
    let Some(sep) = key_separator else {
        return Ok(LineRecord {
            key: None,
            value: Bytes::copy_from_slice(line),
        });
    };
    let sep = sep.as_bytes();
    let at = line
        .windows(sep.len())
        .position(|w| w == sep)
        .ok_or_else(|| {
            anyhow!(
                "no key separator '{}' on line {line_number}: '{}'",
                String::from_utf8_lossy(sep),
                String::from_utf8_lossy(line)
            )
        })?;
    Ok(LineRecord {
        key: Some(Bytes::copy_from_slice(&line[..at])),
        value: Bytes::copy_from_slice(&line[at + sep.len()..]),
    })
}

/// Strips "\n", "\r\n" (or a lone trailing "\r") like Java's `BufferedReader.readLine`.
fn strip_line_end(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The producer identity sent in every batch; (-1, -1) when not idempotent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProducerIdentity {
    id: i64,
    epoch: i16,
}

impl ProducerIdentity {
    const NONE: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

    fn is_idempotent(&self) -> bool {
        self.id >= 0
    }
}

/// Encodes records as one uncompressed RecordBatch v2 with base offset 0.
fn encode_batch(
    records: &[LineRecord],
    producer: ProducerIdentity,
    base_sequence: i32,
    timestamp_ms: i64,
) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i32::try_from(i).expect("pending records are bounded");
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.id,
                producer_epoch: producer.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder keeps records in one batch while offset - sequence stays the
                // same, and writes the first record's sequence as the base sequence. Without
                // idempotence the base sequence must be -1, hence i - 1.
                sequence: if producer.is_idempotent() {
                    base_sequence.wrapping_add(i)
                } else {
                    i - 1
                },
                timestamp: timestamp_ms,
                key: r.key.clone(),
                value: Some(r.value.clone()),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| anyhow!("cannot encode a record batch: {e:#}"))?;
    Ok(buf.freeze())
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Produce state: where records go and what has been acknowledged.
struct Producer {
    cluster: Cluster,
    topic: TopicInfo,
    acks: i16,
    identity: ProducerIdentity,
    fixed_partition: Option<i32>,
    /// Position in `topic.partitions` for keyless records; advances after each flush.
    sticky_position: usize,
    /// Next sequence number per partition (idempotent only).
    sequences: BTreeMap<i32, i32>,
    /// Records waiting for the next flush, by partition.
    pending: BTreeMap<i32, Vec<LineRecord>>,
    pending_bytes: usize,
    pending_records: usize,
    produced: u64,
}

impl Producer {
    fn partition_for(&self, record: &LineRecord) -> i32 {
        if let Some(p) = self.fixed_partition {
            return p;
        }
        let count = i32::try_from(self.topic.partitions.len()).unwrap_or(i32::MAX);
        match &record.key {
            Some(key) => partition_for_key(key, count),
            None => self.topic.partitions[self.sticky_position].index,
        }
    }

    fn add(&mut self, record: LineRecord) {
        let partition = self.partition_for(&record);
        self.pending_bytes += record.value.len() + record.key.as_ref().map_or(0, Bytes::len);
        self.pending_records += 1;
        self.pending.entry(partition).or_default().push(record);
    }

    fn should_flush(&self) -> bool {
        self.pending_bytes >= PRODUCE_PENDING_BYTES_MAX
            || self.pending_records >= PRODUCE_PENDING_RECORDS_MAX
    }

    /// Sends every pending record, retrying retriable errors; one batch per partition.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.pending_records = 0;
        let timestamp_ms = now_ms();
        // Batches are encoded once, so a retry resends the same sequence numbers and the
        // broker can drop duplicates.
        let mut batches: BTreeMap<i32, (Bytes, i32)> = BTreeMap::new();
        for (partition, records) in &pending {
            let base = *self.sequences.get(partition).unwrap_or(&0);
            let bytes = encode_batch(records, self.identity, base, timestamp_ms)?;
            let count = i32::try_from(records.len()).expect("pending records are bounded");
            batches.insert(*partition, (bytes, count));
        }
        let mut attempt = 1;
        while !batches.is_empty() {
            let failures = self.send_batches(&mut batches).await?;
            let Some(last_error) = failures else { break };
            if attempt >= ATTEMPTS_MAX {
                return Err(anyhow::Error::new(last_error).context(format!(
                    "giving up on producing to '{}' after {ATTEMPTS_MAX} attempts",
                    self.topic.name
                )));
            }
            attempt += 1;
            backoff().await;
            self.topic = self.cluster.topic(&self.topic.name.clone()).await?;
        }
        if self.fixed_partition.is_none() {
            self.sticky_position = (self.sticky_position + 1) % self.topic.partitions.len();
        }
        Ok(())
    }

    /// One round: a Produce request per leader. Acknowledged batches leave `batches`;
    /// returns the last retriable error if some remain, fails on anything else.
    async fn send_batches(
        &mut self,
        batches: &mut BTreeMap<i32, (Bytes, i32)>,
    ) -> anyhow::Result<Option<ClientError>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut retriable = None;
        for partition in batches.keys() {
            match self.topic.partitions.iter().find(|p| p.index == *partition) {
                Some(p) if p.leader >= 0 => by_leader.entry(p.leader).or_default().push(*partition),
                Some(_) => {
                    retriable = Some(ClientError::kafka(
                        format!("produce to {}-{partition}", self.topic.name),
                        5,
                        Some("no leader in metadata"),
                    ))
                }
                None => bail!(
                    "partition {partition} of '{}' does not exist",
                    self.topic.name
                ),
            }
        }
        for (leader, partitions) in by_leader {
            let request = self.produce_request(batches, &partitions);
            match self.send_produce(leader, request).await {
                Ok(None) => {
                    // acks=0: nothing to check.
                    for p in &partitions {
                        self.acknowledge(*p, batches);
                    }
                }
                Ok(Some(response)) => {
                    if let Some(e) = self.check_produce_response(&response, &partitions, batches)? {
                        retriable = Some(e);
                    }
                }
                Err(e) if is_retriable(&e) => {
                    self.cluster.forget(Some(leader), &e);
                    retriable = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(retriable)
    }

    fn produce_request(
        &self,
        batches: &BTreeMap<i32, (Bytes, i32)>,
        partitions: &[i32],
    ) -> ProduceRequest {
        let partition_data = partitions
            .iter()
            .map(|p| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(batches[p].0.clone()))
            })
            .collect();
        ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(SERVER_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic.name))
                .with_partition_data(partition_data)])
    }

    async fn send_produce(
        &mut self,
        leader: i32,
        request: ProduceRequest,
    ) -> Result<Option<kafka_protocol::messages::ProduceResponse>, ClientError> {
        let acks = self.acks;
        let client = self.cluster.node(leader).await?;
        let version = client
            .pick_version_between::<ProduceRequest>(PRODUCE_VERSION_MIN, PRODUCE_VERSION_MAX)?;
        if acks == 0 {
            client.send_without_response(request, version).await?;
            return Ok(None);
        }
        client.send(request, version).await.map(Some)
    }

    fn acknowledge(&mut self, partition: i32, batches: &mut BTreeMap<i32, (Bytes, i32)>) {
        if let Some((_, count)) = batches.remove(&partition) {
            self.produced += u64::try_from(count).unwrap_or(0);
            let next = self.sequences.entry(partition).or_insert(0);
            *next = increment_sequence(*next, count);
        }
    }

    fn check_produce_response(
        &mut self,
        response: &kafka_protocol::messages::ProduceResponse,
        partitions: &[i32],
        batches: &mut BTreeMap<i32, (Bytes, i32)>,
    ) -> anyhow::Result<Option<ClientError>> {
        let mut retriable = None;
        for partition in partitions {
            let result = response
                .responses
                .iter()
                .filter(|t| t.name.as_str() == self.topic.name)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == *partition)
                .ok_or_else(|| {
                    anyhow!(
                        "Produce response does not mention {}-{partition}",
                        self.topic.name
                    )
                })?;
            let code = result.error_code;
            // A retry of a batch the broker already has: it was written once, as intended.
            if code == 0 || code == DUPLICATE_SEQUENCE_NUMBER {
                self.acknowledge(*partition, batches);
                continue;
            }
            let mut message = result.error_message.as_deref().map(|m| m.to_string());
            if let Some(first) = result.record_errors.first() {
                let detail = format!(
                    "record {} of the batch: {}",
                    first.batch_index,
                    first.batch_index_error_message.as_deref().unwrap_or("")
                );
                message = Some(match message {
                    Some(m) => format!("{m}; {detail}"),
                    None => detail,
                });
            }
            let err = ClientError::kafka(
                format!("produce to {}-{partition}", self.topic.name),
                code,
                message.as_deref(),
            );
            // CORRUPT_MESSAGE is retriable in Kafka, but resending the same bytes cannot help.
            if error_code_is_retriable(code) && code != CORRUPT_MESSAGE {
                retriable = Some(err);
            } else {
                return Err(err.into());
            }
        }
        Ok(retriable)
    }
}

async fn init_producer_id(cluster: &mut Cluster) -> anyhow::Result<ProducerIdentity> {
    for attempt in 1..=ATTEMPTS_MAX {
        let client = cluster.bootstrap().await?;
        if !client.supports::<InitProducerIdRequest>() {
            bail!(
                "the broker does not support InitProducerId, which the idempotent producer \
                 needs; pass --idempotent false"
            );
        }
        let version = client.pick_version::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSION_MAX)?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
        let response = client.send(request, version).await?;
        let code = response.error_code;
        if code == 0 {
            return Ok(ProducerIdentity {
                id: response.producer_id.0,
                epoch: response.producer_epoch,
            });
        }
        let err = ClientError::kafka("InitProducerId", code, None);
        if !error_code_is_retriable(code) || attempt == ATTEMPTS_MAX {
            return Err(err.into());
        }
        backoff().await;
    }
    unreachable!("the last attempt returns")
}

/// Runs `skein produce` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_produce(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    // As the Java producer does when acks is set but idempotence is left at its default.
    let idempotent = args.idempotent && args.acks == -1;
    let mut cluster = Cluster::connect(bootstrap).await?;
    let topic = cluster.topic(&args.topic).await?;
    if topic.partitions.is_empty() {
        bail!("topic '{}' has no partitions", args.topic);
    }
    if let Some(p) = args.partition {
        if !topic.partitions.iter().any(|info| info.index == p) {
            bail!(
                "partition {p} does not exist: topic '{}' has {} partitions",
                args.topic,
                topic.partitions.len()
            );
        }
    }
    let identity = if idempotent {
        init_producer_id(&mut cluster).await?
    } else {
        ProducerIdentity::NONE
    };
    let sticky_position = usize::try_from(now_ms()).unwrap_or(0) % topic.partitions.len();
    let mut producer = Producer {
        cluster,
        topic,
        acks: args.acks,
        identity,
        fixed_partition: args.partition,
        sticky_position,
        sequences: BTreeMap::new(),
        pending: BTreeMap::new(),
        pending_bytes: 0,
        pending_records: 0,
        produced: 0,
    };
    read_and_produce(&mut producer, args.key_separator.as_deref()).await?;
    let acked = if args.acks == 0 {
        " (acks=0: not confirmed)"
    } else {
        ""
    };
    eprintln!(
        "{} records produced to '{}'{acked}",
        producer.produced, producer.topic.name
    );
    Ok(())
}

/// Lines of stdin in flight between the reading thread and the producer.
const STDIN_LINES_QUEUED_MAX: usize = 1024;

/// Reads stdin on a plain thread and hands lines over a bounded channel.
///
/// Not `tokio::io::stdin`: its blocking read cannot be cancelled, so after an error the
/// runtime's shutdown would hang until the user pressed enter. A plain thread simply dies
/// with the process.
fn spawn_stdin_reader() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(STDIN_LINES_QUEUED_MAX);
    std::thread::Builder::new()
        .name("skein-stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let item = match std::io::BufRead::read_until(&mut stdin, b'\n', &mut line) {
                    Ok(0) => return, // EOF: dropping `tx` tells the producer
                    Ok(_) => Ok(line),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return; // the producer stopped, or reading failed
                }
            }
        })
        .expect("spawning the stdin reader thread");
    rx
}

/// Reads stdin line by line, flushing on size, on EOF, and when input pauses.
async fn read_and_produce(
    producer: &mut Producer,
    key_separator: Option<&str>,
) -> anyhow::Result<()> {
    let mut lines = spawn_stdin_reader();
    let mut line_number: u64 = 0;
    let linger = Duration::from_millis(PRODUCE_LINGER_MS);
    loop {
        let next = if producer.pending.is_empty() {
            Some(lines.recv().await)
        } else {
            // Input paused with records pending: send them rather than hold them back.
            tokio::time::timeout(linger, lines.recv()).await.ok()
        };
        let line = match next {
            None => {
                producer.flush().await?;
                continue;
            }
            Some(None) => break, // EOF
            Some(Some(line)) => line.context("reading stdin")?,
        };
        line_number += 1;
        let record = parse_line(strip_line_end(&line), key_separator, line_number)?;
        producer.add(record);
        if producer.should_flush() {
            producer.flush().await?;
        }
    }
    producer.flush().await
}

// ---------------------------------------------------------------------------------------
// consume
// ---------------------------------------------------------------------------------------

/// A record read back from a fetch.
#[derive(Debug, Clone, PartialEq)]
struct FetchedRecord {
    offset: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Records at or after `fetch_offset` in a fetch response's record bytes, and the offset to
/// fetch next (`None` if no whole batch was present). A trailing partial batch (brokers may
/// cut the last one at the size limit) is ignored; control batches are skipped.
fn parse_fetched_records(
    mut data: Bytes,
    fetch_offset: i64,
) -> anyhow::Result<(Vec<FetchedRecord>, Option<i64>)> {
    let mut records = Vec::new();
    let mut next_offset = None;
    while data.len() >= 12 {
        let base_offset = i64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        let batch_length = usize::try_from(batch_length)
            .map_err(|_| anyhow!("record batch at offset {base_offset} has negative length"))?;
        if data.len() < 12 + batch_length {
            break; // partial batch at the end
        }
        let batch = data.split_to(12 + batch_length);
        if batch.len() < BATCH_HEADER_BYTES {
            bail!(
                "record batch at offset {base_offset} is too short ({} bytes)",
                batch.len()
            );
        }
        let magic = batch[16] as i8;
        if magic != 2 {
            bail!("record batch at offset {base_offset} has message format v{magic}; only v2 is supported");
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        let after = base_offset
            .checked_add(i64::from(last_offset_delta))
            .and_then(|o| o.checked_add(1))
            .ok_or_else(|| anyhow!("record batch at offset {base_offset} overflows offsets"))?;
        next_offset = Some(after);
        let control = attributes & (1 << 5) != 0;
        if control {
            continue;
        }
        for record in decode_batch(batch, record_count)? {
            if record.offset >= fetch_offset {
                records.push(FetchedRecord {
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                });
            }
        }
    }
    Ok((records, next_offset))
}

/// Decodes one whole batch (checks the CRC, decompresses), refusing record counts the data
/// cannot hold before the decoder allocates for them.
fn decode_batch(mut batch: Bytes, record_count: i32) -> anyhow::Result<Vec<Record>> {
    let record_count =
        usize::try_from(record_count).map_err(|_| anyhow!("negative record count"))?;
    let decompress = move |buf: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let take = |b: &mut Bytes| Ok(std::mem::take(b));
        let data = match compression {
            Compression::None => std::mem::take(buf),
            Compression::Gzip => <cmpr::Gzip as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Snappy => <cmpr::Snappy as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Lz4 => <cmpr::Lz4 as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Zstd => <cmpr::Zstd as Decompressor<Bytes>>::decompress(buf, take)?,
        };
        if record_count.saturating_mul(RECORD_BYTES_MIN) > data.len() {
            bail!(
                "batch claims {record_count} records in {} bytes",
                data.len()
            );
        }
        Ok(data)
    };
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress))
    }));
    match decoded {
        Ok(Ok(set)) => Ok(set.records),
        Ok(Err(e)) => Err(anyhow!("cannot decode a record batch: {e:#}")),
        Err(_) => Err(anyhow!(
            "cannot decode a record batch: the decoder panicked"
        )),
    }
}

/// Appends one record as a line: VALUE, or KEY<SEP>VALUE; absent key or value prints "null".
fn format_record(out: &mut Vec<u8>, record: &FetchedRecord, print_key: bool, separator: &str) {
    if print_key {
        out.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
        out.extend_from_slice(separator.as_bytes());
    }
    out.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
    out.push(b'\n');
}

/// Consume state: the next offset per partition and where each partition's leader is.
struct Consumer {
    cluster: Cluster,
    topic: TopicInfo,
    positions: BTreeMap<i32, i64>,
    partition_bytes: BTreeMap<i32, i32>,
    printed: u64,
    /// Fetch rounds so far: each round puts a different partition first in its requests (a
    /// broker fills a response in request order, KIP-74).
    round: usize,
}

/// Errors that mean "metadata is stale or the leader is moving": refresh and retry.
fn is_leadership_error(code: i16) -> bool {
    matches!(code, 5 | 6 | 9 | 56 | 74 | 75)
        || (code != 1 && code != 3 && error_code_is_retriable(code))
}

/// Failures worth a metadata refresh and another try: lost connections, unknown brokers,
/// leadership changes.
fn is_retriable(e: &ClientError) -> bool {
    e.breaks_connection()
        || e.kafka_code()
            .is_some_and(|c| c == BROKER_NOT_AVAILABLE || is_leadership_error(c))
}

impl Consumer {
    fn leader_of(&self, partition: i32) -> Option<i32> {
        self.topic.leader_of(partition)
    }

    fn partitions_by_leader(&self) -> (BTreeMap<i32, Vec<i32>>, bool) {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut leaderless = false;
        for partition in self.positions.keys() {
            match self.leader_of(*partition) {
                Some(l) => by_leader.entry(l).or_default().push(*partition),
                None => leaderless = true,
            }
        }
        (by_leader, leaderless)
    }

    /// Sets each partition's start from ListOffsets (`timestamp` -2 earliest, -1 latest).
    async fn list_offsets(&mut self, timestamp: i64) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let found = list_offsets(&mut self.cluster, &mut self.topic, &partitions, timestamp)
            .await
            .context("looking up start offsets")?;
        self.positions.extend(found);
        Ok(())
    }

    /// One Fetch to one leader; appends printable lines to `out`. Returns the number of
    /// records added, or a retriable error for the caller to refresh metadata on.
    async fn fetch_from(
        &mut self,
        leader: i32,
        partitions: &[i32],
        max_wait_ms: i32,
        out: &mut Vec<u8>,
        args: &ConsumeArgs,
    ) -> anyhow::Result<Result<u64, ClientError>> {
        let name = self.topic.name.clone();
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_RESPONSE_BYTES_MAX)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&name))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(self.positions[p])
                                .with_partition_max_bytes(self.partition_bytes[p])
                        })
                        .collect(),
                )]);
        let client = match self.cluster.node(leader).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let version =
            client.pick_version_between::<FetchRequest>(FETCH_VERSION_MIN, FETCH_VERSION_MAX)?;
        let response = match client.send(request, version).await {
            Ok(r) => r,
            Err(e) if e.breaks_connection() => {
                self.cluster.forget(Some(leader), &e);
                return Ok(Err(e));
            }
            Err(e) => return Err(e.into()),
        };
        if response.error_code != 0 {
            return Err(ClientError::kafka(
                format!("fetch from {name}"),
                response.error_code,
                None,
            )
            .into());
        }
        let mut added = 0;
        let mut retriable = None;
        for data in response
            .responses
            .iter()
            .filter(|t| t.topic.as_str() == name)
            .flat_map(|t| t.partitions.iter())
        {
            let p = data.partition_index;
            let Some(position) = self.positions.get(&p).copied() else {
                continue;
            };
            if data.error_code != 0 {
                let err = ClientError::kafka(
                    format!("fetch {name}-{p} at offset {position}"),
                    data.error_code,
                    None,
                );
                if is_leadership_error(data.error_code) {
                    retriable = Some(err);
                    continue;
                }
                let hint = if data.error_code == 1 {
                    format!(
                        " (partition {p} holds offsets {}..{})",
                        data.log_start_offset, data.high_watermark
                    )
                } else {
                    String::new()
                };
                return Err(
                    anyhow::Error::new(err).context(format!("consuming '{name}' failed{hint}"))
                );
            }
            let bytes = data.records.clone().unwrap_or_default();
            let had_bytes = !bytes.is_empty();
            let (records, next) = parse_fetched_records(bytes, position)
                .with_context(|| format!("reading records of {name}-{p} at offset {position}"))?;
            match next {
                Some(next) => {
                    self.positions.insert(p, next.max(position));
                }
                None if had_bytes => {
                    // Only part of one batch fit: ask for more bytes next time.
                    let bytes = self.partition_bytes[&p];
                    if bytes >= FETCH_PARTITION_BYTES_MAX {
                        bail!("a record batch in {name}-{p} at offset {position} exceeds {FETCH_PARTITION_BYTES_MAX} bytes");
                    }
                    self.partition_bytes
                        .insert(p, bytes.saturating_mul(2).min(FETCH_PARTITION_BYTES_MAX));
                }
                None => {}
            }
            for record in &records {
                if args.max_messages.is_some_and(|max| self.printed >= max) {
                    break;
                }
                format_record(out, record, args.print_key, &args.key_separator);
                self.printed += 1;
                added += 1;
            }
        }
        Ok(match retriable {
            Some(e) if added == 0 => Err(e),
            _ => Ok(added),
        })
    }
}

/// Offsets of `partitions` of `topic` from ListOffsets at their leaders: `timestamp` -2 for
/// the log start, -1 for the log end, else the first offset whose record timestamp is at or
/// after it (-1 where no record is that new). Leadership errors refresh `topic` and retry.
async fn list_offsets(
    cluster: &mut Cluster,
    topic: &mut TopicInfo,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut offsets = BTreeMap::new();
    let mut attempt = 1;
    let mut unresolved: Vec<i32> = partitions.to_vec();
    while !unresolved.is_empty() {
        let mut failure = None;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &unresolved {
            match topic.leader_of(*p) {
                Some(l) => by_leader.entry(l).or_default().push(*p),
                None => {
                    failure = Some(ClientError::kafka(
                        format!("partition {}-{p}", topic.name),
                        5,
                        None,
                    ))
                }
            }
        }
        for (leader, partitions) in by_leader {
            match list_offsets_at(cluster, &topic.name, leader, &partitions, timestamp).await {
                Ok(found) => {
                    for (p, offset) in found {
                        offsets.insert(p, offset);
                        unresolved.retain(|u| *u != p);
                    }
                }
                Err(e) if is_retriable(&e) => {
                    cluster.forget(Some(leader), &e);
                    failure = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if failure.is_none() && !unresolved.is_empty() {
            // A leader answered without some partitions asked for: ask again, boundedly.
            failure = Some(ClientError::kafka(
                format!("list offsets of {}", topic.name),
                -1,
                Some("the response left partitions out"),
            ));
        }
        if let Some(e) = failure {
            if attempt >= ATTEMPTS_MAX {
                return Err(e.into());
            }
            attempt += 1;
            backoff().await;
            *topic = cluster.topic(&topic.name.clone()).await?;
        }
    }
    Ok(offsets)
}

/// One ListOffsets to one leader; partitions that failed retriably are left out.
async fn list_offsets_at(
    cluster: &mut Cluster,
    name: &str,
    leader: i32,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>, ClientError> {
    let client = cluster.node(leader).await?;
    let version = client.pick_version_between::<ListOffsetsRequest>(
        LIST_OFFSETS_VERSION_MIN,
        LIST_OFFSETS_VERSION_MAX,
    )?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = client.send(request, version).await?;
    let mut found = Vec::new();
    let mut retriable = None;
    for p in response
        .topics
        .iter()
        .filter(|t| t.name.as_str() == name)
        .flat_map(|t| t.partitions.iter())
    {
        if p.error_code == 0 {
            found.push((p.partition_index, p.offset));
            continue;
        }
        let err = ClientError::kafka(
            format!("list offsets of {name}-{}", p.partition_index),
            p.error_code,
            None,
        );
        if is_leadership_error(p.error_code) {
            retriable = Some(err);
        } else {
            return Err(err);
        }
    }
    match (found.is_empty(), retriable) {
        (true, Some(e)) => Err(e),
        _ => Ok(found),
    }
}

/// Runs `skein consume` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.offset.is_some() && args.partition.is_none() {
        bail!("--offset needs --partition");
    }
    let mut cluster = Cluster::connect(bootstrap).await?;
    let topic = cluster.topic(&args.topic).await?;
    let selected: Vec<i32> = match args.partition {
        Some(p) if topic.partitions.iter().any(|info| info.index == p) => vec![p],
        Some(p) => bail!(
            "partition {p} does not exist: topic '{}' has {} partitions",
            args.topic,
            topic.partitions.len()
        ),
        None => topic.partitions.iter().map(|p| p.index).collect(),
    };
    let mut consumer = Consumer {
        cluster,
        topic,
        positions: selected.iter().map(|p| (*p, 0)).collect(),
        partition_bytes: selected
            .iter()
            .map(|p| (*p, FETCH_PARTITION_BYTES_DEFAULT))
            .collect(),
        printed: 0,
        round: 0,
    };
    match args.offset {
        Some(offset) => {
            consumer.positions.insert(selected[0], offset);
        }
        None if args.from_beginning => consumer.list_offsets(OFFSET_EARLIEST).await?,
        None => consumer.list_offsets(OFFSET_LATEST).await?,
    }
    consume_loop(&mut consumer, &args).await
}

async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs) -> anyhow::Result<()> {
    let idle = Duration::from_millis(args.idle_timeout_ms);
    let mut last_progress = Instant::now();
    let mut failed_rounds = 0;
    loop {
        if args.max_messages.is_some_and(|max| consumer.printed >= max) {
            return Ok(());
        }
        let idle_left = idle.saturating_sub(last_progress.elapsed());
        if idle_left.is_zero() {
            return Ok(());
        }
        let max_wait_ms = i32::try_from(idle_left.as_millis().min(u128::from(FETCH_MAX_WAIT_MS)))
            .expect("bounded by FETCH_MAX_WAIT_MS");
        let (by_leader, leaderless) = consumer.partitions_by_leader();
        let mut failure =
            leaderless.then(|| ClientError::kafka("fetch", 5, Some("a partition has no leader")));
        let mut out = Vec::new();
        let mut added = 0;
        consumer.round = consumer.round.wrapping_add(1);
        for (leader, mut partitions) in by_leader {
            // Busy partitions listed first cannot take every response, and a batch over the
            // partition limit arrives once its partition comes first.
            let n = partitions.len();
            partitions.rotate_left(consumer.round % n);
            match consumer
                .fetch_from(leader, &partitions, max_wait_ms, &mut out, args)
                .await?
            {
                Ok(n) => added += n,
                Err(e) => failure = Some(e),
            }
        }
        if !out.is_empty() && !write_stdout(&out)? {
            return Ok(()); // stdout closed: nobody is reading any more
        }
        if added > 0 {
            last_progress = Instant::now();
        }
        match failure {
            None => failed_rounds = 0,
            Some(e) => {
                failed_rounds += 1;
                if failed_rounds >= ATTEMPTS_MAX {
                    return Err(anyhow::Error::new(e).context(format!(
                        "consuming '{}' failed after {ATTEMPTS_MAX} attempts",
                        consumer.topic.name
                    )));
                }
                backoff().await;
                consumer.topic = consumer.cluster.topic(&consumer.topic.name.clone()).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: TestCmd,
    }

    #[derive(Debug, clap::Subcommand)]
    enum TestCmd {
        #[command(subcommand)]
        Topics(TopicsCmd),
        Produce(ProduceArgs),
        Consume(ConsumeArgs),
    }

    fn parse(args: &[&str]) -> Result<TestCmd, clap::Error> {
        TestCli::try_parse_from(std::iter::once("skein").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // org.apache.kafka.common.utils.UtilsTest.testMurmur2
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        // kafkajs's Java-compatible partitioner data, generated with the Java client.
        assert_eq!(murmur2(b"0"), 971_027_396);
        assert_eq!(murmur2(b"1"), -1_993_445_489);
        assert_eq!(murmur2(b"128"), -326_012_175);
        assert_eq!(murmur2(b"16384"), -325_739_742);
        assert_eq!(murmur2(b"279936"), 1_462_227_128);
        assert_eq!(murmur2(b"10000000"), -1_830_336_757);
        assert_eq!(murmur2(b"100:48069"), 1_009_543_857);
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn key_partitioner_matches_the_java_client() {
        // toPositive(murmur2(key)) % numPartitions
        assert_eq!(
            partition_for_key(b"21", 4),
            (-973_932_308i32 & 0x7fff_ffff) % 4
        );
        assert_eq!(
            partition_for_key(b"foobar", 3),
            (-790_332_482i32 & 0x7fff_ffff) % 3
        );
        assert_eq!(partition_for_key(b"0", 10), 971_027_396 % 10);
        assert_eq!(
            partition_for_key(b"1", 6),
            (-1_993_445_489i32 & 0x7fff_ffff) % 6
        );
        assert_eq!(partition_for_key(b"", 7), 275_646_681 % 7);
        for key in [&b"a"[..], b"key-1", b"\xff\xfe"] {
            assert_eq!(partition_for_key(key, 1), 0);
            assert!((0..13).contains(&partition_for_key(key, 13)));
        }
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 2, 5), 2);
    }

    #[test]
    fn lines_split_into_key_and_value() {
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a\n"), b"a");
        assert_eq!(strip_line_end(b"a"), b"a");
        assert_eq!(strip_line_end(b"\n"), b"");
        let r = parse_line(b"k1::v::1", Some("::"), 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&r.value[..], b"v::1");
        let r = parse_line(b"plain", None, 1).unwrap();
        assert_eq!((r.key, &r.value[..]), (None, &b"plain"[..]));
        let err = parse_line(b"nokey", Some("\t"), 7).unwrap_err().to_string();
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn cli_defaults_and_validation() {
        let TestCmd::Topics(TopicsCmd::Create {
            name,
            partitions,
            config,
            replication_factor,
        }) = parse(&[
            "topics",
            "create",
            "t",
            "--config",
            "retention.ms=5",
            "--config",
            "a=b=c",
        ])
        .unwrap()
        else {
            panic!("not create")
        };
        assert_eq!((name.as_str(), partitions, replication_factor), ("t", 1, 1));
        assert_eq!(
            config,
            vec![
                ("retention.ms".into(), "5".into()),
                ("a".into(), "b=c".into())
            ]
        );
        assert!(parse(&["topics", "create", "t", "--config", "novalue"]).is_err());
        assert!(parse(&["topics", "create", "t", "--partitions", "0"]).is_err());

        let TestCmd::Produce(p) = parse(&["produce", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.acks, p.idempotent, p.partition, p.key_separator),
            (-1, true, None, None)
        );
        let TestCmd::Produce(p) =
            parse(&["produce", "t", "--acks", "1", "--idempotent", "false"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.acks, p.idempotent), (1, false));
        let TestCmd::Produce(p) =
            parse(&["produce", "t", "--acks", "all", "--idempotent"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.acks, p.idempotent), (-1, true));
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());

        let TestCmd::Consume(c) = parse(&["consume", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.idle_timeout_ms, 5000);
        assert_eq!(c.key_separator, "\t");
        assert!(!c.from_beginning && !c.print_key);
        assert!(
            parse(&["consume", "t", "--offset", "3"]).is_err(),
            "--offset needs --partition"
        );
        assert!(parse(&["consume", "t", "--partition", "0", "--offset", "3"]).is_ok());
        assert!(parse(&[
            "consume",
            "t",
            "--partition",
            "0",
            "--offset",
            "3",
            "--from-beginning"
        ])
        .is_err());
    }

    fn line(key: Option<&str>, value: &str) -> LineRecord {
        LineRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn batches_encode_as_one_batch_and_read_back() {
        let records = vec![line(None, "a"), line(Some("k"), "b"), line(None, "")];
        for (identity, base, expect_base) in [
            (ProducerIdentity::NONE, 0, -1),
            (ProducerIdentity { id: 7, epoch: 2 }, 40, 40),
        ] {
            let bytes = encode_batch(&records, identity, base, 1_700_000_000_000).unwrap();
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info.len(), 1, "one batch");
            assert_eq!(info[0].record_count, 3);
            assert_eq!(info[0].base_sequence, expect_base);
            assert_eq!(info[0].producer_id, identity.id);
            assert_eq!(info[0].producer_epoch, identity.epoch);
            let (got, next) = parse_fetched_records(bytes, 0).unwrap();
            assert_eq!(next, Some(3));
            let values: Vec<&[u8]> = got.iter().map(|r| r.value.as_deref().unwrap()).collect();
            assert_eq!(values, vec![&b"a"[..], b"b", b""]);
            assert_eq!(got[1].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                got.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
        }
    }

    /// Rewrites a batch's base offset, as a broker does on append.
    fn at_offset(batch: &Bytes, base_offset: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn fetched_records_skip_earlier_offsets_and_partial_batches() {
        let one = encode_batch(
            &[line(None, "x"), line(None, "y")],
            ProducerIdentity::NONE,
            0,
            1,
        )
        .unwrap();
        let mut data = BytesMut::new();
        data.extend_from_slice(&at_offset(&one, 10));
        data.extend_from_slice(&at_offset(&one, 12));
        let whole = data.clone().freeze();
        // A partial third batch, as a broker may send at its size limit.
        data.extend_from_slice(&at_offset(&one, 14)[..20]);
        let (got, next) = parse_fetched_records(data.freeze(), 11).unwrap();
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        assert_eq!(next, Some(14));
        // Fewer bytes than one batch: nothing, and no next offset.
        let (got, next) = parse_fetched_records(whole.slice(..30), 10).unwrap();
        assert!(got.is_empty());
        assert_eq!(next, None);
        assert_eq!(
            parse_fetched_records(Bytes::new(), 0).unwrap(),
            (vec![], None)
        );
    }

    #[test]
    fn fetched_records_reject_corruption() {
        let one = encode_batch(&[line(None, "x")], ProducerIdentity::NONE, 0, 1).unwrap();
        let mut bad_crc = BytesMut::from(&one[..]);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(parse_fetched_records(bad_crc.freeze(), 0).is_err());
        let mut old_magic = BytesMut::from(&one[..]);
        old_magic[16] = 1;
        let err = parse_fetched_records(old_magic.freeze(), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("message format v1"), "{err}");
        // A record count no batch of this size can hold is refused before decoding.
        let mut huge_count = BytesMut::from(&one[..]);
        huge_count[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_fetched_records(huge_count.freeze(), 0).is_err());
        let mut negative_length = BytesMut::from(&one[..]);
        negative_length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(parse_fetched_records(negative_length.freeze(), 0).is_err());
    }

    #[test]
    fn control_batches_are_skipped() {
        let one = encode_batch(&[line(None, "marker")], ProducerIdentity::NONE, 0, 1).unwrap();
        let mut control = BytesMut::from(&one[..]);
        // Set the control bit in the attributes and fix the CRC (over attributes..end).
        control[22] |= 1 << 5;
        let crc = crc32c_of(&control[21..]);
        control[17..21].copy_from_slice(&crc.to_be_bytes());
        let (got, next) = parse_fetched_records(control.freeze(), 0).unwrap();
        assert!(got.is_empty());
        assert_eq!(next, Some(1));
    }

    /// CRC-32C (Castagnoli), bitwise; only for building test batches.
    fn crc32c_of(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn records_print_as_lines() {
        let mut out = Vec::new();
        let r = FetchedRecord {
            offset: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
        };
        format_record(&mut out, &r, false, "\t");
        format_record(&mut out, &r, true, "\t");
        format_record(
            &mut out,
            &FetchedRecord {
                offset: 1,
                key: None,
                value: None,
            },
            true,
            ":",
        );
        assert_eq!(out, b"v\nk\tv\nnull:null\n");
    }

    #[test]
    fn describe_output_looks_like_kafka_topics() {
        let info = TopicInfo {
            name: "t".into(),
            topic_id: None,
            partitions: vec![
                PartitionInfo {
                    index: 0,
                    leader: 1,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    error_code: 0,
                },
                PartitionInfo {
                    index: 1,
                    leader: -1,
                    replicas: vec![2, 1],
                    isr: vec![],
                    error_code: 5,
                },
            ],
        };
        let configs = vec!["retention.ms=5".to_owned()];
        assert_eq!(
            format_topic_description(&info, Some(&configs)),
            "Topic: t\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: retention.ms=5\n\
             \tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: t\tPartition: 1\tLeader: none\tReplicas: 2,1\tIsr: \tError: LEADER_NOT_AVAILABLE\n"
        );
    }

    #[test]
    fn metadata_requests_fit_every_version() {
        let names = ["t".to_owned()];
        for version in METADATA_VERSION_MIN..=METADATA_VERSION_MAX {
            for topics in [None, Some(&names[..])] {
                let req = metadata_request(version, topics);
                skein_client::encode_request_frame(&req, version, 0, None).unwrap();
            }
        }
    }
}
