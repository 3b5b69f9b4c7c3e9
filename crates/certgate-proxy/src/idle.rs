//! Idle detection without a clock on the I/O path: an IO wrapper counts the reads and writes that
//! moved bytes, and a per-connection ticker compares counts between ticks. A connection whose
//! count did not change for the idle timeout is closed; one whose last operation was a write and
//! that has nothing in flight can be parked (see `conn`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What moved on a connection: how many reads and writes moved bytes, and which came last.
///
/// One task drives a connection's IO at a time, so the count is a plain load and store (no
/// read-modify-write); a lost update would still change the count, which is all idle detection
/// asks of it.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    ops: AtomicU64,
    last_read: AtomicBool,
    write_pending: AtomicBool,
    /// Requests waiting for their upstream's answer (see [`Activity::waiting`]).
    waiting: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn moved(&self, read: bool) {
        let n = self.ops.load(Ordering::Relaxed);
        self.ops.store(n.wrapping_add(1), Ordering::Relaxed);
        self.last_read.store(read, Ordering::Relaxed);
    }

    /// A number that changes whenever bytes move.
    pub(crate) fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Marks a request as waiting for its upstream's answer until the guard is dropped: the
    /// connection is not idle meanwhile (nothing moves on it because the upstream is slow, not
    /// the client; the upstream's own time limit bounds the wait).
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// What an [`IdleWatch`] is given at each tick.
    pub(crate) fn now(&self) -> Moved {
        Moved {
            ops: self.ops(),
            waiting: self.is_waiting(),
        }
    }

    /// Whether the last operation that moved bytes was a read (the peer has said something
    /// that has not been answered yet).
    pub(crate) fn last_was_read(&self) -> bool {
        self.last_read.load(Ordering::Relaxed)
    }

    /// Whether the last write or flush could not finish (the peer is not reading): bytes may be
    /// waiting in the layers above the socket.
    pub(crate) fn writes_pending(&self) -> bool {
        self.write_pending.load(Ordering::Relaxed)
    }

    fn write_attempted<T>(&self, r: &Poll<T>) {
        self.write_pending.store(r.is_pending(), Ordering::Relaxed);
    }

    /// Resolves once no bytes have moved for `timeout` (checked every `tick`, so it resolves
    /// between `timeout` and `timeout + tick` after the last byte).
    pub(crate) async fn idle(&self, timeout: Duration, tick: Duration) {
        let mut watch = IdleWatch::new(self.ops());
        loop {
            tokio::time::sleep(tick).await;
            if watch.tick(self.now(), tick) >= timeout {
                return;
            }
        }
    }
}

/// A request waiting for its upstream (see [`Activity::waiting`]).
pub(crate) struct Waiting<'a>(&'a Activity);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's state at a tick: its count of operations, and whether a request waits for
/// its upstream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moved {
    ops: u64,
    waiting: bool,
}

/// Quiet time accumulated from ticks: reset whenever the count moved since the last tick, or a
/// request is waiting for its upstream.
#[derive(Debug)]
pub(crate) struct IdleWatch {
    last: u64,
    quiet: Duration,
}

impl IdleWatch {
    pub(crate) fn new(ops: u64) -> Self {
        Self {
            last: ops,
            quiet: Duration::ZERO,
        }
    }

    /// Records a tick of length `tick` at `now`; returns how long the connection has been
    /// quiet (zero if anything moved since the previous tick or a request waits upstream).
    pub(crate) fn tick(&mut self, now: Moved, tick: Duration) -> Duration {
        if now.ops == self.last && !now.waiting {
            self.quiet += tick;
        } else {
            self.last = now.ops;
            self.quiet = Duration::ZERO;
        }
        self.quiet
    }
}

/// `T` with every read and write that moved bytes recorded in an [`Activity`].
#[derive(Debug)]
pub(crate) struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.moved(true);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved(false);
        }
        this.activity.write_attempted(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved(false);
        }
        this.activity.write_attempted(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.activity.write_attempted(&r);
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_time_resets_when_bytes_move() {
        let t = Duration::from_millis(250);
        let at = |ops, waiting| Moved { ops, waiting };
        let mut w = IdleWatch::new(0);
        assert_eq!(w.tick(at(0, false), t), t);
        assert_eq!(w.tick(at(0, false), t), 2 * t);
        assert_eq!(w.tick(at(1, false), t), Duration::ZERO);
        assert_eq!(w.tick(at(1, false), t), t);
        // A request waiting for its upstream: never quiet, however long nothing moves.
        assert_eq!(w.tick(at(1, true), t), Duration::ZERO);
        assert_eq!(w.tick(at(1, true), t), Duration::ZERO);
        assert_eq!(w.tick(at(1, false), t), t);
    }

    #[test]
    fn a_waiting_request_is_counted_until_its_guard_is_dropped() {
        let a = Activity::new();
        let first = a.waiting();
        let second = a.waiting();
        drop(first);
        assert!(a.now().waiting);
        drop(second);
        assert!(!a.now().waiting);
    }

    #[test]
    fn activity_counts_and_remembers_the_last_direction() {
        let a = Activity::new();
        assert!(!a.last_was_read());
        a.moved(true);
        assert_eq!(a.ops(), 1);
        assert!(a.last_was_read());
        a.moved(false);
        assert_eq!(a.ops(), 2);
        assert!(!a.last_was_read());
    }
}
