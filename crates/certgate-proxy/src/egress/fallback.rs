//! Opening an egress TLS connection with the right identity when the server does not say which
//! CA it trusts.
//!
//! A server that names CAs in its CertificateRequest gets the identity whose chain reaches one,
//! and no fallback is needed. A server that names none (Python's `ssl`, many embedded servers)
//! gets the first identity whose key fits; if it answers with an alert that refuses the client
//! certificate (`unknown_ca`, `bad_certificate`, `certificate_required`, `access_denied`, ...),
//! the connection is opened again with the next identity that fits, and so on. Every attempt is
//! a complete new handshake in which the server's certificate is verified before any client
//! certificate is sent, and no request byte is written before the attempt has succeeded.
//!
//! TLS 1.2 servers judge the client certificate inside the handshake. TLS 1.3 servers judge it
//! after the client has finished, so a TLS 1.3 attempt that had alternatives waits for the
//! server's verdict before it is handed on: a session ticket (OpenSSL and rustls servers send one
//! once they accepted the certificate), data, or a refusing alert, for at most twice the time the
//! handshake took (between [`PROBE_MIN`] and [`PROBE_MAX`]); silence means accepted.
//!
//! The identity that worked is remembered per destination ([`Remembered`]: bounded, expiring,
//! and rebuilt with the rule on reload), and tried first next time, without that wait.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use certgate_tls::egress::{ChooseIdentity, refuses_client_certificate};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The shortest wait for a TLS 1.3 server's verdict on the client certificate.
pub const PROBE_MIN: Duration = Duration::from_millis(50);
/// The longest wait for a TLS 1.3 server's verdict on the client certificate.
pub const PROBE_MAX: Duration = Duration::from_secs(1);

/// Destinations remembered per rule at most; past this the oldest half is forgotten.
const REMEMBERED_MAX: usize = 4096;
/// How long an identity that worked stays remembered for its destination.
const REMEMBERED_FOR: Duration = Duration::from_secs(3600);

/// Which identity worked for which destination (`host:port`), per rule; or which one the server
/// refused after it seemed accepted (a TLS 1.3 server that judged slower than the wait).
#[derive(Debug, Default)]
pub struct Remembered {
    map: Mutex<HashMap<(String, u16), (usize, Instant)>>,
    avoid: Mutex<HashMap<(String, u16), (usize, Instant)>>,
}

impl Remembered {
    fn get(&self, host: &str, port: u16) -> Option<usize> {
        let map = self.map.lock().ok()?;
        let (index, at) = map.get(&(host.to_owned(), port))?;
        (at.elapsed() < REMEMBERED_FOR).then_some(*index)
    }

    fn avoided(&self, host: &str, port: u16) -> Option<usize> {
        let avoid = self.avoid.lock().ok()?;
        let (index, at) = avoid.get(&(host.to_owned(), port))?;
        (at.elapsed() < REMEMBERED_FOR).then_some(*index)
    }

    /// The server refused the remembered identity after the handshake (an alert about the
    /// certificate once a request was on its way): it goes last for this destination, and the
    /// next connection waits for the server's verdict again.
    pub fn refused_later(&self, host: &str, port: u16) {
        let Some(index) = self.get(host, port) else {
            return;
        };
        self.forget(host, port);
        if let Ok(mut avoid) = self.avoid.lock() {
            if avoid.len() >= REMEMBERED_MAX {
                avoid.clear();
            }
            avoid.insert((host.to_owned(), port), (index, Instant::now()));
        }
    }

    fn remember(&self, host: &str, port: u16, index: usize) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= REMEMBERED_MAX && !map.contains_key(&(host.to_owned(), port)) {
            let mut ages: Vec<Instant> = map.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, (_, at)| *at > cut);
        }
        map.insert((host.to_owned(), port), (index, Instant::now()));
    }

    fn forget(&self, host: &str, port: u16) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&(host.to_owned(), port));
        }
    }
}

/// One handshake of a connection, for logs and `egress explain --connect`.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptReport {
    /// The identity sent, if any.
    pub sent: Option<String>,
    /// The CA names the server sent (RFC 4514); empty when it named none.
    pub ca_hints: Vec<String>,
    /// Each candidate and the verdict on it.
    pub candidates: Vec<(String, String)>,
    /// What happened: `accepted`, `refused: ...` (another identity is tried next) or `failed: ...`.
    pub outcome: String,
}

