//! The HTTP/2 refusals h2 makes on its own, read from the frames the server
//! writes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::{Refusal, protocol_refusal};
use crate::proxy::context::ConnInfo;
use crate::snapshot::Shared;

/// An HTTP/2 server connection's stream, watched for the refusals h2
/// writes on its own: its `431` (a header block of a bare `:status`,
/// ending the stream: every response of the proxy carries its request id)
/// and resets or `GOAWAY` with an error code. Only the frame headers of
/// what is written are read; nothing is changed.
pub struct H2Watch<I> {
    inner: I,
    frames: FrameScan,
    /// The stream of the last bare `431`: its reset is part of it.
    bare_431: Option<u32>,
    conn: Arc<ConnInfo>,
    shared: Shared,
    /// Shared with the connection's [`super::ConnEnd`].
    goaway_recorded: Arc<AtomicBool>,
}

impl<I> H2Watch<I> {
    /// Watches `inner`, the stream of `conn`; sets `goaway_recorded` once
    /// it records a `GOAWAY`.
    pub(super) fn new(
        inner: I,
        conn: Arc<ConnInfo>,
        shared: Shared,
        goaway_recorded: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner,
            frames: FrameScan::default(),
            bare_431: None,
            conn,
            shared,
            goaway_recorded,
        }
    }

    fn written(&mut self, bytes: &[u8]) {
        let Self {
            frames,
            bare_431,
            conn,
            shared,
            goaway_recorded,
            ..
        } = self;
        frames.feed(bytes, &mut |e| {
            let refusal = match e {
                Frame::BareHeaders { stream } => {
                    *bare_431 = Some(stream);
                    Some(Refusal::H2HeaderListTooLarge)
                }
                Frame::Reset { stream, .. } if *bare_431 == Some(stream) => None,
                Frame::Reset { code, .. } => Refusal::of_h2_reset(code),
                Frame::GoAway { code } if code != 0 => {
                    goaway_recorded.store(true, Ordering::Relaxed);
                    Some(Refusal::H2ConnectionError)
                }
                Frame::GoAway { .. } => None,
            };
            if let Some(r) = refusal {
                protocol_refusal(conn, shared, r);
            }
        });
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for H2Watch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for H2Watch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written(&buf[..n.min(buf.len())]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = b.len().min(left);
                self.written(&b[..k]);
                left -= k;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A frame the server wrote that may be a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `HEADERS` with `END_STREAM` and `END_HEADERS` and a block of at most
    /// [`BARE_BLOCK`] bytes: a `:status` alone.
    BareHeaders {
        /// The stream.
        stream: u32,
    },
    /// `RST_STREAM`.
    Reset {
        /// The stream.
        stream: u32,
        /// The error code (RFC 9113 §7).
        code: u32,
    },
    /// `GOAWAY`.
    GoAway {
        /// The error code.
        code: u32,
    },
}

/// Largest header block taken for a bare `:status` (an indexed or literal
/// `:status` takes 1 to 5 bytes; any response of the proxy has more).
pub const BARE_BLOCK: usize = 8;

/// Reads frame headers (RFC 9113 §4.1) across writes of any size.
#[derive(Default)]
pub struct FrameScan {
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    kind: u8,
    stream: u32,
    /// The first payload bytes, for `RST_STREAM` and `GOAWAY`.
    grab: [u8; 8],
    grabbed: usize,
    want: usize,
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

impl FrameScan {
    /// Feeds the next bytes written; calls `out` for each frame of interest.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.have < 9 {
                let n = (9 - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    self.start_frame(out);
                }
                continue;
            }
            let n = self.remaining.min(bytes.len());
            let g = (self.want - self.grabbed).min(n);
            self.grab[self.grabbed..self.grabbed + g].copy_from_slice(&bytes[..g]);
            self.grabbed += g;
            self.remaining -= n;
            bytes = &bytes[n..];
            if self.remaining == 0 {
                self.end_frame(out);
            }
        }
    }

    fn start_frame(&mut self, out: &mut impl FnMut(Frame)) {
        let h = self.head;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        self.kind = h[3];
        let flags = h[4];
        self.stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.remaining = len;
        self.grabbed = 0;
        self.want = match self.kind {
            RST_STREAM => 4,
            GOAWAY => 8,
            _ => 0,
        }
        .min(len);
        if self.kind == HEADERS
            && flags & (END_STREAM | END_HEADERS) == END_STREAM | END_HEADERS
            && len <= BARE_BLOCK
        {
            out(Frame::BareHeaders {
                stream: self.stream,
            });
        }
        if len == 0 {
            self.end_frame(out);
        }
    }

    fn end_frame(&mut self, out: &mut impl FnMut(Frame)) {
        let g = self.grab;
        match self.kind {
            RST_STREAM if self.grabbed == 4 => out(Frame::Reset {
                stream: self.stream,
                code: u32::from_be_bytes([g[0], g[1], g[2], g[3]]),
            }),
            GOAWAY if self.grabbed == 8 => out(Frame::GoAway {
                code: u32::from_be_bytes([g[4], g[5], g[6], g[7]]),
            }),
            _ => {}
        }
        self.have = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn sample() -> (Vec<u8>, Vec<Frame>) {
        let mut bytes = Vec::new();
        bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
        bytes.extend(frame(HEADERS, 0x5, 1, &[0x48, 0x82, 0x68, 0x3f])); // bare 431
        bytes.extend(frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        bytes.extend(frame(HEADERS, 0x5, 3, &[0; 40])); // a real response
        bytes.extend(frame(0x0, 0x1, 3, &[7; 300])); // DATA
        bytes.extend(frame(RST_STREAM, 0, 5, &7u32.to_be_bytes()));
        bytes.extend(frame(0x6, 0, 0, &[0; 8])); // PING
        bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 1]));
        let events = vec![
            Frame::BareHeaders { stream: 1 },
            Frame::Reset { stream: 1, code: 1 },
            Frame::Reset { stream: 5, code: 7 },
            Frame::GoAway { code: 1 },
        ];
        (bytes, events)
    }

    #[test]
    fn frames_of_interest_are_found_in_one_write() {
        let (bytes, want) = sample();
        let mut got = Vec::new();
        FrameScan::default().feed(&bytes, &mut |e| got.push(e));
        assert_eq!(got, want);
    }

    proptest! {
        /// However the writes split the bytes, the same frames are found.
        #[test]
        fn any_split_of_the_writes_finds_the_same_frames(cuts in proptest::collection::vec(0usize..400, 0..40)) {
            let (bytes, want) = sample();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut scan = FrameScan::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                scan.feed(&bytes[at..c], &mut |e| got.push(e));
                at = c;
            }
            prop_assert_eq!(got, want);
        }
    }
}
