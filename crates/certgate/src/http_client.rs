//! A small HTTPS client for the CLI (`certgate log ...`): one request per connection, rustls
//! with the caller's trust and optional client certificate, bounded response bodies.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// The server could not be reached or talked to: a temporary failure (exit 75).
fn unreachable(message: String) -> anyhow::Error {
    crate::exit::fail(crate::exit::TEMPFAIL, message)
}

/// The largest response body read.
const MAX_BODY: usize = 16 << 20;

/// Time limits of one request: connecting, the TLS handshake, until the response head
/// arrives, and reading the whole body. Past any of them the command fails with exit 75.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

fn timed_out(authority: &impl std::fmt::Display, what: &str, limit: Duration) -> anyhow::Error {
    unreachable(format!(
        "{authority}: {what} timed out after {} s",
        limit.as_secs()
    ))
}

/// Sends one request; returns the status and body.
pub async fn request(
    url: &str,
    method: Method,
    body: Vec<u8>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(u16, Bytes)> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        bail!("`{url}`: only https:// URLs are supported");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("`{url}` has no host"))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| timed_out(&authority, "connecting", CONNECT_TIMEOUT))?
        .map_err(|e| unreachable(format!("{authority}: cannot connect: {e}")))?;
    let name = ServerName::try_from(host.clone())
        .with_context(|| format!("`{host}` is not a valid server name"))?;
    let handshake = tokio_rustls::TlsConnector::from(tls).connect(name, tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| timed_out(&authority, "the TLS handshake", HANDSHAKE_TIMEOUT))?
        .map_err(|e| unreachable(format!("{authority}: TLS handshake failed: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .body(Full::new(Bytes::from(body)))?;
    let resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| timed_out(&authority, "waiting for the response", RESPONSE_TIMEOUT))?
        .map_err(|e| unreachable(format!("{url}: request failed: {e}")))?;
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(resp.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| timed_out(&authority, "reading the response", BODY_TIMEOUT))?
    .map_err(|e| anyhow::anyhow!("{url}: reading the response: {e}"))?
    .to_bytes();
    Ok((status, body))
}
