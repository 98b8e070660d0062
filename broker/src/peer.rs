//! The inter-broker transport: best-effort, framed messages between nodes of one cluster.
//!
//! Each node listens on its controller address and dials every peer it sends to; a connection
//! carries messages one way only (dialer to listener), so there is no request/response pairing
//! to get wrong. A frame is `[len u32][JSON PeerFrame]`; the frame names the sender and the
//! cluster, and a frame from another cluster closes the connection.
//!
//! Invariants: sending never blocks the caller (each peer has a bounded queue; when it is full,
//! or the peer is unreachable, messages are dropped — the protocols above tolerate loss, as Raft
//! does); a peer that breaks framing loses its connection and nothing else; dialing backs off
//! between attempts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use skein_sys::net::{Listener, Stream};

use crate::limits::{
    PEER_CONNECT_TIMEOUT, PEER_DIAL_BACKOFF_MS as DIAL_BACKOFF_MS,
    PEER_FRAME_BYTES_MAX as FRAME_BYTES_MAX, PEER_QUEUE_MAX as QUEUE_MAX,
    PEER_WRITE_TIMEOUT_MS as WRITE_TIMEOUT_MS,
};

/// Identifies a node.
pub type NodeId = u64;

/// What goes over the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerFrame<M> {
    /// The cluster the sender belongs to.
    pub cluster: String,
    /// The sender.
    pub from: NodeId,
    /// The message.
    pub body: M,
}

/// Sends messages to peers by node id; cheap to clone.
pub struct Outbox<M> {
    me: NodeId,
    cluster: String,
    peers: Arc<Mutex<BTreeMap<NodeId, mpsc::Sender<M>>>>,
    addrs: Arc<Mutex<BTreeMap<NodeId, String>>>,
    stop: watch::Receiver<bool>,
}

impl<M> Clone for Outbox<M> {
    fn clone(&self) -> Self {
        Outbox {
            me: self.me,
            cluster: self.cluster.clone(),
            peers: self.peers.clone(),
            addrs: self.addrs.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<M: Serialize + Send + 'static> Outbox<M> {
    /// An outbox for node `me` of `cluster`, knowing peers' addresses (`host:port`).
    pub fn new(
        me: NodeId,
        cluster: String,
        addrs: BTreeMap<NodeId, String>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Outbox {
            me,
            cluster,
            peers: Arc::default(),
            addrs: Arc::new(Mutex::new(addrs)),
            stop,
        }
    }

    /// Learns or changes the address of `peer` (a newly registered broker).
    pub fn set_addr(&self, peer: NodeId, addr: String) {
        let mut addrs = self.addrs.lock().expect("addrs lock");
        if addrs.get(&peer) != Some(&addr) {
            addrs.insert(peer, addr);
            // Drop the old connection task's queue so the next send dials the new address.
            self.peers.lock().expect("peers lock").remove(&peer);
        }
    }

    /// Queues `msg` for `to`; returns false if it was dropped (unknown peer, full queue).
    pub fn send(&self, to: NodeId, msg: M) -> bool {
        let tx = {
            let mut peers = self.peers.lock().expect("peers lock");
            match peers.get(&to) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let Some(addr) = self.addrs.lock().expect("addrs lock").get(&to).cloned()
                    else {
                        return false;
                    };
                    let (tx, rx) = mpsc::channel(QUEUE_MAX);
                    peers.insert(to, tx.clone());
                    tokio::spawn(dial_loop(
                        self.me,
                        self.cluster.clone(),
                        to,
                        addr,
                        rx,
                        self.stop.clone(),
                    ));
                    tx
                }
            }
        };
        tx.try_send(msg).is_ok()
    }
}

async fn dial_loop<M: Serialize>(
    me: NodeId,
    cluster: String,
    to: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<M>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<Stream> = None;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.changed() => return,
        };
        if conn.is_none() {
            match tokio::time::timeout(PEER_CONNECT_TIMEOUT, Stream::connect(&addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    debug!(peer = to, %addr, "connected to peer");
                    conn = Some(s);
                }
                _ => {
                    // Drop what queued up meanwhile: it is stale, and Raft retransmits.
                    tokio::time::sleep(Duration::from_millis(DIAL_BACKOFF_MS)).await;
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        let frame = PeerFrame {
            cluster: cluster.clone(),
            from: me,
            body: msg,
        };
        let payload = serde_json::to_vec(&frame).expect("peer message encodes");
        let mut buf = Vec::with_capacity(4 + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        let s = conn.as_mut().expect("connected");
        // A peer that stopped reading (crashed, restarted on a new connection) must not block
        // this queue forever: the kernel may not fail the write for minutes.
        match tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), s.write_all(&buf)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(peer = to, error = %e, "peer connection lost");
                conn = None;
            }
            Err(_) => {
                debug!(peer = to, "peer write timed out; reconnecting");
                conn = None;
                while rx.try_recv().is_ok() {}
            }
        }
    }
}

/// Accepts peer connections on `listener` and hands every message from `cluster` to `inbox`.
pub async fn serve<M: DeserializeOwned + Send + 'static>(
    listener: Listener,
    cluster: String,
    inbox: mpsc::Sender<(NodeId, M)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                tokio::time::sleep(crate::limits::ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (inbox, cluster, stop) = (inbox.clone(), cluster.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(why) = read_peer(sock, &cluster, inbox, stop).await {
                info!(%peer, reason = %why, "closing peer connection");
            }
        });
    }
}

async fn read_peer<M: DeserializeOwned>(
    mut sock: Stream,
    cluster: &str,
    inbox: mpsc::Sender<(NodeId, M)>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let mut len = [0u8; 4];
        tokio::select! {
            r = sock.read_exact(&mut len) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(format!("read failed: {e}")),
            },
            _ = stop.changed() => return Ok(()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(format!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}"));
        }
        let mut payload = vec![0u8; len];
        sock.read_exact(&mut payload)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        let frame: PeerFrame<M> =
            serde_json::from_slice(&payload).map_err(|e| format!("bad peer frame: {e}"))?;
        if frame.cluster != cluster {
            return Err(format!(
                "peer {} belongs to cluster {:?}, not {cluster:?}",
                frame.from, frame.cluster
            ));
        }
        if inbox.send((frame.from, frame.body)).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_flow_between_two_nodes_and_foreign_clusters_are_refused() {
        let (stop_tx, stop) = watch::channel(false);
        let l = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::channel::<(NodeId, String)>(16);
        tokio::spawn(serve(l, "c1".into(), tx, stop.clone()));
        let out: Outbox<String> = Outbox::new(
            1,
            "c1".into(),
            BTreeMap::from([(2, addr.clone())]),
            stop.clone(),
        );
        assert!(out.send(2, "hello".into()));
        assert!(!out.send(3, "nobody".into()), "unknown peers are dropped");
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (1, "hello".to_string()));
        let foreign: Outbox<String> =
            Outbox::new(9, "other".into(), BTreeMap::from([(2, addr)]), stop.clone());
        foreign.send(2, "intruder".into());
        out.send(2, "second".into());
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (1, "second".to_string()));
        stop_tx.send_replace(true);
    }
}
