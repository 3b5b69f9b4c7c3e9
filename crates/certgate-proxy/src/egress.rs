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

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certgate_pki::ca::{Ca, KeyType, LeafKind, LeafRequest};
use certgate_tls::egress::ChooseIdentity;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::idle::{Activity, Tracked};
use crate::message::{Body, strip_hop_by_hop, text};

/// A host pattern: exact, `*.suffix` (one or more labels), or `*` (any host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.suffix` (stored with the leading dot).
    Suffix(String),
    /// Any host.
    Any,
}

impl HostPattern {
    /// Parses `host`, `*.domain` or `*`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Some(Self::Any);
        }
        let (pattern, name) = match s.strip_prefix("*.") {
            Some(rest) => (Self::Suffix(format!(".{rest}")), rest.to_owned()),
            None => (Self::Exact(s.clone()), s.clone()),
        };
        let valid = !name.is_empty()
            && !name.contains('*')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        valid.then_some(pattern)
    }

    /// Whether `host` (lower case) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Suffix(s) => certgate_pattern::wildcard_host(
                host,
                s.strip_prefix('.').unwrap_or(s),
                certgate_pattern::Labels::OneOrMore,
            ),
            Self::Any => true,
        }
    }

    /// How specific the pattern is: exact beats any wildcard, a longer suffix beats a shorter.
    fn specificity(&self) -> usize {
        match self {
            Self::Exact(h) => 10_000 + h.len(),
            Self::Suffix(s) => s.len(),
            Self::Any => 0,
        }
    }
}

/// Where a request or connection is going.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    /// Host, lower case, without brackets.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Request path, when known (HTTP only).
    pub path: Option<&'a str>,
}

/// One `[[egress.rule]]`, resolved.
pub struct EgressRule {
    /// Name for logs and `explain`.
    pub name: String,
    /// Host pattern.
    pub host: HostPattern,
    /// Port; `None` matches any.
    pub port: Option<u16>,
    /// Path prefix (HTTP only); `/` matches everything.
    pub path: String,
    /// The TLS client: trust, pin, identities, ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// Chooses the identity per CertificateRequest.
    pub chooser: Arc<ChooseIdentity>,
    /// The names of its identities, in order.
    pub identities: Vec<String>,
    /// The server name to send and verify instead of the destination host.
    pub sni: Option<ServerName<'static>>,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl std::fmt::Debug for EgressRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRule")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(connect_timeout));
    c.enforce_http(false);
    c
}

fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60));
    b
}

impl EgressRule {
    /// A rule with its pooled HTTPS client.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        host: HostPattern,
        port: Option<u16>,
        path: String,
        tls: Arc<rustls::ClientConfig>,
        chooser: Arc<ChooseIdentity>,
        identities: Vec<String>,
        sni: Option<ServerName<'static>>,
    ) -> Self {
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*tls).clone());
        let builder = builder.https_only();
        let connector = match &sni {
            Some(name) => builder
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name.clone()))
                .enable_http1()
                .wrap_connector(http_connector(Duration::from_secs(10))),
            None => builder
                .enable_http1()
                .wrap_connector(http_connector(Duration::from_secs(10))),
        };
        Self {
            name,
            host,
            port,
            path,
            tls,
            chooser,
            identities,
            sni,
            client: client_builder().build(connector),
        }
    }

    /// How well the rule matches, or `None`. Git-style: the most specific host wins, then an
    /// explicit port, then the longest path prefix.
    fn score(&self, d: &Destination<'_>) -> Option<(usize, bool, usize)> {
        if !self.host.matches(d.host) || self.port.is_some_and(|p| p != d.port) {
            return None;
        }
        let path_len = match d.path {
            Some(path) if path_matches(&self.path, path) => self.path.len(),
            Some(_) => return None,
            None => 0,
        };
        Some((self.host.specificity(), self.port.is_some(), path_len))
    }

    /// The server name this rule verifies for `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.sni {
            Some(n) => Ok(n.clone()),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| format!("`{host}` is not a valid server name")),
        }
    }
}

fn path_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
}

/// The rule for a destination: the longest match wins. With `path = None` (a `CONNECT`, where
/// the path is not known yet) every path prefix matches.
pub fn select<'a>(rules: &'a [EgressRule], d: &Destination<'_>) -> Option<&'a EgressRule> {
    rules
        .iter()
        .filter_map(|r| r.score(d).map(|s| (s, r)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, r)| r)
}

