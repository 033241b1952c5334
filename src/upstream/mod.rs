//! The upstream side: resolve a route's upstream, judge every resolved IP
//! with the route's policy, and dial only IPs that passed — the address that
//! was judged is the socket address that is connected, with no second
//! resolution in between.
//!
//! Names are resolved by [`Resolver`] (hickory, never hyper's or the
//! system's getaddrinfo), each address judged by the route's policy, and
//! [`Upstream::connect`] takes a judged `SocketAddr`: there is no way to dial
//! a name. Pools are keyed by that address and belong to one snapshot.

mod body;
mod early;
mod pool;
mod resolver;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use body::{Metered, Sent};
pub use pool::{Pool, Sender};
pub use resolver::{ResolveError, Resolver, ResolverError};
pub use tls::{TlsError, client_config};

use crate::config::{UpstreamHost, UpstreamUrl};
use crate::geo::{GeoDb, OperatorDb};
use crate::policy::{Policy, Side, Verdict};

/// Why an upstream could not be used, each with the failure underneath
/// it as its source. The client sees 502 (504 for a response that did not
/// come in time); logs see this, with its sources ([`Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// DNS resolution failed.
    #[error("cannot resolve upstream host {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        #[source]
        source: ResolveError,
    },
    /// The name resolved to no address.
    #[error("upstream host {host} has no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The TCP connect failed.
    #[error("connect to {addr} failed")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connect timeout ran out: one budget for the TCP connect, the
    /// TLS handshake and the HTTP handshake together.
    #[error("connect to {addr} timed out after {budget:?}")]
    Timeout {
        /// The address dialled.
        addr: SocketAddr,
        /// The route's `connect_timeout`.
        budget: Duration,
        /// The elapsed timer.
        #[source]
        source: tokio::time::error::Elapsed,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} ({url}) failed")]
    Tls {
        /// The address dialled.
        addr: SocketAddr,
        /// The upstream URL, whose host the certificate must name.
        url: String,
        /// rustls's error, as an I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("HTTP handshake with {addr} failed")]
    Handshake {
        /// The address dialled.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// Every connection tried closed before the request could be written.
    #[error("upstream {addr} closed the connection before the request could be sent")]
    Closed {
        /// The address dialled.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// Why a request sent to one address got no response.
///
/// Only [`SendError::NotSent`] hands the request back, so only a request
/// of which nothing was written can be tried on another address: the
/// compiler, not a convention, keeps a request from reaching two storages.
pub enum SendError {
    /// Nothing of the request was written (no connection could be made,
    /// or every connection closed first): here it is, for another address.
    NotSent {
        /// The request, untouched.
        request: Box<Request<Metered>>,
        /// Why it was not sent.
        error: UpstreamError,
    },
    /// The request went out, in whole or in part: it must not be sent
    /// again.
    Sent(SentError),
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent { error, .. } => f
                .debug_struct("NotSent")
                .field("error", error)
                .finish_non_exhaustive(),
            Self::Sent(e) => f.debug_tuple("Sent").field(e).finish(),
        }
    }
}

/// What went wrong after a request was (at least partly) written.
#[derive(Debug, thiserror::Error)]
pub enum SentError {
    /// No response head within the route's `response_timeout` of the end
    /// of the request body.
    #[error("upstream {addr} sent no response within {timeout:?} of the request")]
    NoResponse {
        /// The address the request went to.
        addr: SocketAddr,
        /// The route's `response_timeout`.
        timeout: Duration,
    },
    /// The exchange failed.
    #[error("upstream {addr} failed")]
    Failed {
        /// The address the request went to.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

impl SentError {
    /// Whether the upstream took too long (504) rather than failed (502).
    pub const fn timed_out(&self) -> bool {
        matches!(self, Self::NoResponse { .. })
    }
}

/// An error and its sources, `: `-separated, for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// One upstream URL of a route, with its connection pool.
pub struct Upstream {
    /// Where it is.
    pub url: UpstreamUrl,
    /// Time to open a connection to one address: TCP connect, TLS and HTTP
    /// handshakes together.
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
                    .map_err(|source| UpstreamError::Resolve {
                        host: host.clone(),
                        source,
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

    /// A ready connection to exactly `addr`: a pooled one, or a new one
    /// made within `connect_timeout`, TCP connect and handshakes together.
    ///
    /// # Errors
    /// [`UpstreamError::Connect`], [`UpstreamError::Tls`],
    /// [`UpstreamError::Handshake`] or [`UpstreamError::Timeout`].
    pub async fn connect(&self, addr: SocketAddr) -> Result<Sender, UpstreamError> {
        if let Some(sender) = self.pool.checkout(addr) {
            return Ok(sender);
        }
        // Boxed: dialling (TCP, TLS, handshake) is the largest state of the
        // request's future, about 5 KiB, and only a request that finds no
        // pooled connection needs it; every request in flight carried it.
        within(self.connect_timeout, addr, Box::pin(self.dial(addr))).await
    }

    /// A new connection to `addr`, with no time limit of its own.
    async fn dial(&self, addr: SocketAddr) -> Result<Sender, UpstreamError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(addr, tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls {
                        addr,
                        url: self.url.url.clone(),
                        source,
                    })?;
                handshake(addr, tls).await
            }
        }
    }

    /// Sends `req` on a connection to exactly `addr`. A pooled connection
    /// that closed under us is replaced by a fresh one, once. Once the body
    /// is sent (`sent`), the response head must come within `timeout`.
    ///
    /// # Errors
    /// [`SendError::NotSent`] with the request when nothing was written,
    /// [`SendError::Sent`] otherwise.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Metered>,
        sent: &Sent,
        timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut sender = match self.connect(addr).await {
                Ok(s) => s,
                Err(error) => {
                    return Err(SendError::NotSent {
                        request: Box::new(req),
                        error,
                    });
                }
            };
            let closed = match sender.ready().await {
                Err(e) => e,
                Ok(()) => {
                    let pending = sender.try_send_request(req);
                    self.release(addr, sender);
                    let deadline = async {
                        sent.wait().await;
                        tokio::time::sleep(timeout).await;
                    };
                    let outcome = tokio::select! {
                        r = pending => r,
                        () = deadline => {
                            return Err(SendError::Sent(SentError::NoResponse { addr, timeout }));
                        }
                    };
                    match outcome {
                        Ok(rsp) => return Ok(rsp),
                        Err(mut e) => match e.take_message() {
                            Some(back) => {
                                req = back;
                                e.into_error()
                            }
                            None => {
                                return Err(SendError::Sent(SentError::Failed {
                                    addr,
                                    source: e.into_error(),
                                }));
                            }
                        },
                    }
                }
            };
            if attempt == 2 {
                return Err(SendError::NotSent {
                    request: Box::new(req),
                    error: UpstreamError::Closed {
                        addr,
                        source: closed,
                    },
                });
            }
        }
    }

    /// Returns a connection for reuse after its request was sent.
    pub fn release(&self, addr: SocketAddr, sender: Sender) {
        self.pool.checkin(addr, sender);
    }
}

/// `steps` within `budget`, or [`UpstreamError::Timeout`].
async fn within<T>(
    budget: Duration,
    addr: SocketAddr,
    steps: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(budget, steps)
        .await
        .map_err(|source| UpstreamError::Timeout {
            addr,
            budget,
            source,
        })?
}

/// HTTP/1.1 over an established stream; the connection task ends when the
/// connection closes or its sender is dropped with no request in flight.
async fn handshake<T>(addr: SocketAddr, io: T) -> Result<Sender, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(early::EarlyAnswer::new(io)))
        .await
        .map_err(|source| UpstreamError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests;
