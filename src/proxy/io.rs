//! The client connection's byte stream: bytes already read ahead (after a
//! PROXY header) are replayed first, and a connection on which no byte moves
//! either way for `idle_timeout` fails with `TimedOut`, which closes it. This
//! guards against slow bodies and idle keep-alive connections alike; hyper's
//! own `header_read_timeout` guards the header section.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A client stream with replayed prefix and idle timeout.
pub struct ClientIo<T> {
    inner: T,
    prefix: Bytes,
    timeout: Duration,
    last_activity: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<T> ClientIo<T> {
    /// Wraps `inner`; `prefix` is served before any byte of `inner`.
    pub fn new(inner: T, prefix: Bytes, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            prefix,
            timeout,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Called when the stream would block: fails once the connection has
    /// been idle for the whole timeout. The timer stays armed at its first
    /// deadline and is only moved when it fires early (activity pushed the
    /// deadline on meanwhile): moving it at every request cost a timer-wheel
    /// update per request.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let deadline = self.last_activity + self.timeout;
            if deadline <= self.sleep.deadline() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client connection idle timeout",
                ));
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

impl<T> ClientIo<T> {
    /// Counts a ready result as activity; on `Pending`, checks the idle timer.
    fn progress<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.touch();
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.poll_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.touch();
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress(cx, r)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_is_replayed_before_the_stream() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.unwrap();
        drop(b);
        let mut io = ClientIo::new(a, Bytes::from_static(b"hello"), Duration::from_secs(5));
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_times_out_but_active_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = ClientIo::new(a, Bytes::new(), Duration::from_secs(10));
        let mut buf = [0u8; 8];
        // Activity every 6 s keeps it alive past the 10 s timeout.
        for _ in 0..3 {
            let reader = io.read(&mut buf);
            let writer = async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                b.write_all(b"x").await.unwrap();
            };
            let (n, ()) = tokio::join!(reader, writer);
            assert_eq!(n.unwrap(), 1);
        }
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
