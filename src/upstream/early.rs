//! An upstream connection on which a failed write does not hide an answer
//! already sent.
//!
//! A storage may answer before it has read the request body (a `403` for a
//! badly signed upload) and close the connection; the body still being
//! sent then meets a reset. hyper's client reports that write error as the
//! request's failure, losing the answer when it had not parsed it yet (the
//! client saw a `502` in 1 case of 3 to 10). [`EarlyAnswer`] turns the
//! write side of a connection whose peer is gone into a sink: the rest of
//! the body is discarded (the storage would not read it), and hyper goes on
//! reading what the storage did send — its answer, or the error that ends
//! the connection, which then fails the request as before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes, once the peer has gone, are discarded.
pub struct EarlyAnswer<T> {
    inner: T,
    peer_gone: bool,
}

impl<T> EarlyAnswer<T> {
    /// Wraps `inner`.
    pub const fn new(inner: T) -> Self {
        Self {
            inner,
            peer_gone: false,
        }
    }
}

/// Whether a write error says the peer closed the connection, rather than
/// something about this side.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for EarlyAnswer<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EarlyAnswer<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.peer_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if peer_gone(&e) => {
                tracing::debug!(error = %e, "upstream closed while the request was sent; reading its answer");
                self.peer_gone = true;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_gone(&e) => {
                self.peer_gone = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
