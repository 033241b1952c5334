//! The upstream side: resolve a route's upstream, judge every resolved IP
//! with the route's policy, and dial only IPs that passed — the address that
//! was judged is the socket address that is connected, with no second
//! resolution in between.
//!
//! Resolution uses the system resolver for now; TTL handling, a configurable
//! resolver and HTTPS upstreams belong to the upstream-residency work.

mod pool;

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use pool::{Pool, Sender};

use crate::config::{UpstreamHost, UpstreamUrl};
use crate::geo::GeoDb;
use crate::policy::{Policy, Verdict};

/// Why an upstream could not be used. The client sees 502; logs see this.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// DNS resolution failed.
    #[error("cannot resolve upstream host {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// The name resolved to no address.
    #[error("upstream host {host} has no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// Every allowed address refused or timed out.
    #[error("no allowed address of upstream {url} could be reached (last: {last})")]
    Unreachable {
        /// The upstream URL.
        url: String,
        /// The last failure.
        last: String,
    },
}

/// One upstream URL of a route, with its connection pool.
#[derive(Debug)]
pub struct Upstream {
    /// Where it is.
    pub url: UpstreamUrl,
    /// TCP connect timeout per address.
    pub connect_timeout: Duration,
    pool: Pool,
}

/// Resolved addresses sorted by the policy.
#[derive(Debug, Default)]
pub struct Judged {
    /// Addresses that pass, in resolver order.
    pub allowed: Vec<(SocketAddr, Verdict)>,
    /// Addresses that fail, in resolver order.
    pub rejected: Vec<(SocketAddr, Verdict)>,
}

impl Upstream {
    /// An upstream with an empty pool.
    pub fn new(url: UpstreamUrl, connect_timeout: Duration) -> Self {
        Self {
            url,
            connect_timeout,
            pool: Pool::default(),
        }
    }

    /// Resolves the host to socket addresses (an IP literal resolves to itself).
    ///
    /// # Errors
    /// [`UpstreamError::Resolve`] or [`UpstreamError::NoAddress`].
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, UpstreamError> {
        match &self.url.host {
            UpstreamHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.url.port)]),
            UpstreamHost::Name(host) => {
                let addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), self.url.port))
                        .await
                        .map_err(|source| UpstreamError::Resolve {
                            host: host.clone(),
                            source,
                        })?
                        .collect();
                if addrs.is_empty() {
                    return Err(UpstreamError::NoAddress { host: host.clone() });
                }
                Ok(addrs)
            }
        }
    }

    /// Judges each address with `policy`.
    pub fn judge(addrs: &[SocketAddr], policy: &Policy, geo: &GeoDb) -> Judged {
        let mut judged = Judged::default();
        for addr in addrs {
            let verdict = policy.judge(addr.ip(), geo);
            if verdict.passes() {
                judged.allowed.push((*addr, verdict));
            } else {
                judged.rejected.push((*addr, verdict));
            }
        }
        judged
    }

    /// A ready connection to exactly `addr`: a pooled one, or a new one.
    ///
    /// # Errors
    /// A description of the connect or handshake failure.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Sender, String> {
        if let Some(sender) = self.pool.checkout(addr) {
            return Ok(sender);
        }
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                format!(
                    "connect to {addr} timed out after {:?}",
                    self.connect_timeout
                )
            })?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        // The task ends when the connection closes or its sender is dropped
        // with no request in flight.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Returns a connection for reuse after its request was sent.
    pub fn release(&self, addr: SocketAddr, sender: Sender) {
        self.pool.checkin(addr, sender);
    }
}
