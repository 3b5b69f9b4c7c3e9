//! Egress: certgate presents the right client certificate on outgoing connections.
//!
//! Two modes. The forward proxy (`[egress]`) serves apps that honour `HTTP_PROXY`/`HTTPS_PROXY`:
//! an absolute-form `http://` request to a host with a rule goes upstream over mTLS https (TLS
//! origination); `CONNECT host:port` to a host with a rule is intercepted with the local
//! interception CA and each request inside is re-originated with the rule's identity; `CONNECT`
//! to any other host is a blind tunnel, never intercepted. Tunnels (`[[egress.tunnel]]`) take
//! plain TCP on a local port and connect it to a remote TLS server with the chosen identity.
//!
//! Which certificate goes where is decided in `certgate_tls::egress`; a client certificate is
//! only ever sent to a server whose own certificate verified against the rule's trust.

mod enforce;
pub mod fallback;
pub mod gate;
mod intercept;
mod rules;
mod tunnel;

pub use intercept::Interceptor;
pub use rules::{
    Allowed, Destination, EgressRule, HostPattern, select, split_authority, tls_port,
    valid_authority, valid_host,
};
pub use tunnel::{EgressTunnelConfig, LiveEgressTunnel, serve_tunnel};

use intercept::{Intercept, intercept, originate};
use rules::{client_builder, http_connector};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::idle::{Activity, Tracked};
use crate::message::{Body, strip_hop_by_hop, text};
use gate::OutBody;

/// A request body the egress forwards: the client's, as hyper reads it.
pub(crate) type ForwardBody = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// The resolved `[egress]` forward proxy.
#[derive(Debug)]
pub struct EgressConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Destination rules.
    pub rules: Vec<EgressRule>,
    /// When non-empty, the only destinations (besides the rules' own) the proxy reaches.
    pub allow: Vec<Allowed>,
    /// Intercepts `CONNECT` to hosts with a rule; without it, such a `CONNECT` is refused.
    pub interceptor: Option<Arc<Interceptor>>,
    /// Open client connections at most.
    pub max_connections: usize,
    /// Time allowed to connect upstream.
    pub connect_timeout: Duration,
    /// On shutdown, how long open connections may take to end (tunnels included).
    pub drain_timeout: Duration,
    /// Time allowed for a request head, and for the TLS handshake of an intercepted `CONNECT`.
    pub header_timeout: Duration,
    /// A connection (or tunnel) with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// What the content-trust gates learnt (named digests, allowed redirects); shared by every
    /// rule's gate (a reload starts afresh).
    pub gate_state: Arc<gate::GateState>,
    plain: Client<HttpConnector, ForwardBody>,
}

impl EgressConfig {
    /// A forward proxy over `rules`.
    pub fn new(
        name: String,
        rules: Vec<EgressRule>,
        allow: Vec<Allowed>,
        interceptor: Option<Arc<Interceptor>>,
    ) -> Self {
        let connect_timeout = Duration::from_secs(10);
        Self {
            name,
            rules,
            allow,
            interceptor,
            max_connections: 1024,
            connect_timeout,
            drain_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            gate_state: Arc::default(),
            plain: client_builder().build(http_connector(connect_timeout)),
        }
    }

    fn allowed(&self, d: &Destination<'_>) -> bool {
        self.allow.is_empty()
            || select(&self.rules, d).is_some()
            || self
                .allow
                .iter()
                .any(|a| a.host.matches(d.host) && a.port.is_none_or(|p| p == d.port))
    }
}

/// The live configuration of the forward proxy (see [`crate::LiveConfig`]).
pub type LiveEgress = Arc<arc_swap::ArcSwap<EgressConfig>>;

/// Serves the forward proxy until `shutdown` turns true.
pub async fn serve(live: LiveEgress, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let cfg = live.load_full();
    let drain = || live.load().drain_timeout;
    crate::accept::run(
        &cfg.name,
        listener,
        cfg.max_connections,
        shutdown,
        drain,
        |tcp, peer, shutdown| connection(Arc::clone(&live), tcp, peer, shutdown),
    )
    .await;
}

/// What a `CONNECT` turns its connection into once the `200` is written: run by the
/// connection's own task, so that a tunnel keeps its slot under `max_connections`, meets the
/// idle timeout and ends with the drain.
type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

type TunnelSlot = Arc<Mutex<Option<Tunnel>>>;

