//! Gemini listeners: TLS in (client certificates requested by default, transient ones accepted
//! with proof of possession), one request line per connection in normal form, routes by host
//! and path with the same identity policy as HTTP, answered by an HTTP upstream (translated to
//! Gemini) or a CGI script.
//!
//! Policy speaks Gemini: no certificate is `60`, a certificate the route does not allow is
//! `61`, one that failed verification where the route requires a verified one is `62`. A
//! request line that is not in normal form is `59`, and a URL for another scheme, host or port
//! is `53`; nothing of such a request reaches an upstream.

mod cgi;
mod http;
pub mod request;
mod response;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certgate_pki::forward::{Format, ProxyInfo};
use certgate_pki::{ClientCert, TrustBundle};
use certgate_tls::{ClientAuth, SniPattern};
use rustls::ServerConfig;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use crate::policy::{self, Access, Decision};
use request::{Refusal, Request};
pub use response::status_line;

/// How long a refusal or the end of a response may take to reach a client that does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolved `[[gemini]]` listener.
#[derive(Debug)]
pub struct GeminiConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// TLS configuration.
    pub tls: Arc<ServerConfig>,
    /// Client-auth mode.
    pub client_auth: ClientAuth,
    /// Trust bundle client certificates are evaluated against.
    pub trust: Option<Arc<TrustBundle>>,
    /// Routes, chosen by host then longest path prefix.
    pub routes: Vec<GeminiRoute>,
    /// The proxy's own identity for RFC 9440-style forwarding (`by=`).
    pub proxy_info: ProxyInfo,
    /// Forward unverified certificates in formats that cannot say they were not verified.
    pub forward_unverified: bool,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for the request line once the handshake is done.
    pub request_timeout: Duration,
    /// Time a response may take in all (upstream or CGI script included).
    pub response_timeout: Duration,
    /// Bytes of a response body at most (a CGI script or upstream that sends more is cut).
    pub max_response_bytes: u64,
    /// On shutdown, how long open connections may take to end.
    pub drain_timeout: Duration,
}

/// A route of a Gemini listener.
#[derive(Debug)]
pub struct GeminiRoute {
    /// Name for logs (`host+path` when not set).
    pub name: String,
    /// Host to match; `None` matches any.
    pub host: Option<SniPattern>,
    /// Path prefix to match, on whole segments.
    pub path: String,
    /// Who may use the route.
    pub access: Access,
    /// Where requests go.
    pub upstream: GeminiUpstream,
    /// Identity formats sent to an HTTP upstream.
    pub forward: Vec<Format>,
}

/// Where a Gemini route sends requests.
#[derive(Debug)]
pub enum GeminiUpstream {
    /// An HTTP/1.1 server (TCP, TLS or Unix socket): the request becomes a `GET`, the response is
    /// translated to Gemini.
    Http {
        /// The authority requests carry (`localhost` for Unix sockets).
        authority: ::http::uri::Authority,
        /// The pooled client.
        client: Box<crate::upstream::UpstreamClient>,
    },
    /// A CGI script (a file), or a directory of them.
    Cgi {
        /// The script or directory (absolute).
        target: PathBuf,
        /// Whose spelling of the variables the two Gemini servers disagree on.
        variables: CgiVariables,
    },
}

/// The CGI variables Jetforce and molly-brown spell differently. Every other variable of both
/// is always set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgiVariables {
    /// Jetforce's: `TLS_CLIENT_HASH=SHA256:` and upper-case hex, `AUTH_TYPE=CERTIFICATE`,
    /// `PATH_INFO` with its leading `/` (RFC 3875).
    #[default]
    Jetforce,
    /// molly-brown's: `TLS_CLIENT_HASH` as lower-case hex, `AUTH_TYPE=Certificate`, `PATH_INFO`
    /// without its leading `/`, and `SCRIPT_PATH` (the script's file).
    MollyBrown,
}

/// The live configuration of a Gemini listener (see [`crate::LiveConfig`]).
pub type LiveGemini = Arc<arc_swap::ArcSwap<GeminiConfig>>;

/// Serves a Gemini listener until `shutdown` turns true. After each reload (`changes`), a
/// response still being sent to a client that is no longer admitted is cut.
pub async fn serve(
    live: LiveGemini,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    changes: watch::Receiver<()>,
) {
    let cfg = live.load_full();
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(request::DEFAULT_PORT);
    let drain = || live.load().drain_timeout;
    crate::accept::run(
        &cfg.name,
        listener,
        cfg.max_connections,
        shutdown,
        drain,
        |tcp, peer, _| {
            let cfg = live.load_full();
            let live = Arc::clone(&live);
            let mut changes = changes.clone();
            changes.mark_unchanged();
            async move { connection(&cfg, &live, changes, tcp, peer, port).await }
        },
    )
    .await;
}

/// What one connection came to, for the access log.
struct Outcome {
    status: u8,
    route: String,
    bytes: u64,
}

