//! A leader's view of one peer's log (raft-rs `Progress`, simplified).
//!
//! Invariant: `match_index < next_index`. In `Probe` the leader has at most one AppendEntries
//! outstanding (resent each heartbeat) while it searches for the match point; in `Replicate`
//! it pipelines up to `inflight_entries_max` entries past `match_index`; in `Snapshot` it waits
//! for the answer to an InstallSnapshot (resent each heartbeat).

/// How the leader is currently feeding a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    /// An InstallSnapshot of this index is outstanding.
    Snapshot {
        index: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Progress {
    /// Highest index known (durably) replicated on the peer.
    pub(crate) match_index: u64,
    /// Next index to send.
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// Probe only: a probe is outstanding.
    pub(crate) probe_sent: bool,
    /// The peer answered since the last check-quorum.
    pub(crate) recent_active: bool,
    /// Replicate only: `match_index` has not moved since the last heartbeat.
    pub(crate) stalled: bool,
}

impl Progress {
    pub(crate) fn new(next_index: u64) -> Self {
        Self {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: false,
            stalled: false,
        }
    }

    pub(crate) fn on_success(&mut self, match_index: u64) {
        if match_index > self.match_index {
            self.stalled = false;
        }
        self.match_index = self.match_index.max(match_index);
        match self.state {
            ProgressState::Probe => {
                self.state = ProgressState::Replicate;
                self.next_index = self.match_index + 1;
            }
            ProgressState::Replicate => {
                self.next_index = self.next_index.max(self.match_index + 1);
            }
            ProgressState::Snapshot { index } => {
                self.next_index = self.next_index.max(self.match_index + 1);
                if self.match_index >= index {
                    self.state = ProgressState::Replicate;
                }
            }
        }
        self.probe_sent = false;
    }

    /// Whether a rejection of a request with this `prev_log_index` is an answer to what is
    /// outstanding now (and not to something superseded).
    pub(crate) fn is_live_reject(&self, prev_log_index: u64) -> bool {
        match self.state {
            ProgressState::Probe => prev_log_index + 1 == self.next_index,
            ProgressState::Replicate => prev_log_index > self.match_index,
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Backs off after a live rejection: `hint` is the first index worth trying.
    pub(crate) fn back_off(&mut self, prev_log_index: u64, hint: u64) {
        // The rejected index does not match, so the next try is at most there; it is never
        // below what the peer is known to hold.
        self.next_index = hint.min(prev_log_index).max(self.match_index + 1);
        self.state = ProgressState::Probe;
        self.probe_sent = false;
    }

    pub(crate) fn on_snapshot_installed(&mut self, match_index: u64) {
        self.match_index = self.match_index.max(match_index);
        self.next_index = self.match_index + 1;
        self.state = ProgressState::Probe;
        self.probe_sent = false;
    }
}
