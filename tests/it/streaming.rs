//! Streaming: 512 MiB each way through the real binary with SHA-256 intact,
//! while the proxy's peak resident memory stays under 64 MiB.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use crate::support::client::connect_from;
use crate::support::data::{self, sha256_of_pattern};
use crate::support::{Layout, Origin, Proxy, config, ips, standard_geo};

const SIZE: u64 = 512 << 20;
const RSS_LIMIT_KIB: u64 = 64 << 10;

/// A request body producing the pattern, never holding more than a chunk.
struct PatternBody {
    next: u64,
    total: u64,
    exact: bool,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
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
        if self.exact {
            SizeHint::with_exact(self.total)
        } else {
            SizeHint::default()
        }
    }
}

async fn upload(proxy: &Proxy, exact: bool) -> String {
    let stream = connect_from(ips::FR, proxy.addr()).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::put("/bucket/big-upload")
        .header("host", "s3.test")
        .body(PatternBody {
            next: 0,
            total: SIZE,
            exact,
        })
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn download(proxy: &Proxy, path: &str) -> (u64, String) {
    let stream = connect_from(ips::FR, proxy.addr()).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "s3.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let mut body = rsp.into_body();
    let mut h = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            len += d.len() as u64;
            h.update(&d);
        }
    }
    (len, data::hex(&h.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_gigabyte_each_way_streams_with_checksums_in_bounded_memory() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let expected = sha256_of_pattern(SIZE);

    // Upload with Content-Length.
    let reply = upload(&proxy, true).await;
    assert_eq!(reply, format!("len={SIZE} sha256={expected}"));
    assert_eq!(origin.seen()[0].headers["content-length"], SIZE.to_string());

    // Download with Content-Length, then chunked.
    let (len, sha) = download(&proxy, &format!("/download/{SIZE}")).await;
    assert_eq!((len, sha.as_str()), (SIZE, expected.as_str()));
    let (len, sha) = download(&proxy, &format!("/download/{}?chunked", SIZE / 4)).await;
    assert_eq!((len, sha), (SIZE / 4, sha256_of_pattern(SIZE / 4)));

    let peak = proxy.peak_rss_kib();
    eprintln!("proxy peak RSS after 1.1 GiB streamed: {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "proxy peak RSS {peak} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_streams_with_checksum() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let reply = upload_size(&proxy, false).await;
    assert_eq!(
        reply,
        format!("len={} sha256={}", SIZE / 8, sha256_of_pattern(SIZE / 8))
    );
    assert_eq!(origin.seen()[0].headers["transfer-encoding"], "chunked");
}

async fn upload_size(proxy: &Proxy, exact: bool) -> String {
    let stream = connect_from(ips::FR, proxy.addr()).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::put("/bucket/chunked-upload")
        .header("host", "s3.test")
        .body(PatternBody {
            next: 0,
            total: SIZE / 8,
            exact,
        })
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}