/// What [`connect`] needs from a rule or tunnel.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The rule's TLS client (its resolver is replaced per attempt).
    pub tls: Arc<rustls::ClientConfig>,
    /// The rule's identities.
    pub chooser: Arc<ChooseIdentity>,
    /// Which identity worked where.
    pub remembered: Arc<Remembered>,
    /// Time allowed for each attempt's TCP connect and handshake.
    pub connect_timeout: Duration,
    /// Connect here (`host:port`) instead of to the destination's own address; TLS still names
    /// and verifies the destination (as curl's `--connect-to`).
    pub connect_to: Option<String>,
    /// Report the choice of every handshake, even with a single identity (`egress explain`).
    /// A rule with one identity otherwise connects with its own configuration, so that its
    /// sessions resume (a session is only resumed under the resolver that made it).
    pub diagnose: bool,
}

/// Connects to `host:port` over TLS as `server_name`, falling back to the next identity as the
/// module describes. Returns the connection (or the last error) and every attempt made.
pub async fn connect(
    origin: &Origin,
    host: &str,
    port: u16,
    server_name: &ServerName<'static>,
) -> (std::io::Result<TlsStream<TcpStream>>, Vec<AttemptReport>) {
    let chooser = &origin.chooser;
    let mut order: Vec<usize> = (0..chooser.len()).collect();
    let remembered = origin.remembered.get(host, port);
    if let Some(i) = remembered
        && let Some(at) = order.iter().position(|&j| j == i)
    {
        order.remove(at);
        order.insert(0, i);
    }
    if let Some(i) = origin.remembered.avoided(host, port)
        && let Some(at) = order.iter().position(|&j| j == i)
    {
        order.remove(at);
        order.push(i);
    }
    let mut reports = Vec::new();
    loop {
        let attempt = chooser.attempt(order.clone());
        let config = if chooser.len() > 1 || origin.diagnose {
            attempt.config(&origin.tls)
        } else {
            Arc::clone(&origin.tls)
        };
        let started = Instant::now();
        let handshake = tokio::time::timeout(origin.connect_timeout, async {
            let tcp = match &origin.connect_to {
                Some(addr) => TcpStream::connect(addr.as_str()).await?,
                None => TcpStream::connect((host, port)).await?,
            };
            let _ = tcp.set_nodelay(true);
            tokio_rustls::TlsConnector::from(config)
                .connect(server_name.clone(), tcp)
                .await
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect and TLS handshake timed out",
            ))
        });
        let picked = attempt.picked();
        let mut report = AttemptReport {
            sent: picked
                .as_ref()
                .and_then(|p| p.index)
                .map(|i| chooser.name(i).to_owned()),
            ca_hints: picked
                .as_ref()
                .map(|p| p.choice.hints.clone())
                .unwrap_or_default(),
            candidates: picked
                .as_ref()
                .map(|p| p.choice.candidates.clone())
                .unwrap_or_default(),
            outcome: String::new(),
        };
        // Another identity is worth trying only when this one was sent blind (no CA names) and
        // others fit.
        let blind = picked
            .as_ref()
            .and_then(|p| p.index.filter(|_| p.choice.hints.is_empty()));
        let has_alternatives = picked.as_ref().is_some_and(|p| !p.alternatives.is_empty());
        // A server whose certificate did not verify got no client certificate: rustls sends it
        // only after the server's certificate verified.
        if let Err(e) = &handshake
            && e.get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some_and(|r| {
                    matches!(
                        r,
                        rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)
                    )
                })
        {
            report.sent = None;
        }
        // Ok(alert): the server refused the certificate sent blind; Err: any other failure.
        let refused = match handshake {
            Err(e) => match (blind, alert_of(&e)) {
                (Some(_), Some(alert)) if refuses_client_certificate(alert) => Ok(alert),
                _ => Err(e),
            },
            Ok(mut stream) => {
                let tls13 =
                    stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
                let wait = (started.elapsed() * 2).clamp(PROBE_MIN, PROBE_MAX);
                let judged = if blind.is_some() && has_alternatives && tls13 && remembered != blind
                {
                    await_verdict(&mut stream, &attempt, wait).await
                } else {
                    Ok(None)
                };
                match judged {
                    Ok(None) => {
                        report.outcome = "accepted".to_owned();
                        reports.push(report);
                        if let Some(i) = blind
                            && chooser.len() > 1
                        {
                            origin.remembered.remember(host, port, i);
                        }
                        return (Ok(stream), reports);
                    }
                    Ok(Some(alert)) => Ok(alert),
                    Err(e) => Err(e),
                }
            }
        };
        match (refused, blind) {
            (Ok(alert), Some(i)) if has_alternatives => {
                tracing::info!(
                    rule = %chooser.rule(),
                    destination = %format!("{host}:{port}"),
                    identity = %chooser.name(i),
                    alert = ?alert,
                    "the server refused this client certificate; trying the next identity"
                );
                report.outcome = format!("refused ({alert:?}); trying the next identity");
                reports.push(report);
                origin.remembered.forget(host, port);
                order.retain(|&j| j != i);
            }
            (refused, _) => {
                if refused.is_ok() {
                    origin.remembered.forget(host, port);
                }
                let e = refused
                    .map(|alert| {
                        std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            rustls::Error::AlertReceived(alert),
                        )
                    })
                    .unwrap_or_else(|e| e);
                report.outcome = format!("failed: {e}");
                reports.push(report);
                return (Err(e), reports);
            }
        }
    }
}

