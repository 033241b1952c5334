//! The HTTP/2 refusals h2 makes on its own, read from the frames the server
//! writes (scanned by [`FrameScan`](crate::proxy::h2frames::FrameScan) in
//! the connection's watch, [`crate::proxy::idle::H2Watch`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Refusal, protocol_refusal};
use crate::proxy::context::ConnInfo;
use crate::proxy::h2frames::{Frame, Written};
use crate::snapshot::Shared;

/// Largest header block taken for a bare `:status` (an indexed or literal
/// `:status` takes 1 to 5 bytes; any response of the proxy has more).
pub const BARE_BLOCK: usize = 8;

/// What an HTTP/2 server connection writes, watched for the refusals h2
/// writes on its own: its `431` (a header block of a bare `:status`,
/// ending the stream: every response of the proxy carries its request id)
/// and resets or `GOAWAY` with an error code.
pub struct RefusalWatch {
    /// The stream of the last bare `431`: its reset is part of it.
    bare_431: Option<u32>,
    conn: Arc<ConnInfo>,
    shared: Shared,
    /// Shared with the connection's [`super::ConnEnd`].
    goaway_recorded: Arc<AtomicBool>,
}

impl RefusalWatch {
    /// Watches what is written to `conn`; sets `goaway_recorded` once it
    /// records a `GOAWAY`.
    pub(super) const fn new(
        conn: Arc<ConnInfo>,
        shared: Shared,
        goaway_recorded: Arc<AtomicBool>,
    ) -> Self {
        Self {
            bare_431: None,
            conn,
            shared,
            goaway_recorded,
        }
    }
}

impl Written for RefusalWatch {
    /// A frame the server wrote: records and counts it if it refuses.
    fn written(&mut self, frame: Frame) {
        let refusal = match frame {
            Frame::Headers {
                stream,
                last: true,
                len,
            } if len <= BARE_BLOCK => {
                self.bare_431 = Some(stream);
                Some(Refusal::H2HeaderListTooLarge)
            }
            Frame::Reset { stream, .. } if self.bare_431 == Some(stream) => None,
            Frame::Reset { code, .. } => Refusal::of_h2_reset(code),
            Frame::GoAway { code } if code != 0 => {
                self.goaway_recorded.store(true, Ordering::Relaxed);
                Some(Refusal::H2ConnectionError)
            }
            Frame::Headers { .. } | Frame::Data { .. } | Frame::GoAway { .. } => None,
        };
        if let Some(r) = refusal {
            protocol_refusal(&self.conn, &self.shared, r);
        }
    }
}
