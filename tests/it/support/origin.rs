//! A recording origin: a real hyper HTTP/1.1 server on a loopback address
//! that remembers every request it saw (method, exact target, headers, body
//! length and SHA-256, trailers, connection) and answers by path:
//!
//! - `/download/<n>`: `n` pattern bytes with Content-Length;
//!   `/download/<n>?chunked`: the same, chunked;
//! - `/trailers`: a chunked body followed by a trailer `x-origin-trailer: done`;
//! - anything else: `200` with body `len=<n> sha256=<hex>` of the request body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::data;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query exactly as received.
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    pub trailers: Option<HeaderMap>,
    /// Which connection carried it (0, 1, …).
    pub conn: usize,
    pub peer: SocketAddr,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    conns: AtomicUsize,
}

/// A running origin; stops when dropped.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts on `ip`:0.
    pub async fn start(ip: &str) -> Self {
        let addr = SocketAddr::new(ip.parse().unwrap(), 0);
        Self::start_at(addr, None).await
    }

    /// Starts on exactly `addr`, serving TLS when `tls` is given.
    pub async fn start_at(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let conn = st.conns.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, st.clone(), conn, peer));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    /// `http://ip:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Number of requests seen.
    pub fn request_count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Number of TCP connections accepted.
    pub fn connection_count(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<State>,
    conn: usize,
    peer: SocketAddr,
) -> Result<Response<OriginBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        match frame.into_data() {
            Ok(d) => {
                len += d.len() as u64;
                hasher.update(&d);
            }
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let sha = data::hex(&hasher.finalize());
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        target: target.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body_len: len,
        body_sha256: sha.clone(),
        trailers,
        conn,
        peer,
    });
    let path = parts.uri.path();
    let mut rsp = if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunked = parts.uri.query() == Some("chunked");
        let mut r = Response::new(OriginBody::pattern(total, !chunked));
        if !chunked {
            r.headers_mut()
                .insert("content-length", HeaderValue::from(total));
        }
        r
    } else if path == "/trailers" {
        let mut r = Response::new(OriginBody::with_trailers());
        r.headers_mut()
            .insert("trailer", HeaderValue::from_static("x-origin-trailer"));
        r
    } else {
        let text = format!("len={len} sha256={sha}");
        let mut r = Response::new(OriginBody::full(Bytes::from(text)));
        r.headers_mut()
            .insert("x-origin-conn", HeaderValue::from(conn));
        r
    };
    rsp.headers_mut()
        .insert("x-origin", HeaderValue::from_static("yes"));
    // Hop-by-hop fields the proxy must not pass on.
    rsp.headers_mut()
        .insert("keep-alive", HeaderValue::from_static("timeout=30"));
    rsp.headers_mut().insert(
        "x-residency-decision",
        HeaderValue::from_static("forged-by-origin"),
    );
    Ok(rsp)
}

/// The origin's response bodies.
pub struct OriginBody {
    next: u64,
    total: u64,
    exact: bool,
    full: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl OriginBody {
    fn full(b: Bytes) -> Self {
        Self {
            next: 0,
            total: 0,
            exact: true,
            full: Some(b),
            trailers: None,
        }
    }
    fn pattern(total: u64, exact: bool) -> Self {
        Self {
            next: 0,
            total,
            exact,
            full: None,
            trailers: None,
        }
    }
    fn with_trailers() -> Self {
        let mut t = HeaderMap::new();
        t.insert("x-origin-trailer", HeaderValue::from_static("done"));
        Self {
            next: 0,
            total: 0,
            exact: false,
            full: Some(Bytes::from_static(b"body-before-trailers")),
            trailers: Some(t),
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(b) = self.full.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        let sent = self.next * data::CHUNK as u64;
        if sent >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - sent).min(data::CHUNK as u64) as usize;
        let c = data::chunk(self.next, len);
        self.next += 1;
        Poll::Ready(Some(Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact && self.trailers.is_none() {
            let len = self.full.as_ref().map_or(self.total, |b| b.len() as u64);
            SizeHint::with_exact(len)
        } else {
            SizeHint::default()
        }
    }
}
