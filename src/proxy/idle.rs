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
//! headers going by; the service counts requests and their waits with
//! [`Activity::request`]; [`Activity::quiet_for`] resolves once nothing
//! has moved for the duration.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// Content frames that started in some bytes of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Content {
    headers: u64,
    /// Non-empty DATA frames.
    data: u64,
}

/// The client connection preface, before the client's first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;

/// Follows the frame boundaries of one direction of an h2 connection.
#[derive(Debug)]
struct FrameScan {
    /// Bytes to pass over: the preface, or the current frame's payload.
    skip: usize,
    head: [u8; FRAME_HEADER_LEN],
    have: usize,
}

impl FrameScan {
    /// What the client sends: the preface, then frames.
    fn client() -> Self {
        Self {
            skip: PREFACE_LEN,
            head: [0; FRAME_HEADER_LEN],
            have: 0,
        }
    }

    /// What the server sends: frames from the first byte.
    fn server() -> Self {
        Self {
            skip: 0,
            ..Self::client()
        }
    }

    /// Reads the next bytes of the direction; returns the content frames
    /// (HEADERS, non-empty DATA) that start in them.
    fn scan(&mut self, mut bytes: &[u8]) -> Content {
        let mut found = Content::default();
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER_LEN {
                self.have = 0;
                let len = usize::from(self.head[0]) << 16
                    | usize::from(self.head[1]) << 8
                    | usize::from(self.head[2]);
                self.skip = len;
                match self.head[3] {
                    HEADERS => found.headers += 1,
                    DATA if len > 0 => found.data += 1,
                    _ => {}
                }
            }
        }
        found
    }
}

/// An h2 server connection's stream, counting the content frames that move.
pub struct H2Watch<T> {
    inner: T,
    read: FrameScan,
    write: FrameScan,
    activity: Arc<Activity>,
}

impl<T> H2Watch<T> {
    /// Wraps `inner` (what hyper reads and writes, after TLS) from its
    /// first byte; counts into `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            read: FrameScan::client(),
            write: FrameScan::server(),
            activity,
        }
    }

    /// What the proxy writes counts: DATA only leaves within the window
    /// the client opens, HEADERS only as a response to a request.
    fn wrote(&mut self, data: &[u8]) {
        let c = self.write.scan(data);
        self.activity.add(c.headers + c.data);
    }

    /// What the client sends counts when it starts a request (counted by
    /// the service, not here: a HEADERS frame may start none) or uploads
    /// while a request waits. The check is per read, not per frame: a
    /// frame read with the last waiting request's end may count once.
    fn read(&mut self, data: &[u8]) {
        let c = self.read.scan(data);
        if c.data > 0 && self.activity.uploading() {
            self.activity.add(c.data);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H2Watch<T> {
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

impl<T: AsyncWrite + Unpin> AsyncWrite for H2Watch<T> {
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
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A frame of `kind` with `len` payload bytes that each look like the
    /// first byte of a HEADERS frame header.
    fn frame(kind: u8, len: usize) -> Vec<u8> {
        let l = u32::try_from(len).unwrap().to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, 0, 0, 0, 0, 1];
        f.resize(FRAME_HEADER_LEN + len, HEADERS);
        f
    }

    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    proptest! {
        /// However the bytes are cut, the scan counts the frames a whole
        /// reading would: HEADERS and non-empty DATA, nothing else (PING,
        /// SETTINGS, WINDOW_UPDATE, empty DATA, payload bytes that look
        /// like frame headers).
        #[test]
        fn counts_active_frames_however_the_stream_is_cut(
            frames in prop::collection::vec((0u8..12, 0usize..300), 0..40),
            cuts in prop::collection::vec(1usize..64, 1..20),
            client in any::<bool>(),
        ) {
            let mut bytes = if client { PREFACE.to_vec() } else { Vec::new() };
            let mut want = Content::default();
            for &(kind, len) in &frames {
                bytes.extend(frame(kind, len));
                match kind {
                    HEADERS => want.headers += 1,
                    DATA if len > 0 => want.data += 1,
                    _ => {}
                }
            }
            let mut scan = if client { FrameScan::client() } else { FrameScan::server() };
            let mut got = Content::default();
            let mut rest = &bytes[..];
            for &cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = cut.min(rest.len());
                let c = scan.scan(&rest[..n]);
                got.headers += c.headers;
                got.data += c.data;
                rest = &rest[n..];
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn large_frame_lengths_are_skipped_whole() {
        // A 16 MiB - 1 DATA frame, then a PING: one active frame.
        let mut scan = FrameScan::server();
        let mut head = frame(DATA, 0);
        head[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(
            scan.scan(&head),
            Content {
                headers: 0,
                data: 1
            }
        );
        assert_eq!(scan.scan(&vec![0; 0xff_ffff]), Content::default());
        assert_eq!(scan.scan(&frame(0x6, 8)), Content::default());
    }

    /// Through the stream: PINGs both ways are not activity, nor is a
    /// client's HEADERS frame (the service counts requests) or DATA while
    /// no request waits; DATA while one waits is, and so is every content
    /// frame the proxy writes.
    #[tokio::test]
    async fn the_watched_stream_counts_what_the_proxy_takes_in() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let activity = Arc::new(Activity::default());
        let mut watched = H2Watch::new(server, activity.clone());
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