/// The TLS alert an I/O error carries, if it is one.
fn alert_of(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Waits for a TLS 1.3 server's verdict on the client certificate without taking any data from
/// the connection: records are read and processed by rustls, and whatever plaintext arrives stays
/// buffered there for the connection's user. `Some(alert)`: the server refused the certificate.
async fn await_verdict(
    stream: &mut TlsStream<TcpStream>,
    attempt: &certgate_tls::egress::Attempt,
    wait: Duration,
) -> std::io::Result<Option<rustls::AlertDescription>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if attempt.ticket_seen() {
            return Ok(None);
        }
        let (tcp, conn) = stream.get_mut();
        if tokio::time::timeout_at(deadline, tcp.readable())
            .await
            .is_err()
        {
            return Ok(None);
        }
        match conn.read_tls(&mut TryRead(tcp)) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        match conn.process_new_packets() {
            Ok(state) => {
                if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                    return Ok(None);
                }
            }
            Err(rustls::Error::AlertReceived(alert)) if refuses_client_certificate(alert) => {
                return Ok(Some(alert));
            }
            Err(e) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
    }
}

/// `std::io::Read` over a non-blocking tokio socket.
struct TryRead<'a>(&'a TcpStream);

impl std::io::Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// The connector of a rule's HTTP client: every new upstream connection goes through
/// [`connect`], so pooled requests inherit the identity that worked.
#[derive(Clone, Debug)]
pub struct OriginConnector {
    pub(super) origin: Origin,
    /// The server name to send and verify instead of the URL's host.
    pub(super) sni: Option<ServerName<'static>>,
}

/// A connection made by [`OriginConnector`].
#[derive(Debug)]
pub struct Originated(TokioIo<TlsStream<TcpStream>>);

impl Connection for Originated {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Originated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Originated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = Originated;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Originated>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            if uri.scheme_str() != Some("https") {
                return Err(bad(format!("egress originates https only, not {uri}")));
            }
            let host = uri
                .host()
                .ok_or_else(|| bad(format!("{uri} has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let server_name = match this.sni {
                Some(n) => n,
                None => ServerName::try_from(host.clone())
                    .map_err(|_| bad(format!("`{host}` is not a valid server name")))?,
            };
            let (stream, _) = connect(&this.origin, &host, port, &server_name).await;
            Ok(Originated(TokioIo::new(stream?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_is_bounded_per_destination_and_forgets() {
        let r = Remembered::default();
        r.remember("a.example", 443, 1);
        assert_eq!(r.get("a.example", 443), Some(1));
        assert_eq!(r.get("a.example", 8443), None);
        r.forget("a.example", 443);
        assert_eq!(r.get("a.example", 443), None);
        for i in 0..REMEMBERED_MAX + 10 {
            r.remember(&format!("h{i}.example"), 443, 0);
        }
        let len = r.map.lock().unwrap().len();
        assert!(len <= REMEMBERED_MAX, "{len}");
        // The newest is kept.
        assert_eq!(
            r.get(&format!("h{}.example", REMEMBERED_MAX + 9), 443),
            Some(0)
        );
    }
}
