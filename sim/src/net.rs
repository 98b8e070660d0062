//! The simulated network between clients and nodes: one TCP connection per (client, node).
//!
//! Model: a connection is FIFO in each direction, as TCP is, so a message is delivered no earlier
//! than the one sent before it (latency jitter reorders only messages on different connections).
//! TCP never drops or duplicates a segment the application sees, so:
//! - a drop is a connection reset: everything in flight on the connection, both ways, is lost
//!   (messages carry the connection's epoch; a reset bumps it), and the client learns of it and
//!   reconnects;
//! - a partition (a direction of a link going down) blackholes what is sent that way and leaves the
//!   connection dead without telling anyone: later messages on it are lost too, until the client's
//!   request timeout makes it reconnect;
//! - a duplicate is a retransmission by the layer above (a client resending the same request, a
//!   proxy replaying a response): a second copy queued behind the first on the same connection.
//!
//! Invariant: delivery times on one (connection, direction) never decrease, so same-time events
//! keep their scheduling order and FIFO holds.

use std::collections::BTreeMap;

/// A direction on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Client to node.
    Request = 0,
    /// Node to client.
    Response = 1,
}

/// One client's connection to one node.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// Bumped at every reset; a message of an older epoch is lost.
    pub epoch: u32,
    /// The connection died silently (a partition blackholed a message): everything sent on it
    /// until the next reset is lost.
    pub broken: bool,
    /// Partitioned: messages in this direction are blackholed.
    pub down: [bool; 2],
    /// The latest delivery time scheduled per direction (FIFO).
    last: [u64; 2],
}

/// Every client-node connection.
#[derive(Debug, Clone, Default)]
pub struct Network {
    links: BTreeMap<(usize, usize), Link>,
}

impl Network {
    /// `clients` clients connected to `nodes` nodes.
    pub fn new(clients: usize, nodes: usize) -> Self {
        let mut links = BTreeMap::new();
        for c in 0..clients {
            for n in 0..nodes {
                links.insert((c, n), Link::default());
            }
        }
        Network { links }
    }

    /// The connection of `client` to `node`.
    pub fn link(&mut self, client: usize, node: usize) -> &mut Link {
        self.links.get_mut(&(client, node)).expect("known link")
    }

    /// Current epoch of a connection.
    pub fn epoch(&self, client: usize, node: usize) -> u32 {
        self.links[&(client, node)].epoch
    }

    /// The delivery time of a message sent now that would arrive at `at` without FIFO: never
    /// before the previous message in the same direction.
    pub fn fifo_time(&mut self, client: usize, node: usize, dir: Dir, at: u64) -> u64 {
        let l = self.link(client, node);
        let t = at.max(l.last[dir as usize]);
        l.last[dir as usize] = t;
        t
    }

    /// Resets a connection: in-flight messages are lost, the next ones use a fresh connection.
    /// Returns the new epoch.
    pub fn reset(&mut self, client: usize, node: usize) -> u32 {
        let l = self.link(client, node);
        l.epoch += 1;
        l.broken = false;
        l.epoch
    }

    /// Every client's connection to `node`.
    pub fn clients_of(&self, node: usize) -> Vec<usize> {
        self.links
            .keys()
            .filter(|(_, n)| *n == node)
            .map(|(c, _)| *c)
            .collect()
    }

    /// Heals every partition.
    pub fn heal_all(&mut self) {
        for l in self.links.values_mut() {
            l.down = [false, false];
        }
    }
}
