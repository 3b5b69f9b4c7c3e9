//! The HTTP ingress: accept TLS, derive the client identity once per connection, then answer
//! each request in named phases, each in its own module:
//!
//! 1. accept and handshake (`serve`, `connection`, here; HTTP/1.1 and HTTP/2 in `crate::conn`);
//! 2. normalise, route, scrub, policy (`request`: one normal form of path, host and headers,
//!    `route::select`, identity headers removed, `policy::decide`);
//! 3. answer: built-in upstreams (`builtin`) or the remote one (`proxy`), with the route's
//!    identity headers added (`decorate`);
//! 4. log once per request (`access_log`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use certgate_pki::forward::{self, ProxyInfo};
use certgate_pki::{ClientCert, TrustBundle};
use certgate_tls::ClientAuth;
use http::header::{self, HeaderMap, HeaderName};
use rustls::ServerConfig;
use rustls_pki_types::UnixTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use arc_swap::ArcSwap;

mod access_log;
mod builtin;
pub(crate) mod decorate;
mod proxy;
mod request;

use request::handle;

use crate::closing::{ClientSocket, Refused};
use crate::conn::Stop;
use crate::idle::Activity;
use crate::message::Limits;
use crate::normal::{self, Underscores};
use crate::route::Route;

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
    /// Formats that do not say whether a certificate verified (RFC 9440, XFCC, Traefik) also
    /// carry unverified certificates. Off by default: such a format forwards only verified ones.
    pub forward_unverified: bool,
    /// Limits.
    pub limits: Limits,
    /// Header names with `_` or other characters besides letters, digits and `-`.
    pub underscores: Underscores,
    /// Every header a front proxy of this listener (any route) may carry a certificate in.
    /// Removed from every request on every route (after the route's own front proxy, if any,
    /// has read it), in every spelling: an app behind another route must not read a client's
    /// copy as if a front proxy had sent it.
    pub front_headers: Vec<http::HeaderName>,
    /// Requests on connections without TLS SNI get 421.
    pub require_sni: bool,
    /// After a reload, open connections whose client is no longer admitted (revoked, no longer
    /// verifying, or lacking what the listener now demands) are closed. On by default.
    pub recheck_connections: bool,
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

/// What one request works with: the listener's configuration current for its connection (the
/// one it was accepted with, or a later reload's while its client stays admitted).
struct Shared {
    cfg: Arc<IngressConfig>,
    /// A reload found that the connection's client is no longer admitted: the connection is
    /// closing, and requests that still arrive on it (new HTTP/2 streams before the client read
    /// the GOAWAY, pipelined HTTP/1 requests) are refused, not served under the old verdict.
    no_longer_admitted: bool,
    /// The connection's activity, told while a request waits for its upstream (which is not
    /// the client being idle).
    activity: Arc<Activity>,
}

/// The live configuration of a listener: swapped whole by a reload, read once per connection.
pub type LiveConfig = Arc<ArcSwap<IngressConfig>>;

/// Serves `live` on `listener` until `shutdown` turns true, then stops accepting. Each new
/// connection takes the configuration current at accept time; `max_connections` is read once.
/// `changes` fires after every reload that swapped `live`: open connections then ask whether
/// their client is still admitted (see `crate::recheck`), end if not, and otherwise judge their
/// next requests by the new configuration.
pub async fn serve(
    live: LiveConfig,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    changes: watch::Receiver<()>,
) {
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
            let mut changes = changes.clone();
            // Changes before this connection was accepted are in the configuration it takes.
            changes.mark_unchanged();
            connection(Arc::clone(&live), tcp, peer, shutdown, changes)
        },
    )
    .await;
}

