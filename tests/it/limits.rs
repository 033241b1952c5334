//! Connection limits and request framing: 431, slowloris, idle connections,
//! max_connections, and requests that could smuggle a second one.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{connect_from, read_response};
use crate::support::{Client, Layout, Origin, Proxy, config, ips, raw_exchange, standard_geo};

async fn setup(server: &str) -> (crate::support::TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, server, "", ""));
    (geo, origin, proxy)
}

/// Reads until EOF; returns the text and whether EOF came before `limit`.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn oversize_header_section_gets_431() {
    let (_g, origin, proxy) = setup("max_header_bytes = 4096").await;
    let big = "a".repeat(5000);
    let req = format!("GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-Big: {big}\r\n\r\n");
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        req.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // Just under the limit passes.
    let ok = "a".repeat(3000);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[("x-big", &ok)])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let (_g, origin, proxy) = setup("max_headers = 10").await;
    let fields: String = (0..20).map(|i| format!("X-F{i}: v\r\n")).collect();
    let req = format!("GET /b/k HTTP/1.1\r\nHost: s3.test\r\n{fields}\r\n");
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        req.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert_eq!(origin.request_count(), 0);
}

/// The default limit (100 fields, left to hyper's own default) holds too.
#[tokio::test]
async fn default_header_count_limit_is_100() {
    let (_g, origin, proxy) = setup("").await;
    // Host, Connection and n fields; the same bounds as an explicit
    // `max_headers = 100` (checked before the limit was left to hyper).
    for (n, want) in [(97, "HTTP/1.1 200"), (101, "HTTP/1.1 431")] {
        let fields: String = (0..n).map(|i| format!("X-F{i}: v\r\n")).collect();
        let req =
            format!("GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n{fields}\r\n");
        let out = raw_exchange(
            ips::FR,
            proxy.addr(),
            req.as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with(want), "{n} fields: {out}");
    }
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn slow_header_section_is_cut_off() {
    let (_g, origin, proxy) = setup("header_read_timeout = \"1s\"\nidle_timeout = \"30s\"").await;
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    // Keep trickling header bytes: still cut off, since the whole section is late.
    let trickle = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(format!("X-{i}: v\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    trickle.await;
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "connection must be closed");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let (_g, _origin, proxy) = setup("idle_timeout = \"1s\"").await;
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\n\r\n")
        .await
        .unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(closed, "the idle connection must be closed by the proxy");
}

#[tokio::test]
async fn stalled_request_body_is_cut_off_and_never_completes_upstream() {
    let (_g, origin, proxy) = setup("idle_timeout = \"1s\"").await;
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(b"PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 100\r\n\r\nonly-part")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert!(closed);
    // The origin may have seen the request start, but never a complete body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        origin.seen().iter().all(|r| r.body_len < 100),
        "{:?}",
        origin.seen().iter().map(|r| r.body_len).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn max_connections_queues_new_connections_without_harming_open_ones() {
    let (_g, origin, proxy) = setup("max_connections = 2").await;
    let a = connect_from(ips::FR, proxy.addr()).await;
    let b = connect_from(ips::FR, proxy.addr()).await;
    // Make sure both are accepted and served.
    let mut conns = vec![a, b];
    for s in &mut conns {
        s.write_all(b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(s).await.starts_with("HTTP/1.1 200"));
    }
    // A third connection is not served while two are open…
    let third = tokio::spawn(async move {
        let addr = proxy.addr();
        let rsp = Client::bound_to(ips::DE).get(addr, "/b/k", &[]).await;
        (rsp.status, proxy)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "third connection must wait at the limit"
    );
    // …existing connections still work…
    conns[0]
        .write_all(b"GET /b/k2 HTTP/1.1\r\nHost: s3.test\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_response(&mut conns[0])
            .await
            .starts_with("HTTP/1.1 200")
    );
    // …and when one closes, the waiting one is served.
    drop(conns.pop());
    let (status, _proxy) = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(origin.request_count(), 4);
}

#[tokio::test]
async fn smuggling_shapes_are_refused_or_neutralised() {
    let (_g, origin, proxy) = setup("").await;
    let quiet = Duration::from_secs(2);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: s3.test\r\n\r\n";
    let refused = [
        // Two different Content-Lengths.
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!{smuggled}"
        ),
        // Transfer-Encoding other than a single chunked.
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Whitespace before the colon.
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // obs-fold.
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n{smuggled}"
        ),
        // Bare LF inside a header value and bare CR.
        format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nX-A: a\rContent-Length: 0\r\n\r\n{smuggled}"
        ),
    ];
    for req in &refused {
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), quiet).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "expected 400 for {req:?}, got {out:?}"
        );
        assert!(!out.contains("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(
        origin.request_count(),
        0,
        "{:?}",
        origin
            .seen()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>()
    );

    // Content-Length with Transfer-Encoding: chunked wins, Content-Length is
    // dropped, the connection is closed after the response: the origin sees
    // exactly one request and never the smuggled one.
    let cl_te = format!(
        "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
    );
    let out = raw_exchange(ips::FR, proxy.addr(), cl_te.as_bytes(), quiet).await;
    assert!(out.matches("HTTP/1.1").count() <= 1, "{out}");
    let seen = origin.seen();
    assert!(seen.len() <= 1);
    assert!(
        seen.iter()
            .all(|s| s.target != "/smuggled" && !s.headers.contains_key("content-length"))
    );
}

#[tokio::test]
async fn missing_or_conflicting_host_is_400() {
    let (_g, origin, proxy) = setup("").await;
    for req in [
        "GET /b/k HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        "GET http://other.example/b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n",
    ] {
        let out = raw_exchange(
            ips::FR,
            proxy.addr(),
            req.as_bytes(),
            Duration::from_secs(2),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{req:?}: {out}");
    }
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        b"CONNECT s3.test:443 HTTP/1.1\r\nHost: s3.test:443\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn upstream_connect_timeout_gives_502() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    // A listener that never accepts, its queue filled: further SYNs are
    // dropped, so a connect to it hangs until the proxy gives up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{}:0", ips::ORIGIN).parse().unwrap())
        .unwrap();
    let silent = socket.listen(1).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_millis(300), s.connect(silent_addr)).await
        {
            fillers.push(c);
        }
    }
    let toml = config(&geo, &origin, "", "", "connect_timeout = \"500ms\"")
        .replace(&origin.url(), &format!("http://{silent_addr}"));
    let proxy = Proxy::start(&toml);
    let start = Instant::now();
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    let took = start.elapsed();
    assert_eq!(rsp.status, 502, "{}", rsp.text());
    assert!(rsp.text().contains("<Code>BadGateway</Code>"));
    assert!(
        took >= Duration::from_millis(450),
        "gave up after {took:?}, before the connect timeout"
    );
    proxy.wait_for_log("timed out after 500ms", 1).await;
    drop(silent);
}

#[tokio::test]
async fn upload_cut_short_by_the_client_never_completes_upstream() {
    let (_g, origin, proxy) = setup("").await;
    let total = 4 << 20;
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(
        format!("PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&vec![b'x'; total / 2]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    // The origin sees the request end early: never a complete body.
    for _ in 0..100 {
        if origin.request_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body_len < total as u64,
        "origin received {} of {total} bytes",
        seen[0].body_len
    );
}
