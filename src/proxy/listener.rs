//! Accepting client connections: a worker thread per core, each with its
//! own single-threaded runtime accepting on every listen address, a
//! connection limit, the PROXY protocol header from trusted peers, TLS on
//! `tls_listen` (ALPN `h2` or `http/1.1`), hyper's HTTP/1.1 and HTTP/2
//! servers with the configured limits, and graceful shutdown.
//!
//! A connection lives on the worker that accepted it, with its requests,
//! their upstream connections (each worker has its own share of the pools)
//! and their audit batches: nothing hops between threads on the request
//! path. All workers wait on the same sockets; a worker serving more than
//! its share lets the others take new connections.
//!
//! `max_connections` is a semaphore: at the limit the accept loops wait, so
//! new connections queue in the kernel's backlog (or, at most one per
//! accept loop, accepted and waiting for a slot) while existing ones are
//! unharmed. The same semaphore tells shutdown when every connection is done.
//! Only connections hold slots (accept loops wait for a free one without
//! taking it), and no connection holds one forever: the PROXY header and
//! the TLS handshake have `header_read_timeout`, a connection on which no
//! byte moves has `idle_timeout` ([`ClientIo`]), and so does an HTTP/2
//! connection on which no request or response content moves (no stream
//! open, or every stream stalled), however many PINGs it exchanges
//! ([`idle`](super::idle)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::client_ip::{ClientAddr, is_trusted};
use super::context::ConnInfo;
use super::idle::{Activity, H2Watch};
use super::io::ClientIo;
use super::proxy_protocol::{self, MAX_HEADER_LEN, ProxyHeader};
use super::refusal::ConnEnd;
use super::service;
use crate::config::{ClientIpSource, ServerSpec, TrustedProxyWithoutClient};
use crate::snapshot::Shared;
use crate::worker::Balance;

/// The bound listeners, ready to serve.
pub struct Server {
    listeners: Vec<(std::net::TcpListener, bool)>,
    shared: Shared,
    max_connections: usize,
}

impl Server {
    /// Binds every `server.listen` and `server.tls_listen` address of the
    /// current snapshot.
    ///
    /// # Errors
    /// The first address that cannot be bound, with the OS error.
    pub async fn bind(shared: Shared) -> std::io::Result<Self> {
        let snap = shared.load_full();
        let server = &snap.config.server;
        let mut listeners = Vec::new();
        let all = server
            .listen
            .iter()
            .map(|a| (a, false))
            .chain(server.tls_listen.iter().map(|a| (a, true)));
        for (addr, tls) in all {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push((l.into_std()?, tls));
        }
        Ok(Self {
            listeners,
            shared,
            max_connections: server.max_connections,
        })
    }

    /// The bound addresses, each with whether it serves TLS (useful when the
    /// config says port 0).
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners
            .iter()
            .filter_map(|(l, tls)| l.local_addr().ok().map(|a| (a, *tls)))
            .collect()
    }

    /// Starts `workers` worker threads (at most [`crate::worker::count`],
    /// which everything kept per worker is sized for), calls `ready` once they all accept,
    /// and serves until `shutdown` completes, then stops accepting, asks
    /// every connection to finish its current request, and waits up to
    /// `shutdown_grace` for them; the
    /// connections left are then dropped with their workers. Returns the
    /// number of connections that were still open when the grace ran out.
    ///
    /// # Errors
    /// A worker thread or its runtime could not be started.
    pub async fn run(
        self,
        workers: usize,
        ready: impl FnOnce(),
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<usize> {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(false);
        let mut threads = Vec::new();
        let workers = workers.clamp(1, crate::worker::count());
        let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(workers);
        let balance = Balance::new(workers);
        let bound = self.listeners;
        for index in 1..=workers {
            let listeners = bound
                .iter()
                .map(|(l, tls)| Ok((l.try_clone()?, *tls)))
                .collect::<std::io::Result<Vec<_>>>()?;
            let worker = Worker {
                index,
                balance: balance.worker(index - 1),
                listeners,
                shared: self.shared.clone(),
                limit: limit.clone(),
                stop: stop_rx.clone(),
                exit: exit_rx.clone(),
                started: started_tx.clone(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || worker.run(runtime))?,
            );
        }
        // The workers hold the sockets now: once their accept loops end,
        // the listening sockets close and new connections are refused.
        drop(bound);
        drop(started_tx);
        for _ in 0..workers {
            // None: a worker died before it started; the others serve.
            if started.recv().await.is_none() {
                break;
            }
        }
        ready();
        shutdown.await;
        let _ = stop_tx.send(true);
        let grace = self.shared.load().config.server.shutdown_grace;
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let left = match tokio::time::timeout(grace, limit.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.max_connections - limit.available_permits(),
        };
        let _ = exit_tx.send(true);
        // The workers drop what is left (its records are written as it
        // drops); joining them is brief.
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        Ok(left)
    }
}

