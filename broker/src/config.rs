//! Broker settings: command-line flags, each also a key of an optional TOML file (`--config`).
//!
//! Precedence: a flag given on the command line, then the file, then the built-in default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;
use skein_core::config::{LogConfig, TopicConfig};

/// `skein broker` flags. Every flag is optional; keys in the TOML file use the same names with
/// underscores (`data_dir = "d1"`).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerArgs {
    /// TOML file with any of these settings (flags win over the file).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to accept Kafka clients on [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Directory holding all data [default: ./skein-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// This broker's node id [default: 1].
    #[arg(long, value_name = "N")]
    pub node_id: Option<i32>,
    /// Log filter, e.g. info, debug, skein_broker=trace [default: info; RUST_LOG also works].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Create topics on first Metadata or Produce (auto.create.topics.enable) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic (num.partitions) [default: 1].
    #[arg(long, value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Interval flush policy: fsync after this many messages (flush.messages). Setting this or
    /// --flush-ms means acks=all no longer waits for its own fsync [default: unset].
    #[arg(long, value_name = "N")]
    pub flush_messages: Option<u64>,
    /// Interval flush policy: fsync at least this often (flush.ms) [default: unset].
    #[arg(long, value_name = "MS")]
    pub flush_ms: Option<u64>,
    /// Bytes behind each partition's log end kept in the page cache; older data is written
    /// back early and dropped from it (0: leave the page cache to the kernel) [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub page_cache_window_bytes: Option<u64>,
    /// Default segment.bytes of topics (log.segment.bytes) [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// Default segment.ms of topics (log.roll.ms) [default: 604800000].
    #[arg(long, value_name = "MS")]
    pub log_roll_ms: Option<u64>,
    /// Default retention.ms of topics (log.retention.ms) [default: 604800000].
    #[arg(long, value_name = "MS")]
    pub log_retention_ms: Option<i64>,
    /// Default retention.bytes of topics (log.retention.bytes) [default: -1].
    #[arg(long, value_name = "BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// Default message.timestamp.before.max.ms of topics: refuse CreateTime records older than
    /// this (log.message.timestamp.before.max.ms) [default: 9223372036854775807].
    #[arg(long, value_name = "MS")]
    pub log_message_timestamp_before_max_ms: Option<i64>,
    /// Default message.timestamp.after.max.ms of topics: refuse CreateTime records further
    /// ahead than this (log.message.timestamp.after.max.ms) [default: 3600000].
    #[arg(long, value_name = "MS")]
    pub log_message_timestamp_after_max_ms: Option<i64>,
    /// How often retention runs (log.retention.check.interval.ms) [default: 30000].
    #[arg(long, value_name = "MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// Default max.message.bytes of topics (message.max.bytes) [default: 1048588].
    #[arg(long, value_name = "BYTES")]
    pub message_max_bytes: Option<u32>,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 104857600].
    #[arg(long, value_name = "BYTES")]
    pub socket_request_max_bytes: Option<u32>,
    /// Most client connections at once (max.connections) [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Requests in flight per connection before the broker stops reading it [default: 16].
    #[arg(long, value_name = "N")]
    pub max_inflight_requests: Option<usize>,
    /// Bytes of requests in flight across all connections (queued.max.request.bytes) [default: 536870912].
    #[arg(long, value_name = "BYTES")]
    pub queued_max_request_bytes: Option<u64>,
    /// Forget idle idempotent producers after this long (producer.id.expiration.ms) [default: 86400000].
    #[arg(long, value_name = "MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// The metadata quorum's voters, `id@host:port` of each one's controller listener, comma
    /// separated; this broker must be one of them [default: none: a one-voter quorum of itself].
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    pub voters: Option<String>,
    /// Address to accept other voters on [default: this node's entry in --voters].
    #[arg(long, value_name = "HOST:PORT")]
    pub controller_listen: Option<String>,
    /// The controller fences a broker it has not heard from for this long
    /// (broker.session.timeout.ms) [default: 9000].
    #[arg(long, value_name = "MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often a broker heartbeats the controller (broker.heartbeat.interval.ms) [default: 2000].
    #[arg(long, value_name = "MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// Snapshot the metadata (and drop the quorum log before it) every this many records
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub metadata_snapshot_entries: Option<u64>,
    /// This broker's rack (broker.rack), carried in metadata [default: none].
    #[arg(long, value_name = "RACK")]
    pub rack: Option<String>,
    /// Replication factor of auto-created topics and of CreateTopics asking for the default
    /// (default.replication.factor) [default: 1].
    #[arg(long, value_name = "N")]
    pub default_replication_factor: Option<i16>,
    /// min.insync.replicas of topics that do not set it: replicas an acks=all write needs
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub min_insync_replicas: Option<u32>,
    /// unclean.leader.election.enable of topics that do not set it [default: false].
    #[arg(long, value_name = "BOOL")]
    pub unclean_leader_election_enable: Option<bool>,
    /// A follower not caught up for this long leaves the ISR (replica.lag.time.max.ms)
    /// [default: 30000].
    #[arg(long, value_name = "MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// How often the controller moves leadership back to preferred replicas
    /// (leader.imbalance.check.interval); 0 turns it off [default: 10000].
    #[arg(long, value_name = "MS")]
    pub leader_imbalance_check_interval_ms: Option<u64>,
    /// Partitions of the __consumer_offsets topic, fixed when it is first created
    /// (offsets.topic.num.partitions) [default: 50].
    #[arg(long, value_name = "N")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// Replication factor of __consumer_offsets, capped at the live brokers when it is created
    /// (offsets.topic.replication.factor) [default: 3].
    #[arg(long, value_name = "N")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// Segment size of `__consumer_offsets` when it is created (offsets.topic.segment.bytes)
    /// [default: 104857600].
    #[arg(long, value_name = "BYTES")]
    pub offsets_topic_segment_bytes: Option<u64>,
    /// Committed offsets of a group without members are deleted after this long
    /// (offsets.retention.minutes) [default: 10080].
    #[arg(long, value_name = "MIN")]
    pub offsets_retention_minutes: Option<u64>,
    /// How long the first member of an empty group waits for others before the first
    /// rebalance completes (group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a member may ask for (group.min.session.timeout.ms)
    /// [default: 6000].
    #[arg(long, value_name = "MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a member may ask for (group.max.session.timeout.ms)
    /// [default: 1800000].
    #[arg(long, value_name = "MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Most members one group may have (group.max.size) [default: no limit].
    #[arg(long, value_name = "N")]
    pub group_max_size: Option<usize>,
    /// A KIP-848 group member silent this long is removed
    /// (group.consumer.session.timeout.ms) [default: 45000].
    #[arg(long, value_name = "MS")]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// How often KIP-848 group members heartbeat (group.consumer.heartbeat.interval.ms)
    /// [default: 5000].
    #[arg(long, value_name = "MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    /// Run the log cleaner, which compacts topics with cleanup.policy=compact
    /// (log.cleaner.enable) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub log_cleaner_enable: Option<bool>,
    /// Cleaner threads (log.cleaner.threads) [default: 1].
    #[arg(long, value_name = "N")]
    pub log_cleaner_threads: Option<usize>,
    /// Memory for the key maps of all cleaner threads together
    /// (log.cleaner.dedupe.buffer.size) [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    /// Bytes a cleaner reads at a time (log.cleaner.io.buffer.size) [default: 524288].
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_io_buffer_size: Option<u64>,
    /// Most bytes per second all cleaners read and write together
    /// (log.cleaner.io.max.bytes.per.second) [default: no limit].
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_io_max_bytes_per_second: Option<f64>,
    /// How long a cleaner with nothing to clean waits before it looks again
    /// (log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, value_name = "MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
}

