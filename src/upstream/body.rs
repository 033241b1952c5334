//! The request body on its way to the upstream: [`Metered`] counts its
//! bytes and tells, through [`Sent`], when it has been sent to its end
//! (the response timeout starts then). A body the upstream let go of
//! before its end is read on for a while ([`linger`]), so the client gets
//! the answer rather than a reset.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

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
    /// `None` only once dropped (handed to [`linger`]).
    inner: Option<Incoming>,
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
        Self {
            inner: Some(inner),
            count,
            sent,
        }
    }
}

/// The longest a client's upload is read on, and discarded, after the
/// upstream let go of it before its end.
const LINGER: Duration = Duration::from_secs(5);

/// Reads the rest of a client's request body, discarding it, until it
/// ends or [`LINGER`] runs out: the upstream let go of it (it answered
/// early and closed, or failed), and a client connection closed with its
/// upload unread is reset, which can destroy the answer before the client
/// reads it (RFC 9112 §9.6). Read on, it ends cleanly.
fn linger(mut body: Incoming) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let drain = async {
            while let Some(Ok(_)) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {}
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !inner.is_end_stream()
        {
            linger(inner);
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        let ended = inner.is_end_stream();
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        if frame.is_none() || ended {
            self.sent.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
