//! Ending a refused client's connection with a TCP reset.
//!
//! Closing a socket the usual way sends FIN *after* whatever the kernel still holds for it: up
//! to the send buffer (`tcp_wmem`, 4 MiB by default on Linux) goes on draining to the client
//! for as long as it keeps reading. For a client a reload no longer admits, that is data handed
//! over after its revocation: a slow reader of a download kept receiving it for tens of seconds
//! after the cut. A socket closed with `SO_LINGER` set to zero sends RST instead and discards
//! what is queued, so the client gets what it has already received and nothing more.
//!
//! A connection that is cut at once (a tunnel, a Gemini response) resets its socket itself
//! ([`now`]). An HTTP connection's socket is owned by the serving future, which may finish the
//! requests in flight within a grace period, so the socket is wrapped ([`ResetIfRefused`]) and
//! resets itself when dropped: the moment the client was refused is recorded in a shared
//! [`Refused`], and the socket is reset no earlier than `grace` after it, so a response that
//! finished within the grace can still reach a client that reads it in time.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Whether, and since when, a connection's client is no longer admitted. Shared by the code that
/// finds out and the connection's socket.
#[derive(Debug, Default)]
pub(crate) struct Refused(OnceLock<Instant>);

impl Refused {
    /// Records that the client is refused from now on (the first call counts).
    pub(crate) fn mark(&self) {
        let _ = self.0.set(Instant::now());
    }

    pub(crate) fn is_marked(&self) -> bool {
        self.0.get().is_some()
    }
}

/// Resets `socket` now: it sends RST when it is closed, and what the kernel still holds for the
/// client is dropped.
pub(crate) fn now(socket: impl AsFd) {
    if let Err(e) = rustix::net::sockopt::set_socket_linger(&socket, Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "cannot set SO_LINGER to reset a refused client's connection");
    }
}

/// A client's TCP stream that, once its client is [`Refused`], is reset rather than closed when
/// dropped, `grace` after the refusal at the earliest.
#[derive(Debug)]
pub(crate) struct ResetIfRefused {
    tcp: TcpStream,
    refused: Arc<Refused>,
    grace: Duration,
}

impl ResetIfRefused {
    pub(crate) fn new(tcp: TcpStream, refused: Arc<Refused>, grace: Duration) -> Self {
        Self {
            tcp,
            refused,
            grace,
        }
    }
}

impl Drop for ResetIfRefused {
    fn drop(&mut self) {
        let Some(at) = self.refused.0.get().map(|t| *t + self.grace) else {
            return;
        };
        if Instant::now() >= at {
            now(&self.tcp);
            return;
        }
        // Within the grace: end the stream (FIN after what is queued), and reset it when the
        // grace is over, through a duplicate of the socket that outlives this one.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            now(&self.tcp);
            return;
        };
        match rustix::io::dup(&self.tcp) {
            Ok(dup) => {
                let _ = rustix::net::shutdown(&dup, rustix::net::Shutdown::Write);
                runtime.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    now(&dup);
                });
            }
            Err(_) => now(&self.tcp),
        }
    }
}

impl AsFd for ResetIfRefused {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl AsyncRead for ResetIfRefused {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIfRefused {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A connected pair: the accepted side wrapped, the client's side with a small receive
    /// buffer, so that most of what the server writes stays queued on the server's side.
    async fn pair(refused: &Arc<Refused>, grace: Duration) -> (ResetIfRefused, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            ResetIfRefused::new(server, Arc::clone(refused), grace),
            client,
        )
    }

    /// Writes until the client's window and the server's send buffer are full.
    async fn fill(server: &mut ResetIfRefused) -> usize {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), server.write(&chunk)).await
        {
            sent += n;
        }
        sent
    }

    /// Reads to the end: the bytes read, and whether the end was a reset.
    async fn drain(client: &mut TcpStream) -> (usize, bool) {
        let mut buf = vec![0; 64 * 1024];
        let mut got = 0;
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return (got, false),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (got, true),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_stream_whose_client_is_admitted_closes_after_what_is_queued() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::ZERO).await;
        let sent = fill(&mut server).await;
        drop(server);
        assert_eq!(drain(&mut client).await, (sent, false));
    }

    #[tokio::test]
    async fn a_refused_client_gets_nothing_queued_after_the_grace() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::ZERO).await;
        let sent = fill(&mut server).await;
        refused.mark();
        drop(server);
        let (got, reset) = drain(&mut client).await;
        assert!(reset, "closed without a reset");
        assert!(
            got < sent / 2,
            "the client read {got} of the {sent} bytes queued"
        );
    }

    #[tokio::test]
    async fn a_refused_client_may_read_what_was_queued_within_the_grace() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::from_secs(5)).await;
        let sent = fill(&mut server).await;
        refused.mark();
        drop(server);
        // Read in time: all of it, then the end of the stream.
        assert_eq!(drain(&mut client).await, (sent, false));
    }

    #[tokio::test]
    async fn a_refused_client_that_reads_too_late_is_reset_when_the_grace_ends() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::from_millis(300)).await;
        let sent = fill(&mut server).await;
        refused.mark();
        drop(server);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (got, reset) = drain(&mut client).await;
        assert!(reset, "closed without a reset");
        assert!(got < sent / 2, "the client read {got} of the {sent} bytes");
    }
}