/// The local CA that signs certificates for intercepted hosts, and its per-host cache.
pub struct Interceptor {
    ca: Ca,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Hosts whose minted certificate is kept; past this the cache starts afresh.
const MINTED_CACHE: usize = 1024;

impl Interceptor {
    /// An interceptor signing with `ca`.
    pub fn new(ca: Ca) -> Self {
        Self {
            ca,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The TLS server configuration that presents a certificate for `host`, minted on first use.
    fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        if let Some(c) = self.configs.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let (dns, ip) = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => (vec![], vec![ip]),
            Err(_) => (vec![host.to_owned()], vec![]),
        };
        let issued = self
            .ca
            .issue(
                &LeafRequest {
                    kind: LeafKind::Server,
                    name: host.to_owned(),
                    dns,
                    ip,
                    uri: vec![],
                    email: vec![],
                    days: 7,
                    key_type: KeyType::EcdsaP256,
                },
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| format!("cannot mint a certificate for {host}: {e}"))?;
        let chain: Vec<CertificateDer<'static>> =
            vec![issued.cert_der, self.ca.certificate().clone()];
        let config = certgate_tls::egress::intercept_server_config(chain, issued.key_der)
            .map_err(|e| format!("minted certificate for {host}: {e}"))?;
        if let Ok(mut m) = self.configs.lock() {
            if m.len() >= MINTED_CACHE {
                m.clear();
            }
            m.insert(host.to_owned(), Arc::clone(&config));
        }
        Ok(config)
    }
}

/// Where the forward proxy may connect.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// Host pattern.
    pub host: HostPattern,
    /// Port; `None` allows any.
    pub port: Option<u16>,
}

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
    plain: Client<HttpConnector, Body>,
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

/// Host (lower case, without brackets) and port of an authority, the scheme's default port when
/// it names none.
pub fn split_authority(a: &http::uri::Authority, default_port: u16) -> (String, u16) {
    let host = a
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    (host, a.port_u16().unwrap_or(default_port))
}