/// The log cleaner's settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone)]
pub struct CleanerSettings {
    /// log.cleaner.enable.
    pub enable: bool,
    /// log.cleaner.threads.
    pub threads: usize,
    /// What one clean may use (the dedupe buffer split among the threads) and reads at a time.
    pub clean: skein_core::cleaner::CleanerConfig,
    /// log.cleaner.io.max.bytes.per.second (None: no limit).
    pub io_max_bytes_per_second: Option<f64>,
    /// log.cleaner.backoff.ms.
    pub backoff_ms: u64,
}

/// Settings after merging flags, file and defaults, and checking them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Advertised host.
    pub advertise_host: String,
    /// Advertised port.
    pub advertise_port: i32,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Node id.
    pub node_id: i32,
    /// Log filter.
    pub log_level: String,
    /// auto.create.topics.enable.
    pub auto_create_topics: bool,
    /// num.partitions.
    pub num_partitions: i32,
    /// flush.messages (interval policy).
    pub flush_messages: Option<u64>,
    /// flush.ms (interval policy).
    pub flush_ms: Option<u64>,
    /// Bytes behind each partition's log end kept in the page cache (0: the kernel decides).
    pub page_cache_window_bytes: u64,
    /// Topic defaults.
    pub log_defaults: LogConfig,
    /// Retention check interval.
    pub retention_check_ms: u64,
    /// socket.request.max.bytes.
    pub socket_request_max_bytes: u32,
    /// max.connections.
    pub max_connections: usize,
    /// In-flight requests per connection.
    pub max_inflight_requests: usize,
    /// queued.max.request.bytes.
    pub queued_max_request_bytes: u64,
    /// producer.id.expiration.ms.
    pub producer_id_expiration_ms: u64,
    /// Metadata quorum voters: node id to controller address (empty: a one-voter quorum).
    pub voters: BTreeMap<i32, String>,
    /// Controller listener (only with other voters).
    pub controller_listen: Option<SocketAddr>,
    /// broker.session.timeout.ms.
    pub broker_session_timeout_ms: u64,
    /// broker.heartbeat.interval.ms.
    pub broker_heartbeat_interval_ms: u64,
    /// broker.rack.
    pub rack: Option<String>,
    /// Metadata snapshot interval in records.
    pub metadata_snapshot_entries: u64,
    /// default.replication.factor.
    pub default_replication_factor: i16,
    /// replica.lag.time.max.ms.
    pub replica_lag_time_max_ms: u64,
    /// leader.imbalance.check.interval in ms (0: off).
    pub leader_imbalance_check_ms: u64,
    /// offsets.topic.num.partitions.
    pub offsets_topic_partitions: i32,
    /// offsets.topic.replication.factor.
    pub offsets_topic_replication_factor: i16,
    /// offsets.topic.segment.bytes.
    pub offsets_topic_segment_bytes: u64,
    /// offsets.retention.minutes, in ms.
    pub offsets_retention_ms: i64,
    /// Group coordinator settings.
    pub group: skein_core::group::GroupConfig,
    /// KIP-848 consumer group settings.
    pub consumer_group: skein_core::consumer_group::CgConfig,
    /// The log cleaner.
    pub cleaner: CleanerSettings,
}

