//! The HTTP ingress: accept TLS, derive the client identity once per connection, then for every
//! request strip identity headers, route, apply policy, add the route's identity headers and
//! proxy to the upstream with bodies streamed both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use certgate_pki::forward::{self, Format, ProxyInfo};
use certgate_pki::{ClientCert, TrustBundle};
use certgate_tls::ClientAuth;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use rustls::ServerConfig;
use rustls_pki_types::UnixTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use arc_swap::ArcSwap;

use crate::front::{self, Forwarded};
use crate::message::{Body, Limits, strip_hop_by_hop, text};
use crate::normal::{self, EncodedSlashes, Malformed, NormalAuthority, NormalPath, Underscores};
use crate::policy::{self, Decision};
use crate::route::{self, Route, Upstream};

/// A resolved `[[ingress]]` listener.
#[derive(Debug)]
pub struct IngressConfig {
    /// Name for logs.
    pub name: String,
    /// TLS configuration (identities, client-auth mode, verifier).
    pub tls: Arc<ServerConfig>,
    /// Client-auth mode, to tell "not requested" from "not sent".
    pub client_auth: ClientAuth,
    /// Trust bundle client certificates are evaluated against.
    pub trust: Option<Arc<TrustBundle>>,
    /// Routes.
    pub routes: Vec<Route>,
    /// What XFCC `By` says.
    pub proxy_info: ProxyInfo,
    /// Set `X-Forwarded-For/-Proto/-Host` and `Forwarded` (replacing incoming values).
    pub x_forwarded: bool,
    /// Limits.
    pub limits: Limits,
    /// Header names with `_` or other characters besides letters, digits and `-`.
    pub underscores: Underscores,
    /// Requests on connections without TLS SNI get 421.
    pub require_sni: bool,
}

/// Facts about one connection, shared by its requests (or, on routes that take forwarded
/// certificates, about one request).
#[derive(Debug)]
struct Conn {
    client: ClientCert,
    sni: Option<String>,
    peer: SocketAddr,
    /// The trusted front proxy a forwarded identity came through.
    via: Option<String>,
}

/// What one connection works with: the listener's configuration as it was when the connection
/// was accepted (a reload affects new connections only), and the shared upstream pool.
struct Shared {
    cfg: Arc<IngressConfig>,
}

/// The live configuration of a listener: swapped whole by a reload, read once per connection.
pub type LiveConfig = Arc<ArcSwap<IngressConfig>>;

/// Serves `live` on `listener` until `shutdown` turns true, then stops accepting. Each new
/// connection takes the configuration current at accept time; `max_connections` is read once.
pub async fn serve(live: LiveConfig, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let cfg = live.load_full();
    // On shutdown, HTTP/1 keep-alive and HTTP/2 connections are told to close after the
    // requests in flight (see `connection`).
    let drain = || live.load().limits.drain_timeout;
    crate::accept::run(
        &cfg.name,
        listener,
        cfg.limits.max_connections,
        shutdown,
        drain,
        |tcp, peer, shutdown| {
            let shared = Arc::new(Shared {
                cfg: live.load_full(),
            });
            connection(shared, tcp, peer, shutdown)
        },
    )
    .await;
}

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = Arc::clone(&shared.cfg);
    let _ = tcp.set_nodelay(true);
    let acceptor = TlsAcceptor::from(Arc::clone(&cfg.tls));
    let started = Instant::now();
    let _open = crate::metrics::Gauge::open(&cfg.name);
    // The handshake's state is boxed and gone once it is done; the TLS stream is boxed so that
    // moving it between the stages of a connection moves a pointer (an idle connection holds
    // the stream and little else).
    let handshake = Box::pin(tokio::time::timeout(
        cfg.limits.handshake_timeout,
        acceptor.accept(tcp),
    ));
    let tls = match handshake.await {
        Ok(Ok(tls)) => {
            crate::metrics::handshake(&cfg.name, "ok", "");
            Box::new(tls)
        }
        Ok(Err(e)) => {
            crate::metrics::handshake(&cfg.name, "failed", crate::metrics::handshake_reason(&e));
            tracing::info!(target: "certgate::handshake", listener = %cfg.name, %peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::handshake(&cfg.name, "timeout", "");
            tracing::info!(target: "certgate::handshake", listener = %cfg.name, %peer, "handshake timed out");
            return;
        }
    };
    let (_, server_conn) = tls.get_ref();
    let client = certgate_tls::client_cert(
        server_conn,
        cfg.client_auth,
        cfg.trust.as_deref(),
        UnixTime::now(),
    );
    let sni = server_conn.server_name().map(normal::server_name);
    // HTTP/2 only by ALPN (RFC 9113 section 3.2); anything else is HTTP/1.1.
    let h2 = server_conn.alpn_protocol() == Some(b"h2".as_slice());
    tracing::debug!(listener = %cfg.name, %peer, handshake_ms = started.elapsed().as_millis() as u64, "handshake done");
    let conn = Arc::new(Conn {
        client,
        sni,
        peer,
        via: None,
    });
    let handler = move |req| {
        let shared = Arc::clone(&shared);
        let conn = Arc::clone(&conn);
        async move { handle(&shared, &conn, req).await }
    };
    let result = if h2 {
        // hyper's HTTP/2 connection state is large and lives in the future: keep it out of the
        // (far more common) HTTP/1 connections' tasks.
        Box::pin(crate::conn::serve_http2(
            tls,
            handler,
            &cfg.limits,
            shutdown,
        ))
        .await
    } else {
        crate::conn::serve_http1(&cfg.name, tls, handler, &cfg.limits, shutdown).await
    };
    if let Err(e) = result {
        tracing::debug!(listener = %cfg.name, %peer, error = %e, "connection ended with an error");
    }
}

