//! Accepting client connections: one task per listen address, a connection
//! limit, the PROXY protocol header from trusted peers, hyper's HTTP/1.1
//! server with the configured limits, and graceful shutdown.
//!
//! `max_connections` is a semaphore: at the limit the accept loop waits, so
//! new connections queue in the kernel's backlog while existing ones are
//! unharmed. The same semaphore tells shutdown when every connection is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::client_ip::{ClientAddr, is_trusted};
use super::io::ClientIo;
use super::proxy_protocol::{self, MAX_HEADER_LEN, ProxyHeader};
use super::service::{self, ConnInfo};
use crate::config::ClientIpSource;
use crate::snapshot::Shared;

/// The bound listeners, ready to serve.
pub struct Server {
    listeners: Vec<TcpListener>,
    shared: Shared,
    max_connections: usize,
}

impl Server {
    /// Binds every `server.listen` address of the current snapshot.
    ///
    /// # Errors
    /// The first address that cannot be bound, with the OS error.
    pub async fn bind(shared: Shared) -> std::io::Result<Self> {
        let snap = shared.load_full();
        let mut listeners = Vec::new();
        for addr in &snap.config.server.listen {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        Ok(Self {
            listeners,
            shared,
            max_connections: snap.config.server.max_connections,
        })
    }

    /// The bound addresses (useful when the config says port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, asks every
    /// connection to finish its current request, and waits up to
    /// `shutdown_grace` for them. Returns the number of connections that
    /// were still open when the grace ran out.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> usize {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accept_tasks = Vec::new();
        for listener in self.listeners {
            accept_tasks.push(tokio::spawn(accept_loop(
                listener,
                self.shared.clone(),
                limit.clone(),
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            // Ends at once: the loop watches the same signal.
            let _ = t.await;
        }
        let grace = self.shared.load().config.server.shutdown_grace;
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, limit.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.max_connections - limit.available_permits(),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Shared,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
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
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, shared, stop).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let snap = shared.load_full();
    let server = &snap.config.server;
    let peer_trusted = is_trusted(peer.ip(), &server.trusted_proxies);
    let (client, prefix) = if server.client_ip_source == ClientIpSource::ProxyProtocol
        && peer_trusted
    {
        match tokio::time::timeout(server.header_read_timeout, read_proxy_header(&mut stream)).await
        {
            Ok(Ok((header, rest))) => match header {
                ProxyHeader::Proxied { source, .. } => (ClientAddr::Ip(source.ip()), rest),
                ProxyHeader::Local => (ClientAddr::Ip(peer.ip()), rest),
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
    } else {
        (ClientAddr::Ip(peer.ip()), Bytes::new())
    };
    let info = Arc::new(ConnInfo {
        peer,
        client,
        peer_trusted,
        mtls_subject: None,
    });
    let io = TokioIo::new(ClientIo::new(stream, prefix, server.idle_timeout));
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| service::handle(req, info.clone(), svc_shared.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_header_size(server.max_header_bytes)
        .max_headers(server.max_headers)
        .preserve_header_case(true);
    let conn = builder.serve_connection(io, svc);
    drop(snap);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => log_end(peer, r),
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            log_end(peer, conn.await);
        }
    }
}

fn log_end(peer: SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
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
