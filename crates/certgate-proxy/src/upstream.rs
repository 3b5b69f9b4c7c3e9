//! Pooled keep-alive clients for the three kinds of upstream: `http://host:port`,
//! `https://host:port` (with its own trust and optional client identity) and `unix:/path`.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A request body on its way upstream: the client's, possibly under a size limit.
pub type RequestBody =
    http_body_util::combinators::BoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A client for one kind of upstream.
#[derive(Clone)]
pub enum UpstreamClient {
    /// Plain HTTP/1.1 over TCP.
    Http(Client<HttpConnector, RequestBody>),
    /// HTTP/1.1 over TLS, verified against the route's upstream trust.
    Https(Client<HttpsConnector<HttpConnector>, RequestBody>),
    /// HTTP/1.1 over a Unix socket.
    Unix(Client<UnixConnector, RequestBody>),
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http(_) => "UpstreamClient::Http",
            Self::Https(_) => "UpstreamClient::Https",
            Self::Unix(_) => "UpstreamClient::Unix",
        })
    }
}

fn http_connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(10)));
    c.enforce_http(false);
    c
}

fn builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60));
    b
}

impl UpstreamClient {
    /// A plain HTTP client.
    pub fn http() -> Self {
        Self::Http(builder().build(http_connector()))
    }

    /// An HTTPS client using `tls` (from `certgate_tls::upstream_client_config`).
    pub fn https(tls: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http_connector());
        Self::Https(builder().build(connector))
    }

    /// A client for the Unix socket at `path`.
    pub fn unix(path: PathBuf) -> Self {
        Self::Unix(builder().build(UnixConnector(Arc::new(path))))
    }

    /// The URI scheme requests to this upstream carry.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Https(_) => "https",
            Self::Http(_) | Self::Unix(_) => "http",
        }
    }

    /// Sends a request.
    pub async fn request(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Http(c) => c.request(req).await,
            Self::Https(c) => c.request(req).await,
            Self::Unix(c) => c.request(req).await,
        }
    }
}

/// Connects every request to one Unix socket, whatever the URI says.
#[derive(Clone, Debug)]
pub struct UnixConnector(Arc<PathBuf>);

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = UnixIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<UnixIo, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = Arc::clone(&self.0);
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&*path).await?;
            Ok(UnixIo(TokioIo::new(stream)))
        })
    }
}

/// A Unix stream as hyper IO.
#[derive(Debug)]
pub struct UnixIo(TokioIo<tokio::net::UnixStream>);

impl Connection for UnixIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UnixIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UnixIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
