//! Every bound and pacing constant of the broker's shell in one place: queue sizes, timeouts,
//! backoffs. Settings a user may change live in `config.rs` (each with its Kafka name); these
//! are the rest. Core bounds live in skein-core next to the state machine they bound (e.g.
//! `skein_core::raft::GATED_MESSAGES_MAX`).
//!
//! Invariant: no queue or map the shell keeps is fed by clients without a bound here or in a
//! setting (connections, in-flight requests and request bytes are settings). Two channels are
//! unbounded by type and bounded by their senders: the replica fetchers' start queue carries at
//! most one message per source broker (`Broker::ensure_fetcher` sends only for a leader it has
//! no fetcher for), and the group coordinator's work queue refuses new requests while
//! [`GROUP_WORK_QUEUED_MAX`] pieces of work wait (the runtime plans work under a lock the
//! driver cannot await, so the queue cannot push back itself).

use std::time::Duration;

// ---- the metadata quorum and the inter-broker transport ----

/// After an acks=all write's deadline the replica is ticked (timing it out); ticked again this
/// much later while it has not answered (its own clock may lag the request's by a little).
pub const PRODUCE_TICK_SLACK: Duration = Duration::from_millis(5);
/// Raft messages and forwarded proposals queued from the controller listener to the quorum's
/// driver; more are dropped (Raft tolerates loss).
pub const QUORUM_INBOX_MAX: usize = 4096;
/// Proposals queued for the quorum's driver; a full queue refuses the proposal.
pub const PROPOSALS_QUEUED_MAX: usize = 1024;
/// A proposal unanswered this long fails.
pub const PROPOSAL_TIMEOUT_MS: u64 = 15_000;
/// Entries per answer to a non-voting broker.
pub const OBSERVE_ENTRIES_MAX: usize = 512;
/// A non-voting broker asks for new entries this often while caught up.
pub const OBSERVE_INTERVAL_MS: u64 = 50;
/// A non-voting broker gives a silent voter up after this long.
pub const OBSERVE_TIMEOUT_MS: u64 = 1000;
/// Largest inter-broker frame (a snapshot travels in one).
pub const PEER_FRAME_BYTES_MAX: usize = 256 << 20;
/// Messages queued per peer; more are dropped.
pub const PEER_QUEUE_MAX: usize = 4096;
/// Wait before dialling a peer again after a failure.
pub const PEER_DIAL_BACKOFF_MS: u64 = 200;
/// A peer connection must be made within this.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A write to a peer that takes longer drops the connection.
pub const PEER_WRITE_TIMEOUT_MS: u64 = 2000;
/// How often start-up logs that it still waits for the quorum.
pub const QUORUM_WAIT_LOG_EVERY: Duration = Duration::from_secs(5);
/// Wait between registration attempts.
pub const REGISTER_RETRY: Duration = Duration::from_millis(200);
/// After its controlled-shutdown change commits, a quorum leader stays this long so the
/// others learn of the commit (a couple of Raft heartbeats).
pub const SHUTDOWN_LINGER: Duration = Duration::from_millis(250);
/// DescribeQuorum relayed to the quorum leader must be answered within this.
pub const QUORUM_RELAY_TIMEOUT: Duration = Duration::from_secs(5);

// ---- replication ----

/// Fetch version followers use (12: last fetched epoch and diverging epoch, topic names).
pub const REPLICA_FETCH_VERSION: i16 = 12;
/// How long a follower's fetch waits at the leader for new data.
pub const REPLICA_FETCH_WAIT_MS: i32 = 500;
/// A follower's fetch response limit (Kafka's replica.fetch.response.max.bytes is 10 MiB): with
/// the first-batch rule a response holds at most this or one batch, well under the client's
/// frame limit (`skein_client::RESPONSE_BYTES_MAX`).
pub const REPLICA_FETCH_RESPONSE_BYTES: i32 = 16 << 20;
/// A follower's limit per partition (Kafka's replica.fetch.max.bytes, 1 MiB).
pub const REPLICA_FETCH_PARTITION_BYTES: i32 = 1 << 20;
/// Connecting to a leader (and ApiVersions) must finish within this.
pub const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A follower's fetch request times out this long after its wait at the leader.
pub const REPLICA_REQUEST_SLACK_MS: u64 = 10_000;
/// Wait before fetching again when no leader address is known or a fetch failed.
pub const REPLICA_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Wait before connecting again to a leader that could not be reached.
pub const REPLICA_CONNECT_BACKOFF: Duration = Duration::from_millis(300);
/// Wait after a fetch that brought nothing but partition errors.
pub const REPLICA_IDLE_BACKOFF: Duration = Duration::from_millis(100);

// ---- the group coordinator ----

/// How long a SyncGroup waits for the leader's assignment.
pub const GROUP_SYNC_WAIT: Duration = Duration::from_secs(300);
/// How long a wait for the high watermark lasts before it is reported failed (the runtime's
/// own commit timeout, shorter, fails the answers first).
pub const GROUP_WAIT_COMMITTED: Duration = Duration::from_secs(30);
/// The longest the timer task sleeps between runtime ticks.
pub const GROUP_TIMER_MAX_MS: u64 = 100;
/// offsets.commit.timeout.ms: how long an answer waits for the writes it depends on.
pub const GROUP_COMMIT_TIMEOUT_MS: u64 = 5_000;
/// How often group timers fire.
pub const GROUP_TICK_MS: u64 = 100;
/// How often expired offsets are looked for (offsets.retention.check.interval.ms).
pub const GROUP_EXPIRE_EVERY_MS: u64 = 60_000;
/// The most group operations waiting for an answer at once (JoinGroup and SyncGroup wait for
/// the rebalance; others for their writes); past it requests get COORDINATOR_NOT_AVAILABLE.
pub const GROUP_WAITING_MAX: usize = 100_000;
/// Pieces of coordinator work (appends, loads, answers to route) waiting for the driver task at
/// most; past it group requests get COORDINATOR_NOT_AVAILABLE until it catches up.
pub const GROUP_WORK_QUEUED_MAX: usize = 10_000;
/// Bytes of whole batches each read of the offsets topic takes while loading a shard (a
/// larger first batch is read whole).
pub const GROUP_OFFSETS_LOAD_READ_BYTES: u64 = 1 << 20;
/// offset.metadata.max.bytes.
pub const GROUP_MAX_METADATA: usize = 4096;

// ---- the listener ----

/// Wait after a failed accept (e.g. out of file descriptors) before accepting again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
