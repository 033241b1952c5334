//! The floor of the anchor benchmark (`benches/anchors/run`): a bare
//! HTTP/1.1 forwarder on the stack residency-proxy runs on (tokio, one
//! current-thread runtime, hyper's server and client connections, a pool of
//! upstream connections checked back in once a request is written), and
//! nothing else: no geo, no audit, no metrics, no header rewriting. What
//! residency-proxy costs above it is its own work; what this costs is the
//! stack's.
//!
//! ```sh
//! cargo run --release --example floor -- 127.0.0.1:18090 127.0.0.1:18080
//! ```
//!
//! Listens on the first address, forwards every request to the second, and
//! streams bodies both ways.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

/// The allocator residency-proxy runs on (see its `src/main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Sender = SendRequest<Incoming>;
type Body = Either<Incoming, Empty<Bytes>>;

/// Idle and busy upstream connections, as residency-proxy keeps them: a
/// sender goes back as soon as its request is written.
#[derive(Default)]
struct Pool(Mutex<Vec<Sender>>);

impl Pool {
    fn checkout(&self) -> Option<Sender> {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
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

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sender);
        }
    }
}

async fn connect(upstream: SocketAddr) -> std::io::Result<Sender> {
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
    pool: Arc<Pool>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let req = Request::from_parts(parts, body);
    let mut sender = match pool.checkout() {
        Some(s) => s,
        None => match connect(upstream).await {
            Ok(s) => s,
            Err(_) => return Ok(bad_gateway()),
        },
    };
    if sender.ready().await.is_err() {
        return Ok(bad_gateway());
    }
    let pending = sender.try_send_request(req);
    pool.checkin(sender);
    match pending.await {
        Ok(rsp) => Ok(rsp.map(Either::Left)),
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut rsp = Response::new(Either::Right(Empty::new()));
    *rsp.status_mut() = StatusCode::BAD_GATEWAY;
    rsp
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || std::io::Error::other("usage: floor LISTEN_ADDR UPSTREAM_ADDR");
    let listen: SocketAddr = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let upstream: SocketAddr = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(listen).await?;
            println!("listening on {}", listener.local_addr()?);
            let pool = Arc::new(Pool::default());
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let pool = pool.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| forward(req, upstream, pool.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .writev(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
}