async fn connection(
    cfg: &GeminiConfig,
    live: &LiveGemini,
    changes: watch::Receiver<()>,
    tcp: TcpStream,
    peer: SocketAddr,
    port: u16,
) {
    let _open = crate::metrics::Gauge::open(&cfg.name);
    let Some(mut tls) = crate::accept::tls_handshake(
        &cfg.name,
        "gemini",
        &cfg.tls,
        cfg.handshake_timeout,
        tcp,
        peer,
    )
    .await
    else {
        return;
    };
    let (_, conn) = tls.get_ref();
    let client =
        certgate_tls::client_cert(conn, cfg.client_auth, cfg.trust.as_deref(), UnixTime::now());
    let sni = conn.server_name().map(crate::normal::server_name);
    let facts = crate::tunnel::tls_facts(conn, &client);
    let started = Instant::now();
    let line = match tokio::time::timeout(cfg.request_timeout, read_line(&mut tls)).await {
        Ok(line) => line,
        Err(_) => Err(Refusal {
            status: 59,
            reason: "no complete request line in time",
        }),
    };
    let mut url = String::new();
    // Set when a reload cut the response: the connection is then reset, with no close_notify.
    let mut reset = false;
    let outcome = match line.and_then(|l| judge(cfg, &l, port, sni.as_deref(), &client)) {
        Err(refusal) => {
            tracing::debug!(gemini = %cfg.name, %peer, status = refusal.status, reason = refusal.reason, "request refused");
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                response::header(&mut tls, refusal.status, refusal.reason),
            )
            .await;
            Outcome {
                status: refusal.status,
                route: String::new(),
                bytes: 0,
            }
        }
        Ok((route, req)) => {
            url = req.url();
            let ctx = Ctx {
                cfg,
                header_sent: AtomicBool::new(false),
                route,
                req: &req,
                client: &client,
                peer,
                port,
                facts: &facts,
            };
            let watched =
                crate::conn::WhenWoken::new(admitted_while(live, changes, &client, &route.name));
            let ended = {
                let respond = tokio::time::timeout(cfg.response_timeout, ctx.respond(&mut tls));
                // The reload check first: a reload that came during the handshake or the
                // request is judged before any of the response is written.
                tokio::select! {
                    biased;
                    why = watched => Err(Some(why)),
                    r = respond => r.map_err(|_| None),
                }
            };
            match ended {
                Ok(o) => o,
                Err(None) => {
                    tracing::warn!(gemini = %cfg.name, %peer, route = %route.name, "response timed out; closing");
                    let status = if ctx.header_sent.load(Ordering::Relaxed) {
                        0
                    } else {
                        let _ = tokio::time::timeout(
                            CLOSE_TIMEOUT,
                            response::header(&mut tls, 42, "the response took too long"),
                        )
                        .await;
                        42
                    };
                    Outcome {
                        status,
                        route: route.name.clone(),
                        bytes: 0,
                    }
                }
                Err(Some(why)) => {
                    // Nothing more of the response reaches the client, queued or not.
                    crate::closing::reset_now(tls.get_ref().0);
                    reset = true;
                    crate::metrics::closed(&cfg.name, "no_longer_admitted");
                    tracing::info!(gemini = %cfg.name, %peer, reason = %why, "response cut after a reload: its client is no longer admitted");
                    Outcome {
                        status: 0,
                        route: route.name.clone(),
                        bytes: 0,
                    }
                }
            }
        }
    };
    // A client that stops reading cannot hold the connection open: close_notify gets a moment
    // to go out, then the connection is dropped.
    if !reset {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
    }
    let (hash, verified) = match client.presented() {
        Some(p) => (p.identity.cert_sha256.to_hex(), p.verified().is_some()),
        None => (String::new(), false),
    };
    tracing::info!(
        target: "certgate::access",
        gemini = %cfg.name,
        %peer,
        url = %url,
        route = %outcome.route,
        status = outcome.status,
        client_cert_sha256 = %hash,
        client_verified = verified,
        bytes_out = outcome.bytes,
        duration_ms = started.elapsed().as_millis() as u64,
    );
}

