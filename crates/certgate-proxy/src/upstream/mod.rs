//! Upstream HTTP/1.1 connections for the ingress, to `http://host:port`, `https://host:port`
//! (with its own trust and optional client identity) and `unix:/path`, kept alive in a pool.
//!
//! The exchange is certgate's own: `wire` writes the request head and reads the response, on a
//! plain buffered socket that the request's own task drives (while the request is sent and the
//! response head awaited, and then while the response body streams). A request costs no channel
//! hop and no task wake-up between the client's connection and the upstream, and its head is
//! written once, straight from the request. The request body is sent while the response is read,
//! since an upstream may answer before the body ends.
//!
//! When a response body ends, its connection goes back to the pool, unless the response forbids
//! it (see `wire::response_framing`). One the upstream closed while idle is found at checkout and
//! dropped; a request that then meets a closed pooled connection before any answer is retried
//! once on a new connection, if none of its body was used and the method is idempotent (RFC 9110
//! §9.2.2) or not even its head was written. A `101 Switching Protocols` hands the socket, and
//! what the upstream sent after the head, to the upgrade ([`UpstreamBody::take_upgrade`]).

pub mod wire;

use crate::idle::Activity;
use std::collections::VecDeque;
use std::fmt;
use std::io::ErrorKind::WriteZero;
use std::io::IoSlice;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use wire::{Decoded, RequestFraming, ResponseFraming};

pub use crate::message::BoxError;

/// A request body on its way upstream: the client's, possibly under a size limit.
pub type RequestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

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
    /// Reading from or writing to the upstream failed.
    #[error("the upstream connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The upstream closed the connection before its response was complete.
    #[error("the upstream closed the connection before its response was complete")]
    Closed,
    /// The upstream's response breaks HTTP/1.1.
    #[error(transparent)]
    Response(#[from] wire::WireError),
    /// The upstream sent more interim (1xx) responses than certgate reads before a final one.
    #[error("the upstream sent more than {MAX_INTERIM} interim responses")]
    Interim,
    /// The upstream took none of the request and sent nothing of its answer for this long,
    /// while nothing but the upstream kept the request waiting.
    #[error("the upstream kept the request waiting for {} s with nothing moving", .0.as_secs())]
    Timeout(Duration),
    /// The client's request body failed while it was sent (cut short, malformed, over a limit).
    #[error("the request body failed: {0}")]
    RequestBody(#[source] BoxError),
    /// The request body was not as long as its `Content-Length` said.
    #[error("the request body does not match its Content-Length")]
    BodyLength,
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

/// A connection's socket, whatever the transport.
trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Io for T {}

/// A connection to an upstream: its socket and what has been read from it and not yet used.
struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
}

impl Conn {
    fn new(io: impl Io + 'static) -> Self {
        Self {
            io: Box::new(io),
            buf: BytesMut::new(),
        }
    }

    /// Whether another request can be sent now: nothing unread is left over, and a read finds
    /// the connection neither closed nor carrying bytes nobody asked for. tokio answers this
    /// read from its cached readiness, without a system call, unless the socket has had an event
    /// since its last short read.
    fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut read = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut read),
            Poll::Pending
        )
    }

    /// Reads what the socket has into the buffer, with room for at least `want` bytes.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Room made in a connection's buffer for a read of a response head.
const HEAD_READ: usize = 16 * 1024;
/// Room made for a read of a response body.
const BODY_READ: usize = 64 * 1024;
/// Less room than this and the buffer grows before a read.
const MIN_READ: usize = 4 * 1024;
/// Interim (1xx) responses skipped before a final one, at most.
const MAX_INTERIM: usize = 16;

