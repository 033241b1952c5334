//! The upstream's response body on its way to the client: [`Audited`]
//! streams it and, when it ends, hands the request's audit record to a
//! completion future (count, write, wait for the writer's acknowledgement)
//! *before* the client sees the end of the body: a response never
//! completes untraced. If the trail cannot be written and the policy is
//! fail-closed, the body ends with an error so the client does not take the
//! response as complete. A body dropped early (client gone) still produces
//! its record, through `on_drop`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// What happens when a response body ends (complete or failed): given the
/// bytes sent down, it records the evidence and resolves to whether the
/// record was written.
pub type Completion = Box<dyn FnOnce(u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// What happens when a response body is dropped before it ended.
pub type OnDrop = Box<dyn FnOnce(u64) + Send>;

/// The upstream response body, with its audit at the end.
pub struct Audited {
    inner: Incoming,
    sent: u64,
    complete: Option<Completion>,
    on_drop: Option<OnDrop>,
    pending: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
    held: Option<Frame<Bytes>>,
    done: bool,
}

impl Audited {
    /// Wraps `inner`; `complete` runs when it ends, `on_drop` if it never does.
    pub fn new(inner: Incoming, complete: Completion, on_drop: OnDrop) -> Self {
        Self {
            inner,
            sent: 0,
            complete: Some(complete),
            on_drop: Some(on_drop),
            pending: None,
            held: None,
            done: false,
        }
    }
}

/// The error a response body ends with when its record could not be written.
#[derive(Debug, thiserror::Error)]
#[error("audit record could not be written; response aborted (fail-closed)")]
pub struct AuditAborted;

impl Body for Audited {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(pending) = this.pending.as_mut() {
                let written = ready!(pending.as_mut().poll(cx));
                this.pending = None;
                this.done = true;
                if !written {
                    return Poll::Ready(Some(Err(Box::new(AuditAborted))));
                }
                return Poll::Ready(this.held.take().map(Ok));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        this.sent += d.len() as u64;
                        if !this.inner.is_end_stream() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                    }
                    // The last data frame (a Content-Length body is complete
                    // for the client as soon as it has it) or the trailers:
                    // held back until the record is written.
                    this.held = Some(frame);
                    this.start_completion();
                }
                Some(Err(e)) => {
                    this.start_completion();
                    // The record is written in the background; the client
                    // sees the upstream's failure now.
                    if let Some(p) = this.pending.take() {
                        tokio::spawn(p);
                    }
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                None => this.start_completion(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Audited {
    fn start_completion(&mut self) {
        self.on_drop = None;
        if let Some(complete) = self.complete.take() {
            self.pending = Some(complete(self.sent));
        }
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(self.sent);
        } else if let Some(p) = self.pending.take() {
            // Ending was under way: finish writing the record.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(p);
            }
        }
    }
}
