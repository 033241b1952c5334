//! The upstream side: resolve a route's upstream, judge every resolved IP
//! with the route's policy, and dial only IPs that passed — the address that
//! was judged is the socket address that is connected, with no second
//! resolution in between.
//!
//! Names are resolved by [`Resolver`] (hickory, never hyper's or the
//! system's getaddrinfo), each address judged by the route's policy, and
//! [`Upstream::connect`] takes a judged `SocketAddr`: there is no way to dial
//! a name. Pools are keyed by that address and belong to one snapshot.

mod pool;
mod resolver;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use pool::{Pool, Sender};
pub use resolver::{Resolver, ResolverError};
pub use tls::{TlsError, client_config};

use crate::config::{UpstreamHost, UpstreamUrl};
use crate::geo::{GeoDb, OperatorDb};
use crate::policy::{Policy, Side, Verdict};

/// Why an upstream could not be used. The client sees 502; logs see this.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// DNS resolution failed.
    #[error("cannot resolve upstream host {host}: {why}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        why: String,
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
pub struct Upstream {
    /// Where it is.
    pub url: UpstreamUrl,
    /// TCP connect (and TLS handshake) timeout per address.
    pub connect_timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    pool: Pool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url.url)
            .finish_non_exhaustive()
    }
}

/// Resolved addresses sorted by the policy.
#[derive(Debug, Default)]
pub struct Judged {
    /// Addresses that may be dialled, in resolver order, those that pass
    /// cleanly before those flagged for a foreign operator.
    pub allowed: Vec<(SocketAddr, Verdict)>,
    /// Addresses that fail, in resolver order.
    pub rejected: Vec<(SocketAddr, Verdict)>,
}

impl Upstream {
    /// An upstream with an empty pool. `tls` is the client configuration
    /// for `https://` URLs (ignored for `http://`).
    ///
    /// # Errors
    /// [`TlsError::Config`] when the host is not a valid TLS server name.
    pub fn new(
        url: UpstreamUrl,
        connect_timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, TlsError> {
        let tls = match (url.https, tls) {
            (true, Some(config)) => {
                let name = match &url.host {
                    UpstreamHost::Name(n) => ServerName::try_from(n.clone())
                        .map_err(|e| TlsError::Config(format!("upstream {}: {e}", url.url)))?,
                    UpstreamHost::Ip(ip) => ServerName::IpAddress((*ip).into()),
                };
                Some((TlsConnector::from(config), name))
            }
            _ => None,
        };
        Ok(Self {
            url,
            connect_timeout,
            tls,
            pool: Pool::default(),
        })
    }

    /// Resolves the host to socket addresses (an IP literal resolves to
    /// itself), through the snapshot's resolver only.
    ///
    /// # Errors
    /// [`UpstreamError::Resolve`] or [`UpstreamError::NoAddress`].
    pub async fn resolve(&self, resolver: &Resolver) -> Result<Vec<SocketAddr>, UpstreamError> {
        match &self.url.host {
            UpstreamHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.url.port)]),
            UpstreamHost::Name(host) => {
                let ips = resolver
                    .lookup(host)
                    .await
                    .map_err(|why| UpstreamError::Resolve {
                        host: host.clone(),
                        why,
                    })?;
                if ips.is_empty() {
                    return Err(UpstreamError::NoAddress { host: host.clone() });
                }
                Ok(ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, self.url.port))
                    .collect())
            }
        }
    }

    /// Judges each address with `policy`, as the upstream side. An address
    /// only flagged (`on_foreign_operator = "flag"`) may be dialled, after
    /// every address that passes cleanly.
    pub fn judge(
        addrs: &[SocketAddr],
        policy: &Policy,
        geo: &GeoDb,
        operators: Option<&OperatorDb>,
    ) -> Judged {
        let mut judged = Judged::default();
        let mut flagged = Vec::new();
        for addr in addrs {
            let verdict = policy.judge_side(addr.ip(), Side::Upstream, geo, operators);
            if verdict.passes() {
                judged.allowed.push((*addr, verdict));
            } else if verdict.advisory {
                flagged.push((*addr, verdict));
            } else {
                judged.rejected.push((*addr, verdict));
            }
        }
        judged.allowed.append(&mut flagged);
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
        let timeout = self.connect_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out after {timeout:?}"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(addr, tcp).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| format!("TLS handshake with {addr} timed out after {timeout:?}"))?
                    .map_err(|e| format!("TLS handshake with {addr} ({}): {e}", self.url.url))?;
                handshake(addr, tls).await
            }
        }
    }

    /// Returns a connection for reuse after its request was sent.
    pub fn release(&self, addr: SocketAddr, sender: Sender) {
        self.pool.checkin(addr, sender);
    }
}

/// HTTP/1.1 over an established stream; the connection task ends when the
/// connection closes or its sender is dropped with no request in flight.
async fn handshake<T>(addr: SocketAddr, io: T) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