impl Settings {
    /// True under Kafka's interval flush policy (acks=all does not wait for its own fsync).
    pub fn interval_flush(&self) -> bool {
        self.flush_messages.is_some() || self.flush_ms.is_some()
    }
}

macro_rules! merge {
    ($cli:expr, $file:expr, $($f:ident),*) => {
        $( if $cli.$f.is_none() { $cli.$f = $file.$f.clone(); } )*
    };
}

impl BrokerArgs {
    /// The log cleaner's settings, checked.
    fn cleaner_settings(&self) -> anyhow::Result<CleanerSettings> {
        let d = skein_core::cleaner::CleanerConfig::default();
        let threads = self.log_cleaner_threads.unwrap_or(1);
        if threads == 0 {
            bail!("--log-cleaner-threads must be at least 1");
        }
        let dedupe = self
            .log_cleaner_dedupe_buffer_size
            .unwrap_or(d.dedupe_buffer_bytes);
        // Kafka's floor: each thread's map must hold a useful number of keys.
        if dedupe / (threads as u64) < 1 << 20 {
            bail!(
                "--log-cleaner-dedupe-buffer-size ({dedupe}) must give each of the {threads} \
                 cleaner threads at least 1 MiB"
            );
        }
        let io = self
            .log_cleaner_io_buffer_size
            .unwrap_or(d.read_buffer_bytes);
        if io < 4096 {
            bail!("--log-cleaner-io-buffer-size ({io}) must be at least 4096");
        }
        let rate = self.log_cleaner_io_max_bytes_per_second;
        if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            bail!("--log-cleaner-io-max-bytes-per-second must be above 0");
        }
        Ok(CleanerSettings {
            enable: self.log_cleaner_enable.unwrap_or(true),
            threads,
            clean: skein_core::cleaner::CleanerConfig {
                dedupe_buffer_bytes: dedupe / threads as u64,
                read_buffer_bytes: io,
                write_buffer_bytes: io,
            },
            io_max_bytes_per_second: rate.filter(|r| r.is_finite()),
            backoff_ms: self.log_cleaner_backoff_ms.unwrap_or(15_000).max(1),
        })
    }

    /// Merges the TOML file (if any) under the flags and checks the result.
    pub fn resolve(mut self) -> anyhow::Result<Settings> {
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file: BrokerArgs = toml::from_str(&text)
                .with_context(|| format!("parsing config file {}", path.display()))?;
            merge!(
                self,
                file,
                listen,
                advertise,
                data_dir,
                node_id,
                log_level,
                auto_create_topics,
                num_partitions,
                flush_messages,
                flush_ms,
                page_cache_window_bytes,
                log_segment_bytes,
                log_roll_ms,
                log_retention_ms,
                log_retention_bytes,
                log_message_timestamp_before_max_ms,
                log_message_timestamp_after_max_ms,
                log_retention_check_interval_ms,
                message_max_bytes,
                socket_request_max_bytes,
                max_connections,
                max_inflight_requests,
                queued_max_request_bytes,
                producer_id_expiration_ms,
                voters,
                controller_listen,
                broker_session_timeout_ms,
                broker_heartbeat_interval_ms,
                rack,
                metadata_snapshot_entries,
                default_replication_factor,
                min_insync_replicas,
                unclean_leader_election_enable,
                replica_lag_time_max_ms,
                leader_imbalance_check_interval_ms,
                offsets_topic_num_partitions,
                offsets_topic_replication_factor,
                offsets_topic_segment_bytes,
                offsets_retention_minutes,
                group_initial_rebalance_delay_ms,
                group_min_session_timeout_ms,
                group_max_session_timeout_ms,
                group_max_size,
                group_consumer_session_timeout_ms,
                group_consumer_heartbeat_interval_ms,
                log_cleaner_enable,
                log_cleaner_threads,
                log_cleaner_dedupe_buffer_size,
                log_cleaner_io_buffer_size,
                log_cleaner_io_max_bytes_per_second,
                log_cleaner_backoff_ms
            );
        }
        let cleaner = self.cleaner_settings()?;
        let listen_s = self.listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = listen_s
            .parse()
            .with_context(|| format!("--listen {listen_s:?} is not HOST:PORT with an IP host"))?;
        let advertise = match self.advertise {
            Some(a) => a,
            None if listen.ip().is_unspecified() => format!("127.0.0.1:{}", listen.port()),
            None => listen.to_string(),
        };
        let (host, port) = advertise
            .rsplit_once(':')
            .with_context(|| format!("--advertise {advertise:?} is not HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("--advertise {advertise:?} has a bad port"))?;
        let defaults = LogConfig::default();
        let mut log_defaults = LogConfig {
            segment_bytes: self.log_segment_bytes.unwrap_or(defaults.segment_bytes),
            segment_ms: self.log_roll_ms.unwrap_or(defaults.segment_ms),
            retention_ms: self.log_retention_ms.unwrap_or(defaults.retention_ms),
            retention_bytes: self.log_retention_bytes.unwrap_or(defaults.retention_bytes),
            max_message_bytes: self.message_max_bytes.unwrap_or(defaults.max_message_bytes),
            timestamp_before_max_ms: self
                .log_message_timestamp_before_max_ms
                .unwrap_or(defaults.timestamp_before_max_ms),
            timestamp_after_max_ms: self
                .log_message_timestamp_after_max_ms
                .unwrap_or(defaults.timestamp_after_max_ms),
            min_insync_replicas: self
                .min_insync_replicas
                .unwrap_or(defaults.min_insync_replicas),
            unclean_leader_election: self
                .unclean_leader_election_enable
                .unwrap_or(defaults.unclean_leader_election),
            ..defaults
        };
        if log_defaults.min_insync_replicas < 1 {
            bail!("--min-insync-replicas must be at least 1");
        }
        // Validate the defaults with the same rules as topic configs.
        let check = [
            ("segment.bytes", log_defaults.segment_bytes.to_string()),
            ("segment.ms", log_defaults.segment_ms.to_string()),
            ("retention.ms", log_defaults.retention_ms.to_string()),
            ("retention.bytes", log_defaults.retention_bytes.to_string()),
            (
                "message.timestamp.before.max.ms",
                log_defaults.timestamp_before_max_ms.to_string(),
            ),
            (
                "message.timestamp.after.max.ms",
                log_defaults.timestamp_after_max_ms.to_string(),
            ),
        ];
        log_defaults = TopicConfig::new(check.iter().map(|(k, v)| (*k, v.as_str())), &log_defaults)
            .and_then(|c| c.resolve(&log_defaults))
            .map_err(|e| anyhow::anyhow!("broker default {e}"))?;
        let num_partitions = self.num_partitions.unwrap_or(1);
        if num_partitions < 1 {
            bail!("--num-partitions must be at least 1");
        }
        let max_inflight = self.max_inflight_requests.unwrap_or(16);
        if max_inflight < 1 {
            bail!("--max-inflight-requests must be at least 1");
        }
        let node_id = self.node_id.unwrap_or(1);
        if node_id < 0 {
            bail!("--node-id must be 0 or more, got {node_id}");
        }
        let voters = match &self.voters {
            Some(v) => parse_voters(v)?,
            None => BTreeMap::new(),
        };
        let observer = !voters.is_empty() && !voters.contains_key(&node_id);
        if observer && self.controller_listen.is_none() {
            bail!(
                "--voters does not list this broker's --node-id {node_id}, so it joins as an \
                 observer and needs --controller-listen HOST:PORT for the quorum's answers"
            );
        }
        let controller_listen = match (&self.controller_listen, voters.get(&node_id)) {
            _ if voters.len() <= 1 && !observer => None,
            (Some(a), _) => Some(a.as_str()),
            (None, Some(a)) => Some(a.as_str()),
            (None, None) => None,
        }
        .map(|a| {
            a.parse::<SocketAddr>().with_context(|| {
                format!(
                    "controller address {a:?} is not HOST:PORT with an IP host (with host names \
                     in --voters, give --controller-listen IP:PORT to listen on, e.g. 0.0.0.0:9093)"
                )
            })
        })
        .transpose()?;
        let session = self.broker_session_timeout_ms.unwrap_or(9000);
        let heartbeat = self.broker_heartbeat_interval_ms.unwrap_or(2000);
        if heartbeat == 0 || heartbeat >= session {
            bail!(
                "--broker-heartbeat-interval-ms ({heartbeat}) must be above 0 and below \
                 --broker-session-timeout-ms ({session})"
            );
        }
        let offsets_topic_partitions = self.offsets_topic_num_partitions.unwrap_or(50);
        if offsets_topic_partitions < 1 {
            bail!("--offsets-topic-num-partitions must be at least 1");
        }
        let offsets_topic_segment_bytes = self.offsets_topic_segment_bytes.unwrap_or(100 << 20);
        if !(14..=i32::MAX as u64).contains(&offsets_topic_segment_bytes) {
            bail!(
                "--offsets-topic-segment-bytes must be between 14 and {}",
                i32::MAX
            );
        }
        let offsets_topic_replication_factor = self.offsets_topic_replication_factor.unwrap_or(3);
        if offsets_topic_replication_factor < 1 {
            bail!("--offsets-topic-replication-factor must be at least 1");
        }
        let group = skein_core::group::GroupConfig {
            min_session_timeout_ms: self.group_min_session_timeout_ms.unwrap_or(6_000),
            max_session_timeout_ms: self.group_max_session_timeout_ms.unwrap_or(1_800_000),
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.unwrap_or(3_000),
            max_size: self.group_max_size.unwrap_or(usize::MAX).max(1),
        };
        if group.min_session_timeout_ms > group.max_session_timeout_ms {
            bail!(
                "--group-min-session-timeout-ms ({}) is above --group-max-session-timeout-ms ({})",
                group.min_session_timeout_ms,
                group.max_session_timeout_ms
            );
        }
        let consumer_group = skein_core::consumer_group::CgConfig {
            session_timeout_ms: self.group_consumer_session_timeout_ms.unwrap_or(45_000),
            heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms.unwrap_or(5_000),
            max_size: group.max_size,
        };
        if consumer_group.heartbeat_interval_ms <= 0
            || consumer_group.heartbeat_interval_ms as u64 >= consumer_group.session_timeout_ms
        {
            bail!(
                "--group-consumer-heartbeat-interval-ms ({}) must be above 0 and below \
                 --group-consumer-session-timeout-ms ({})",
                consumer_group.heartbeat_interval_ms,
                consumer_group.session_timeout_ms
            );
        }
        let offsets_retention_ms = self
            .offsets_retention_minutes
            .unwrap_or(10_080)
            .saturating_mul(60_000)
            .min(i64::MAX as u64) as i64;
        let default_replication_factor = self.default_replication_factor.unwrap_or(1);
        if default_replication_factor < 1 {
            bail!("--default-replication-factor must be at least 1");
        }
        Ok(Settings {
            voters,
            controller_listen,
            broker_session_timeout_ms: session,
            broker_heartbeat_interval_ms: heartbeat,
            rack: self.rack,
            metadata_snapshot_entries: self.metadata_snapshot_entries.unwrap_or(1024).max(1),
            default_replication_factor,
            replica_lag_time_max_ms: self.replica_lag_time_max_ms.unwrap_or(30_000).max(1),
            leader_imbalance_check_ms: self.leader_imbalance_check_interval_ms.unwrap_or(10_000),
            offsets_topic_partitions,
            offsets_topic_replication_factor,
            offsets_topic_segment_bytes,
            offsets_retention_ms,
            group,
            consumer_group,
            cleaner,
            listen,
            advertise_host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
            advertise_port: i32::from(port),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("skein-data")),
            node_id,
            log_level: self.log_level.unwrap_or_else(|| "info".into()),
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            num_partitions,
            flush_messages: self.flush_messages,
            flush_ms: self.flush_ms,
            page_cache_window_bytes: self.page_cache_window_bytes.unwrap_or(4 << 20),
            log_defaults,
            retention_check_ms: self
                .log_retention_check_interval_ms
                .unwrap_or(30_000)
                .max(10),
            socket_request_max_bytes: self.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024),
            max_connections: self.max_connections.unwrap_or(1000).max(1),
            max_inflight_requests: max_inflight,
            queued_max_request_bytes: self.queued_max_request_bytes.unwrap_or(512 << 20),
            producer_id_expiration_ms: self.producer_id_expiration_ms.unwrap_or(86_400_000),
        })
    }
}

