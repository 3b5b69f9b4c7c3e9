//! TCP tunnels: TLS in, TCP out, with identity policy checked after the handshake and an optional
//! PROXY protocol v2 header that tells the target who connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgate_pki::{ClientCert, TrustBundle};
use certgate_tls::ClientAuth;
use futures_util::FutureExt as _;
use rustls::ServerConfig;
use rustls_pki_types::UnixTime;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::policy::{self, Access, Decision};
use crate::proxy_protocol::{self, Mode, TlsFacts};

/// A resolved `[[tunnel]]`.
#[derive(Debug)]
pub struct TunnelConfig {
    /// Name for logs.
    pub name: String,
    /// TLS configuration.
    pub tls: Arc<ServerConfig>,
    /// Client-auth mode.
    pub client_auth: ClientAuth,
    /// Trust bundle client certificates are evaluated against.
    pub trust: Option<Arc<TrustBundle>>,
    /// Where to connect, `host:port`.
    pub target: String,
    /// The PROXY header to send.
    pub proxy_protocol: Mode,
    /// Who may connect.
    pub access: Access,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to connect to the target.
    pub connect_timeout: Duration,
    /// On shutdown, how long open streams may take to end.
    pub drain_timeout: Duration,
}

/// The live configuration of a tunnel (see [`crate::LiveConfig`]).
pub type LiveTunnel = Arc<arc_swap::ArcSwap<TunnelConfig>>;

/// Serves a tunnel until `shutdown` turns true. After each reload (`changes`), an open stream
/// whose client is no longer admitted (revoked, no longer verifying, or refused by the new
/// `allow`) is closed.
pub async fn serve(
    live: LiveTunnel,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    changes: watch::Receiver<()>,
) {
    let cfg = live.load_full();
    // Streams in progress get up to `drain_timeout` to end by themselves.
    let drain = || live.load().drain_timeout;
    crate::accept::run(
        &cfg.name,
        listener,
        cfg.max_connections,
        shutdown,
        drain,
        |tcp, peer, _| {
            let cfg = live.load_full();
            let live = Arc::clone(&live);
            let mut changes = changes.clone();
            changes.mark_unchanged();
            async move { connection(&cfg, &live, changes, tcp, peer).await }
        },
    )
    .await;
}

async fn connection(
    cfg: &TunnelConfig,
    live: &LiveTunnel,
    changes: watch::Receiver<()>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _open = crate::metrics::Gauge::open(&cfg.name);
    let Some(mut tls) = crate::accept::tls_handshake(
        &cfg.name,
        "tunnel",
        &cfg.tls,
        cfg.handshake_timeout,
        tcp,
        peer,
    )
    .await
    else {
        return;
    };
    let (_, conn) = tls.get_ref();
    let client =
        certgate_tls::client_cert(conn, cfg.client_auth, cfg.trust.as_deref(), UnixTime::now());
    if let Decision::Deny { reason, .. } = policy::identity(&cfg.access, &client) {
        // TCP has no status line: close after the handshake, and say why in the log.
        tracing::info!(target: "certgate::access", tunnel = %cfg.name, %peer, denied = %reason, "connection refused by policy");
        let _ = tls.shutdown().await;
        return;
    }
    let mut revoked = crate::conn::WhenWoken::new(crate::recheck::until_refused(changes, || {
        let new = live.load_full();
        crate::recheck::still_admitted(&client, new.client_auth, new.trust.as_deref())?;
        match policy::identity(&new.access, &client) {
            Decision::Deny { reason, .. } => Err(format!("the new policy refuses it ({reason})")),
            Decision::Allow => Ok(()),
        }
    }));
    // A reload that came during the handshake is judged before the target hears of the client.
    if let Some(why) = (&mut revoked).now_or_never() {
        crate::metrics::closed(&cfg.name, "no_longer_admitted");
        tracing::info!(tunnel = %cfg.name, %peer, reason = %why, "stream closed after a reload: its client is no longer admitted");
        let _ = tls.shutdown().await;
        return;
    }
    let facts = tls_facts(conn, &client);
    let header = match proxy_protocol::encode(cfg.proxy_protocol, peer, local, &facts) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(tunnel = %cfg.name, %peer, error = %e, "cannot build the PROXY header; closing");
            return;
        }
    };
    let mut upstream = match tokio::time::timeout(
        cfg.connect_timeout,
        TcpStream::connect(&cfg.target),
    )
    .await
    {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::warn!(tunnel = %cfg.name, target = %cfg.target, error = %e, "cannot connect to the target");
            return;
        }
        Err(_) => {
            tracing::warn!(tunnel = %cfg.name, target = %cfg.target, "connecting to the target timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if !header.is_empty() && upstream.write_all(&header).await.is_err() {
        return;
    }
    let (spki, verified) = match client.presented() {
        Some(p) => (p.identity.spki_sha256.to_hex(), p.verified().is_some()),
        None => (String::new(), false),
    };
    let started = std::time::Instant::now();
    // The reload check first, on every wake-up it was woken for: no byte moves under a verdict a
    // reload overturned.
    let (up, down) = tokio::select! {
        biased;
        why = revoked => {
            crate::metrics::closed(&cfg.name, "no_longer_admitted");
            tracing::info!(tunnel = %cfg.name, %peer, reason = %why, "stream closed after a reload: its client is no longer admitted");
            // Nothing more reaches the client, not even what is queued for it.
            crate::closing::reset_now(tls.get_ref().0);
            (0, 0)
        }
        result = tokio::io::copy_bidirectional(&mut tls, &mut upstream) => result.unwrap_or((0, 0)),
    };
    tracing::info!(
        target: "certgate::access",
        tunnel = %cfg.name,
        %peer,
        client_spki_sha256 = %spki,
        client_verified = verified,
        bytes_in = up,
        bytes_out = down,
        duration_ms = started.elapsed().as_millis() as u64,
    );
}

pub(crate) fn tls_facts(conn: &rustls::ServerConnection, client: &ClientCert) -> TlsFacts {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
    .to_owned();
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .map(|n| n.replacen("TLS13_", "TLS_", 1));
    let presented = client.presented();
    TlsFacts {
        version,
        cipher,
        sni: conn.server_name().map(str::to_owned),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        client_cert: presented.is_some(),
        verified: presented.is_some_and(|p| p.verified().is_some()),
        cn: presented.and_then(|p| p.identity.common_name.clone()),
        cert_der: presented.map(|p| p.identity.der.to_vec()),
    }
}