/// Removes every identity header of every known format (an app must never see one a client
/// wrote). Returns how
/// many field lines were removed.
pub fn strip_identity_headers(headers: &mut HeaderMap) -> usize {
    let names: Vec<HeaderName> = headers
        .keys()
        // HeaderName is always lower case (HTTP/2 requires it; hyper normalises HTTP/1).
        .filter(|n| forward::is_identity_header_lowercase(n.as_str()))
        .cloned()
        .collect();
    let mut removed = 0;
    for n in names {
        if let header::Entry::Occupied(e) = headers.entry(n) {
            removed += e.iter().count();
            e.remove_entry_mult().1.for_each(drop);
        }
    }
    removed
}

/// What answering a request found out, for the access log and the last touches.
#[derive(Default)]
struct Trace<'a> {
    route: Option<&'a Route>,
    /// The path in normal form, once known (the raw path is logged before that).
    path: Option<String>,
    stripped: usize,
    reason: Option<String>,
    /// The identity a trusted front proxy forwarded, on routes that take one.
    forwarded: Option<Conn>,
    /// The response (and its body) came from a remote upstream.
    proxied: bool,
}

impl Trace<'_> {
    /// A response made here for a refused request; `reason` also goes to the access log.
    fn refuse(&mut self, status: StatusCode, reason: impl Into<String>) -> Response<Body> {
        let reason = reason.into();
        let resp = text(status, &reason);
        self.reason = Some(reason);
        resp
    }
}

async fn handle(shared: &Shared, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
    let cfg = &shared.cfg;
    let started = Instant::now();
    let method = req.method().clone();
    // For the access log of a request refused before its path is in normal form.
    let raw_path = tracing::enabled!(target: "certgate::access", tracing::Level::INFO)
        .then(|| req.uri().path().to_owned());
    let mut trace = Trace::default();
    let mut resp = respond(shared, conn, req, &mut trace).await;
    if method == http::Method::HEAD && !trace.proxied {
        // hyper drops a HEAD response's body on HTTP/1 but sends it on HTTP/2; responses made
        // here lose it in both (the headers, Content-Length included, stay).
        *resp.body_mut() = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
    }
    let path = trace.path.as_deref().or(raw_path.as_deref()).unwrap_or("");
    log_request(
        cfg,
        trace.forwarded.as_ref().unwrap_or(conn),
        trace.route,
        &method,
        path,
        resp.status(),
        started,
        trace.stripped,
        trace.reason.as_deref(),
    );
    resp
}

