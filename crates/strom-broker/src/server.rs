//! [`Broker`]: binds the listener, accepts connections (one task each, so idle connections cost
//! a few KiB), and shuts down gracefully: stop accepting, let connections finish and answer
//! what they already read (up to [`crate::Config::shutdown_timeout_ms`]), then shut the log
//! manager down (final flush and clean-shutdown marker).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::connection;
use crate::error::{Error, Result};
use crate::metadata::BrokerInfo;
use crate::state::{BrokerState, MetadataSource, advertised_broker};

/// A bound, ready-to-run broker.
#[derive(Debug)]
pub struct Broker {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<BrokerState>,
    shutdown: CancellationToken,
}

impl Broker {
    /// Validates the config, binds the listener and opens the data directory with the
    /// single-node metadata store in it ([`MetadataSource::local`]). Cancelling `shutdown`
    /// later makes [`Broker::run`] shut down gracefully.
    pub async fn bind(config: Config, shutdown: CancellationToken) -> Result<Broker> {
        if config.cluster.is_some() {
            let (config, listener, local_addr, me) = prepare(config)?;
            let source = MetadataSource::cluster(&config, me.clone()).await?;
            return Broker::open(config, listener, local_addr, me, source, shutdown).await;
        }
        Broker::bind_with_store(config, shutdown, MetadataSource::local).await
    }

    /// As [`Broker::bind`], with the metadata store `store` builds once the listener is bound
    /// (so this broker's advertised address, with its real port, is known): how a cluster
    /// gives the broker its replicated store.
    pub async fn bind_with_store(
        config: Config,
        shutdown: CancellationToken,
        store: impl FnOnce(&Config, BrokerInfo) -> Result<MetadataSource>,
    ) -> Result<Broker> {
        let (config, listener, local_addr, me) = prepare(config)?;
        let source = store(&config, me.clone())?;
        Broker::open(config, listener, local_addr, me, source, shutdown).await
    }

    async fn open(
        config: Config,
        listener: TcpListener,
        local_addr: SocketAddr,
        me: BrokerInfo,
        source: MetadataSource,
        shutdown: CancellationToken,
    ) -> Result<Broker> {
        let state = Arc::new(BrokerState::open(config, me, source, shutdown.clone()).await?);
        state.start_metadata_watch();
        state.start_isr_checks();
        state.start_group_loading();
        Ok(Broker { listener, local_addr, state, shutdown })
    }

    /// The address the listener is bound to (with the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests and embedders inspect it).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Serves until the shutdown token is cancelled, then drains and closes the logs.
    pub async fn run(self) -> Result<()> {
        let Broker { listener, local_addr, state, shutdown } = self;
        info!(listen = %local_addr, advertised = %format_args!("{}:{}", state.advertised_host, state.advertised_port), node_id = state.node_id(), "broker serving");
        let mut connections = JoinSet::new();
        let mut next_id: u64 = 0;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        next_id += 1;
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
                        }
                        connections.spawn(connection::serve(state.clone(), stream, peer, next_id, shutdown.clone()));
                    }
                    Err(e) => {
                        // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let open = connections.len();
        info!(open_connections = open, "shutting down: finishing in-flight requests");
        let drained = tokio::time::timeout(state.config.shutdown_timeout(), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(still_open = connections.len(), "shutdown deadline passed; closing remaining connections");
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        if let Some(node) = &state.cluster {
            node.shutdown().await;
        }
        let logs = state.logs.clone();
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|e| Error::io("joining the log shutdown", std::io::Error::other(e)))??;
        info!("broker stopped cleanly");
        Ok(())
    }
}

/// Validates the config, binds the Kafka listener, and works out this broker's advertised
/// address.
fn prepare(config: Config) -> Result<(Config, TcpListener, SocketAddr, BrokerInfo)> {
    let config = config.validate()?;
    let addr = config.listen_addr()?;
    let listener = bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?;
    let local_addr = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    let me = advertised_broker(&config, local_addr)?;
    Ok((config, listener, local_addr, me))
}

/// Accept-queue length requested from the kernel (capped by `net.core.somaxconn`). Larger than
/// tokio's default of 1024 so a burst of connects (a client fleet restarting) is not dropped
/// while the accept loop is briefly descheduled.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket with `SO_REUSEADDR` (a restarted broker gets its port back at once).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
