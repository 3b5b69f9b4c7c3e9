//! Upstream HTTP/1.1 connections for the ingress, to `http://host:port`, `https://host:port`
//! (with its own trust and optional client identity) and `unix:/path`, kept alive in a pool.
//!
//! A connection has no task of its own: hyper's client connection future is polled by the
//! request that uses it (while the request is sent and the response head awaited) and then by the
//! response body (while it streams). So a request costs no channel hop and no task wake-up
//! between the client's connection and the upstream socket. When a response body ends, its
//! connection goes back to the pool; one the upstream closed while idle is found at checkout
//! (polled once) and dropped, and a request that could not be sent on a reused connection is
//! retried once on a new one. A `101 Switching Protocols` response hands its connection to a task
//! that completes the upgrade.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A request body on its way upstream: the client's, possibly under a size limit.
pub type RequestBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// How long establishing a connection (TCP, and TLS for `https`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per client at most.
const MAX_IDLE: usize = 256;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// TCP or Unix connect failed or timed out.
    #[error("connecting to {to}: {source}")]
    Connect {
        /// Where to.
        to: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake with an `https` upstream failed.
    #[error("TLS with {to}: {source}")]
    Tls {
        /// Where to.
        to: String,
        /// What went wrong (the rustls error is its source).
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (hyper's error; a request body error is its source).
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Pooled keep-alive connections to the upstreams of one route.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

struct Inner {
    key: UpstreamKey,
    connector: Connector,
    idle: Mutex<Vec<Idle>>,
}

/// What an upstream client is made from, as plain data. Two routes, or one route before and
/// after a reload, whose keys are equal connect alike, so they can share one client and its
/// pooled connections and TLS sessions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamKey {
    /// Plain HTTP over TCP.
    Http,
    /// HTTP over the Unix socket at this path.
    Unix(PathBuf),
    /// HTTPS verified by a trust bundle with these contents
    /// (`TrustBundle::contents_sha256`), presenting the client certificate chain with these
    /// hashes, if any.
    Https {
        /// The trust bundle's contents.
        trust: [u8; 32],
        /// The client identity's chain, leaf first.
        identity: Option<Vec<certgate_pki::CertHash>>,
    },
}

/// The one place upstream clients are built: from a key, or taken over from the running
/// configuration when its key is unchanged. A reload resolves the new configuration with the
/// running listeners' pools (`Pools::of`), so routes whose upstream did not change keep their
/// warm connections; a changed trust bundle, CRL or client identity gets a new client.
#[derive(Clone, Debug, Default)]
pub struct Pools {
    clients: std::collections::HashMap<UpstreamKey, UpstreamClient>,
}

impl Pools {
    /// The clients of `routes`, to be reused by the next configuration.
    pub fn of<'r>(routes: impl IntoIterator<Item = &'r crate::Route>) -> Self {
        let mut pools = Self::default();
        for route in routes {
            if let crate::Upstream::Remote { client, .. } = &route.upstream {
                pools
                    .clients
                    .entry(client.inner.key.clone())
                    .or_insert_with(|| (**client).clone());
            }
        }
        pools
    }

    /// A plain HTTP client.
    pub fn http(&mut self) -> UpstreamClient {
        self.get_or(UpstreamKey::Http, || Connector::Http)
    }

    /// A client for the Unix socket at `path` (whatever the request URI's host).
    pub fn unix(&mut self, path: PathBuf) -> UpstreamClient {
        self.get_or(UpstreamKey::Unix(path.clone()), || Connector::Unix(path))
    }

    /// An HTTPS client that verifies the server against `trust` and presents `identity`, if
    /// given; it speaks HTTP/1.1 (ALPN `http/1.1`).
    pub fn https(
        &mut self,
        trust: &certgate_pki::TrustBundle,
        identity: Option<&certgate_pki::Credential>,
    ) -> Result<UpstreamClient, certgate_tls::Error> {
        let key = UpstreamKey::Https {
            trust: trust.contents_sha256(),
            identity: identity.map(|c| {
                c.chain
                    .iter()
                    .map(|der| certgate_pki::CertHash::of(der))
                    .collect()
            }),
        };
        if let Some(client) = self.clients.get(&key) {
            return Ok(client.clone());
        }
        let mut tls = certgate_tls::upstream_client_config(trust, identity)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = Connector::Https(tokio_rustls::TlsConnector::from(Arc::new(tls)));
        Ok(self.get_or(key, || connector))
    }

    fn get_or(
        &mut self,
        key: UpstreamKey,
        connector: impl FnOnce() -> Connector,
    ) -> UpstreamClient {
        self.clients
            .entry(key.clone())
            .or_insert_with(|| UpstreamClient::new(key, connector()))
            .clone()
    }
}

enum Connector {
    Http,
    Https(tokio_rustls::TlsConnector),
    Unix(PathBuf),
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner.connector {
            Connector::Http => "UpstreamClient::Http",
            Connector::Https(_) => "UpstreamClient::Https",
            Connector::Unix(_) => "UpstreamClient::Unix",
        })
    }
}