/// The request pipeline: size, method and normal form first; then route, identity, policy and
/// the upstream. Everything after [`target`] sees the request in normal form only.
async fn respond<'a>(
    shared: &'a Shared,
    conn: &Conn,
    mut req: Request<Incoming>,
    trace: &mut Trace<'a>,
) -> Response<Body> {
    let cfg = &shared.cfg;
    // hyper bounds HTTP/1 heads at no less than 8 KiB; the configured limit is enforced here, the
    // same way for HTTP/1 and HTTP/2 (name, value and 4 bytes of framing per field).
    let head_bytes: usize = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head_bytes > cfg.limits.max_header_bytes {
        return trace.refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request head is larger than {} bytes",
                cfg.limits.max_header_bytes
            ),
        );
    }
    // A reverse proxy has no tunnels to open, and TRACE reflects the request's headers.
    if req.method() == http::Method::CONNECT || req.method() == http::Method::TRACE {
        let mut resp = trace.refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not served here", req.method()),
        );
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return resp;
    }
    if cfg.require_sni && conn.sni.is_none() {
        return trace.refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this listener requires TLS SNI: connect by host name",
        );
    }
    let target = match target(&req, conn.sni.as_deref()) {
        Ok(t) => t,
        Err(m) => return trace.refuse(StatusCode::BAD_REQUEST, m.to_string()),
    };
    trace.path = Some(target.path.forward.clone());
    let host = target.authority.as_ref().map(NormalAuthority::host_name);
    let route = route::select(&cfg.routes, host, &target.path.matched);
    trace.route = route;
    if target.path.encoded_slash
        && route.is_none_or(|r| r.encoded_slashes == EncodedSlashes::Reject)
    {
        return trace.refuse(StatusCode::BAD_REQUEST, "encoded slash (`%2F`) in the path");
    }
    if let Err(m) = rewrite(&mut req, &target) {
        return trace.refuse(StatusCode::BAD_REQUEST, m.to_string());
    }
    // A route that takes certificates forwarded by a front proxy reads its header before the
    // identity headers are stripped; the request's identity is then the forwarded one (or none).
    if let Some(front) = route.and_then(|r| r.front.as_ref()) {
        let header_sent = front.header_sent(req.headers());
        let (client, via) = match front.extract(
            req.headers(),
            conn.peer.ip(),
            &conn.client,
            cfg.trust.as_deref(),
            UnixTime::now(),
        ) {
            Forwarded::Identity(client, via) => (client, Some(via)),
            Forwarded::None(via) => (front::none(), Some(via)),
            Forwarded::Untrusted => (front::none(), None),
            Forwarded::Reject(reason) => {
                if crate::metrics::enabled() {
                    metrics::counter!("certgate_forwarded_total", "listener" => cfg.name.clone(), "result" => "rejected").increment(1);
                }
                return trace.refuse(StatusCode::BAD_REQUEST, reason);
            }
        };
        if header_sent && crate::metrics::enabled() {
            let result = if via.is_some() {
                "trusted"
            } else {
                "untrusted"
            };
            metrics::counter!("certgate_forwarded_total", "listener" => cfg.name.clone(), "result" => result).increment(1);
        }
        if header_sent && via.is_none() {
            tracing::info!(listener = %cfg.name, peer = %conn.peer, headers = ?front.headers, "forwarded certificate header from an untrusted peer removed");
        }
        trace.forwarded = Some(Conn {
            client,
            sni: conn.sni.clone(),
            peer: conn.peer,
            via,
        });
        front.remove_headers(req.headers_mut());
    }
    let conn = trace.forwarded.as_ref().unwrap_or(conn);
    match scrub_headers(req.headers_mut(), cfg.underscores) {
        Ok(n) => trace.stripped = n,
        Err(name) => {
            return trace.refuse(
                StatusCode::BAD_REQUEST,
                format!("header name `{name}` has a character other than letters, digits and `-`"),
            );
        }
    }
    let Some(route) = route else {
        return trace.refuse(StatusCode::NOT_FOUND, "no route for this host and path");
    };
    if let Decision::Deny { status, reason } =
        policy::decide(&route.access, &conn.client, host, conn.sni.as_deref())
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        return trace.refuse(status, reason);
    }
    match &route.upstream {
        Upstream::ForwardAuth => forward_auth(cfg, conn, route),
        Upstream::Echo => echo(cfg, conn, route, &req),
        Upstream::Local(svc) => Box::pin(crate::local::serve(svc.as_ref(), req)).await,
        Upstream::Remote { authority, client } => {
            trace.proxied = true;
            // Boxed: the proxy future is large, and every request's handler future is moved
            // into place; boxing keeps that move small.
            Box::pin(proxy(shared, conn, route, authority, client, host, req)).await
        }
    }
}

/// A request's authority and path in normal form.
struct Target {
    /// `None` only for an HTTP/1.0 request without `Host` on a connection without SNI.
    authority: Option<NormalAuthority>,
    path: NormalPath,
}

