//! [`ClusterError`]: why a cluster node could not start.

/// Why [`crate::ClusterNode::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster settings are unusable.
    #[error("cluster config: {0}")]
    Config(String),
    /// The Raft directory belongs to another cluster.
    #[error(
        "this node's data directory belongs to cluster {found:?}, but the config names cluster {configured:?}; refusing to start (use the data directory of this cluster, or an empty one)"
    )]
    ClusterIdMismatch {
        /// The id recorded in the data directory.
        found: String,
        /// The id in the config.
        configured: String,
    },
    /// Reading or writing the node's files, or binding its listener, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Raft could not start.
    #[error("raft: {0}")]
    Raft(String),
}

impl ClusterError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClusterError {
        ClusterError::Io { context: context.into(), source }
    }
}
