//! A minimal, fast origin for the load harness (`benches/load/run`):
//! `GET /small` returns 1 KiB, `GET /large` streams 1 GiB, `GET /size/N`
//! streams N bytes, and any other request has its body read to the end and
//! discarded, then gets `200 ok`. Listens on the address given (e.g.
//! `127.0.0.10:0`) and prints `listening on ADDR`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const CHUNK: usize = 256 * 1024;

/// `total` bytes from a fixed buffer, one chunk at a time.
struct Fill {
    left: u64,
    chunk: Bytes,
}

impl Body for Fill {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

async fn handle(req: Request<Incoming>, chunk: Bytes) -> Result<Response<Fill>, Infallible> {
    let path = req.uri().path().to_owned();
    let size = match path.as_str() {
        "/small" => Some(1024),
        "/large" => Some(1 << 30),
        p => p.strip_prefix("/size/").and_then(|n| n.parse().ok()),
    };
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let (left, chunk) = match size {
        Some(n) => (n, chunk),
        None => (2, Bytes::from_static(b"ok")),
    };
    Ok(Response::new(Fill { left, chunk }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.10:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, chunk.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
