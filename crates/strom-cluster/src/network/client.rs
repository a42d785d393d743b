//! The calling side of the internal protocol: [`Peer`] (one connection to one node, opened
//! with the hello and reopened after any error) and openraft's network over it.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tokio::net::TcpStream;

use super::wire::{FrameError, Reply, Request, read_frame, write_frame};
use crate::types::{Node, NodeId, TypeConfig};

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached, or the connection broke.
    #[error("node {node} at {addr}: {source}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: String,
        /// What failed.
        #[source]
        source: FrameError,
    },
    /// The peer refused the connection (another cluster, another node id, ...).
    #[error("node {node} at {addr} refused the connection: {reason}")]
    Refused {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: String,
        /// What it said.
        reason: String,
    },
    /// No answer within the deadline.
    #[error("node {node} at {addr}: no answer within {after:?}")]
    Timeout {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: String,
        /// The deadline.
        after: Duration,
    },
    /// The peer answered with a reply of another kind.
    #[error("node {node}: unexpected reply to {request}")]
    Protocol {
        /// The peer.
        node: NodeId,
        /// What was asked.
        request: &'static str,
    },
}

/// One connection to one node.
#[derive(Debug)]
pub struct Peer {
    cluster_id: String,
    me: NodeId,
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
}

impl Peer {
    /// A peer at `addr` that must be node `target` of `cluster_id`; connects lazily.
    pub fn new(cluster_id: &str, me: NodeId, target: NodeId, addr: &str) -> Peer {
        Peer { cluster_id: cluster_id.to_string(), me, target, addr: addr.to_string(), conn: None }
    }

    /// Sends `request` and waits at most `timeout` for the reply. Any failure drops the
    /// connection; the next call opens a new one.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Reply, CallError> {
        match tokio::time::timeout(timeout, self.call_inner(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Timeout { node: self.target, addr: self.addr.clone(), after: timeout })
            }
        }
    }

    async fn call_inner(&mut self, request: &Request) -> Result<Reply, CallError> {
        let unreachable = |addr: &str, node, source| CallError::Unreachable { node, addr: addr.to_string(), source };
        if self.conn.is_none() {
            let mut s =
                TcpStream::connect(&self.addr).await.map_err(|e| unreachable(&self.addr, self.target, e.into()))?;
            let _ = s.set_nodelay(true);
            let hello = Request::Hello { cluster_id: self.cluster_id.clone(), from: self.me, to: self.target };
            write_frame(&mut s, &hello).await.map_err(|e| unreachable(&self.addr, self.target, e))?;
            match read_frame::<_, Reply>(&mut s).await.map_err(|e| unreachable(&self.addr, self.target, e))? {
                Some(Reply::Welcome) => {}
                Some(Reply::Refused(reason)) => {
                    return Err(CallError::Refused { node: self.target, addr: self.addr.clone(), reason });
                }
                Some(_) => return Err(CallError::Protocol { node: self.target, request: "hello" }),
                None => {
                    let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return Err(unreachable(&self.addr, self.target, eof.into()));
                }
            }
            self.conn = Some(s);
        }
        let Some(s) = self.conn.as_mut() else {
            return Err(CallError::Protocol { node: self.target, request: "connect" });
        };
        write_frame(s, request).await.map_err(|e| unreachable(&self.addr, self.target, e))?;
        match read_frame::<_, Reply>(s).await.map_err(|e| unreachable(&self.addr, self.target, e))? {
            Some(Reply::Refused(reason)) => {
                Err(CallError::Refused { node: self.target, addr: self.addr.clone(), reason })
            }
            Some(reply) => Ok(reply),
            None => {
                let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                Err(unreachable(&self.addr, self.target, eof.into()))
            }
        }
    }
}

/// Builds a [`Peer`] per Raft target.
#[derive(Debug, Clone)]
pub struct Network {
    /// The cluster id sent in every hello.
    pub cluster_id: String,
    /// This node.
    pub me: NodeId,
}

/// openraft's connection to one target.
#[derive(Debug)]
pub struct RaftPeer {
    peer: Peer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> RaftPeer {
        RaftPeer { peer: Peer::new(&self.cluster_id, self.me, target, &node.addr) }
    }
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, Node, E> {
    match e {
        CallError::Unreachable { .. } | CallError::Refused { .. } | CallError::Timeout { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        CallError::Protocol { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self.peer.call(&Request::AppendEntries(rpc), option.hard_ttl()).await.map_err(rpc_error)? {
            Reply::AppendEntries(Ok(r)) => Ok(r),
            Reply::AppendEntries(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.peer.target, e))),
            _ => Err(rpc_error(CallError::Protocol { node: self.peer.target, request: "append_entries" })),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        match self.peer.call(&Request::InstallSnapshot(rpc), option.hard_ttl()).await.map_err(rpc_error)? {
            Reply::InstallSnapshot(Ok(r)) => Ok(r),
            Reply::InstallSnapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.peer.target, e))),
            _ => Err(rpc_error(CallError::Protocol { node: self.peer.target, request: "install_snapshot" })),
        }
    }

    /// After an unreachable peer: retry at 100 ms, doubling to at most 1.6 s (openraft's
    /// default retries every 500 ms forever, and logs an error each time).
    fn backoff(&self) -> Backoff {
        Backoff::new((0u32..).map(|i| Duration::from_millis(100u64 << i.min(4))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self.peer.call(&Request::Vote(rpc), option.hard_ttl()).await.map_err(rpc_error)? {
            Reply::Vote(Ok(r)) => Ok(r),
            Reply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.peer.target, e))),
            _ => Err(rpc_error(CallError::Protocol { node: self.peer.target, request: "vote" })),
        }
    }
}