async fn connection(
    live: LiveConfig,
    tcp: TcpStream,
    peer: SocketAddr,
    listener_shutdown: watch::Receiver<bool>,
    mut changes: watch::Receiver<()>,
) {
    let cfg = live.load_full();
    let _ = tcp.set_nodelay(true);
    // Set when a reload no longer admits the client: its socket is then reset, not closed, so
    // that what is still queued for it is dropped (see `crate::closing`).
    let refused = Arc::new(Refused::default());
    let tcp = ClientSocket::new(
        tcp,
        Arc::clone(&refused),
        REVOKED_GRACE,
        cfg.limits.idle_timeout,
    );
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
    // The configuration requests are judged by: the one accepted with, then each reload's, as
    // long as the client is still admitted under it.
    let current = Arc::new(ArcSwap::new(Arc::clone(&cfg)));
    let activity = Activity::new();
    let handler = {
        let (current, conn) = (Arc::clone(&current), Arc::clone(&conn));
        let (live, refused) = (Arc::clone(&live), Arc::clone(&refused));
        let activity = Arc::clone(&activity);
        move |req| {
            let shared = Shared {
                cfg: judged_by(&live, &current, &conn.client, &refused),
                no_longer_admitted: refused.is_marked(),
                activity: Arc::clone(&activity),
            };
            let conn = Arc::clone(&conn);
            async move { handle(&shared, &conn, req).await }
        }
    };
    // Serving sees one stop signal: the listener's (drain), or this connection's own when a
    // reload no longer admits its client.
    let (stop, shutdown) = watch::channel(Stop::No);
    let serving = async {
        if h2 {
            // hyper's HTTP/2 connection state is large and lives in the future: keep it out of
            // the (far more common) HTTP/1 connections' tasks.
            Box::pin(crate::conn::serve_http2(
                tls,
                handler,
                &cfg.limits,
                activity,
                shutdown,
            ))
            .await
        } else {
            crate::conn::serve_http1(&cfg.name, tls, handler, &cfg.limits, activity, shutdown).await
        }
    };
    tokio::pin!(serving);
    // Polled only when the drain or a reload signals, not on each of the connection's wake-ups.
    let watching = crate::conn::WhenWoken::new(watch_admission(
        &live,
        &current,
        &conn.client,
        &mut changes,
        listener_shutdown,
        &stop,
    ));
    let result = tokio::select! {
        biased;
        r = serving.as_mut() => r,
        why = watching => {
            refused.mark();
            crate::metrics::closed(&cfg.name, "no_longer_admitted");
            tracing::info!(listener = %cfg.name, %peer, reason = %why, "connection closed after a reload: its client is no longer admitted");
            let _ = stop.send(Stop::Cut);
            // Requests in flight (and HTTP/2 with its GOAWAY) get a moment; then it is cut and
            // its socket reset. An upgraded connection is cut at once.
            match tokio::time::timeout(REVOKED_GRACE, serving.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %cfg.name, %peer, error = %e, "connection ended with an error");
    }
}

/// The configuration a new request on a connection is judged by: `current`, or, if a reload
/// has swapped `live` since the connection last looked, the new one, once the connection's
/// client is found still admitted under it (if not, `refused` is marked and the request is
/// refused like every later one).
///
/// Asked at the start of every request, so that no request starts under a verdict a reload has
/// overturned, whether or not `watch_admission` has run since: a client whose TLS handshake
/// spans the reload (its certificate checked before, its `Finished` sent after, with requests
/// in the same write) would otherwise have those requests served, and an HTTP/2 client up to
/// 200 of them.
fn judged_by(
    live: &LiveConfig,
    current: &ArcSwap<IngressConfig>,
    client: &ClientCert,
    refused: &Refused,
) -> Arc<IngressConfig> {
    let cfg = current.load_full();
    let latest = live.load();
    if Arc::ptr_eq(&cfg, &latest) || refused.is_marked() {
        return cfg;
    }
    if latest.recheck_connections
        && crate::recheck::still_admitted(client, latest.client_auth, latest.trust.as_deref())
            .is_err()
    {
        refused.mark();
        return cfg;
    }
    let latest = arc_swap::Guard::into_inner(latest);
    current.store(Arc::clone(&latest));
    latest
}

/// How long a connection whose client is no longer admitted may finish what is in flight (and
/// the client read it); its socket is reset when it ends, this long after the refusal at the
/// earliest.
const REVOKED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Passes the listener's drain on to `stop`, and after each reload asks whether `client` is
/// still admitted: returns why not, or keeps `current` up to date. Never returns while the
/// client stays admitted (or when the listener turns re-checking off).
async fn watch_admission(
    live: &LiveConfig,
    current: &ArcSwap<IngressConfig>,
    client: &ClientCert,
    changes: &mut watch::Receiver<()>,
    mut listener_shutdown: watch::Receiver<bool>,
    stop: &watch::Sender<Stop>,
) -> String {
    let (mut draining, mut reloads_over) = (false, false);
    loop {
        tokio::select! {
            r = listener_shutdown.changed(), if !draining => {
                // The listener drains (or is gone): the connection finishes as it always did.
                draining = true;
                if r.is_err() || *listener_shutdown.borrow() {
                    let _ = stop.send(Stop::Drain);
                }
            }
            r = changes.changed(), if !reloads_over => {
                if r.is_err() {
                    // No more reloads will come (a reload removed the listener, which also
                    // tells it to drain: keep waiting for that, never block here).
                    reloads_over = true;
                    continue;
                }
                let new = live.load_full();
                if new.recheck_connections
                    && let Err(why) =
                        crate::recheck::still_admitted(client, new.client_auth, new.trust.as_deref())
                {
                    return why;
                }
                current.store(new);
            }
            // Draining, and no reload can come: nothing more to watch.
            else => std::future::pending::<()>().await,
        }
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