/// Writes a request (head and body) to the connection, a step at a time, as the request's task
/// polls it: the head and the first piece of the body leave in one `writev`.
struct Sender {
    /// The head, kept for a retry on a new connection.
    head: Bytes,
    /// Bytes to write, in order.
    out: VecDeque<Bytes>,
    body: Option<RequestBody>,
    framing: RequestFraming,
    /// Body bytes still due under `Content-Length`.
    left: u64,
    /// Bytes written so far, head included.
    written: usize,
    /// Some body bytes were taken from the request body (so it cannot be sent again).
    body_taken: bool,
    /// The body ended as its framing says, and its end (the last chunk) is queued or written.
    /// A body that failed or came short never is: the upstream would read whatever comes next
    /// on the connection, another client's request, as the rest of this body.
    complete: bool,
    /// The upstream has sent a byte since the request began.
    answered: bool,
    flushed: bool,
    /// Sending waits for the client's body, not for the upstream.
    waiting_on_client: bool,
    /// Sending failed: the response may still be read (an upstream that answered early and
    /// stopped reading), but the connection is not reused.
    stopped: Option<UpstreamError>,
}

impl Sender {
    fn new(head: Bytes, body: RequestBody, framing: RequestFraming) -> Self {
        let mut sender = Self {
            out: VecDeque::from([head.clone()]),
            head,
            body: None,
            framing,
            left: match framing {
                RequestFraming::Length(n) => n,
                _ => 0,
            },
            written: 0,
            body_taken: false,
            complete: false,
            answered: false,
            flushed: false,
            waiting_on_client: false,
            stopped: None,
        };
        if body.is_end_stream() {
            sender.end_body();
        } else {
            sender.body = Some(body);
        }
        sender
    }

    /// The same request from the start, for a new connection, if none of its body was taken.
    fn rewind(self) -> Option<Self> {
        if self.body_taken || (self.body.is_none() && !self.complete) {
            return None;
        }
        let mut sender = Self {
            out: VecDeque::from([self.head.clone()]),
            written: 0,
            answered: false,
            flushed: false,
            waiting_on_client: false,
            stopped: None,
            ..self
        };
        if sender.body.is_none() {
            sender.end_body();
        }
        Some(sender)
    }

    /// Sending waits for the client's body (the upstream keeps nothing waiting).
    fn waits_on_client(&self) -> bool {
        self.waiting_on_client && self.stopped.is_none() && !self.done()
    }

    fn head_written(&self) -> bool {
        self.written >= self.head.len()
    }

    /// All of the request, body included, has been written and flushed.
    fn done(&self) -> bool {
        self.complete && self.out.is_empty() && self.flushed
    }

    /// The body ended cleanly: its end goes out.
    fn end_body(&mut self) {
        self.complete = true;
        if self.framing == RequestFraming::Chunked {
            self.out.push_back(Bytes::from_static(b"0\r\n\r\n"));
        }
    }