/// One worker thread: its runtime accepts on every listener until stopped,
/// serves its connections, and drops the ones still open at exit.
struct Worker {
    index: usize,
    balance: Balance,
    listeners: Vec<(std::net::TcpListener, bool)>,
    shared: Shared,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    exit: watch::Receiver<bool>,
    /// Told once the accept loops run.
    started: tokio::sync::mpsc::Sender<()>,
}

impl Worker {
    fn run(self, runtime: tokio::runtime::Runtime) {
        crate::worker::enter(self.index);
        let Self {
            balance,
            listeners,
            shared,
            limit,
            stop,
            mut exit,
            started,
            ..
        } = self;
        runtime.block_on(async move {
            for (listener, tls) in listeners {
                match TcpListener::from_std(listener) {
                    Ok(l) => {
                        tokio::spawn(accept_loop(
                            l,
                            tls,
                            shared.clone(),
                            limit.clone(),
                            balance.clone(),
                            stop.clone(),
                        ));
                    }
                    Err(e) => tracing::error!(error = %e, "worker cannot use a listener"),
                }
            }
            let _ = started.send(()).await;
            drop(started);
            let _ = exit.wait_for(|e| *e).await;
        });
        // Dropping the runtime drops the connections still open.
        drop(runtime);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    shared: Shared,
    limit: Arc<Semaphore>,
    balance: Balance,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = balance.my_turn() => {}
            _ = stop.changed() => return,
        }
        // Wait for a free slot, but do not keep it while waiting for a
        // connection: every worker runs an accept loop per listener, and a
        // slot held by a loop waiting on a quiet listener is a slot no
        // connection can use. The loops of the other listeners held
        // `workers x (listeners - 1)` of `max_connections` that way (6 of 10
        // usable over TLS with 4 workers and one plain listener, or with 2
        // workers and two). The slot is taken once a connection is accepted.
        tokio::select! {
            p = limit.acquire() => match p {
                Ok(p) => drop(p),
                Err(_) => return,
            },
            _ = stop.changed() => return,
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Several loops may have seen the same free slot: the ones that lose
        // it wait here with their connection accepted but not served (at most
        // one per loop), served in turn as slots free.
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::select! {
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            },
        };
        let held = balance.hold();
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, tls, shared, stop).await;
            drop(permit);
            drop(held);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    shared: Shared,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let snap = shared.load_full();
    let server = &snap.config.server;
    let peer_trusted = is_trusted(peer.ip(), &server.trusted_proxies);
    // What a trusted proxy that names no client stands for (see client_ip).
    let nameless = match server.trusted_proxy_without_client {
        TrustedProxyWithoutClient::Untraceable => ClientAddr::Untraceable,
        TrustedProxyWithoutClient::Peer => ClientAddr::Ip(peer.ip()),
    };
    let (client, prefix) = if server.client_ip_source == ClientIpSource::ProxyProtocol
        && peer_trusted
    {
        match tokio::time::timeout(server.header_read_timeout, read_proxy_header(&mut stream)).await
        {
            Ok(Ok((header, rest))) => match header {
                ProxyHeader::Proxied { source, .. } => (ClientAddr::Ip(source.ip()), rest),
                ProxyHeader::Local => (nameless, rest),
            },
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "closing connection: bad PROXY protocol header");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "closing connection: no PROXY protocol header in time");
                return;
            }
        }
    } else if peer_trusted && server.client_ip_source != ClientIpSource::Peer {
        (nameless, Bytes::new())
    } else {
        (ClientAddr::Ip(peer.ip()), Bytes::new())
    };
    let info = ConnInfo {
        peer,
        client,
        proxy_header: server.client_ip_source == ClientIpSource::ProxyProtocol && peer_trusted,
        mtls_subject: None,
    };
    // Only the limits outlive the accept: each request takes the snapshot
    // current when it arrives, and an old one is not kept alive (its
    // database map, its pools) by a long-lived connection.
    let limits = HttpLimits::of(server);
    let tls_config = snap.tls.clone();
    drop(snap);
    let io = ClientIo::new(stream, prefix, limits.idle_timeout);
    if !tls {
        let info = Arc::new(info);
        let end = ConnEnd::new(info.clone(), shared.clone(), false);
        serve_http(TokioIo::new(io), None, info, end, limits, shared, stop).await;
        return;
    }
    let Some(config) = tls_config else {
        return;
    };
    // The TLS paths (handshake, HTTP/2) are boxed: inline, their state
    // would size the task of every connection, plain ones included
    // (measured with massif at 1,000 connections).
    Box::pin(serve_tls(io, config, info, limits, shared, stop)).await;
}

