//! When an HTTP/2 connection is idle. Bytes alone cannot tell: PINGs (the
//! client's, or the answers to ours) keep an h2 connection busy forever
//! without a single request, so [`ClientIo`](super::io::ClientIo)'s idle
//! timeout never fires on it. An h2 connection is idle when no stream is
//! open: no request whose response has not been sent to its end (or
//! dropped, when the client reset the stream).
//!
//! [`Streams`] counts the open streams of one connection: the service takes
//! an [`Open`] guard as a request starts, and the guard travels in the
//! response body ([`Counted`]) until hyper drops the body, finished or not.
//! [`Streams::idle_for`] resolves once no stream has been open for the
//! whole duration.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// The open streams of one connection.
#[derive(Debug, Default)]
pub struct Streams {
    open: AtomicUsize,
    /// Streams ever opened: a stream that opens and ends while
    /// [`Streams::idle_for`] sleeps starts the idle period again.
    started: AtomicU64,
    /// Told when the last open stream ends.
    none_open: Notify,
}

impl Streams {
    /// Counts a stream as open until the guard drops.
    pub fn open(self: &Arc<Self>) -> Open {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    /// Resolves once no stream has been open for `idle`: at least `idle`
    /// and at most twice `idle` after the last one ended. One timer per
    /// `idle` period, nothing per request.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            while self.open.load(Ordering::Acquire) != 0 {
                // notify_one keeps a permit when nobody waits, so an end
                // between the load and this await is not missed.
                self.none_open.notified().await;
            }
            let seen = self.started.load(Ordering::Acquire);
            tokio::time::sleep(idle).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.started.load(Ordering::Acquire) == seen
            {
                return;
            }
        }
    }
}

/// One open stream, counted until dropped.
#[derive(Debug)]
pub struct Open(Arc<Streams>);

impl Open {
    /// Moves the guard into `body`, so that the stream counts as open until
    /// the body has been sent (or dropped).
    pub fn counts<B>(self, body: B) -> Counted<B> {
        Counted {
            inner: body,
            _open: self,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_one();
        }
    }
}

/// A response body that keeps its stream counted as open.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    _open: Open,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_once_no_stream_has_been_open_for_the_duration() {
        let streams = Arc::new(Streams::default());
        let idle = Duration::from_secs(10);
        let open = streams.open();
        let watch = tokio::spawn({
            let streams = streams.clone();
            async move { streams.idle_for(idle).await }
        });
        // An open stream keeps the connection busy however long it lasts.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!watch.is_finished());
        // Its body carries the count; dropping the body ends the stream.
        let body = open.counts(http_body_util::Empty::<bytes::Bytes>::new());
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!watch.is_finished());
        drop(body);
        // A stream that opens and ends within the period restarts it.
        tokio::time::sleep(Duration::from_secs(6)).await;
        drop(streams.open());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!watch.is_finished());
        tokio::time::timeout(Duration::from_secs(25), watch)
            .await
            .expect("idle once nothing opens for the duration")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_opens_a_stream_is_idle() {
        let streams = Arc::new(Streams::default());
        tokio::time::timeout(
            Duration::from_secs(11),
            streams.idle_for(Duration::from_secs(10)),
        )
        .await
        .expect("idle after the duration");
    }
}