    /// Sends until the request is written or the socket or the body has to wait.
    fn poll_send(
        &mut self,
        io: &mut Box<dyn Io>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UpstreamError>> {
        loop {
            if !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); 8];
                let n = self
                    .out
                    .iter()
                    .zip(&mut slices)
                    .map(|(bytes, slice)| *slice = IoSlice::new(bytes))
                    .count();
                let mut wrote =
                    match ready!(Pin::new(&mut **io).poll_write_vectored(cx, &slices[..n])) {
                        Ok(0) => return Poll::Ready(Err(UpstreamError::Io(WriteZero.into()))),
                        Ok(n) => n,
                        Err(e) => return Poll::Ready(Err(UpstreamError::Io(e))),
                    };
                self.written += wrote;
                self.flushed = false;
                while let Some(front) = self.out.front_mut() {
                    if wrote < front.len() {
                        front.advance(wrote);
                        break;
                    }
                    wrote -= front.len();
                    self.out.pop_front();
                }
                continue;
            }
            if !self.flushed {
                ready!(Pin::new(&mut **io).poll_flush(cx)).map_err(UpstreamError::Io)?;
                self.flushed = true;
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let frame = Pin::new(body).poll_frame(cx);
            self.waiting_on_client = frame.is_pending();
            match ready!(frame) {
                None => {
                    self.body = None;
                    if self.left > 0 {
                        return Poll::Ready(Err(UpstreamError::BodyLength));
                    }
                    self.end_body();
                }
                Some(Err(e)) => {
                    self.body = None;
                    return Poll::Ready(Err(UpstreamError::RequestBody(e)));
                }
                // Request trailers are not forwarded: an app that reads them as fields would
                // take them past the identity-field removal that heads go through.
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.body_taken = true;
                    match self.framing {
                        RequestFraming::Length(_) => {
                            let len = data.len() as u64;
                            if len > self.left {
                                return Poll::Ready(Err(UpstreamError::BodyLength));
                            }
                            self.left -= len;
                            self.out.push_back(data);
                        }
                        RequestFraming::Chunked => {
                            self.out.push_back(wire::chunk_size_line(data.len()));
                            self.out.push_back(data);
                            self.out.push_back(Bytes::from_static(b"\r\n"));
                        }
                        RequestFraming::Empty => {
                            return Poll::Ready(Err(UpstreamError::BodyLength));
                        }
                    }
                }
            }
        }
    }

    /// Sends what can be sent now, unless sending already failed; a write failure stops
    /// sending (the response may still come), a request body failure is returned.
    fn poll_alongside(
        &mut self,
        io: &mut Box<dyn Io>,
        cx: &mut Context<'_>,
    ) -> Result<(), UpstreamError> {
        if self.stopped.is_some() || self.done() || (self.body.is_none() && !self.complete) {
            return Ok(());
        }
        match self.poll_send(io, cx) {
            Poll::Ready(Err(e @ UpstreamError::Io(_))) => {
                self.stopped = Some(e);
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

/// How long an upstream may keep a request waiting with nothing moving. The clock runs only
/// while the request waits on the upstream alone (to take more of the request, or to answer),
/// not while it waits on the client's body, and starts again whenever a byte moves either way:
/// a slow upload or a slow upstream that keeps answering is never cut, one that went silent is.
/// While the upstream alone holds things up, the client's connection is marked as waiting
/// (`Activity::waiting`), so that its idle timeout does not count that time; while the request
/// waits on the client's body, it is not, so a client that stops sending meets its idle timeout.
struct Patience<'t> {
    limit: Duration,
    timer: Pin<&'t mut Option<tokio::time::Sleep>>,
    /// A byte moved, or the request waited on the client, since the clock last started.
    restart: bool,
    client: Option<&'t Activity>,
    held: Option<crate::idle::Waiting<'t>>,
}

impl<'t> Patience<'t> {
    fn new(
        limit: Duration,
        timer: Pin<&'t mut Option<tokio::time::Sleep>>,
        client: Option<&'t Activity>,
    ) -> Self {
        Self {
            limit,
            timer,
            restart: false,
            client,
            held: None,
        }
    }

    /// The request waits: `Pending`, or the error once the upstream alone has kept it waiting
    /// for the limit.
    fn poll_wait(&mut self, on_client: bool, cx: &mut Context<'_>) -> Poll<UpstreamError> {
        if on_client {
            self.restart = true;
            self.held = None;
            return Poll::Pending;
        }
        if self.held.is_none() {
            self.held = self.client.map(Activity::waiting);
        }
        let restart = std::mem::take(&mut self.restart);
        let timer = match self.timer.as_mut().as_pin_mut() {
            Some(mut timer) => {
                if restart {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + self.limit);
                }
                timer
            }
            None => {
                self.timer.set(Some(tokio::time::sleep(self.limit)));
                self.timer.as_mut().as_pin_mut().expect("just set")
            }
        };
        timer.poll(cx).map(|()| UpstreamError::Timeout(self.limit))
    }
}

/// Sends the request and reads until the final response head (1xx other than 101 skipped).
fn poll_head(
    conn: &mut Conn,
    sender: &mut Sender,
    interim: &mut usize,
    patience: &mut Patience<'_>,
    cx: &mut Context<'_>,
) -> Poll<Result<wire::Head, UpstreamError>> {
    loop {
        let written = sender.written;
        sender.poll_alongside(&mut conn.io, cx)?;
        patience.restart |= sender.written != written;
        if let Some(head) = wire::parse_head(&mut conn.buf)? {
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                *interim += 1;
                if *interim > MAX_INTERIM {
                    return Poll::Ready(Err(UpstreamError::Interim));
                }
                continue;
            }
            return Poll::Ready(Ok(head));
        }
        match conn.poll_fill(cx, HEAD_READ) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(sender.stopped.take().unwrap_or(UpstreamError::Closed)));
            }
            Poll::Ready(Ok(_)) => {
                sender.answered = true;
                patience.restart = true;
            }
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(sender.stopped.take().unwrap_or(UpstreamError::Io(e))));
            }
            Poll::Pending => {
                return patience.poll_wait(sender.waits_on_client(), cx).map(Err);
            }
        }
    }
}