/// The TLS side of [`serve_connection`]: the handshake, then HTTP/2 or
/// HTTP/1.1 as negotiated.
async fn serve_tls(
    io: ClientIo<TcpStream>,
    config: Arc<rustls::ServerConfig>,
    mut info: ConnInfo,
    limits: HttpLimits,
    shared: Shared,
    stop: watch::Receiver<bool>,
) {
    let peer = info.peer;
    let handshake = TlsAcceptor::from(config).accept(io);
    let stream = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.load().evidence.metrics.tls_handshake_failures.inc();
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            shared.load().evidence.metrics.tls_handshake_failures.inc();
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    let h2 = session.alpn_protocol() == Some(b"h2");
    info.mtls_subject = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::tls::subject_of);
    if h2 {
        let activity = Arc::new(Activity::default());
        let info = Arc::new(info);
        let end = ConnEnd::new(info.clone(), shared.clone(), true);
        let io = TokioIo::new(H2Watch::new(stream, activity.clone(), end.watch()));
        serve_http(io, Some(activity), info, end, limits, shared, stop).await;
    } else {
        let info = Arc::new(info);
        let end = ConnEnd::new(info.clone(), shared.clone(), false);
        let io = TokioIo::new(stream);
        serve_http(io, None, info, end, limits, shared, stop).await;
    }
}

/// Drives a hyper connection (HTTP/1.1 or HTTP/2: different types with the
/// same `graceful_shutdown`) until it ends; on shutdown, lets its current
/// requests finish first. How it ended goes to `$end` ([`ConnEnd`]).
macro_rules! serve_until_stopped {
    ($conn:ident, $stop:ident, $end:ident) => {
        tokio::pin!($conn);
        tokio::select! {
            r = $conn.as_mut() => $end.ended(r),
            _ = $stop.changed() => {
                $conn.as_mut().graceful_shutdown();
                $end.ended($conn.await);
            }
        }
    };
}

/// The `[server]` limits a connection is served with, fixed at accept.
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
}

impl HttpLimits {
    const fn of(server: &ServerSpec) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_header_bytes: server.max_header_bytes,
            max_headers: server.max_headers,
        }
    }
}

/// hyper's HTTP/1.1 header count limit when none is set.
const HYPER_MAX_HEADERS: usize = 100;

/// HTTP/1.1, or HTTP/2 when `h2` counts its activity, on an established
/// stream, until it ends or shutdown. Refusals by hyper never reach the
/// service: `end` sees them as it ends them (and, for HTTP/2, the stream's
/// watch as they are written).
async fn serve_http<I>(
    io: I,
    h2: Option<Arc<Activity>>,
    info: Arc<ConnInfo>,
    end: ConnEnd,
    server: HttpLimits,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    if let Some(activity) = h2 {
        let requests = activity.clone();
        let info = info.clone();
        let shared = shared.clone();
        let svc = service_fn(move |req| {
            let awaiting = requests.request();
            let rsp = service::handle(req, info.clone(), shared.clone());
            async move {
                let rsp = rsp.await;
                drop(awaiting);
                rsp
            }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(100)
            .keep_alive_interval(Some(server.idle_timeout / 2))
            .keep_alive_timeout(server.header_read_timeout);
        let conn = builder.serve_connection(io, svc);
        tokio::pin!(conn);
        // hyper closes an h2 connection on errors and GOAWAY only, and
        // PINGs keep its bytes moving: after `idle_timeout` with no request
        // or response content moving (no stream open, or all stalled; see
        // `idle`), GOAWAY, as on shutdown.
        tokio::select! {
            r = conn.as_mut() => return end.ended(r),
            _ = stop.changed() => {}
            () = activity.quiet_for(server.idle_timeout) => {
                tracing::debug!(%peer, "closing HTTP/2 connection: nothing moved for idle_timeout");
            }
        }
        conn.as_mut().graceful_shutdown();
        // Open streams that move finish; a connection where nothing moves
        // for another idle period (stalled streams, or a client that never
        // lets the GOAWAY end the connection) is dropped.
        tokio::select! {
            r = conn.as_mut() => end.ended(r),
            () = activity.quiet_for(server.idle_timeout) => {
                tracing::debug!(%peer, "dropping HTTP/2 connection: nothing moved after GOAWAY");
            }
        }
        return;
    }
    let svc = service_fn(move |req| service::handle(req, info.clone(), shared.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_header_size(server.max_header_bytes)
        // One buffer, one write(): measured slightly ahead of writev for
        // small responses, and level for 1 GiB ones.
        .writev(false);
    // hyper's own limit is 100 and parses into uninitialised stack space;
    // an explicit limit, even the same one, costs a zero-filled array of
    // that many headers per request.
    if server.max_headers != HYPER_MAX_HEADERS {
        builder.max_headers(server.max_headers);
    }
    let conn = builder.serve_connection(io, svc);
    serve_until_stopped!(conn, stop, end);
}

/// Reads until a complete PROXY header; returns it and the bytes after it.
async fn read_proxy_header(stream: &mut TcpStream) -> Result<(ProxyHeader, Bytes), String> {
    let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN);
    loop {
        match proxy_protocol::parse(&buf) {
            Ok(Some((header, used))) => {
                let rest = buf.split_off(used).freeze();
                return Ok((header, rest));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if buf.len() >= MAX_HEADER_LEN {
            return Err("PROXY header too long".into());
        }
        let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the PROXY header ended".into());
        }
    }
}