/// Parses `1@host:port,2@host:port`.
pub fn parse_voters(spec: &str) -> anyhow::Result<BTreeMap<i32, String>> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .with_context(|| format!("voter {part:?} is not ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .with_context(|| format!("voter {part:?} has a bad node id"))?;
        if id < 0 {
            bail!("voter {part:?} has a negative node id");
        }
        if !addr.contains(':') {
            bail!("voter {part:?} has no port");
        }
        if out.insert(id, addr.to_string()).is_some() {
            bail!("node id {id} appears twice in --voters");
        }
    }
    if out.is_empty() {
        bail!("--voters is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file() {
        let s = BrokerArgs::default().resolve().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (s.advertise_host.as_str(), s.advertise_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(s.data_dir, PathBuf::from("skein-data"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.toml");
        std::fs::write(
            &f,
            "listen = \"0.0.0.0:19092\"\nnode_id = 7\nlog_retention_ms = 5\n",
        )
        .unwrap();
        let s = BrokerArgs {
            config: Some(f.clone()),
            node_id: Some(3),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((s.node_id, s.log_defaults.retention_ms), (3, 5));
        assert_eq!(s.advertise_host, "127.0.0.1");
        std::fs::write(&f, "no_such_key = 1\n").unwrap();
        assert!(BrokerArgs {
            config: Some(f),
            ..Default::default()
        }
        .resolve()
        .is_err());
        assert!(BrokerArgs {
            listen: Some("nope".into()),
            ..Default::default()
        }
        .resolve()
        .is_err());
    }

    #[test]
    fn voters_and_controller_listener() {
        let v = "1@127.0.0.1:9093, 2@127.0.0.1:9193,3@127.0.0.1:9293";
        let s = BrokerArgs {
            node_id: Some(2),
            voters: Some(v.into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.voters.len(), 3);
        assert_eq!(s.controller_listen.unwrap().to_string(), "127.0.0.1:9193");
        // No --voters: a one-voter quorum with no controller listener.
        let s = BrokerArgs::default().resolve().unwrap();
        assert!(s.voters.is_empty() && s.controller_listen.is_none());
        // Outside the voters: an observer, which needs its own listener.
        let outside = BrokerArgs {
            node_id: Some(4),
            voters: Some(v.into()),
            ..Default::default()
        };
        assert!(outside.clone().resolve().is_err());
        let s = BrokerArgs {
            controller_listen: Some("127.0.0.1:9393".into()),
            ..outside
        }
        .resolve()
        .unwrap();
        assert_eq!(s.controller_listen.unwrap().port(), 9393);
        for bad in ["", "1@h", "x@h:1", "-1@h:1", "1@h:1,1@h:2"] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
    }
}
