//! When an HTTP/2 connection is idle. Bytes alone cannot tell: PINGs (the
//! client's, or the answers to ours), SETTINGS and WINDOW_UPDATE frames
//! keep an h2 connection busy forever without moving any request or
//! response, so [`ClientIo`](super::io::ClientIo)'s idle timeout never
//! fires on it. An h2 connection is active when request or response
//! content moves: a request starts, the proxy writes a response's HEADERS
//! or a non-empty DATA frame, or the client sends a non-empty DATA frame
//! while a request of the connection still waits for its response (an
//! upload). That is HTTP/1.1's rule ("no byte moves") with the control
//! frames left out, and with what the client sends counted only when the
//! proxy is taking it in, as an HTTP/1.1 connection only counts the bytes
//! hyper reads: frames that start no request (a malformed HEADERS), DATA
//! on a finished stream, or DATA while the only response is stuck behind a
//! closed flow-control window do not keep a connection open. It covers a
//! connection with no stream open, and streams that stall (a download the
//! client never opens its window for, an upload it stops sending) while
//! PINGs go on.
//!
//! [`H2Watch`] wraps the (decrypted) stream under hyper and reads the frame
//! headers going by ([`FrameScan`], shared with the refusal watch it also
//! feeds); the service counts requests and their waits with
//! [`Activity::request`]; [`Activity::quiet_for`] resolves once nothing
//! has moved for the duration.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h2frames::{Frame, FrameScan, Written};

/// What moved on one connection.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests started and content frames counted.
    moved: AtomicU64,
    /// Requests still waiting for their response.
    awaiting: AtomicUsize,
}

impl Activity {
    /// Counts a request as started, and as waiting for its response until
    /// the guard drops (when the service has produced the response, or
    /// the stream was reset before).
    pub fn request(self: &Arc<Self>) -> Awaiting {
        self.add(1);
        self.awaiting.fetch_add(1, Ordering::Relaxed);
        Awaiting(self.clone())
    }

    /// Resolves once nothing has moved for `idle`: at least `idle` and at
    /// most twice `idle` after the last movement. One timer per `idle`
    /// period, nothing per frame but an atomic add.
    pub async fn quiet_for(&self, idle: Duration) {
        loop {
            let seen = self.moved.load(Ordering::Relaxed);
            tokio::time::sleep(idle).await;
            if self.moved.load(Ordering::Relaxed) == seen {
                return;
            }
        }
    }

    fn add(&self, n: u64) {
        if n > 0 {
            self.moved.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn uploading(&self) -> bool {
        self.awaiting.load(Ordering::Relaxed) > 0
    }
}

/// A request waiting for its response; see [`Activity::request`].
#[derive(Debug)]
pub struct Awaiting(Arc<Activity>);

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.0.awaiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An h2 server connection's stream, its frames scanned once each way:
/// the content frames that move count into its [`Activity`], and what the
/// server writes is told to `W` (the connection's refusal watch,
/// [`RefusalWatch`](super::refusal::RefusalWatch)).
pub struct H2Watch<T, W> {
    inner: T,
    read: FrameScan,
    write: FrameScan,
    activity: Arc<Activity>,
    refusals: W,
}

impl<T, W: Written> H2Watch<T, W> {
    /// Wraps `inner` (what hyper reads and writes, after TLS) from its
    /// first byte; counts into `activity`, tells `refusals`.
    pub const fn new(inner: T, activity: Arc<Activity>, refusals: W) -> Self {
        Self {
            inner,
            read: FrameScan::client(),
            write: FrameScan::server(),
            activity,
            refusals,
        }
    }

    /// What the proxy writes counts: DATA only leaves within the window
    /// the client opens, HEADERS only as a response to a request.
    fn wrote(&mut self, data: &[u8]) {
        let Self {
            write,
            activity,
            refusals,
            ..
        } = self;
        write.feed(data, &mut |frame| {
            if content(frame) {
                activity.add(1);
            }
            refusals.written(frame);
        });
    }

    /// What the client sends counts when it starts a request (counted by
    /// the service, not here: a HEADERS frame may start none) or uploads
    /// while a request waits. The check is per read, not per frame: a
    /// frame read with the last waiting request's end may count once.
    fn read(&mut self, data: &[u8]) {
        let mut uploaded = 0;
        self.read.feed(data, &mut |frame| {
            if matches!(frame, Frame::Data { len } if len > 0) {
                uploaded += 1;
            }
        });
        if uploaded > 0 && self.activity.uploading() {
            self.activity.add(uploaded);
        }
    }
}

/// Whether a frame moves request or response content: HEADERS, or DATA
/// that carries some.
const fn content(frame: Frame) -> bool {
    match frame {
        Frame::Headers { .. } => true,
        Frame::Data { len } => len > 0,
        Frame::Reset { .. } | Frame::GoAway { .. } => false,
    }
}

impl<T: AsyncRead + Unpin, W: Written + Unpin> AsyncRead for H2Watch<T, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.read(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin, W: Written + Unpin> AsyncWrite for H2Watch<T, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.wrote(&data[..n]);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = left.min(b.len());
                this.wrote(&b[..k]);
                left -= k;
            }
        }
        r
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

