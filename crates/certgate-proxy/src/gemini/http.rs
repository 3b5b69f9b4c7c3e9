//! Gemini to HTTP and back: a request becomes `GET path?query` with the route's identity headers
//! and `X-Forwarded-*`/`Forwarded` (proto `gemini`), and the response becomes Gemini:
//!
//! | HTTP | Gemini |
//! |---|---|
//! | `Gemini-Status: NN META` (any status) | that header line, checked |
//! | 2xx | `20` and the `Content-Type` (default `text/gemini; charset=utf-8`), body streamed |
//! | 301, 308 / 302, 303, 307 with `Location` | `31` / `30` and the URL, made absolute |
//! | 400 / 401 / 403 / 404 / 410 / 429 | `59` / `60` / `61` / `51` / `52` / `44` (`Retry-After`) |
//! | other 4xx / 5xx | `50` / `42` |
//! | unreachable | `43` |

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Ctx;
use super::response::{self, DEFAULT_MIME};
use crate::upstream::UpstreamClient;

pub(super) async fn respond(
    ctx: &Ctx<'_>,
    authority: &Authority,
    client: &UpstreamClient,
    tls: &mut TlsStream<TcpStream>,
) -> (u8, u64) {
    let req = match request(ctx) {
        Some(r) => r,
        None => {
            let _ = ctx.header(tls, 59, "the URL cannot be sent upstream").await;
            return (59, 0);
        }
    };
    let resp = match client
        .request(authority, req, ctx.cfg.response_timeout, None)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(gemini = %ctx.cfg.name, route = %ctx.route.name, error = %e, "upstream request failed");
            let _ = ctx.header(tls, 43, "the upstream cannot be reached").await;
            return (43, 0);
        }
    };
    let (status, meta) = translate(ctx, resp.status(), resp.headers());
    if status / 10 != 2 {
        let _ = ctx.header(tls, status, &meta).await;
        return (status, 0);
    }
    // The header goes out with the first piece of the body: one TLS record and one write for a
    // small page instead of two.
    let mut out = format!("{status:02} {meta}\r\n").into_bytes();
    let mut body = resp.into_body();
    let max = ctx.cfg.max_response_bytes;
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = usize::try_from(max - sent).unwrap_or(usize::MAX);
        let take = data.len().min(room);
        let written = if out.is_empty() {
            tls.write_all(&data[..take]).await
        } else {
            ctx.header_sent
                .store(true, std::sync::atomic::Ordering::Relaxed);
            out.extend_from_slice(&data[..take]);
            let w = tls.write_all(&out).await;
            out = Vec::new();
            w
        };
        if written.is_err() {
            return (status, sent);
        }
        sent += take as u64;
        if take < data.len() {
            tracing::warn!(gemini = %ctx.cfg.name, route = %ctx.route.name, max_bytes = max, "the upstream's response is over the limit; cut");
            break;
        }
    }
    if !out.is_empty() {
        ctx.header_sent
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tls.write_all(&out).await;
    }
    let _ = tls.flush().await;
    (status, sent)
}

fn request(ctx: &Ctx<'_>) -> Option<Request<crate::upstream::RequestBody>> {
    let mut target = ctx.req.path.forward.clone();
    if let Some(q) = &ctx.req.query {
        target.push('?');
        target.push_str(q);
    }
    let host = ctx.req.authority.to_header();
    let ip = ctx.peer.ip().to_string();
    let for_part = if ctx.peer.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.clone()
    };
    let mut req = Request::get(target)
        .header(header::HOST, &host)
        .header("x-forwarded-for", &ip)
        .header("x-forwarded-proto", "gemini")
        .header("x-forwarded-host", &host)
        .header(
            header::FORWARDED,
            format!("for={for_part};proto=gemini;host=\"{host}\""),
        )
        .body(Empty::<Bytes>::new().map_err(|n| match n {}).boxed())
        .ok()?;
    let pairs = crate::ingress::decorate::identity_pairs(
        ctx.client,
        &ctx.route.forward,
        ctx.cfg.forward_unverified,
        &ctx.cfg.proxy_info,
    );
    for (name, value) in pairs {
        req.headers_mut().append(name, value);
    }
    Some(req)
}

fn translate(ctx: &Ctx<'_>, status: StatusCode, headers: &http::HeaderMap) -> (u8, String) {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::trim)
    };
    if let Some(value) = headers.get("gemini-status") {
        // UTF-8, as Gemini is (`10 Entrez votre âge`); HTTP calls bytes >= 0x80 obs-text.
        let line = std::str::from_utf8(value.as_bytes())
            .map(str::trim)
            .unwrap_or("");
        if let Some(own) = response::status_line(line) {
            return own;
        }
        tracing::warn!(gemini = %ctx.cfg.name, route = %ctx.route.name, "the upstream's Gemini-Status is not a Gemini response header; answering 42");
        return (
            42,
            "the upstream answered a malformed Gemini-Status".to_owned(),
        );
    }
    let code = status.as_u16();
    match code {
        200..=299 => {
            let mime = text(header::CONTENT_TYPE)
                .filter(|m| !m.is_empty() && m.len() <= response::MAX_META)
                .unwrap_or(DEFAULT_MIME);
            (20, mime.to_owned())
        }
        301 | 302 | 303 | 307 | 308 => {
            match text(header::LOCATION).and_then(|l| absolute(ctx, l)) {
                Some(url) => (if matches!(code, 301 | 308) { 31 } else { 30 }, url),
                None => (
                    42,
                    "the upstream answered a redirect without a usable Location".to_owned(),
                ),
            }
        }
        400 => (59, "bad request".to_owned()),
        401 => (60, "a client certificate is required".to_owned()),
        403 => (
            61,
            "the client certificate is not authorised here".to_owned(),
        ),
        404 => (51, "not found".to_owned()),
        410 => (52, "gone".to_owned()),
        429 => {
            let secs = text(header::RETRY_AFTER)
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(10);
            (44, secs.to_string())
        }
        _ if status.is_client_error() => (50, format!("refused by the application ({code})")),
        _ => (42, format!("the application failed ({code})")),
    }
}

/// A redirect target as an absolute URL a Gemini client can follow: a path (absolute or
/// relative) is made a `gemini://` URL on the request's host; an absolute URL is kept.
fn absolute(ctx: &Ctx<'_>, location: &str) -> Option<String> {
    if location.is_empty()
        || location.len() > response::MAX_META
        || location.chars().any(char::is_control)
    {
        return None;
    }
    // A space ends a URL for every client (the rest would read as a second field), and a URL
    // is ASCII: both are percent-encoded.
    let encoded = crate::normal::encode_non_ascii(location, true);
    let location = encoded.as_str();
    if location.contains("://") {
        return Some(location.to_owned());
    }
    let base = format!("gemini://{}", ctx.req.authority.to_header());
    if location.starts_with("//") {
        return Some(format!("gemini:{location}"));
    }
    if location.starts_with('/') {
        return Some(format!("{base}{location}"));
    }
    let dir = match ctx.req.path.forward.rfind('/') {
        Some(i) => &ctx.req.path.forward[..=i],
        None => "/",
    };
    Some(format!("{base}{dir}{location}"))
}
