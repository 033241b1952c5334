//! HTTP clients with a chosen loopback source address, so the proxy sees the
//! peer the test wants to judge. `Client` speaks HTTP/1.1 through hyper;
//! `raw_exchange` writes exact bytes for framing and smuggling tests.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a TCP connection from `source` to `to`.
pub async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let ip: IpAddr = source.parse().unwrap();
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    // Many short connections from one source address leave ports in
    // TIME_WAIT; let bind reuse them rather than fail under a busy suite.
    socket.set_reuseaddr(true).unwrap();
    socket.bind(SocketAddr::new(ip, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// An HTTP/1.1 client bound to one source address.
pub struct Client {
    source: String,
}

impl Client {
    pub fn bound_to(source: &str) -> Self {
        Self {
            source: source.to_owned(),
        }
    }

    /// `GET path` with the given extra headers.
    pub async fn get(&self, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::get(path).header("host", to.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(to, b.body(Empty::<Bytes>::new()).unwrap()).await
    }

    /// Sends any request on a fresh connection and reads the whole reply.
    pub async fn send<B>(&self, to: SocketAddr, req: Request<B>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = connect_from(&self.source, to).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let rsp = sender.send_request(req).await.unwrap();
        let (parts, body) = rsp.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        }
    }
}

/// Writes `bytes` from `source` to `to` and reads until the peer closes or
/// stays silent for `quiet`. Returns everything read, as text.
pub async fn raw_exchange(source: &str, to: SocketAddr, bytes: &[u8], quiet: Duration) -> String {
    let mut s = connect_from(source, to).await;
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`; returns
/// its head and body as text.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if out.len() >= end + 4 + len {
                return String::from_utf8_lossy(&out[..end + 4 + len]).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}
