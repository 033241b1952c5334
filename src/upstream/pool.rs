//! Idle upstream connections, keyed by the judged socket address they were
//! dialled to. A connection is only ever reused for the exact IP and port it
//! was opened to, and the pool belongs to one snapshot: a reload builds new
//! pools, so a connection validated under an old policy is never reused under
//! a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::client::conn::http1::SendRequest;

use super::body::Metered;
use crate::worker::PerWorker;

/// Most connections kept per upstream address and worker, busy ones
/// included: a connection is checked back in as soon as its request is
/// written, so this must exceed the concurrency the proxy is expected to
/// carry, or connections are closed after one request and opened again
/// (measured: at 64 concurrent clients, a cap of 32 spent a fifth of the CPU
/// in connect and shutdown).
const MAX_PER_ADDR: usize = 1024;

/// A sender for requests over one upstream connection.
pub type Sender = SendRequest<Metered>;

/// One worker's connections by address.
type Share = Mutex<HashMap<SocketAddr, Vec<Sender>>>;

/// Idle connections by address, in one share per worker thread: a
/// connection's task runs on the runtime that opened it; used from another
/// worker, every request would wake a thread across.
#[derive(Default)]
pub struct Pool {
    shares: PerWorker<Share>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Takes a connection to `addr` that is ready for a request, dropping
    /// closed ones on the way. Busy ones (a response still streaming) stay.
    pub fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self
            .shares
            .mine()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        // Newest first: a recently used connection is the likeliest to be
        // ready and open. Closed ones met on the way are dropped.
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].is_closed() {
                list.swap_remove(i);
            } else if list[i].is_ready() {
                return Some(list.swap_remove(i));
            }
        }
        None
    }

    /// Offers a connection back once its request is written. It becomes
    /// usable again when its response has been read to the end.
    pub fn checkin(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .shares
            .mine()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() >= MAX_PER_ADDR {
            list.retain(|s| !s.is_closed());
        }
        if list.len() < MAX_PER_ADDR {
            list.push(sender);
        }
    }
}
