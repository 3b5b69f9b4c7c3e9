//! Egress tunnels (`[[egress.tunnel]]`): plain TCP on a local port to a remote TLS server, with
//! the tunnel's client identity.

use super::root_cause;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Per-direction buffer of a tunnel's copy loop.
pub(super) const COPY_BUF: usize = 64 * 1024;

/// A resolved `[[egress.tunnel]]`: plain TCP in, TLS with a client identity out.
#[derive(Debug)]
pub struct EgressTunnelConfig {
    /// Name for logs.
    pub name: String,
    /// Remote host.
    pub host: String,
    /// Remote port.
    pub port: u16,
    /// The name sent as SNI and verified in the server's certificate.
    pub server_name: ServerName<'static>,
    /// The TLS client (trust, pin, identities, ALPN), how long each connection attempt may
    /// take, and which identity worked.
    pub origin: super::fallback::Origin,
    /// Open connections at most.
    pub max_connections: usize,
    /// On shutdown, how long open streams may take to end.
    pub drain_timeout: Duration,
}

/// The live configuration of an egress tunnel.
pub type LiveEgressTunnel = Arc<arc_swap::ArcSwap<EgressTunnelConfig>>;

/// Serves an egress tunnel until `shutdown` turns true.
pub async fn serve_tunnel(
    live: LiveEgressTunnel,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = live.load_full();
    let drain = || live.load().drain_timeout;
    crate::accept::run(
        &cfg.name,
        listener,
        cfg.max_connections,
        shutdown,
        drain,
        |tcp, peer, _| {
            let cfg = live.load_full();
            async move { tunnel_connection(&cfg, tcp, peer).await }
        },
    )
    .await;
}

pub(super) async fn tunnel_connection(
    cfg: &EgressTunnelConfig,
    mut tcp: TcpStream,
    peer: SocketAddr,
) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let (connected, _) =
        super::fallback::connect(&cfg.origin, &cfg.host, cfg.port, &cfg.server_name).await;
    let mut upstream = match connected {
        Ok(s) => s,
        Err(e) => {
            let reason = root_cause(&e);
            tracing::warn!(tunnel = %cfg.name, %peer, target = %format!("{}:{}", cfg.host, cfg.port), error = %reason, "egress tunnel: upstream failed");
            return;
        }
    };
    let sent_cert = upstream.get_ref().1.peer_certificates().is_some();
    // Large buffers: a TLS record carries up to 16 KiB, and bulk transfers move many of them.
    let result =
        tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut upstream, COPY_BUF, COPY_BUF).await;
    let (up, down) = result.unwrap_or((0, 0));
    tracing::info!(
        target: "certgate::access",
        tunnel = %cfg.name,
        %peer,
        target_addr = %format!("{}:{}", cfg.host, cfg.port),
        verified_server = sent_cert,
        bytes_up = up,
        bytes_down = down,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
    );
}
