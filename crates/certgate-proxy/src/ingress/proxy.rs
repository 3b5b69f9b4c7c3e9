//! Forwarding to a remote upstream: bodies streamed both ways, size limits, and upgrades
//! (only those the route lists, never `h2c`).

use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};

use super::decorate::{identity_headers, sanitize_response, set_forwarded};
use super::{Conn, Shared};
use crate::message::{Body, strip_hop_by_hop, text};
use crate::route::Route;

pub(super) async fn proxy(
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
    if let Some(coding) = other_transfer_coding(req.headers()) {
        // hyper decodes only the chunked framing; forwarding the rest without its label would
        // hand the app coded bytes as plain (RFC 9112 §6.1: 501 for a coding not understood).
        return text(
            StatusCode::NOT_IMPLEMENTED,
            format!("Transfer-Encoding `{coding}` is not supported (only chunked)"),
        );
    }
    let limit = cfg.limits.max_body_bytes;
    if let Some(max) = limit {
        // A declared length over the limit is refused before anything goes upstream: the length
        // the body is framed by (hyper's), whatever the fields say.
        let declared = req.body().size_hint().exact().or_else(|| {
            req.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        });
        if declared.is_some_and(|n| n > max) {
            return too_large(max);
        }
    }
    let from_h2 = req.version() == Version::HTTP_2;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    if from_h2 {
        join_cookies(headers);
    }
    strip_hop_by_hop(headers, false);
    if let Some(protocols) = &upgrades {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocols.clone());
    }
    set_forwarded(cfg, conn, host, headers);
    for (name, value) in identity_headers(cfg, conn, &route.forward) {
        headers.append(name, value);
    }
    let req = req.map(|body| match limit {
        Some(max) => {
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed()
        }
        None => body.map_err(Into::into).boxed(),
    });
    let upstream_started = crate::metrics::enabled().then(Instant::now);
    // Sending starts with the first poll of the request: the upstream's writes leave in bursts
    // (see `let_ready_connections_run`).
    crate::conn::let_ready_connections_run().await;
    let result = client
        .request(
            authority,
            req,
            cfg.limits.upstream_timeout,
            Some(&shared.activity),
        )
        .await;
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
            if client_body_failed(&e) {
                // The client's own body broke (bad chunked framing, cut short): its fault, not
                // the upstream's.
                tracing::info!(listener = %cfg.name, route = %route.name, error = %e, "request body malformed or cut short");
                return text(
                    StatusCode::BAD_REQUEST,
                    "the request body is malformed or was cut short",
                );
            }
            tracing::warn!(listener = %cfg.name, route = %route.name, upstream = %authority, error = %e, "upstream request failed");
            if let crate::upstream::UpstreamError::Timeout(after) = e {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "the upstream did not answer: nothing moved for {} s",
                        after.as_secs()
                    ),
                );
            }
            return text(StatusCode::BAD_GATEWAY, "the upstream is unavailable");
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A switch nobody asked for (or to a protocol other than the one asked for) would hand
        // the client a raw channel to the upstream, past every per-request rule.
        // One `Upgrade` line naming one protocol: a second line would be relayed unchecked.
        let agreed = resp.headers().get_all(header::UPGRADE).iter().count() == 1
            && upgrades.as_ref().is_some_and(|asked| {
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
        if let Some(client_upgrade) = client_upgrade
            && let Some(upstream) = resp.body_mut().take_upgrade()
        {
            client_upgrade.relay(upstream);
        }
        // The switch keeps its `Upgrade`; the upstream's other hop-by-hop fields, and those its
        // `Connection` names, stay here as on any other response.
        strip_hop_by_hop(resp.headers_mut(), true);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        if let Some(coding) = other_transfer_coding(resp.headers()) {
            tracing::warn!(listener = %cfg.name, route = %route.name, upstream = %authority, coding, "the upstream answered with a transfer coding other than chunked; refused");
            return text(
                StatusCode::BAD_GATEWAY,
                "the upstream answered with an unsupported transfer coding",
            );
        }
        let status = resp.status();
        frame_response(status, resp.headers_mut());
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    // The version is hop-by-hop (RFC 9110 §6.2): certgate answers in its own, whatever the
    // upstream spoke (an HTTP/1.0 upstream must not make an HTTP/1.1 client expect a close).
    *resp.version_mut() = Version::HTTP_11;
    sanitize_response(resp.headers_mut());
    resp.map(|b| b.map_frame(clean_trailers).map_err(Into::into).boxed())
}

/// A response's trailers go through the same removals as its head (hop-by-hop fields, framing,
/// `Client-Cert` fields), so that an upstream cannot reach the client through them: HTTP/1.1
/// clients never get trailers (hyper drops them), HTTP/2 clients do, and an HTTP/2 stream whose
/// trailers carry a connection-specific field is reset by the h2 layer.
pub(super) fn clean_trailers(
    mut frame: hyper::body::Frame<bytes::Bytes>,
) -> hyper::body::Frame<bytes::Bytes> {
    if let Some(trailers) = frame.trailers_mut() {
        strip_hop_by_hop(trailers, false);
        trailers.remove(header::CONTENT_LENGTH);
        trailers.remove(header::HOST);
        sanitize_response(trailers);
    }
    frame
}

/// The first transfer coding other than `chunked` in `Transfer-Encoding`, if any.
pub(super) fn other_transfer_coding(headers: &HeaderMap) -> Option<String> {
    for v in &headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(v) = v.to_str() else {
            return Some(String::from_utf8_lossy(v.as_bytes()).into_owned());
        };
        if let Some(t) = v
            .split(',')
            .map(str::trim)
            .find(|t| !t.eq_ignore_ascii_case("chunked"))
        {
            return Some(t.to_owned());
        }
    }
    None
}