/// Reads the request line (without CRLF). Bytes after the CRLF are ignored: Gemini requests
/// have no body.
async fn read_line(tls: &mut TlsStream<TcpStream>) -> Result<Vec<u8>, Refusal> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1100];
    loop {
        let n = tls.read(&mut chunk).await.map_err(|_| Refusal {
            status: 59,
            reason: "the connection failed before the request line ended",
        })?;
        if n == 0 {
            return Err(Refusal {
                status: 59,
                reason: "the request line does not end in CRLF",
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = request::line_end(&buf)? {
            buf.truncate(end);
            return Ok(buf);
        }
    }
}

/// Everything that decides whether a request is served, and by which route: normal form, the
/// host against the TLS server name, the route, and the route's identity policy.
fn judge<'c>(
    cfg: &'c GeminiConfig,
    line: &[u8],
    port: u16,
    sni: Option<&str>,
    client: &ClientCert,
) -> Result<(&'c GeminiRoute, Request), Refusal> {
    let req = request::parse(line, port)?;
    let host = req.authority.host_name();
    // The client certificate was presented to the host named in SNI; a request for another host
    // must not ride on it.
    if sni.is_some_and(|s| s != host) {
        return Err(Refusal {
            status: 53,
            reason: "the URL's host differs from the TLS server name",
        });
    }
    let Some(route) = crate::route::select_by(
        &cfg.routes,
        |r| (r.host.as_ref(), r.path.as_str()),
        Some(host),
        &req.path.matched,
    ) else {
        let served = cfg
            .routes
            .iter()
            .any(|r| r.host.as_ref().is_none_or(|p| p.matches(host)));
        return Err(if served {
            Refusal {
                status: 51,
                reason: "not found",
            }
        } else {
            Refusal {
                status: 53,
                reason: "this server does not serve that host",
            }
        });
    };
    identity(&route.access, client)?;
    Ok((route, req))
}

/// Route policy in Gemini's terms.
fn identity(access: &Access, client: &ClientCert) -> Result<(), Refusal> {
    match policy::identity(access, client) {
        Decision::Allow => Ok(()),
        Decision::Deny { status: 401, .. } => Err(Refusal {
            status: 60,
            reason: "a client certificate is required",
        }),
        Decision::Deny { .. } => {
            let unverified = client.presented().is_some_and(|p| p.verified().is_none());
            Err(if access.require_verified && unverified {
                Refusal {
                    status: 62,
                    reason: "the client certificate is not valid here (it did not verify)",
                }
            } else {
                Refusal {
                    status: 61,
                    reason: "the client certificate is not authorised here",
                }
            })
        }
    }
}

/// Resolves when a reload means this connection's client would no longer be served by its
/// route: not admitted by the listener any more, the route gone, or refused by its policy.
async fn admitted_while(
    live: &LiveGemini,
    changes: watch::Receiver<()>,
    client: &ClientCert,
    route: &str,
) -> String {
    crate::recheck::until_refused(changes, || {
        let new = live.load_full();
        crate::recheck::still_admitted(client, new.client_auth, new.trust.as_deref())?;
        let Some(r) = new.routes.iter().find(|r| r.name == route) else {
            return Err("its route was removed".to_owned());
        };
        identity(&r.access, client).map_err(|r| format!("the new policy refuses it ({})", r.reason))
    })
    .await
}

/// One request being answered.
struct Ctx<'a> {
    cfg: &'a GeminiConfig,
    /// A response header went out: a time-out after it can only close the connection.
    header_sent: AtomicBool,
    route: &'a GeminiRoute,
    req: &'a Request,
    client: &'a ClientCert,
    peer: SocketAddr,
    port: u16,
    facts: &'a crate::proxy_protocol::TlsFacts,
}

impl Ctx<'_> {
    /// Writes the response header (once).
    async fn header(
        &self,
        tls: &mut TlsStream<TcpStream>,
        status: u8,
        meta: &str,
    ) -> std::io::Result<()> {
        self.header_sent.store(true, Ordering::Relaxed);
        response::header(tls, status, meta).await
    }

    async fn respond(&self, tls: &mut TlsStream<TcpStream>) -> Outcome {
        let (status, bytes) = match &self.route.upstream {
            GeminiUpstream::Http { authority, client } => {
                http::respond(self, authority, client, tls).await
            }
            GeminiUpstream::Cgi { target, variables } => self.cgi(target, *variables, tls).await,
        };
        Outcome {
            status,
            route: self.route.name.clone(),
            bytes,
        }
    }

    async fn cgi(
        &self,
        target: &std::path::Path,
        variables: CgiVariables,
        tls: &mut TlsStream<TcpStream>,
    ) -> (u8, u64) {
        let Some(script) = cgi::locate(target, &self.route.path, &self.req.path.forward) else {
            let _ = self.header(tls, 51, "not found").await;
            return (51, 0);
        };
        let facts = cgi::Facts {
            peer: self.peer,
            local_port: self.port,
            tls_version: &self.facts.version,
            tls_cipher: self.facts.cipher.as_deref().unwrap_or(""),
            client: self.client,
            variables,
        };
        let env = cgi::environment(self.req, &script, &facts);
        let mut running = match cgi::spawn(&script, &env) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(gemini = %self.cfg.name, script = %script.path.display(), error = %e, "cannot start the CGI script");
                let _ = self
                    .header(tls, 42, "the CGI script could not be started")
                    .await;
                return (42, 0);
            }
        };
        let child = &mut running.child;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(cgi::log_stderr(
                self.cfg.name.clone(),
                script.path.display().to_string(),
                stderr,
            ));
        }
        let Some(stdout) = child.stdout.take() else {
            return (42, 0);
        };
        let sent = response::relay(
            stdout,
            tls,
            &self.header_sent,
            self.cfg.max_response_bytes,
            &self.cfg.name,
            &script.path.display().to_string(),
        )
        .await;
        // The script has had its say; one that still runs (or hangs after closing its output),
        // and whatever it left running, is killed when `running` drops.
        let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        drop(running);
        sent
    }
}