/// The request's authority (RFC 9112 §3.2.2: an absolute-form target's authority replaces
/// `Host`; RFC 9113 §8.3.1: `:authority` and `host` must agree; an HTTP/1.0 request without
/// `Host` is for the TLS server name, when there is one) and path, in normal form.
fn target(req: &Request<Incoming>, sni: Option<&str>) -> Result<Target, Malformed> {
    let hosts = req.headers().get_all(header::HOST);
    let mut hosts = hosts.iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(Malformed("more than one `Host` field"));
    }
    let host_field = host_field
        .map(|v| {
            v.to_str()
                .map_err(|_| Malformed("the `Host` field is not ASCII"))
        })
        .transpose()?;
    let default_port = match req.uri().scheme_str() {
        None | Some("https") => 443,
        Some("http") => 80,
        Some(_) => {
            return Err(Malformed(
                "the request target's scheme is not http or https",
            ));
        }
    };
    let from_uri = req
        .uri()
        .authority()
        .map(|a| normal::authority(a.as_str(), default_port))
        .transpose()?;
    let from_field = host_field
        .map(|h| normal::authority(h, default_port))
        .transpose()?;
    let authority = match (from_uri, from_field) {
        (Some(uri), Some(field)) if req.version() == Version::HTTP_2 && uri != field => {
            return Err(Malformed("`:authority` and `host` differ"));
        }
        // HTTP/1.1 absolute form: the target's authority wins, whatever `Host` says.
        (Some(uri), _) => Some(uri),
        (None, Some(field)) => Some(field),
        (None, None) if req.version() == Version::HTTP_10 => sni
            .map(|name| normal::authority(name, default_port))
            .transpose()?,
        (None, None) => return Err(Malformed("the request has no `Host`")),
    };
    let path = normal::path(req.uri().path())?;
    Ok(Target { authority, path })
}

/// Puts the request in its normal form for everything after policy: an origin-form target with
/// the normalised path (query unchanged), and `Host` set to the normalised authority.
fn rewrite(req: &mut Request<Incoming>, target: &Target) -> Result<(), Malformed> {
    let pq = match req.uri().query() {
        Some(q) => format!("{}?{q}", target.path.forward),
        None => target.path.forward.clone(),
    };
    let pq = http::uri::PathAndQuery::try_from(pq)
        .map_err(|_| Malformed("the request target cannot be rebuilt"))?;
    *req.uri_mut() = Uri::from(pq);
    if let Some(a) = &target.authority {
        let v = HeaderValue::try_from(a.to_header())
            .map_err(|_| Malformed("invalid host name in the request authority"))?;
        req.headers_mut().insert(header::HOST, v);
    }
    Ok(())
}

/// Removes every identity header of every known format and applies the
/// listener's rule for header names with `_` (or another character besides letters, digits and
/// `-`). Returns how many field lines were removed, or the name of a field that `Reject`
/// refuses.
fn scrub_headers(headers: &mut HeaderMap, underscores: Underscores) -> Result<usize, String> {
    let mut removed = strip_identity_headers(headers);
    if !headers
        .keys()
        .any(|n| normal::is_unusual_header_name(n.as_str()))
    {
        return Ok(removed);
    }
    let unusual: Vec<HeaderName> = headers
        .keys()
        .filter(|n| normal::is_unusual_header_name(n.as_str()))
        .cloned()
        .collect();
    for n in unusual {
        let remove = match underscores {
            Underscores::Reject => return Err(n.as_str().to_owned()),
            Underscores::Drop => true,
            // An app behind CGI/WSGI reads `X_Client_Verify` as `X-Client-Verify`.
            Underscores::Allow => {
                forward::is_identity_header_lowercase(&normal::cgi_spelling(n.as_str()))
            }
        };
        if remove && let header::Entry::Occupied(e) = headers.entry(n) {
            removed += e.iter().count();
            e.remove_entry_mult().1.for_each(drop);
        }
    }
    Ok(removed)
}

/// Identity headers for a route, as (name, value) pairs ready to insert.
fn identity_headers(
    cfg: &IngressConfig,
    conn: &Conn,
    formats: &[Format],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for f in formats {
        for (name, value) in forward::encode(*f, &conn.client, &cfg.proxy_info) {
            // Every encoder produces visible ASCII or escaped text; skip rather than panic if not.
            match HeaderValue::from_str(&value) {
                Ok(v) => out.push((HeaderName::from_static(name), v)),
                Err(_) => tracing::warn!(
                    header = name,
                    "identity header value is not a valid header value; not sent"
                ),
            }
        }
    }
    if let Some(via) = &conn.via
        && formats.contains(&Format::Certgate)
        && let Ok(v) = HeaderValue::from_str(via)
    {
        out.push((HeaderName::from_static("x-client-forwarded-by"), v));
    }
    out
}