/// The framing fields of a response the upstream client has read, made true for what is
/// forwarded: a 1xx or 204 has no length; a chunked body has been decoded, so a
/// `Content-Length` beside `Transfer-Encoding` is wrong (RFC 9112 §6.3: the chunked framing
/// wins, and a proxy must remove the length); a list of equal lengths (`5, 5`, which
/// `upstream::wire` accepts) becomes the one length, which HTTP/2 clients require.
pub(super) fn frame_response(status: StatusCode, headers: &mut HeaderMap) {
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        // RFC 9110 §8.6: never a length on these (an HTTP/2 client resets the stream).
        headers.remove(header::CONTENT_LENGTH);
        return;
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
        return;
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let (Some(first), more) = (lengths.next(), lengths.next().is_some()) else {
        return;
    };
    if !more && !first.as_bytes().contains(&b',') {
        return;
    }
    let one = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .and_then(|v| HeaderValue::from_str(v).ok());
    match one {
        Some(one) => {
            headers.insert(header::CONTENT_LENGTH, one);
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// Joins the `cookie` fields of an HTTP/2 request into one, with `; ` (RFC 9113 §8.2.3): HTTP/2
/// clients send each cookie as its own field, and an HTTP/1.1 app reads repeated `Cookie`
/// lines as one value joined with `,`, which is not how cookies are separated.
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// The protocol name of an `Upgrade` token, lower-case (`WebSocket/13` -> `websocket`).
pub(super) fn upgrade_name(token: &str) -> String {
    token
        .trim()
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(super) fn upgrade_names(value: &HeaderValue) -> impl Iterator<Item = String> + '_ {
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
pub(super) fn allowed_upgrades(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
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

pub(super) fn too_large(max: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
}

/// Whether an upstream failure was the client's request body failing while it was forwarded
/// (cut short, malformed chunked framing, not the length it declared).
pub(super) fn client_body_failed(e: &crate::upstream::UpstreamError) -> bool {
    matches!(
        e,
        crate::upstream::UpstreamError::RequestBody(_) | crate::upstream::UpstreamError::BodyLength
    )
}

/// Whether an upstream failure was the request body going over its limit mid-stream.
pub(super) fn body_over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::header_map as map;

    #[test]
    fn only_chunked_passes_as_a_transfer_coding() {
        assert_eq!(other_transfer_coding(&map(&[])), None);
        assert_eq!(
            other_transfer_coding(&map(&[("transfer-encoding", "Chunked")])),
            None
        );
        assert_eq!(
            other_transfer_coding(&map(&[("transfer-encoding", "gzip, chunked")])).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            other_transfer_coding(&map(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", " x-custom ")
            ]))
            .as_deref(),
            Some("x-custom")
        );
        assert_eq!(
            other_transfer_coding(&map(&[("transfer-encoding", ",chunked")])).as_deref(),
            Some("")
        );
    }

    #[test]
    fn a_forwarded_response_has_one_true_length() {
        let mut h = map(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        frame_response(StatusCode::OK, &mut h);
        assert!(h.get("content-length").is_none());
        let mut h = map(&[("content-length", "5, 5")]);
        frame_response(StatusCode::OK, &mut h);
        assert_eq!(h.get_all("content-length").iter().count(), 1);
        assert_eq!(h.get("content-length").unwrap(), "5");
        let mut h = map(&[("content-length", "7"), ("content-length", "7")]);
        frame_response(StatusCode::OK, &mut h);
        assert_eq!(h.get_all("content-length").iter().count(), 1);
        assert_eq!(h.get("content-length").unwrap(), "7");
        let mut h = map(&[("content-length", "9")]);
        frame_response(StatusCode::OK, &mut h);
        assert_eq!(h.get("content-length").unwrap(), "9");
        for status in [StatusCode::NO_CONTENT, StatusCode::CONTINUE] {
            let mut h = map(&[("content-length", "44")]);
            frame_response(status, &mut h);
            assert!(h.get("content-length").is_none(), "{status}");
        }
        // A 304 may say the length of what it stands for.
        let mut h = map(&[("content-length", "44")]);
        frame_response(StatusCode::NOT_MODIFIED, &mut h);
        assert_eq!(h.get("content-length").unwrap(), "44");
    }

    #[test]
    fn trailers_lose_what_heads_lose() {
        let trailers = map(&[
            ("client-cert", ":AAAA:"),
            ("client-cert-chain", ":BBB:"),
            ("vary", "client-cert"),
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "99"),
            ("keep-alive", "1"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("grpc-status", "0"),
        ]);
        let frame = clean_trailers(hyper::body::Frame::trailers(trailers));
        let t = frame.trailers_ref().unwrap();
        let mut names: Vec<&str> = t.keys().map(http::HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["grpc-status", "vary"]);
        assert_eq!(t.get("vary").unwrap(), "*");
        let data = clean_trailers(hyper::body::Frame::data(bytes::Bytes::from_static(
            b"hello",
        )));
        assert_eq!(data.into_data().unwrap(), "hello");
    }

    #[test]
    fn http2_cookie_fields_become_one_line() {
        let mut h = map(&[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2");
        let mut h = map(&[("cookie", "a=1")]);
        join_cookies(&mut h);
        assert_eq!(h.get("cookie").unwrap(), "a=1");
    }
}
