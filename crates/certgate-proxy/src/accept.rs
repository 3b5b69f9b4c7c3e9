//! The accept loop every listener shares: a connection limit, back-off on accept errors, and a
//! bounded drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::server::TlsStream;

/// Accepts until `shutdown` turns true, spawning `handle(tcp, peer, shutdown)` per connection
/// with at most `max` open at once; then stops accepting and waits up to `drain` (read when
/// shutdown begins) for the open connections to end.
pub(crate) async fn run<F, Fut>(
    name: &str,
    listener: TcpListener,
    max: usize,
    mut shutdown: watch::Receiver<bool>,
    drain: impl Fn() -> Duration,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Boxed: a future moved into an async block is stored twice in it (once captured, once
        // being awaited), which would double every idle connection's task.
        let conn = Box::pin(handle(tcp, peer, shutdown.clone()));
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    // Draining: no new connections; every permit back means every connection has ended.
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain(), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "drain timeout: closing the remaining connections"
        );
    }
}

/// The TLS handshake of a listener that reads the connection itself (tunnels, Gemini), within
/// `timeout`, counted in the handshake metrics and logged when it fails.
pub(crate) async fn tls_handshake(
    name: &str,
    kind: &'static str,
    tls: &Arc<rustls::ServerConfig>,
    timeout: Duration,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => {
            crate::metrics::handshake(name, "ok", "");
            Some(t)
        }
        Ok(Err(e)) => {
            crate::metrics::handshake(name, "failed", crate::metrics::handshake_reason(&e));
            tracing::info!(target: "certgate::handshake", listener = %name, kind, %peer, error = %e, "handshake failed");
            None
        }
        Err(_) => {
            crate::metrics::handshake(name, "timeout", "");
            tracing::info!(target: "certgate::handshake", listener = %name, kind, %peer, "handshake timed out");
            None
        }
    }
}