fn set_forwarded(cfg: &IngressConfig, conn: &Conn, host: Option<&str>, headers: &mut HeaderMap) {
    if !cfg.x_forwarded {
        return;
    }
    // Incoming values come from the client and cannot be trusted at the edge: replace them.
    let ip = conn.peer.ip().to_string();
    for n in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
    ] {
        headers.remove(n);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let for_part = if conn.peer.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let mut fwd = format!("for={for_part};proto=https");
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert("x-forwarded-host", v);
        }
        fwd.push_str(&format!(";host=\"{h}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert("forwarded", v);
    }
}

async fn proxy(
    shared: &Shared,
    conn: &Conn,
    route: &Route,
    authority: &http::uri::Authority,
    client: &crate::upstream::UpstreamClient,
    host: Option<&str>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let cfg = &shared.cfg;
    // Only the upgrades the route lists are relayed; any other `Upgrade` is removed with the
    // hop-by-hop fields and the request goes on as a plain one.
    let upgrades = if req.version() == Version::HTTP_11 {
        allowed_upgrades(req.headers(), &route.upgrades)
    } else {
        None
    };
    let client_upgrade = if upgrades.is_some() {
        req.extensions_mut().remove::<crate::conn::ClientUpgrade>()
    } else {
        None
    };
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, false);
    if let Some(protocols) = &upgrades {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocols.clone());
    }
    set_forwarded(cfg, conn, host, headers);
    for (name, value) in identity_headers(cfg, conn, &route.forward) {
        headers.append(name, value);
    }
    let limit = cfg.limits.max_body_bytes;
    if let Some(max) = limit {
        // A declared length over the limit is refused before anything goes upstream.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return too_large(max);
        }
    }
    let req = req.map(|body| match limit {
        Some(max) => {
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed()
        }
        None => body.map_err(Into::into).boxed(),
    });
    let upstream_started = crate::metrics::enabled().then(Instant::now);
    let result = client.request(authority, req).await;
    if let Some(upstream_started) = upstream_started {
        metrics::histogram!("certgate_upstream_seconds", "listener" => cfg.name.clone(), "route" => route.name.clone())
            .record(upstream_started.elapsed().as_secs_f64());
    }
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(max) = limit
                && body_over_limit(&e)
            {
                return too_large(max);
            }
            tracing::warn!(listener = %cfg.name, route = %route.name, upstream = %authority, error = %e, "upstream request failed");
            return text(StatusCode::BAD_GATEWAY, "the upstream is unavailable");
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A switch nobody asked for (or to a protocol other than the one asked for) would hand
        // the client a raw channel to the upstream, past every per-request rule.
        let agreed = upgrades.as_ref().is_some_and(|asked| {
            resp.headers()
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| upgrade_names(asked).any(|a| upgrade_name(p) == a))
        });
        if !agreed || client_upgrade.is_none() {
            tracing::warn!(listener = %cfg.name, route = %route.name, upstream = %authority, "the upstream switched protocols without an allowed upgrade; refused");
            return text(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols unasked",
            );
        }
        if let Some(client_upgrade) = client_upgrade {
            client_upgrade.relay(hyper::upgrade::on(&mut resp));
        }
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    sanitize_response(resp.headers_mut());
    resp.map(|b| b.boxed())
}

/// The protocol name of an `Upgrade` token, lower-case (`WebSocket/13` -> `websocket`).
fn upgrade_name(token: &str) -> String {
    token
        .trim()
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn upgrade_names(value: &HeaderValue) -> impl Iterator<Item = String> + '_ {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(upgrade_name)
        .filter(|n| !n.is_empty())
}

/// The `Upgrade` value to relay: the requested protocols the route allows, in the client's
/// order; `None` when there are none (or no `Connection: upgrade`). `h2c` is never relayed:
/// after its 101 the client would speak HTTP/2 to the upstream directly.
fn allowed_upgrades(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let asked = headers.get(header::UPGRADE)?;
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade || headers.get_all(header::UPGRADE).iter().count() != 1 {
        return None;
    }
    let tokens: Vec<&str> = asked
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|t| {
            let name = upgrade_name(t);
            name != "h2c" && allowed.contains(&name)
        })
        .collect();
    if tokens.is_empty() {
        return None;
    }
    HeaderValue::from_str(&tokens.join(", ")).ok()
}

