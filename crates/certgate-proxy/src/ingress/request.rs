//! The request pipeline: normalise (size, method, [`target`], [`rewrite`]), route, scrub
//! identity headers, apply policy, then answer locally or hand over to [`super::proxy`].

use std::time::Instant;

use bytes::Bytes;
use certgate_pki::forward::{self};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use rustls_pki_types::UnixTime;

use super::access_log::{Trace, log_request};
use super::builtin::{echo, forward_auth};
use super::proxy::proxy;
use super::{Conn, Shared, strip_identity_headers};
use crate::front::{self, Forwarded};
use crate::message::Body;
use crate::normal::{self, EncodedSlashes, Malformed, NormalAuthority, NormalPath, Underscores};
use crate::policy::{self, Decision};
use crate::route::{self, Upstream};

pub(super) async fn handle(shared: &Shared, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
    let cfg = &shared.cfg;
    let logged = tracing::enabled!(target: "certgate::access", tracing::Level::INFO);
    // The clock is read only for the access log's duration.
    let started = logged.then(Instant::now);
    let method = req.method().clone();
    // For the access log of a request refused before its path is in normal form.
    let raw_path = logged.then(|| req.uri().path().to_owned());
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
pub(super) async fn respond<'a>(
    shared: &'a Shared,
    conn: &Conn,
    mut req: Request<Incoming>,
    trace: &mut Trace<'a>,
) -> Response<Body> {
    let cfg = &shared.cfg;
    if shared.no_longer_admitted {
        return trace.refuse(
            StatusCode::FORBIDDEN,
            "the client is no longer admitted (its certificate was revoked or the policy changed); the connection is closing",
        );
    }
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
    // Methods are case-sensitive, but an upstream that upper-cases them would read `trace` as
    // TRACE; `TRACK` is IIS's TRACE.
    let method = req.method().as_str();
    if ["CONNECT", "TRACE", "TRACK"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
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
    match scrub_headers(req.headers_mut(), cfg) {
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
pub(super) struct Target {
    /// `None` only for an HTTP/1.0 request without `Host` on a connection without SNI.
    authority: Option<NormalAuthority>,
    path: NormalPath,
}

/// The request's authority (RFC 9112 §3.2.2: an absolute-form target's authority replaces
/// `Host`; RFC 9113 §8.3.1: `:authority` and `host` must agree; an HTTP/1.0 request without
/// `Host` is for the TLS server name, when there is one) and path, in normal form.
pub(super) fn target(req: &Request<Incoming>, sni: Option<&str>) -> Result<Target, Malformed> {
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
pub(super) fn rewrite(req: &mut Request<Incoming>, target: &Target) -> Result<(), Malformed> {
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

/// The forwarding fields certgate writes when `x_forwarded` is on (lower case).
pub(super) const FORWARDING_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Removes every identity header of every known format and applies the
/// listener's rule for header names with `_` (or another character besides letters, digits and
/// `-`). With `x_forwarded`, certgate writes the `X-Forwarded-*` fields itself, so their other
/// spellings (`X_Forwarded_For`) are removed even where `Allow` passes unusual names: a CGI/WSGI
/// app would read them as the same variable, and its first value would be the client's.
/// Returns how many field lines were removed, or the name of a field that `Reject` refuses.
pub(super) fn scrub_headers(
    headers: &mut HeaderMap,
    cfg: &super::IngressConfig,
) -> Result<usize, String> {
    let (underscores, x_forwarded) = (cfg.underscores, cfg.x_forwarded);
    let mut removed = strip_identity_headers(headers);
    for name in &cfg.front_headers {
        if let header::Entry::Occupied(e) = headers.entry(name) {
            removed += e.iter().count();
            e.remove_entry_mult().1.for_each(drop);
        }
    }
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
                let cgi = normal::cgi_spelling(n.as_str());
                forward::is_identity_header_lowercase(&cgi)
                    || (x_forwarded && FORWARDING_HEADERS.contains(&cgi.as_str()))
                    || cfg.front_headers.iter().any(|f| f.as_str() == cgi)
            }
        };
        if remove && let header::Entry::Occupied(e) = headers.entry(n) {
            removed += e.iter().count();
            e.remove_entry_mult().1.for_each(drop);
        }
    }
    Ok(removed)
}
