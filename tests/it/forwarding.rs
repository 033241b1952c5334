//! What reaches the origin: byte-exact targets, framing as sent, hop-by-hop
//! fields dropped, forwarding headers, Host, Expect, trailers and pooling.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::connect_from;
use crate::support::{Client, Layout, Origin, Proxy, config, ips, raw_exchange, standard_geo};

const QUIET: Duration = Duration::from_secs(3);

async fn setup(route: &str) -> (crate::support::TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", route));
    (geo, origin, proxy)
}

#[tokio::test]
async fn target_is_forwarded_byte_exact() {
    let (_g, origin, proxy) = setup("").await;
    let target = "/bucket/a%2Fb//c/./../d%20e+f~g?x=1&a=2&a=1&empty=&%41=b&list-type=2";
    let req = format!("GET {target} HTTP/1.1\r\nHost: s3.test:9000\r\nConnection: close\r\n\r\n");
    let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = origin.seen();
    assert_eq!(seen[0].target, target);
    assert_eq!(seen[0].method, http::Method::GET);
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    // The upstream connection comes from the proxy, not the client.
    assert_ne!(seen[0].peer.ip().to_string(), ips::FR);
    assert_eq!(seen[0].headers["host"], "s3.test:9000");
}

#[tokio::test]
async fn hop_by_hop_fields_are_dropped_and_forwarding_appended() {
    let (_g, origin, proxy) = setup("").await;
    let req = "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: keep-alive, x-hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: gzip\r\nX-Amz-Date: 20260101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-3/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        req.as_bytes(),
        Duration::from_millis(800),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        !lower.contains("keep-alive: timeout=30"),
        "origin's hop-by-hop field leaked: {out}"
    );
    let h = &origin.seen()[0].headers;
    for gone in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(!h.contains_key(gone), "{gone} reached the origin");
    }
    assert_eq!(h["x-amz-date"], "20260101T000000Z");
    assert!(
        h["authorization"]
            .to_str()
            .unwrap()
            .ends_with("Signature=abc")
    );
    // The untrusted peer's X-Forwarded-For is replaced by what the proxy saw.
    assert_eq!(h["x-forwarded-for"], ips::FR);
    assert_eq!(h["forwarded"], "for=127.0.0.2;proto=http");
}

#[tokio::test]
async fn host_is_preserved_or_replaced() {
    let (_g, origin, proxy) = setup("").await;
    Client::bound_to(ips::FR)
        .send(
            proxy.addr(),
            http::Request::get("/b/k")
                .header("host", "bucket.s3.test:8443")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(origin.seen()[0].headers["host"], "bucket.s3.test:8443");
    drop(proxy);
    let (_g, origin, proxy) = setup("preserve_host = false").await;
    Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(origin.seen()[0].headers["host"], origin.addr().to_string());
}

#[tokio::test]
async fn content_length_body_stays_content_length() {
    let (_g, origin, proxy) = setup("").await;
    let req = "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let s = &origin.seen()[0];
    assert_eq!(s.headers["content-length"], "11");
    assert!(!s.headers.contains_key("transfer-encoding"));
    assert_eq!(s.body_len, 11);
    assert_eq!(s.method, http::Method::PUT);
    // sha256("hello world")
    assert_eq!(
        s.body_sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
}

#[tokio::test]
async fn chunked_body_stays_chunked_with_trailers() {
    let (_g, origin, proxy) = setup("").await;
    let req = "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\nTrailer: x-amz-checksum-crc32\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32: DUoRhQ==\r\n\r\n";
    let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let s = &origin.seen()[0];
    assert_eq!(s.headers["transfer-encoding"], "chunked");
    assert!(!s.headers.contains_key("content-length"));
    assert_eq!(s.body_len, 11);
    let trailers = s
        .trailers
        .as_ref()
        .expect("request trailers reach the origin");
    assert_eq!(trailers["x-amz-checksum-crc32"], "DUoRhQ==");
}

#[tokio::test]
async fn response_trailers_reach_the_client() {
    let (_g, _origin, proxy) = setup("").await;
    let req =
        "GET /trailers HTTP/1.1\r\nHost: s3.test\r\nTE: trailers\r\nConnection: close\r\n\r\n";
    let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{out}"
    );
    assert!(out.contains("x-origin-trailer: done"), "{out}");
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/trailers", &[("te", "trailers")])
        .await;
    assert_eq!(rsp.text(), "body-before-trailers");
    assert_eq!(rsp.trailers.expect("trailers")["x-origin-trailer"], "done");
}

#[tokio::test]
async fn expect_continue_allowed_client_gets_100_then_uploads() {
    let (_g, origin, proxy) = setup("").await;
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(b"PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(QUIET, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    s.write_all(b"hello").await.unwrap();
    let mut rest = String::new();
    let _ = tokio::time::timeout(QUIET, s.read_to_string(&mut rest)).await;
    let all = format!("{first}{rest}");
    assert!(all.contains("HTTP/1.1 200"), "{all}");
    assert_eq!(origin.seen()[0].body_len, 5);
}

#[tokio::test]
async fn expect_continue_blocked_client_uploads_nothing() {
    let (_g, origin, proxy) = setup("").await;
    let mut s = connect_from(ips::US, proxy.addr()).await;
    s.write_all(b"PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(QUIET, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 451"),
        "no 100 Continue may precede the refusal: {reply}"
    );
    assert!(
        reply.contains("x-residency-decision: blocked; side=client; country=US"),
        "{reply}"
    );
    assert_eq!(origin.request_count(), 0);
    assert_eq!(origin.connection_count(), 0);
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let (_g, origin, proxy) = setup("").await;
    for _ in 0..20 {
        let rsp = Client::bound_to(ips::FR)
            .get(proxy.addr(), "/b/k", &[])
            .await;
        assert_eq!(rsp.status, 200);
    }
    assert_eq!(origin.request_count(), 20);
    // Each worker thread (one per core) keeps its own upstream connections.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert!(
        origin.connection_count() <= workers.min(20),
        "sequential requests reuse at most one upstream connection per worker: {} connections, {workers} workers",
        origin.connection_count()
    );
    assert!(origin.seen().iter().all(|s| s.conn < workers));
}