/// hyper's client connection future, with upgrades, whatever the transport.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send + Sync>>;

/// A connection: the handle requests are sent through and the future that does its I/O.
struct Conn {
    send: SendRequest<RequestBody>,
    driver: Option<Driver>,
}

impl Conn {
    /// Polls the connection's I/O; `false` once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.driver {
            Some(d) => match d.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(result) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "upstream connection ended");
                    }
                    self.driver = None;
                    false
                }
            },
            None => false,
        }
    }

    /// Whether another request can be sent now (drives the connection once to find out).
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && matches!(self.send.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    to: Authority,
    conn: Conn,
    since: Instant,
}

impl UpstreamClient {
    fn new(key: UpstreamKey, connector: Connector) -> Self {
        Self {
            inner: Arc::new(Inner {
                key,
                connector,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// What the client was built from.
    pub fn key(&self) -> &UpstreamKey {
        &self.inner.key
    }

    /// Sends `req` (origin-form URI) to `to` on a pooled or new connection and returns the
    /// response head; its body streams from the connection, which returns to the pool when the
    /// body ends. `Host` is set to `to` when the request has none.
    pub async fn request(
        &self,
        to: &Authority,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(to.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let to = to.clone();
        let head = req.method() == http::Method::HEAD;
        // Connecting is rare and its future large (a TLS handshake): boxed, so that the
        // request future every request builds and moves stays small.
        let (mut conn, mut reused) = match self.checkout(&to) {
            Some(conn) => (conn, true),
            None => (Box::pin(self.connect(&to)).await?, false),
        };
        let resp = loop {
            let sent = std::pin::pin!(conn.send.try_send_request(req));
            match drive_until(&mut conn, sent).await {
                Ok(resp) => break resp,
                // Not written: the upstream closed the idle connection as it was taken. Once,
                // on a new connection.
                Err(mut e) if reused && e.message().is_some() => {
                    req = e.take_message().expect("checked above");
                    conn = Box::pin(self.connect(&to)).await?;
                    reused = false;
                }
                Err(e) => return Err(e.into_error().into()),
            }
        };
        // After a 101 the connection belongs to the upgrade, which completes when its future
        // sees the 101 through; otherwise the body drives it and returns it to the pool.
        let conn = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(driver) = conn.driver.take() {
                tokio::spawn(async move {
                    if let Err(e) = driver.await {
                        tracing::debug!(error = %e, "upstream upgrade failed");
                    }
                });
            }
            None
        } else if Self::bodiless_yet_declares_one(head, &resp) {
            // hyper reads no body here, so bytes the upstream sends after this head would be
            // read as the next response on the connection: another client's. Not reused.
            None
        } else {
            Some(conn)
        };
        let pool = Arc::clone(&self.inner);
        Ok(resp.map(|inner| UpstreamBody {
            inner,
            conn,
            done: false,
            pool,
            to,
        }))
    }

    /// Whether a response that has no body (to `HEAD`, or a 1xx, 204 or 304) still declares one: a
    /// `Transfer-Encoding`, or a `Content-Length` other than 0. A `HEAD` response or a 304 may say
    /// the length of what it stands for; an upstream that also sends those bytes, in a later write,
    /// would have them read as the answer to the connection's next request.
    fn bodiless_yet_declares_one<B>(head: bool, resp: &Response<B>) -> bool {
        let status = resp.status();
        let bodiless = head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        bodiless
            && (resp.headers().contains_key(header::TRANSFER_ENCODING)
                || resp
                    .headers()
                    .get_all(header::CONTENT_LENGTH)
                    .iter()
                    .any(|v| v.as_bytes().iter().any(|&b| b != b'0')))
    }

    /// The most recently used idle connection to `to` that is still open.
    fn checkout(&self, to: &Authority) -> Option<Conn> {
        let mut idle = self.inner.idle.lock().ok()?;
        // The oldest are at the front.
        let stale = idle
            .iter()
            .take_while(|i| i.since.elapsed() >= IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        while let Some(pos) = idle.iter().rposition(|i| &i.to == to) {
            let mut candidate = idle.remove(pos).conn;
            if candidate.reusable() {
                return Some(candidate);
            }
        }
        None
    }

    async fn connect(&self, to: &Authority) -> Result<Conn, UpstreamError> {
        let host = to.host().trim_start_matches('[').trim_end_matches(']');
        let port = to.port_u16().unwrap_or(match self.inner.connector {
            Connector::Https(_) => 443,
            _ => 80,
        });
        let connect_error = |source| UpstreamError::Connect {
            to: to.to_string(),
            source,
        };
        let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
        match &self.inner.connector {
            Connector::Http => {
                let tcp = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect((host, port)),
                )
                .await
                .map_err(|_| connect_error(timed_out()))?
                .map_err(connect_error)?;
                let _ = tcp.set_nodelay(true);
                handshake(tcp).await
            }
            Connector::Https(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| connect_error(std::io::Error::other(e)))?;
                let connect = async {
                    let tcp = tokio::net::TcpStream::connect((host, port))
                        .await
                        .map_err(connect_error)?;
                    let _ = tcp.set_nodelay(true);
                    tls.connect(name, tcp)
                        .await
                        .map_err(|source| UpstreamError::Tls {
                            to: to.to_string(),
                            source,
                        })
                };
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| connect_error(timed_out()))??;
                handshake(stream).await
            }
            Connector::Unix(path) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| connect_error(timed_out()))?
                        .map_err(|source| UpstreamError::Connect {
                            to: path.display().to_string(),
                            source,
                        })?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<Conn, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    Ok(Conn {
        send,
        driver: Some(Box::pin(conn.with_upgrades())),
    })
}

/// Polls `fut` to completion, driving `conn`'s I/O meanwhile.
async fn drive_until<F: Future + Unpin>(conn: &mut Conn, mut fut: F) -> F::Output {
    std::future::poll_fn(|cx| {
        // Drive first: it writes the request and reads the response into `fut`'s channel.
        conn.drive(cx);
        Pin::new(&mut fut).poll(cx)
    })
    .await
}

/// A response body from an upstream: streams from its connection (polling it) and gives the
/// connection back to the pool once the body has ended.
pub struct UpstreamBody {
    inner: Incoming,
    conn: Option<Conn>,
    done: bool,
    pool: Arc<Inner>,
    to: Authority,
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = &mut this.conn {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A body dropped before its end leaves the connection mid-response: close it.
        if !(self.done || self.inner.is_end_stream()) || !conn.reusable() {
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push(Idle {
                to: self.to.clone(),
                conn,
                since: Instant::now(),
            });
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("to", &self.to)
            .field("done", &self.done)
            .finish()
    }
}