/// One client connection of the forward proxy: HTTP/1.1 requests until one is a `CONNECT`,
/// then its tunnel.
async fn connection(
    live: LiveEgress,
    tcp: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let cfg = live.load_full();
    let activity = Activity::new();
    let tcp = Tracked::new(tcp, Arc::clone(&activity));
    let slot: TunnelSlot = Arc::default();
    let service = {
        let slot = Arc::clone(&slot);
        hyper::service::service_fn(move |req| {
            let cfg = live.load_full();
            let slot = Arc::clone(&slot);
            async move { Ok::<_, std::convert::Infallible>(handle(cfg, peer, req, &slot).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = activity.idle(cfg.idle_timeout, IDLE_TICK) => {
            tracing::debug!(%peer, "egress connection idle timeout");
            return;
        }
        () = stopping(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "egress connection ended with an error");
    }
    let tunnel = slot.lock().ok().and_then(|mut s| s.take());
    let Some(tunnel) = tunnel else {
        return;
    };
    let drained = async {
        stopping(&mut shutdown).await;
        tokio::time::sleep(cfg.drain_timeout).await;
    };
    tokio::select! {
        () = tunnel => {}
        () = activity.idle(cfg.idle_timeout, IDLE_TICK) => tracing::debug!(%peer, "egress tunnel idle timeout"),
        () = drained => tracing::debug!(%peer, "drain timeout: egress tunnel closed"),
    }
}

/// Resolves once `shutdown` is (or turns) true.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// How often an egress connection checks its idle timeout.
const IDLE_TICK: Duration = Duration::from_millis(250);

async fn handle(
    cfg: Arc<EgressConfig>,
    peer: SocketAddr,
    req: Request<Incoming>,
    tunnel: &TunnelSlot,
) -> Response<OutBody> {
    let started = Instant::now();
    let method = req.method().clone();
    // Logged without the query, which may carry secrets; built only when the log is on.
    let target = access_log_on().then(|| match (req.uri().scheme_str(), req.uri().authority()) {
        (Some(scheme), Some(a)) => format!("{scheme}://{a}{}", req.uri().path()),
        (None, Some(a)) => a.to_string(),
        _ => req.uri().path().to_owned(),
    });
    let (resp, how) = if method == Method::CONNECT {
        let (resp, how) = connect(&cfg, peer, req, tunnel).await;
        (resp, how)
    } else {
        absolute(&cfg, req).await
    };
    access(
        &cfg.name,
        peer,
        &method,
        target.as_deref(),
        how,
        resp.status(),
        started,
    );
    resp
}

fn access_log_on() -> bool {
    tracing::enabled!(target: "certgate::access", tracing::Level::INFO)
}

/// One count and (when the access log is on and `url` was built) one JSON access-log line per
/// request (or `CONNECT`).
fn access(
    listener: &str,
    peer: SocketAddr,
    method: &Method,
    url: Option<&str>,
    mode: &'static str,
    status: StatusCode,
    started: Instant,
) {
    if crate::metrics::enabled() {
        metrics::counter!("certgate_egress_requests_total", "mode" => mode, "status" => status.as_u16().to_string()).increment(1);
    }
    let Some(url) = url else {
        return;
    };
    tracing::info!(
        target: "certgate::access",
        listener,
        %peer,
        method = %method,
        url,
        mode,
        status = status.as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
    );
}

/// `GET http://host/path` (absolute form): TLS origination when a rule matches, else plain.
async fn absolute(cfg: &EgressConfig, req: Request<Incoming>) -> (Response<OutBody>, &'static str) {
    let Some(authority) = req.uri().authority().cloned() else {
        return (
            text(
                StatusCode::BAD_REQUEST,
                "this is a forward proxy: send absolute-form requests (`GET http://host/path`) or CONNECT",
            ),
            "refused",
        );
    };
    if !valid_authority(&authority) {
        return (
            text(
                StatusCode::BAD_REQUEST,
                format!("`{authority}` is not a host and port this proxy acts on"),
            ),
            "refused",
        );
    }
    let scheme = req
        .uri()
        .scheme_str()
        .unwrap_or("http")
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return (
            text(
                StatusCode::BAD_REQUEST,
                format!("`{scheme}://` URLs are not proxied: only http:// and https://"),
            ),
            "refused",
        );
    }
    let (host, port) = split_authority(&authority, if scheme == "https" { 443 } else { 80 });
    let path = req.uri().path().to_owned();
    let tls_port = tls_port(&scheme, port);
    let tls_dest = Destination {
        host: &host,
        port: tls_port,
        path: Some(&path),
    };
    if let Some(rule) = select(&cfg.rules, &tls_dest) {
        let resp = enforce::originate_gated(cfg, rule, &host, tls_port, req, true).await;
        return (resp, "originate");
    }
    if scheme != "http" {
        return (
            text(
                StatusCode::BAD_REQUEST,
                format!("no egress rule for {host}:{port}; use CONNECT for https:// URLs"),
            ),
            "refused",
        );
    }
    let plain_dest = Destination {
        host: &host,
        port,
        path: Some(&path),
    };
    if !cfg.allowed(&plain_dest) {
        return (not_allowed(&host, port), "refused");
    }
    let mut req = req.map(|b| b.boxed());
    strip_hop_by_hop(req.headers_mut(), false);
    let resp = match cfg.plain.request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            resp.map(|b| b.map_err(Into::into).boxed())
        }
        Err(e) => bad_gateway(&host, port, &e),
    };
    (resp, "plain")
}

/// The URL a gate matches for a request to `https://host:port` with `path`: the port only when
/// it is not 443, the path in its normal form (percent-escapes of unreserved characters decoded,
/// dot segments removed), so that another spelling of a gated URL is gated too. `None` when the
/// path has no normal form (then the request is gated: a gate fails closed).
pub(crate) fn gate_url(host: &str, port: u16, path: &str) -> Option<String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let path = crate::normal::path(path).ok()?.matched;
    Some(if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    })
}

