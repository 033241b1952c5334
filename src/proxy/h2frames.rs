//! HTTP/2 frame headers (RFC 9113 §4.1) read as the bytes of one direction
//! of a connection go by, across reads or writes of any size: one scanner
//! for the two watchers of an h2 connection, its idleness
//! ([`idle`](super::idle)) and the refusals h2 makes on its own
//! ([`refusal`](super::refusal)). Only frame headers and the first bytes
//! of `RST_STREAM` and `GOAWAY` payloads are read; nothing is changed.

/// The client connection preface, before the client's first frame.
pub const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
/// `DATA`.
pub const DATA: u8 = 0x0;
/// `HEADERS`.
pub const HEADERS: u8 = 0x1;
/// `RST_STREAM`.
pub const RST_STREAM: u8 = 0x3;
/// `GOAWAY`.
pub const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A frame going by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `HEADERS` starts (reported at its frame header).
    Headers {
        /// The stream.
        stream: u32,
        /// Whether it both ends the stream and holds the whole block.
        last: bool,
        /// Its payload length.
        len: usize,
    },
    /// `DATA` starts (reported at its frame header).
    Data {
        /// Its payload length.
        len: usize,
    },
    /// `RST_STREAM` (reported once its error code went by).
    Reset {
        /// The stream.
        stream: u32,
        /// The error code (RFC 9113 §7).
        code: u32,
    },
    /// `GOAWAY` (reported once its error code went by).
    GoAway {
        /// The error code.
        code: u32,
    },
}

/// Told of each frame of interest a connection writes.
pub trait Written {
    /// `frame` was written.
    fn written(&mut self, frame: Frame);
}

/// Nobody to tell.
impl Written for () {
    fn written(&mut self, _: Frame) {}
}

/// Follows the frame boundaries of one direction of an h2 connection.
#[derive(Debug)]
pub struct FrameScan {
    /// Preface bytes still to pass over.
    preface: usize,
    head: [u8; FRAME_HEADER_LEN],
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

impl FrameScan {
    /// What the client sends: the preface, then frames.
    pub const fn client() -> Self {
        Self {
            preface: PREFACE_LEN,
            head: [0; FRAME_HEADER_LEN],
            have: 0,
            remaining: 0,
            kind: 0,
            stream: 0,
            grab: [0; 8],
            grabbed: 0,
            want: 0,
        }
    }

    /// What the server sends: frames from the first byte.
    pub const fn server() -> Self {
        Self {
            preface: 0,
            ..Self::client()
        }
    }

    /// Feeds the next bytes of the direction; calls `out` for each frame
    /// of interest.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.have < FRAME_HEADER_LEN {
                let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == FRAME_HEADER_LEN {
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
        match self.kind {
            HEADERS => out(Frame::Headers {
                stream: self.stream,
                last: flags & (END_STREAM | END_HEADERS) == END_STREAM | END_HEADERS,
                len,
            }),
            DATA => out(Frame::Data { len }),
            _ => {}
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
mod tests;
