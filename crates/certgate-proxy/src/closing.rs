//! How a client's TCP connection ends: with a lingering close when certgate ends it, and with a
//! reset when its client is no longer admitted.
//!
//! **Lingering close.** When certgate closes a connection while the client may still be
//! sending (an HTTP/2 client acknowledges the last DATA frames with WINDOW_UPDATEs; an HTTP/1
//! client may have pipelined a request), closing the socket with those bytes unread makes the
//! kernel send RST, and RST discards whatever the kernel still held *for* the client: the tail
//! of the last response. A drain cut good HTTP/2 downloads short this way. So shutting down an
//! ingress socket sends FIN after what is queued and then reads, and throws away, what the
//! client still sends, until the client closes too, or sends nothing for [`LINGER`] (a client
//! still reading a backlog of megabytes goes on acknowledging it: each byte it sends starts the
//! wait again), or the connection's idle timeout has passed since the shutdown, whatever the
//! client does. A connection whose client closed first (the usual case) has nothing to wait
//! for.
//!
//! **Reset.** Closing a socket the usual way sends FIN *after* whatever the kernel still holds
//! for it: up to the send buffer (`tcp_wmem`, 4 MiB by default on Linux) goes on draining to
//! the client for as long as it keeps reading. For a client a reload no longer admits, that is
//! data handed over after its revocation: a slow reader of a download kept receiving it for tens
//! of seconds after the cut. A socket closed with `SO_LINGER` set to zero sends RST instead and
//! discards what is queued, so the client gets what it has already received and nothing more.
//! A connection that is cut at once (a tunnel, a Gemini response) resets its socket itself
//! ([`reset_now`]). An HTTP connection's socket is owned by the serving future, so it is wrapped
//! ([`ClientSocket`]) and resets itself when dropped once its [`Refused`] is marked: at once if
//! the connection was cut, and otherwise (its requests in flight finished within the grace and
//! it was shut down) no earlier than the grace after the refusal, so that a client that reads in
//! time still gets those responses.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a shut-down connection waits for its client to close once the client has gone
/// silent.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

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
pub(crate) fn reset_now(socket: impl AsFd) {
    if let Err(e) = rustix::net::sockopt::set_socket_linger(&socket, Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "cannot set SO_LINGER to reset a refused client's connection");
    }
}

/// An ingress client's TCP stream: shut down with a lingering close, and, once its client is
/// [`Refused`], reset rather than closed when dropped (`grace` after the refusal at the
/// earliest if it was shut down, at once if it was cut).
#[derive(Debug)]
pub(crate) struct ClientSocket {
    tcp: TcpStream,
    refused: Arc<Refused>,
    grace: Duration,
    /// The longest the lingering close may take in all, however long the client keeps sending.
    linger_at_most: Duration,
    /// The client closed its side (a read found the end of the stream).
    client_closed: bool,
    /// Shutting down: FIN is sent; the client is waited for until this fires (after [`LINGER`]
    /// of silence) or `linger_until` passes.
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
    linger_until: Option<tokio::time::Instant>,
    shut_down: bool,
}

impl ClientSocket {
    /// `linger_at_most`: the longest a lingering close may take in all (the listener's idle
    /// timeout: no longer than a client that stops reading may hold its connection anyway).
    pub(crate) fn new(
        tcp: TcpStream,
        refused: Arc<Refused>,
        grace: Duration,
        linger_at_most: Duration,
    ) -> Self {
        Self {
            tcp,
            refused,
            grace,
            linger_at_most,
            client_closed: false,
            lingering: None,
            linger_until: None,
            shut_down: false,
        }
    }

    /// Reads and drops what the client sends until it closes (`Ready`) or nothing is left to
    /// read now (`Pending`); `sent` is set if it sent anything.
    fn poll_discard(&mut self, cx: &mut Context<'_>, sent: &mut bool) -> Poll<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut read = ReadBuf::new(&mut buf);
            match ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read)) {
                Ok(()) if read.filled().is_empty() => {
                    self.client_closed = true;
                    return Poll::Ready(());
                }
                Ok(()) => *sent = true,
                // A reset or another error: nothing more will come.
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        let Some(at) = self.refused.0.get().map(|t| *t + self.grace) else {
            return;
        };
        if !self.shut_down || Instant::now() >= at {
            reset_now(&self.tcp);
            return;
        }
        // Shut down within the grace: the responses that finished may still be read until it
        // is over; then the socket is reset, through a duplicate that outlives this one.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            reset_now(&self.tcp);
            return;
        };
        match rustix::io::dup(&self.tcp) {
            Ok(dup) => {
                runtime.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    reset_now(&dup);
                });
            }
            Err(_) => reset_now(&self.tcp),
        }
    }
}