/// How a request's body is framed upstream: as the client framed it when it gave a length,
/// else by what the body knows of itself.
fn request_framing(parts: &http::request::Parts, body: &RequestBody) -> RequestFraming {
    if let Ok(Some(n)) = wire::length(&parts.headers) {
        return RequestFraming::Length(n);
    }
    if body.is_end_stream() {
        // RFC 9110 §8.6: a length on requests whose method gives a body a meaning.
        return match parts.method {
            Method::POST | Method::PUT | Method::PATCH => RequestFraming::Length(0),
            _ => RequestFraming::Empty,
        };
    }
    match body.size_hint().exact() {
        Some(n) => RequestFraming::Length(n),
        None => RequestFraming::Chunked,
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
    /// body ends. `Host` is set to `to` when the request has none. An upstream that keeps the
    /// request waiting for `patience` with nothing moving fails it with
    /// [`UpstreamError::Timeout`]: the clock runs only while the upstream alone holds the
    /// request up (it takes no more of the body, and sends nothing of its answer), and starts
    /// again whenever a byte moves. `client`, the client connection's activity, is marked as
    /// waiting meanwhile, so that this wait does not count toward the client's idle timeout.
    pub(crate) async fn request(
        &self,
        to: &Authority,
        req: Request<RequestBody>,
        patience: Duration,
        client: Option<&Activity>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        if !parts.headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(to.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        let framing = request_framing(&parts, &body);
        if matches!(framing, RequestFraming::Length(n) if n > 0) && body.is_end_stream() {
            // A length with no body to send: the upstream would wait for bytes never sent.
            return Err(UpstreamError::BodyLength);
        }
        let mut head = Vec::with_capacity(512);
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        wire::encode_request_head(&mut head, &parts.method, target, &parts.headers, framing);
        let mut sender = Sender::new(Bytes::from(head), body, framing);
        let to = to.clone();
        // Connecting is rare and its future large (a TLS handshake): boxed, so that the
        // request future every request builds and moves stays small.
        let (mut conn, mut reused) = match self.checkout(&to) {
            Some(conn) => (conn, true),
            None => (Box::pin(self.connect(&to)).await?, false),
        };
        let mut interim = 0;
        let timer = std::pin::pin!(None);
        let mut patience = Patience::new(patience, timer, client);
        let head = loop {
            let result = std::future::poll_fn(|cx| {
                poll_head(&mut conn, &mut sender, &mut interim, &mut patience, cx)
            })
            .await;
            match result {
                Ok(head) => break head,
                // A pooled connection the upstream closed as it was taken: the request was not
                // acted on, so it goes once more on a new connection, if it can be sent again
                // and doing so is safe (an idempotent method, or not even the head went out).
                Err(e @ (UpstreamError::Io(_) | UpstreamError::Closed))
                    if reused
                        && !sender.answered
                        && (parts.method.is_idempotent() || !sender.head_written()) =>
                {
                    sender = sender.rewind().ok_or(e)?;
                    conn = Box::pin(self.connect(&to)).await?;
                    reused = false;
                }
                Err(e) => return Err(e),
            }
        };
        let status = head.status;
        let (framing, keep_alive) = if status == StatusCode::SWITCHING_PROTOCOLS {
            (ResponseFraming::None, false)
        } else {
            wire::response_framing(parts.method == Method::HEAD, &head)?
        };
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        let pool = Arc::clone(&self.inner);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection belongs to the upgrade now, with whatever the upstream sent after
            // the head.
            let upgrade = Upgraded {
                io: conn.io,
                leftover: conn.buf.freeze(),
            };
            return Ok(resp.map(|()| UpstreamBody {
                exchange: None,
                reading: Reading::Done,
                keep_alive: false,
                pool,
                to,
                upgrade: Some(upgrade),
            }));
        }
        let mut body = UpstreamBody {
            exchange: Some(Exchange { conn, sender }),
            reading: match framing {
                ResponseFraming::None => Reading::Length(0),
                ResponseFraming::Length(n) => Reading::Length(n),
                ResponseFraming::Chunked => Reading::Chunked(wire::Chunked::default()),
                ResponseFraming::UntilClose => Reading::UntilClose,
            },
            keep_alive,
            pool,
            to,
            upgrade: None,
        };
        if matches!(body.reading, Reading::Length(0)) {
            body.finish();
        }
        Ok(resp.map(|()| body))
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
                Ok(Conn::new(tcp))
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
                Ok(Conn::new(stream))
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
                Ok(Conn::new(stream))
            }
        }
    }
}

