//! Forwarding to a remote upstream: bodies streamed both ways, size limits, and upgrades
//! (only those the route lists, never `h2c`).

use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

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
    // Sending starts with the first poll of the request: the upstream's writes leave in bursts
    // (see `let_ready_connections_run`).
    crate::conn::let_ready_connections_run().await;
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
/// (hyper's "error from user's Body stream", caused by the client connection's own error).
pub(super) fn client_body_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let hyper_error = match c.downcast_ref::<crate::upstream::UpstreamError>() {
            Some(crate::upstream::UpstreamError::Http(h)) => Some(h),
            _ => c.downcast_ref::<hyper::Error>(),
        };
        if let Some(h) = hyper_error
            && h.is_user()
            && std::error::Error::source(h).is_some()
        {
            return true;
        }
        cause = c.source();
    }
    false
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
