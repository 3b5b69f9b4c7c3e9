//! HTTP message plumbing shared by every server here (ingress, egress, in-process services):
//! the body type, responses made here, hop-by-hop fields, and a listener's limits.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};

/// Any error, boxed, as bodies carry them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response body type: streamed from the upstream, or generated here.
pub type Body = BoxBody<Bytes, BoxError>;

/// Connection and request limits of a listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (slowloris).
    pub header_timeout: Duration,
    /// Largest request head (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// On shutdown, how long open connections may take to finish.
    pub drain_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request body forwarded upstream (`None`: no limit); larger ones get 413.
    pub max_body_bytes: Option<u64>,
    /// How long an upstream may keep a request waiting with nothing moving (to take more of the
    /// request, or to answer) before the client gets 504.
    pub upstream_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_body_bytes: None,
            upstream_timeout: Duration::from_secs(60),
        }
    }
}

/// A plain-text response made here (a denial, an error): the text and a newline.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Hop-by-hop fields (RFC 9110 section 7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`), `Upgrade` and h2c's `HTTP2-Settings` included. A `static`: a `const`
/// array of names is built and dropped again at every use (per field of every message).
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HTTP2_SETTINGS,
];

/// `Proxy` and every `Proxy-*` field: meant for a proxy, never for the app. `Proxy` in
/// particular reaches CGI/WSGI apps as the `HTTP_PROXY` variable, which HTTP libraries read as
/// the proxy to use for outgoing requests ("httpoxy").
fn is_proxy_field(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "proxy" || n.starts_with("proxy-")
}

/// Removes hop-by-hop fields and those `Connection` names, and `Proxy`/`Proxy-*`;
/// `keep_upgrade` keeps `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none: one pass over the names, no hashing.
    if !headers
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || is_proxy_field(n))
    {
        return;
    }
    // One more pass decides every name, and only the fields present are removed (one hash
    // lookup each). Most messages that get here carry `Connection: keep-alive` and nothing else:
    // that one field is removed without collecting the names first.
    let (first, more) = {
        let listed = headers.get_all(header::CONNECTION);
        let mut doomed = headers
            .keys()
            .filter(|&n| hop_by_hop(n, &listed, keep_upgrade));
        let first = doomed.next().cloned();
        let more: Vec<HeaderName> = doomed.cloned().collect();
        (first, more)
    };
    for n in first.into_iter().chain(more) {
        headers.remove(n);
    }
}

/// Whether `name` is hop-by-hop: a hop-by-hop field, `Proxy`/`Proxy-*` or named in
/// `Connection` (`listed`).
fn hop_by_hop(
    name: &HeaderName,
    listed: &http::header::GetAll<'_, HeaderValue>,
    keep_upgrade: bool,
) -> bool {
    if keep_upgrade && name == header::UPGRADE {
        return false;
    }
    is_proxy_field(name)
        || HOP_BY_HOP.contains(name)
        // `Connection: host` must not take away the `Host` that routing and policy judged (the
        // upstream client would fill in its own address, and a name-based upstream would pick
        // its default site), nor `Connection: content-length` the length the body is framed and
        // limited by (RFC 9110 §7.6.1: fields meant for every recipient are never connection
        // options).
        || (name != header::HOST
            && name != header::CONTENT_LENGTH
            && listed
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(name.as_str())))
}

/// A header map of `fields` in order, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn header_map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in fields {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::header_map as map;
    use super::*;
    use http::header::HeaderName;

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
        // httpoxy: `Proxy` would become HTTP_PROXY in a CGI/WSGI app; `Proxy-*` are for proxies.
        let mut h = map(&[
            ("proxy", "http://evil.example:8080"),
            ("proxy-foo", "x"),
            ("proxyish", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["proxyish"]
        );
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(h.get("connection").is_none());
        let mut h = map(&[
            ("connection", "close, HOST, Content-Length"),
            ("host", "pub.example"),
            ("content-length", "50000"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get("host").unwrap(), "pub.example");
        assert_eq!(h.get("content-length").unwrap(), "50000");
        // Names listed in any spelling, across several `Connection` fields; every line of a
        // repeated field goes.
        let mut h = map(&[
            ("connection", "X-Private , keep-alive"),
            ("connection", "x-other"),
            ("x-private", "1"),
            ("x-private", "2"),
            ("x-other", "3"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["accept"]
        );
        let mut plain = map(&[("accept", "*/*"), ("host", "a")]);
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 2);
    }
}
