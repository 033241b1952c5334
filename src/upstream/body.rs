//! The request body on its way to the upstream: [`Metered`] counts its
//! bytes and tells, through [`Sent`], when it has been sent to its end
//! (the response timeout starts then).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Tells when a request body has been sent to its end.
#[derive(Debug, Default)]
pub struct Sent {
    done: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Sent {
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the whole body has been handed to the upstream.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Request body counted on its way upstream.
pub struct Metered {
    inner: Incoming,
    count: Arc<AtomicU64>,
    sent: Arc<Sent>,
}

impl Metered {
    /// Wraps `inner`, adding every data byte to `count` and signalling
    /// `sent` at its end (at once for an empty body).
    pub fn new(inner: Incoming, count: Arc<AtomicU64>, sent: Arc<Sent>) -> Self {
        if inner.is_end_stream() {
            sent.finish();
        }
        Self { inner, count, sent }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        if frame.is_none() || self.inner.is_end_stream() {
            self.sent.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