impl AsFd for ClientSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            this.client_closed = true;
        }
        polled
    }
}

impl AsyncWrite for ClientSocket {
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

    /// Sends FIN after what is queued, then (unless the client has closed already, or is
    /// refused) waits for the client to close, dropping what it still sends, until it has sent
    /// nothing for [`LINGER`] or `linger_at_most` has passed.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut_down {
            ready!(Pin::new(&mut this.tcp).poll_shutdown(cx))?;
            this.shut_down = true;
            if this.client_closed || this.refused.is_marked() {
                return Poll::Ready(Ok(()));
            }
            let now = tokio::time::Instant::now();
            this.linger_until = Some(now + this.linger_at_most);
            this.lingering = Some(Box::pin(tokio::time::sleep_until(
                (now + LINGER).min(now + this.linger_at_most),
            )));
        }
        let (true, Some(until)) = (this.lingering.is_some(), this.linger_until) else {
            return Poll::Ready(Ok(()));
        };
        let mut sent = false;
        let closed = this.poll_discard(cx, &mut sent).is_ready();
        let silence = this.lingering.as_mut().expect("lingering");
        if sent && !closed {
            // Still talking (acknowledging what it reads): wait again, up to the bound.
            let now = tokio::time::Instant::now();
            silence.as_mut().reset((now + LINGER).min(until));
        }
        if closed || silence.as_mut().poll(cx).is_ready() {
            this.lingering = None;
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A connected pair: the accepted side wrapped, the client's side with a small receive
    /// buffer, so that most of what the server writes stays queued on the server's side.
    async fn pair(refused: &Arc<Refused>, grace: Duration) -> (ClientSocket, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            ClientSocket::new(server, Arc::clone(refused), grace, Duration::from_secs(5)),
            client,
        )
    }

    /// Writes until the client's window and the server's send buffer are full.
    async fn fill(server: &mut ClientSocket) -> usize {
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

    /// The client still sends after the server's last response (as an HTTP/2 client sends
    /// WINDOW_UPDATEs): a plain close would reset the connection and drop the response's tail.
    #[tokio::test]
    async fn a_shut_down_stream_lingers_until_the_client_has_read_everything() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::ZERO).await;
        let sent = fill(&mut server).await;
        client.write_all(b"more from the client").await.unwrap();
        let closing = tokio::spawn(async move {
            server.shutdown().await.unwrap();
            drop(server);
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The client keeps talking while it reads.
        client.write_all(b"and more").await.unwrap();
        assert_eq!(drain(&mut client).await, (sent, false));
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), closing)
            .await
            .expect("the shutdown ended once the client closed")
            .unwrap();
    }

    /// A client still reading a large backlog goes on acknowledging it: the wait starts again
    /// with each byte it sends, but not past the bound (5 s in `pair`).
    #[tokio::test]
    async fn a_client_that_keeps_sending_is_waited_for_up_to_the_bound() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::ZERO).await;
        let started = Instant::now();
        let closing = tokio::spawn(async move { server.shutdown().await });
        let talker = tokio::spawn(async move {
            // A byte every second for 8 s: never silent for LINGER, longer than the bound.
            for _ in 0..8 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::time::timeout(Duration::from_secs(7), closing)
            .await
            .expect("the lingering close ended at its bound")
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(4900) && took < Duration::from_secs(6),
            "{took:?}"
        );
        talker.abort();
    }

    #[tokio::test]
    async fn a_lingering_close_gives_up_after_the_linger_time() {
        let refused = Arc::new(Refused::default());
        let (mut server, _client) = pair(&refused, Duration::ZERO).await;
        let started = Instant::now();
        server.shutdown().await.unwrap();
        let took = started.elapsed();
        assert!(took >= LINGER && took < LINGER * 2, "{took:?}");
    }

    #[tokio::test]
    async fn a_refused_client_gets_nothing_queued_after_a_cut() {
        let refused = Arc::new(Refused::default());
        let (mut server, mut client) = pair(&refused, Duration::from_secs(5)).await;
        let sent = fill(&mut server).await;
        refused.mark();
        // Dropped without a shutdown: cut, whatever the grace.
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
        // Shut down (no lingering for a refused client) and dropped within the grace.
        tokio::time::timeout(Duration::from_millis(500), server.shutdown())
            .await
            .expect("no lingering for a refused client")
            .unwrap();
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
        server.shutdown().await.unwrap();
        drop(server);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (got, reset) = drain(&mut client).await;
        assert!(reset, "closed without a reset");
        assert!(got < sent / 2, "the client read {got} of the {sent} bytes");
    }
}
