//! Numbered decisions: every fault and admin action a scenario injects asks the gate first; the
//! gate numbers it (in the order the run makes them) and says whether the run's schedule lets
//! it go ahead. Shrinking narrows the allowed set; a replay file lists it.
//!
//! Invariant: a decision left out still takes its number and the scenario still draws what it
//! would have drawn, so the random streams stay aligned as far as the run's path allows.

use std::collections::BTreeSet;

/// The gate of one run.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    allowed: Option<BTreeSet<u64>>,
    next: u64,
    taken: Vec<u64>,
}

impl Gate {
    /// A gate letting through `allowed` (`None`: every decision).
    pub fn new(allowed: Option<BTreeSet<u64>>) -> Self {
        Gate {
            allowed,
            next: 0,
            taken: Vec::new(),
        }
    }

    /// Numbers the next decision: `(number, goes ahead)`.
    pub fn decide(&mut self) -> (u64, bool) {
        let n = self.next;
        self.next += 1;
        let ok = self.allowed.as_ref().is_none_or(|a| a.contains(&n));
        if ok {
            self.taken.push(n);
        }
        (n, ok)
    }

    /// The decisions that went ahead, in order.
    pub fn taken(&self) -> &[u64] {
        &self.taken
    }
}