fn not_allowed(host: &str, port: u16) -> Response<Body> {
    text(
        StatusCode::FORBIDDEN,
        format!("{host}:{port} is not on the egress allow list"),
    )
}

/// The innermost cause of an upstream failure, which names the real problem (e.g. "invalid
/// peer certificate: UnknownIssuer").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn bad_gateway(host: &str, port: u16, e: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let reason = root_cause(e);
    tracing::warn!(upstream = %format!("{host}:{port}"), error = %reason, "egress upstream failed");
    text(
        StatusCode::BAD_GATEWAY,
        format!("certgate egress: {host}:{port}: {reason}"),
    )
}

/// `CONNECT host:port`: intercepted when a rule matches, else a blind tunnel.
async fn connect(
    cfg: &Arc<EgressConfig>,
    peer: SocketAddr,
    req: Request<Incoming>,
    tunnel: &TunnelSlot,
) -> (Response<Body>, &'static str) {
    let Some(authority) = req.uri().authority().cloned() else {
        return (
            text(StatusCode::BAD_REQUEST, "CONNECT needs host:port"),
            "refused",
        );
    };
    if !valid_authority(&authority) {
        return (
            text(
                StatusCode::BAD_REQUEST,
                format!("CONNECT `{authority}`: not a host and port this proxy acts on"),
            ),
            "refused",
        );
    }
    let (host, port) = split_authority(&authority, 443);
    let dest = Destination {
        host: &host,
        port,
        path: None,
    };
    let outside = cfg.interceptor.as_ref().is_some_and(|i| !i.covers(&host));
    // A destination a content-trust gate covers is never tunneled blind: the gate would not see
    // what it serves.
    let gated = cfg.gate_covers_origin(&host, port) || cfg.gate_for_registry(&host, port).is_some();
    if gated && (outside || select(&cfg.rules, &dest).is_none()) {
        tracing::warn!(%host, port, "CONNECT refused: a content-trust gate covers {host}:{port}, but it cannot be intercepted (no egress rule for it, or outside the interception CA's name constraints)");
        return (
            text(
                StatusCode::FORBIDDEN,
                format!(
                    "{host}:{port}: downloads from it must be checked (content trust), but certgate cannot intercept it: add an egress rule for it, and an interception CA that covers it"
                ),
            ),
            "refused",
        );
    }
    if outside && select(&cfg.rules, &dest).is_some() {
        tracing::warn!(%host, port, "{host} has an egress rule but is outside the interception CA's name constraints: tunneled blind (regenerate the CA with `certgate egress ca --config ... --force` to intercept it)");
    }
    if !outside && select(&cfg.rules, &dest).is_some() {
        let Some(interceptor) = cfg.interceptor.clone() else {
            return (
                text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{host}:{port} has an egress rule but no interception CA is configured (`intercept_ca`): use http:// URLs, or create one with `certgate egress ca`"
                    ),
                ),
                "refused",
            );
        };
        // Minting a certificate is CPU work: off the async threads.
        let minted = {
            let host = host.clone();
            tokio::task::spawn_blocking(move || interceptor.server_config(&host)).await
        };
        let server = match minted.unwrap_or_else(|e| Err(format!("minting failed: {e}"))) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%host, error = %e, "interception failed");
                return (text(StatusCode::INTERNAL_SERVER_ERROR, e), "intercept");
            }
        };
        let job = Intercept {
            server,
            cfg: Arc::clone(cfg),
            host,
            port,
            peer,
        };
        let upgrade = hyper::upgrade::on(req);
        set_tunnel(tunnel, async move {
            match upgrade.await {
                Ok(upgraded) => intercept(upgraded, job).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return (Response::new(empty()), "intercept");
    }
    if !cfg.allowed(&dest) {
        return (not_allowed(&host, port), "refused");
    }
    // Connect first, so that a failure is a 502 the client sees rather than a dead tunnel.
    let upstream = match tokio::time::timeout(
        cfg.connect_timeout,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (bad_gateway(&host, port, &e), "tunnel"),
        Err(_) => {
            return (
                text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("certgate egress: {host}:{port}: connect timed out"),
                ),
                "tunnel",
            );
        }
    };
    let _ = upstream.set_nodelay(true);
    let upgrade = hyper::upgrade::on(req);
    set_tunnel(tunnel, async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut upstream = upstream;
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    (Response::new(empty()), "tunnel")
}

fn set_tunnel(slot: &TunnelSlot, tunnel: impl Future<Output = ()> + Send + 'static) {
    if let Ok(mut s) = slot.lock() {
        *s = Some(Box::pin(tunnel));
    }
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}