/// The upstream's side of an upgraded connection (after a `101`): its socket, read first from
/// the bytes the upstream sent after the head.
pub struct Upgraded {
    io: Box<dyn Io>,
    leftover: Bytes,
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("leftover", &self.leftover.len())
            .finish()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.leftover.is_empty() {
            let n = this.leftover.len().min(buf.remaining());
            buf.put_slice(&this.leftover.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request in progress on its connection.
struct Exchange {
    conn: Conn,
    sender: Sender,
}

/// Where a response body stands.
enum Reading {
    /// This many bytes still to come.
    Length(u64),
    Chunked(wire::Chunked),
    UntilClose,
    Done,
}

/// A response body from an upstream: read from its connection by whoever polls it (the request
/// body, if the upstream answered before it ended, is still sent meanwhile), and the connection
/// goes back to the pool as the body ends.
pub struct UpstreamBody {
    /// `None` once the body has ended or failed.
    exchange: Option<Exchange>,
    reading: Reading,
    /// The response allows another request on the connection.
    keep_alive: bool,
    pool: Arc<Inner>,
    to: Authority,
    upgrade: Option<Upgraded>,
}

impl UpstreamBody {
    /// After a `101`: the upstream's side of the upgraded connection (once).
    pub fn take_upgrade(&mut self) -> Option<Upgraded> {
        self.upgrade.take()
    }

    /// The body has ended: the connection goes back to the pool if it can carry another
    /// request (all of this one sent, nothing more read than the response, still open).
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let Some(Exchange { mut conn, sender }) = self.exchange.take() else {
            return;
        };
        if !self.keep_alive || !sender.done() || sender.stopped.is_some() || !conn.reusable() {
            return;
        }
        if conn.buf.capacity() > BODY_READ {
            conn.buf = BytesMut::new();
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

    fn fail(&mut self, e: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.reading = Reading::Done;
        self.exchange = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        loop {
            let Some(Exchange { conn, sender }) = this.exchange.as_mut() else {
                return Poll::Ready(None);
            };
            if let Err(e) = sender.poll_alongside(&mut conn.io, cx) {
                // The client's request body failed after the response began: the response
                // goes on, the connection is not reused.
                tracing::debug!(error = %e, "request body failed during the response");
                sender.stopped = Some(e);
            }
            let frame = match &mut this.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(0) => None,
                Reading::Length(left) if !conn.buf.is_empty() => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *left -= take as u64;
                    Some(Frame::data(conn.buf.split_to(take).freeze()))
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => Some(Frame::data(data)),
                    Ok(Decoded::Trailers(trailers)) => Some(Frame::trailers(trailers)),
                    Ok(Decoded::End) => None,
                    Ok(Decoded::NeedMore) => Some(Frame::data(Bytes::new())),
                    Err(e) => return this.fail(e.into()),
                },
                Reading::UntilClose if !conn.buf.is_empty() => {
                    Some(Frame::data(conn.buf.split().freeze()))
                }
                Reading::Length(_) | Reading::UntilClose => Some(Frame::data(Bytes::new())),
            };
            match frame {
                None => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Some(frame) if frame.data_ref().is_none_or(|d| !d.is_empty()) => {
                    if matches!(this.reading, Reading::Length(0)) {
                        // The last bytes: the connection can serve the next request already.
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                // Nothing buffered: read.
                Some(_) => {}
            }
            match ready!(conn.poll_fill(cx, BODY_READ)) {
                Ok(0) if matches!(this.reading, Reading::UntilClose) => {
                    this.reading = Reading::Done;
                    this.exchange = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(UpstreamError::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(UpstreamError::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done | Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("to", &self.to)
            .field("done", &matches!(self.reading, Reading::Done))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    //! The exchange against scripted upstreams on loopback sockets: what goes on the wire, and
    //! when a connection is reused, retried or given up.

    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    use http::HeaderMap;
    use http_body_util::{BodyExt as _, Full, StreamBody};

    use super::*;

    /// An upstream on loopback that hands each accepted connection to `serve` (on its own
    /// thread), and reports each accept.
    fn upstream(
        serve: impl Fn(usize, TcpStream) + Send + Sync + 'static,
    ) -> (Authority, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let (accepted, rx) = mpsc::channel();
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { return };
                let _ = accepted.send(n);
                let serve = Arc::clone(&serve);
                std::thread::spawn(move || serve(n, conn));
            }
        });
        (to, rx)
    }

    /// Reads one request head (through the blank line) and returns it with what followed.
    fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
            }
            let n = conn.read(&mut byte).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&byte[..n]);
        }
    }

    /// Reads until the peer closes or `until` is in what was read.
    fn read_until(conn: &mut TcpStream, mut got: Vec<u8>, until: &[u8]) -> Vec<u8> {
        let mut byte = [0u8; 4096];
        while !got.windows(until.len()).any(|w| w == until) {
            match conn.read(&mut byte) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&byte[..n]),
            }
        }
        got
    }

    fn get(path: &str) -> Request<RequestBody> {
        Request::get(path)
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap()
    }

    async fn text(resp: Response<UpstreamBody>) -> String {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    fn client() -> UpstreamClient {
        Pools::default().http()
    }

    /// Time the scripted upstreams may keep a request waiting, unless a test says otherwise.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A request body sent a piece every `every`, `pieces` times.
    fn slow_body(pieces: usize, every: Duration) -> RequestBody {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tokio::spawn(async move {
            for _ in 0..pieces {
                tokio::time::sleep(every).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"piece"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        StreamBody::new(tokio_stream_from(rx)).boxed()
    }

    /// An upstream that takes the request and goes silent fails it after the patience, and
    /// the connection is not kept.
    #[tokio::test]
    async fn an_upstream_that_goes_silent_is_given_up_after_the_patience() {
        let (to, _) = upstream(|_, mut c| {
            let _ = read_head(&mut c);
            std::thread::sleep(Duration::from_secs(3));
        });
        let client = client();
        let started = std::time::Instant::now();
        let err = client
            .request(&to, get("/"), Duration::from_millis(300), None)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, UpstreamError::Timeout(d) if d == Duration::from_millis(300)),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(client.inner.idle.lock().unwrap().is_empty());
    }

    /// Neither a client that sends its body slowly (the upstream waits on it, not the other
    /// way round) nor an upstream that sends its head slowly but steadily meets the patience,
    /// however long the whole takes.
    #[tokio::test]
    async fn slow_but_moving_requests_and_answers_are_not_cut() {
        let (to, _) = upstream(|_, mut c| {
            let (_, rest) = read_head(&mut c).unwrap();
            let _ = read_until(&mut c, rest, b"0\r\n\r\n");
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                let _ = c.write_all(&[*b]);
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let patience = Duration::from_millis(300);
        let req = Request::post("/")
            .body(slow_body(4, Duration::from_millis(400)))
            .unwrap();
        let started = std::time::Instant::now();
        let resp = client().request(&to, req, patience, None).await.unwrap();
        assert_eq!(text(resp).await, "ok");
        assert!(started.elapsed() > Duration::from_millis(1500));
    }

    /// The client's connection counts as waiting (not idle) only while the upstream holds the
    /// request up: not while the request waits for the client's body, so a client that stops
    /// sending its body still meets its idle timeout.
    #[tokio::test]
    async fn the_client_waits_only_while_the_upstream_holds_things_up() {
        let (to, _) = upstream(|_, mut c| {
            let (_, rest) = read_head(&mut c).unwrap();
            let _ = read_until(&mut c, rest, b"0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(600));
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        });
        let activity = Activity::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let req = Request::post("/")
            .body(StreamBody::new(tokio_stream_from(rx)).boxed())
            .unwrap();
        let during = Arc::clone(&activity);
        let asking = tokio::spawn(async move {
            let resp = client()
                .request(&to, req, PATIENCE, Some(&during))
                .await
                .unwrap();
            text(resp).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!activity.is_waiting(), "waiting on the client's body");
        tx.send(Ok(Frame::data(Bytes::from_static(b"body"))))
            .await
            .unwrap();
        drop(tx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(activity.is_waiting(), "waiting on the upstream's answer");
        assert_eq!(asking.await.unwrap(), "ok");
        assert!(!activity.is_waiting(), "answered");
    }

    /// An upstream that stops taking the request body (its buffers full) keeps the request
    /// waiting as much as one that does not answer.
    #[tokio::test]
    async fn an_upstream_that_stops_reading_the_body_is_given_up() {
        let (to, _) = upstream(|_, mut c| {
            let _ = read_head(&mut c);
            std::thread::sleep(Duration::from_secs(5));
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tokio::spawn(async move {
            // Far more than the socket buffers hold.
            for _ in 0..1024 {
                let piece = Frame::data(Bytes::from(vec![b'x'; 64 * 1024]));
                if tx.send(Ok(piece)).await.is_err() {
                    return;
                }
            }
        });
        let req = Request::post("/")
            .body(StreamBody::new(tokio_stream_from(rx)).boxed())
            .unwrap();
        let started = std::time::Instant::now();
        let err = client()
            .request(&to, req, Duration::from_millis(300), None)
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_goes_chunked_and_its_trailers_stay_here() {
        let (tx, seen) = mpsc::channel();
        let (to, _) = upstream(move |_, mut c| {
            let (head, rest) = read_head(&mut c).unwrap();
            let body = read_until(&mut c, rest, b"0\r\n\r\n");
            let _ = tx.send((head, body));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let mut trailers = HeaderMap::new();
        trailers.insert("client-cert", HeaderValue::from_static(":c3B vb2Y=:"));
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::data(Bytes::from_static(b", world"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let req = Request::post("/up").body(body).unwrap();
        let resp = client().request(&to, req, PATIENCE, None).await.unwrap();
        assert_eq!(text(resp).await, "ok");
        let (head, body) = seen.recv().unwrap();
        assert!(head.starts_with("POST /up HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nhost: {to}\r\n")), "{head}");
        assert_eq!(body, b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn a_body_of_known_length_goes_with_its_length() {
        let (tx, seen) = mpsc::channel();
        let (to, _) = upstream(move |_, mut c| {
            let (head, rest) = read_head(&mut c).unwrap();
            let body = read_until(&mut c, rest, b"hello");
            let _ = tx.send((head, body));
            c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        let req = Request::put("/f")
            .body(
                Full::new(Bytes::from_static(b"hello"))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap();
        let resp = client().request(&to, req, PATIENCE, None).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let (head, body) = seen.recv().unwrap();
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(body, b"hello");
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_connections_reused() {
        let (to, accepts) = upstream(|_, mut c| {
            while read_head(&mut c).is_some() {
                c.write_all(
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n\
                      HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                )
                .unwrap();
            }
        });
        let client = client();
        for _ in 0..3 {
            let resp = client.request(&to, get("/"), PATIENCE, None).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(text(resp).await, "ok");
        }
        assert_eq!(
            accepts.try_iter().count(),
            1,
            "one connection for three requests"
        );
    }

    #[tokio::test]
    async fn a_connection_with_bytes_past_its_response_is_not_reused() {
        let (to, accepts) = upstream(|_, mut c| {
            if read_head(&mut c).is_some() {
                // A response, and then a second one nobody asked for.
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!",
                );
                let _ = read_head(&mut c);
            }
        });
        let client = client();
        assert_eq!(
            text(client.request(&to, get("/"), PATIENCE, None).await.unwrap()).await,
            "ok"
        );
        assert!(client.inner.idle.lock().unwrap().is_empty());
        let _ = client.request(&to, get("/"), PATIENCE, None).await;
        assert_eq!(accepts.try_iter().count(), 2);
    }

    /// The second request on a connection meets it closed before any answer: a `GET` goes
    /// again on a new connection; a `POST` whose body was sent does not (it may have been
    /// acted on).
    #[tokio::test]
    async fn only_a_request_that_can_safely_go_again_is_retried() {
        let (to, accepts) = upstream(|n, mut c| {
            let _ = read_head(&mut c);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            if n % 2 == 0 {
                // Reads the next request's head, and closes without an answer.
                let _ = read_head(&mut c);
            } else {
                let _ = read_head(&mut c);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        let client = client();
        assert_eq!(
            text(client.request(&to, get("/"), PATIENCE, None).await.unwrap()).await,
            "ok"
        );
        let again = client.request(&to, get("/"), PATIENCE, None).await.unwrap();
        assert_eq!(text(again).await, "ok");
        assert_eq!(accepts.try_iter().count(), 2, "the GET went again");

        let (to, accepts) = upstream(|_, mut c| {
            let _ = read_head(&mut c);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = read_head(&mut c);
        });
        let client = self::client();
        assert_eq!(
            text(client.request(&to, get("/"), PATIENCE, None).await.unwrap()).await,
            "ok"
        );
        let post = Request::post("/")
            .body(
                Full::new(Bytes::from_static(b"pay"))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap();
        let err = client.request(&to, post, PATIENCE, None).await.unwrap_err();
        // Closed, or reset as the body was written after the close.
        assert!(
            matches!(err, UpstreamError::Closed | UpstreamError::Io(_)),
            "{err}"
        );
        assert_eq!(accepts.try_iter().count(), 1, "the POST did not go again");
    }

    /// An upstream that answers before it has read the body (and then stops reading) is heard:
    /// its answer comes back, and the connection is not reused.
    #[tokio::test]
    async fn an_early_answer_arrives_while_the_body_is_still_going() {
        let (to, accepts) = upstream(|_, mut c| {
            let _ = read_head(&mut c);
            let _ = c.write_all(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig");
            std::thread::sleep(Duration::from_secs(2));
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tokio::spawn(async move {
            // Far more than the socket buffers hold, a piece at a time.
            for _ in 0..1024 {
                let piece = Frame::data(Bytes::from(vec![b'x'; 64 * 1024]));
                if tx.send(Ok(piece)).await.is_err() {
                    return;
                }
            }
        });
        let body = StreamBody::new(tokio_stream_from(rx)).boxed();
        let client = client();
        let req = Request::post("/").body(body).unwrap();
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(&to, req, PATIENCE, None),
        )
        .await
        .expect("the answer came while the body was still being sent")
        .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(text(resp).await, "big");
        assert!(client.inner.idle.lock().unwrap().is_empty());
        assert_eq!(accepts.try_iter().count(), 1);
    }

    /// A request body that fails, or ends short of its length, after the upstream has answered
    /// leaves the upstream waiting for the rest: that connection must never carry another
    /// request, or the upstream reads it (another client's) as the rest of this body.
    #[tokio::test]
    async fn a_body_that_fails_after_the_answer_closes_the_connection() {
        for fails in [true, false] {
            let (to, accepts) = upstream(|_, mut c| {
                while read_head(&mut c).is_some() {
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
            tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
                .await
                .unwrap();
            let mut req = Request::post("/")
                .body(StreamBody::new(tokio_stream_from(rx)).boxed())
                .unwrap();
            if !fails {
                req.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
            }
            let client = client();
            let resp = client.request(&to, req, PATIENCE, None).await.unwrap();
            if fails {
                tx.send(Err("the client's body broke".into()))
                    .await
                    .unwrap();
            } else {
                // Three bytes of ten, and the end.
                drop(tx);
            }
            assert_eq!(text(resp).await, "ok");
            assert!(
                client.inner.idle.lock().unwrap().is_empty(),
                "pooled with the body unfinished (failed: {fails})"
            );
            let _ = client.request(&to, get("/"), PATIENCE, None).await;
            assert_eq!(accepts.try_iter().count(), 2);
        }
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_malformed_or_cut_response_is_an_error() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"garbage\r\n\r\n",
            b"",
        ] {
            let (to, _) = upstream(move |_, mut c| {
                let _ = read_head(&mut c);
                let _ = c.write_all(raw);
            });
            let outcome = match client().request(&to, get("/"), PATIENCE, None).await {
                Err(e) => Err(e.to_string()),
                Ok(resp) => resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(|e| e.to_string()),
            };
            assert!(
                outcome.is_err(),
                "{:?} was taken: {outcome:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
