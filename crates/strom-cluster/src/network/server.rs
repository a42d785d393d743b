//! The answering side of the internal protocol: the internal listener's accept loop and one
//! task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::wire::{FrameError, Reply, Request, read_frame, write_frame};
use crate::controller::Controller;
use crate::types::{NodeId, Raft};

/// How long a new connection has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection needs to answer requests.
#[derive(Clone)]
pub struct Handler {
    /// This node's cluster id.
    pub cluster_id: String,
    /// This node's id.
    pub me: NodeId,
    /// The Raft node.
    pub raft: Raft,
    /// The controller (answers when this node leads).
    pub controller: Arc<Controller>,
}

/// Accepts internal connections until `shutdown`; each is served on its own task, and a bad
/// one (garbage, a foreign cluster) is closed and logged without affecting the others.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "internal listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = connection(stream, peer, &handler) => if let Err(e) = r {
                    debug!(%peer, error = %e, "internal connection closed");
                }
            }
        });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, h: &Handler) -> Result<(), FrameError> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_frame::<_, Request>(&mut stream)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "internal listener: not a Strom node (bad first frame); closing");
            return Err(e);
        }
        Err(_) => {
            warn!(%peer, "internal listener: no hello within {HELLO_TIMEOUT:?}; closing");
            return Ok(());
        }
    };
    if let Some(reason) = refusal(&hello, h) {
        warn!(%peer, %reason, "internal listener: refusing a connection");
        write_frame(&mut stream, &Reply::Refused(reason)).await?;
        return Ok(());
    }
    write_frame(&mut stream, &Reply::Welcome).await?;
    while let Some(request) = read_frame::<_, Request>(&mut stream).await.inspect_err(|e| {
        warn!(%peer, error = %e, "internal connection: bad frame; closing");
    })? {
        let reply = answer(request, h).await;
        write_frame(&mut stream, &reply).await?;
    }
    Ok(())
}

/// Why a hello is refused, if it is.
fn refusal(hello: &Request, h: &Handler) -> Option<String> {
    let Request::Hello { cluster_id, from, to } = hello else {
        return Some("the first frame must be a hello".to_string());
    };
    if *cluster_id != h.cluster_id {
        return Some(format!(
            "cluster id mismatch: this node is in cluster {:?}, the peer in {cluster_id:?}",
            h.cluster_id
        ));
    }
    if *to != h.me {
        return Some(format!("this is node {}, not node {to}: check the peer's voter addresses", h.me));
    }
    if *from == h.me {
        return Some(format!("duplicate node id: the peer claims node id {from}, which is this node's own"));
    }
    None
}

async fn answer(request: Request, h: &Handler) -> Reply {
    match request {
        Request::Hello { .. } => Reply::Refused("a second hello on one connection".to_string()),
        Request::AppendEntries(rpc) => Reply::AppendEntries(h.raft.append_entries(rpc).await),
        Request::Vote(rpc) => Reply::Vote(h.raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => Reply::InstallSnapshot(h.raft.install_snapshot(rpc).await),
        Request::Controller(req) => Reply::Controller(h.controller.handle(req).await),
    }
}