    use crate::proxy::h2frames::{DATA, HEADERS};

    const FRAME_HEADER_LEN: usize = 9;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// A frame of `kind` with `len` payload bytes.
    fn frame(kind: u8, len: usize) -> Vec<u8> {
        let l = u32::try_from(len).unwrap().to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, 0, 0, 0, 0, 1];
        f.resize(FRAME_HEADER_LEN + len, 0);
        f
    }

    /// Through the stream: PINGs both ways are not activity, nor is a
    /// client's HEADERS frame (the service counts requests) or DATA while
    /// no request waits; DATA while one waits is, and so is every content
    /// frame the proxy writes.
    #[tokio::test]
    async fn the_watched_stream_counts_what_the_proxy_takes_in() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let activity = Arc::new(Activity::default());
        let mut watched = H2Watch::new(server, activity.clone(), ());
        let moved = |a: &Activity| a.moved.load(Ordering::Relaxed);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(0x4, 0));
        sent.extend(frame(0x6, 8));
        sent.extend(frame(HEADERS, 20));
        sent.extend(frame(DATA, 10));
        client.write_all(&sent).await.unwrap();
        let mut buf = vec![0; sent.len()];
        watched.read_exact(&mut buf).await.unwrap();
        assert_eq!(moved(&activity), 0);
        watched.write_all(&frame(0x6, 8)).await.unwrap();
        assert_eq!(moved(&activity), 0);
        let waiting = activity.request();
        assert_eq!(moved(&activity), 1);
        client.write_all(&frame(DATA, 10)).await.unwrap();
        let mut buf = vec![0; FRAME_HEADER_LEN + 10];
        watched.read_exact(&mut buf).await.unwrap();
        assert_eq!(moved(&activity), 2);
        drop(waiting);
        client.write_all(&frame(DATA, 10)).await.unwrap();
        watched.read_exact(&mut buf).await.unwrap();
        assert_eq!(moved(&activity), 2);
        watched.write_all(&frame(HEADERS, 5)).await.unwrap();
        watched.write_all(&frame(DATA, 100)).await.unwrap();
        watched.write_all(&frame(DATA, 0)).await.unwrap();
        assert_eq!(moved(&activity), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_only_once_nothing_moved_for_the_duration() {
        let activity = Arc::new(Activity::default());
        let idle = Duration::from_secs(10);
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { activity.quiet_for(idle).await }
        });
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            activity.add(1);
        }
        assert!(!watch.is_finished());
        tokio::time::timeout(Duration::from_secs(21), watch)
            .await
            .expect("quiet once nothing moves for the duration")
            .unwrap();
    }
}