async fn handle(
    cfg: Arc<EgressConfig>,
    peer: SocketAddr,
    req: Request<Incoming>,
    tunnel: &TunnelSlot,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    // Logged without the query, which may carry secrets; built only when the log is on.
    let target = access_log_on().then(|| match (req.uri().scheme_str(), req.uri().authority()) {
        (Some(scheme), Some(a)) => format!("{scheme}://{a}{}", req.uri().path()),
        (None, Some(a)) => a.to_string(),
        _ => req.uri().path().to_owned(),
    });
    let (resp, how) = if method == Method::CONNECT {
        connect(&cfg, peer, req, tunnel).await
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

/// The port an `http://` URL is originated to over https: 80 becomes 443, any other port is
/// kept (and an `https://` URL's port is its own).
pub fn tls_port(scheme: &str, port: u16) -> u16 {
    if scheme == "http" && port == 80 {
        443
    } else {
        port
    }
}

/// `GET http://host/path` (absolute form): TLS origination when a rule matches, else plain.
async fn absolute(cfg: &EgressConfig, req: Request<Incoming>) -> (Response<Body>, &'static str) {
    let Some(authority) = req.uri().authority().cloned() else {
        return (
            text(
                StatusCode::BAD_REQUEST,
                "this is a forward proxy: send absolute-form requests (`GET http://host/path`) or CONNECT",
            ),
            "refused",
        );
    };
    let scheme = req
        .uri()
        .scheme_str()
        .unwrap_or("http")
        .to_ascii_lowercase();
    let (host, port) = split_authority(&authority, if scheme == "https" { 443 } else { 80 });
    let path = req.uri().path().to_owned();
    let tls_port = tls_port(&scheme, port);
    let tls_dest = Destination {
        host: &host,
        port: tls_port,
        path: Some(&path),
    };
    if let Some(rule) = select(&cfg.rules, &tls_dest) {
        let resp = originate(&rule.client, &host, tls_port, req).await;
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
    match cfg.plain.request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            (resp.map(|b| b.boxed()), "plain")
        }
        Err(e) => (bad_gateway(&host, port, &e), "plain"),
    }
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
    let (host, port) = split_authority(&authority, 443);
    let dest = Destination {
        host: &host,
        port,
        path: None,
    };
    if select(&cfg.rules, &dest).is_some() {
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

/// The rule for a request inside an intercepted connection: the one its path selects, else the
/// host's least specific rule.
fn intercepted_rule<'a>(
    rules: &'a [EgressRule],
    host: &str,
    port: u16,
    path: &str,
) -> Option<&'a EgressRule> {
    let with_path = Destination {
        host,
        port,
        path: Some(path),
    };
    let any_path = Destination {
        path: None,
        ..with_path
    };
    select(rules, &with_path).or_else(|| {
        rules
            .iter()
            .filter_map(|r| r.score(&any_path).map(|s| ((s, r.path.len()), r)))
            .min_by_key(|(s, _)| *s)
            .map(|(_, r)| r)
    })
}

/// An intercepted `CONNECT`: where it goes and what serves it.
struct Intercept {
    server: Arc<ServerConfig>,
    /// The configuration at `CONNECT` time (a reload meanwhile does not change this tunnel).
    cfg: Arc<EgressConfig>,
    host: String,
    port: u16,
    peer: SocketAddr,
}

/// Inside an intercepted CONNECT: TLS with a minted certificate, then each request goes to
/// `https://host:port` with the identity of the rule its path selects.
async fn intercept(upgraded: hyper::upgrade::Upgraded, job: Intercept) {
    let Intercept {
        server,
        cfg,
        host,
        port,
        peer,
    } = job;
    let handshake = tokio_rustls::TlsAcceptor::from(server).accept(TokioIo::new(upgraded));
    let tls = match tokio::time::timeout(cfg.header_timeout, handshake).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(%host, error = %e, "the client refused the interception certificate (does it trust the egress CA?)");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "intercepted TLS handshake timed out");
            return;
        }
    };
    let header_timeout = cfg.header_timeout;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let cfg = Arc::clone(&cfg);
        let host = host.clone();
        async move {
            let path = req.uri().path().to_owned();
            let rule = intercepted_rule(&cfg.rules, &host, port, &path);
            let started = Instant::now();
            let method = req.method().clone();
            let resp = match rule {
                Some(rule) => {
                    tracing::debug!(rule = %rule.name, %host, %path, "intercepted request");
                    originate(&rule.client, &host, port, req).await
                }
                None => text(StatusCode::BAD_GATEWAY, "no egress rule"),
            };
            let url = access_log_on().then(|| format!("https://{host}:{port}{path}"));
            access(
                &cfg.name,
                peer,
                &method,
                url.as_deref(),
                "intercepted",
                resp.status(),
                started,
            );
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}

/// Sends `req` to `https://host:port` through `client`, i.e. with its rule's identity.
async fn originate(
    client: &Client<HttpsConnector<HttpConnector>, Body>,
    host: &str,
    port: u16,
    req: Request<Incoming>,
) -> Response<Body> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let authority = if port == 443 {
        host.to_owned()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Ok(uri) = Uri::builder()
        .scheme("https")
        .authority(authority.as_str())
        .path_and_query(path_and_query)
        .build()
    else {
        return text(StatusCode::BAD_REQUEST, "bad request target");
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, false);
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(header::HOST, v);
    }
    let req = Request::from_parts(parts, body.boxed());
    match client.request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            resp.map(|b| b.boxed())
        }
        Err(e) => bad_gateway(host, port, &e),
    }
}

/// Per-direction buffer of a tunnel's copy loop.
const COPY_BUF: usize = 64 * 1024;

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
    /// The TLS client: trust, pin, identities, ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time allowed to connect and finish the TLS handshake.
    pub connect_timeout: Duration,
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

async fn tunnel_connection(cfg: &EgressTunnelConfig, mut tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&cfg.tls));
    let connected = tokio::time::timeout(cfg.connect_timeout, async {
        let upstream = TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
        let _ = upstream.set_nodelay(true);
        connector.connect(cfg.server_name.clone(), upstream).await
    })
    .await;
    let mut upstream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = root_cause(&e);
            tracing::warn!(tunnel = %cfg.name, %peer, target = %format!("{}:{}", cfg.host, cfg.port), error = %reason, "egress tunnel: upstream failed");
            return;
        }
        Err(_) => {
            tracing::warn!(tunnel = %cfg.name, %peer, "egress tunnel: connect timed out");
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
