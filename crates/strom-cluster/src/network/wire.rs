//! The internal protocol between nodes: length-prefixed JSON frames over TCP.
//!
//! Frame: `u32 big-endian length | payload`. The length is checked against
//! [`MAX_FRAME_BYTES`] before anything is allocated, so a peer (or a stray client speaking
//! another protocol) cannot make a node reserve gigabytes. Every connection opens with
//! [`Request::Hello`], naming the cluster id and both node ids; a node refuses a foreign
//! cluster id, a frame addressed to another node id, or a peer claiming its own id, and says
//! why in [`Reply::Refused`] before closing. Then requests and replies alternate, one at a
//! time per connection.
//!
//! Hand-written framing (16 lines) rather than a codec crate: the workspace has no `futures`
//! sink/stream stack, and this is all the framing the internal port needs.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::types::{NodeId, TypeConfig};

/// Largest frame a node reads: above the largest snapshot chunk and entry batch it sends.
pub const MAX_FRAME_BYTES: u32 = 32 << 20;

/// What one node asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// The first frame of every connection.
    Hello {
        /// The sender's cluster id.
        cluster_id: String,
        /// The sender's node id.
        from: NodeId,
        /// The node id the sender believes it is talking to.
        to: NodeId,
    },
    /// Raft log replication.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<NodeId>),
    /// A chunk of a Raft snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A request for the controller (the Raft leader), forwarded from another node.
    Controller(ControllerRequest),
}

/// What a node answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The hello was accepted.
    Welcome,
    /// The connection is refused, and why; the connection closes after this.
    Refused(String),
    /// Answer to [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// Answer to [`Request::Controller`].
    Controller(Result<ControllerReply, ControllerError>),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed.
    #[error("internal connection: {0}")]
    Io(#[from] std::io::Error),
    /// A length over the limit: not our protocol, or a broken peer.
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(u32),
    /// The payload is not a message of this protocol.
    #[error("undecodable frame: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Writes one message as a frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let payload = serde_json::to_vec(msg)?;
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it; `Ok(None)` at a clean end of stream before a frame.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    Ok(Some(serde_json::from_slice(&payload)?))
}