fn too_large(max: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
}

/// Whether an upstream failure was the request body going over its limit mid-stream.
fn body_over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// RFC 9440 §2: `Client-Cert` fields never appear in responses; a `Vary` on them becomes `*`
/// so that no cache serves one client's response to another.
fn sanitize_response(headers: &mut HeaderMap) {
    if !headers
        .keys()
        .any(|n| n == header::VARY || n.as_str().starts_with("client-cert"))
    {
        return;
    }
    headers.remove("client-cert");
    headers.remove("client-cert-chain");
    let varies_on_cert = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',').any(|f| {
                    f.trim().eq_ignore_ascii_case("client-cert")
                        || f.trim().eq_ignore_ascii_case("client-cert-chain")
                })
            })
            .unwrap_or(false)
    });
    if varies_on_cert {
        headers.remove(header::VARY);
        headers.insert(header::VARY, HeaderValue::from_static("*"));
    }
}

/// Forward-auth (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` HTTP service):
/// policy already allowed the request; answer 200 with the identity as response headers.
fn forward_auth(cfg: &IngressConfig, conn: &Conn, route: &Route) -> Response<Body> {
    let mut resp = text(StatusCode::OK, "ok");
    for (name, value) in identity_headers(cfg, conn, &route.forward) {
        resp.headers_mut().append(name, value);
    }
    resp
}

/// The built-in echo upstream: shows what an upstream behind this route would receive.
fn echo(
    cfg: &IngressConfig,
    conn: &Conn,
    route: &Route,
    req: &Request<Incoming>,
) -> Response<Body> {
    let forwarded: serde_json::Map<String, serde_json::Value> =
        identity_headers(cfg, conn, &route.forward)
            .into_iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    serde_json::Value::String(v.to_str().unwrap_or_default().to_owned()),
                )
            })
            .collect();
    let body = serde_json::json!({
        "route": route.name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "http_version": format!("{:?}", req.version()),
        "client": conn.client,
        "forwarded_headers": forwarded,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(
            serde_json::to_vec_pretty(&body).unwrap_or_default(),
        ))
        .map_err(|never| match never {})
        .boxed(),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[allow(clippy::too_many_arguments)]
fn log_request(
    cfg: &IngressConfig,
    conn: &Conn,
    route: Option<&Route>,
    method: &http::Method,
    path: &str,
    status: StatusCode,
    started: Instant,
    stripped: usize,
    reason: Option<&str>,
) {
    if crate::metrics::enabled() {
        metrics::counter!(
            "certgate_requests_total",
            "listener" => cfg.name.clone(),
            "route" => route.map_or_else(String::new, |r| r.name.clone()),
            "status" => status.as_u16().to_string()
        )
        .increment(1);
    }
    // Nothing below is computed unless the access log is on.
    if !tracing::enabled!(target: "certgate::access", tracing::Level::INFO) {
        return;
    }
    let (spki, subject, verified) = match conn.client.presented() {
        Some(p) => (
            p.identity.spki_sha256.to_hex(),
            p.identity.subject.clone(),
            p.verified().is_some(),
        ),
        None => (String::new(), String::new(), false),
    };
    tracing::info!(
        target: "certgate::access",
        listener = %cfg.name,
        peer = %conn.peer,
        route = route.map_or("", |r| r.name.as_str()),
        method = %method,
        path,
        status = status.as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        client_spki_sha256 = %spki,
        client_subject = %subject,
        client_verified = verified,
        stripped_identity_headers = stripped,
        reason = reason.unwrap_or(""),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_and_those_named_in_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["accept"]
        );
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(h.get("connection").is_none());
        let mut plain = map(&[("accept", "*/*"), ("host", "a")]);
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn responses_lose_client_cert_fields_and_vary_on_them_becomes_star() {
        let mut h = map(&[
            ("client-cert", ":x:"),
            ("client-cert-chain", ":y:"),
            ("vary", "accept, Client-Cert"),
            ("content-type", "text/plain"),
        ]);
        sanitize_response(&mut h);
        assert!(h.get("client-cert").is_none() && h.get("client-cert-chain").is_none());
        assert_eq!(h.get("vary").unwrap(), "*");
        let mut h = map(&[("vary", "accept")]);
        sanitize_response(&mut h);
        assert_eq!(h.get("vary").unwrap(), "accept");
    }
}
