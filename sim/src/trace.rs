//! The trace: one line per event, `t=<ms> <what>`, hashed (FNV-1a 64) into the run's
//! fingerprint, with the last lines kept for failure reports and optionally every line written
//! as JSON.
//!
//! Invariant: the hash covers every event line in order, so two runs with equal hashes took the
//! same steps; lines contain nothing nondeterministic (no addresses, no wall time).

use std::collections::VecDeque;
use std::io::Write;

/// Event lines kept for the failure report.
pub const TAIL_LINES: usize = 20;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Records a run's events.
pub struct Trace {
    hash: u64,
    steps: u64,
    tail: VecDeque<String>,
    out: Option<Box<dyn Write>>,
}

impl Trace {
    /// A trace, optionally also written as JSON lines to `out`.
    pub fn new(out: Option<Box<dyn Write>>) -> Self {
        Trace {
            hash: FNV_OFFSET,
            steps: 0,
            tail: VecDeque::with_capacity(TAIL_LINES + 1),
            out,
        }
    }

    /// Records one event at simulated time `now_ms`.
    pub fn event(&mut self, now_ms: u64, what: &str) {
        let line = format!("t={now_ms} {what}");
        for b in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self.steps += 1;
        if let Some(out) = &mut self.out {
            let obj = serde_json::json!({ "step": self.steps, "t": now_ms, "event": what });
            let _ = writeln!(out, "{obj}");
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The fingerprint so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Events so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The last event lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Flushes the JSON output.
    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}
