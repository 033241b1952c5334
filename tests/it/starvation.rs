//! Blocked or idle clients cannot starve allowed ones of connection slots:
//! with `max_connections = 10`, idle HTTP/2 connections (PINGs answered,
//! no request, or only stalled streams), TLS connections that never finish their handshake, trusted
//! peers that never send their PROXY header and blocked clients that keep
//! their connection after the 451 are all closed, and every one of the 10
//! slots is usable over TLS (the accept loops hold none).
//!
//! No timing asserts: each test waits for the effect (the proxy closing the
//! connection, a client served) up to a generous deadline.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::client::{connect_from, read_response};
use crate::support::tls::{TestCa, client_config, https_get};
use crate::support::{Client, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

const SLOTS: usize = 10;
/// How long a test waits for an effect: far above the 1 s timeouts.
const DEADLINE: Duration = Duration::from_secs(30);

/// A proxy with `max_connections = 10`, `plain` plain listeners and one
/// TLS listener, and `server` lines.
async fn start(plain: usize, server: &str) -> (TestGeo, Origin, TestCa, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let (cert, key) = ca.write_leaf("server", &["s3.test"]);
    let listen = vec!["\"127.0.0.1:0\""; plain].join(", ");
    let server = format!(
        "max_connections = {SLOTS}\ntrusted_proxies = [\"{}/32\"]\n{server}",
        ips::TRUSTED
    );
    let toml = config(&geo, &origin, &server, "", "")
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [{listen}]"),
        )
        .replace(
            "[admin]",
            &format!(
                "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[admin]",
                cert.display(),
                key.display()
            ),
        );
    let proxy = Proxy::start(&toml);
    (geo, origin, ca, proxy)
}

/// A TLS connection from `source`, handshake complete (so the proxy has
/// accepted it and holds a slot for it).
async fn tls_connect(
    source: &str,
    to: SocketAddr,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = connect_from(source, to).await;
    let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
    tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(client_config(ca, None, alpn)).connect(name, tcp),
    )
    .await
    .expect("the proxy accepts and completes the TLS handshake")
    .unwrap()
}

/// An HTTP/2 client connection: its request sender, and the task driving it
/// (which answers the proxy's PINGs, and ends when the connection closes).
async fn h2_connect(
    source: &str,
    proxy: &Proxy,
    ca: &TestCa,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    JoinHandle<()>,
) {
    let tls = tls_connect(source, proxy.tls_addr(), ca, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

/// Waits until every task in `drivers` has ended (its connection closed).
async fn all_closed(drivers: Vec<JoinHandle<()>>, what: &str) {
    for d in drivers {
        tokio::time::timeout(DEADLINE, d)
            .await
            .unwrap_or_else(|_| panic!("{what}: still open after {DEADLINE:?}"))
            .unwrap();
    }
}

/// Reads until the proxy closes `s` (EOF or reset).
async fn closed_by_proxy(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {DEADLINE:?}");
}

/// An allowed (FR) client is served over TLS (h2) and over plain HTTP/1.1.
async fn allowed_client_served(proxy: &Proxy, ca: &TestCa) {
    let cfg = client_config(ca, None, &[b"h2"]);
    let (version, rsp) = tokio::time::timeout(
        DEADLINE,
        https_get(ips::FR, proxy.tls_addr(), "s3.test", cfg, "/b/after"),
    )
    .await
    .expect("an allowed client is served over TLS")
    .unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(rsp.status, 200);
    let rsp = tokio::time::timeout(
        DEADLINE,
        Client::bound_to(ips::FR).get(proxy.addr(), "/b/after", &[]),
    )
    .await
    .expect("an allowed client is served over plain HTTP");
    assert_eq!(rsp.status, 200);
}

#[tokio::test]
async fn idle_h2_connections_are_closed_and_an_allowed_client_is_served() {
    let (_g, origin, ca, proxy) = start(1, "idle_timeout = \"1s\"").await;
    // Every slot taken by a blocked client's h2 connection that sends no
    // request; hyper's client answers the proxy's PINGs, so bytes keep
    // moving on each.
    let mut senders = Vec::new();
    let mut drivers = Vec::new();
    for _ in 0..SLOTS {
        let (sender, driver) = h2_connect(ips::US, &proxy, &ca).await;
        senders.push(sender);
        drivers.push(driver);
    }
    all_closed(drivers, "an idle h2 connection").await;
    drop(senders);
    allowed_client_served(&proxy, &ca).await;
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn tls_connections_that_never_finish_the_handshake_are_closed() {
    // idle_timeout far away: only the handshake's bound can close them.
    let (_g, origin, ca, proxy) =
        start(1, "header_read_timeout = \"1s\"\nidle_timeout = \"120s\"").await;
    // The first trickles a byte of its ClientHello every 200 ms: bytes keep
    // moving, but the handshake as a whole is late.
    let mut trickler = connect_from(ips::US, proxy.tls_addr()).await;
    let trickle = tokio::spawn(async move {
        trickler
            .write_all(&[0x16, 0x03, 0x01, 0x40, 0x00])
            .await
            .unwrap();
        for _ in 0..DEADLINE.as_millis() / 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if trickler.write_all(&[0x01]).await.is_err() {
                return true;
            }
        }
        false
    });
    // The others send nothing, or the start of a ClientHello record.
    let mut stalled = Vec::new();
    for i in 1..SLOTS {
        let mut s = connect_from(ips::US, proxy.tls_addr()).await;
        if i % 2 == 0 {
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
        stalled.push(s);
    }
    for s in stalled {
        closed_by_proxy(s, "a TLS connection without a handshake").await;
    }
    assert!(
        trickle.await.unwrap(),
        "a trickled handshake must be cut off"
    );
    allowed_client_served(&proxy, &ca).await;
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn trusted_peers_that_never_send_the_proxy_header_are_closed() {
    let (_g, origin, _ca, proxy) = start(
        1,
        "client_ip_source = \"proxy-protocol\"\nheader_read_timeout = \"1s\"\nidle_timeout = \"120s\"",
    )
    .await;
    let mut stalled = Vec::new();
    for i in 0..SLOTS {
        let mut s = connect_from(ips::TRUSTED, proxy.addr()).await;
        if i % 2 == 0 {
            // The start of a v1 header, never ended.
            s.write_all(b"PROXY TCP4 127.0.0.2").await.unwrap();
        }
        stalled.push(s);
    }
    for s in stalled {
        closed_by_proxy(s, "a trusted peer without its PROXY header").await;
    }
    // Served again: a PROXY header naming an FR client.
    let mut s = connect_from(ips::TRUSTED, proxy.addr()).await;
    let served = tokio::time::timeout(DEADLINE, async {
        s.write_all(
            b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\nGET /b/after HTTP/1.1\r\nHost: s3.test\r\n\r\n",
        )
        .await
        .unwrap();
        read_response(&mut s).await
    })
    .await
    .expect("a client is served once the stalled peers are closed");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert_eq!(origin.request_count(), 1);
}

/// The 6-of-10 bug: every worker ran an accept loop per listener, each
/// holding a slot while waiting for a connection, so the loops of the
/// other listeners (two plain ones here) kept slots no TLS client could use.
#[tokio::test]
async fn every_connection_slot_is_usable_over_tls() {
    // Timeouts far away: no slot frees while the test runs.
    let (_g, origin, ca, proxy) =
        start(2, "header_read_timeout = \"120s\"\nidle_timeout = \"120s\"").await;
    let mut open = Vec::new();
    for i in 0..SLOTS {
        let tls = tls_connect(ips::FR, proxy.tls_addr(), &ca, &[b"http/1.1"]).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(format!("/b/slot-{i}"))
            .header("host", "s3.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("TLS connection {} of {SLOTS} not served", i + 1))
            .unwrap();
        assert_eq!(rsp.status(), 200);
        rsp.into_body().collect().await.unwrap();
        open.push((sender, driver));
    }
    // All ten are open at once and still served.
    for (i, (sender, _)) in open.iter_mut().enumerate() {
        let req = http::Request::get(format!("/b/again-{i}"))
            .header("host", "s3.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("an open connection stays served")
            .unwrap();
        assert_eq!(rsp.status(), 200);
        rsp.into_body().collect().await.unwrap();
    }
    assert_eq!(origin.request_count(), 2 * SLOTS);
}

#[tokio::test]
async fn blocked_clients_idle_after_their_451_are_closed_and_an_allowed_client_is_served() {
    let (_g, origin, ca, proxy) = start(1, "idle_timeout = \"1s\"").await;
    // Half the slots: blocked clients over h2 that keep the connection.
    let mut senders = Vec::new();
    let mut drivers = Vec::new();
    for i in 0..SLOTS / 2 {
        let (mut sender, driver) = h2_connect(ips::US, &proxy, &ca).await;
        let req = http::Request::get(format!("https://s3.test/b/h2-{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 451);
        rsp.into_body().collect().await.unwrap();
        senders.push(sender);
        drivers.push(driver);
    }
    // The other half: blocked clients over HTTP/1.1 keep-alive.
    let mut kept = Vec::new();
    for i in 0..SLOTS / 2 {
        let mut s = connect_from(ips::US, proxy.addr()).await;
        s.write_all(format!("GET /b/h1-{i} HTTP/1.1\r\nHost: s3.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let rsp = read_response(&mut s).await;
        assert!(rsp.starts_with("HTTP/1.1 451"), "{rsp}");
        assert!(
            !rsp.to_ascii_lowercase().contains("connection: close"),
            "{rsp}"
        );
        kept.push(s);
    }
    all_closed(drivers, "a blocked client's idle h2 connection").await;
    drop(senders);
    for s in kept {
        closed_by_proxy(s, "a blocked client's idle HTTP/1.1 connection").await;
    }
    allowed_client_served(&proxy, &ca).await;
    assert_eq!(origin.request_count(), 2);
}

/// A request body that sends `first` bytes, then nothing, never ending.
struct StalledUpload(Option<Bytes>);

impl http_body::Body for StalledUpload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Streams that stall while the connection answers PINGs: a download the
/// client never reads (its flow-control window stays closed) and an upload
/// it stops sending. Both would hold their slot forever if only open
/// streams counted.
#[tokio::test]
async fn stalled_h2_streams_are_cut_off_and_an_allowed_client_is_served() {
    let (_g, _origin, ca, proxy) = start(1, "idle_timeout = \"1s\"").await;
    let mut held = Vec::new();
    let mut drivers = Vec::new();
    for i in 0..SLOTS / 2 {
        // 3 MB: more than hyper's client windows, never read.
        let (mut sender, driver) = h2_connect(ips::FR, &proxy, &ca).await;
        let req = http::Request::get(format!("https://s3.test/download/3000000?i={i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        held.push(rsp);
        drivers.push(driver);
    }
    let mut uploads = Vec::new();
    for i in 0..SLOTS / 2 {
        let tls = tls_connect(ips::FR, proxy.tls_addr(), &ca, &[b"h2"]).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        drivers.push(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let req = http::Request::put(format!("https://s3.test/b/upload-{i}"))
            .header("content-length", "1000000")
            .body(StalledUpload(Some(Bytes::from_static(&[7; 1000]))))
            .unwrap();
        uploads.push(tokio::spawn(async move { sender.send_request(req).await }));
    }
    all_closed(drivers, "a connection with a stalled stream").await;
    drop((held, uploads));
    allowed_client_served(&proxy, &ca).await;
}

// ------------------------------------------------- raw HTTP/2, frame by frame

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields without indexing (RFC 7541 §6.2.2),
/// names and values under 127 bytes.
fn h2_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Opens an h2 connection from a blocked client with `settings`, sends
/// `first`, then one `trickle` frame every 200 ms; true once the proxy
/// has closed the connection, false if it was still open at the deadline.
async fn trickle_until_closed(
    proxy: &Proxy,
    ca: &TestCa,
    settings: &[u8],
    first: Vec<u8>,
    trickle: impl Fn(u32) -> Vec<u8> + Send + 'static,
) -> bool {
    let tls = tls_connect(ips::US, proxy.tls_addr(), ca, &[b"h2"]).await;
    let (mut r, mut w) = tokio::io::split(tls);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; 1 << 16];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(h2_frame(0x4, 0, 0, settings));
    start.extend(first);
    w.write_all(&start).await.unwrap();
    let writer = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(&trickle(i)).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    let closed = tokio::time::timeout(DEADLINE, reader).await.is_ok();
    writer.abort();
    closed
}

/// What a client sends keeps its connection only when the proxy takes it
/// in: frames that start no request, DATA on a finished stream, or DATA
/// beside a response stuck behind a window the client keeps closed, do
/// not hold a slot, however often they come.
#[tokio::test]
async fn h2_frames_that_carry_no_request_do_not_keep_a_connection() {
    // The proxy's PINGs go unanswered here: a PING timeout far away, so
    // that only the idle rule can close these connections.
    let (_g, origin, ca, proxy) =
        start(1, "idle_timeout = \"1s\"\nheader_read_timeout = \"120s\"").await;
    let get = |path: &str, method: &str| {
        h2_block(&[
            (":method", method),
            (":scheme", "https"),
            (":path", path),
            (":authority", "s3.test"),
        ])
    };
    // A GET answered 451, then DATA on its finished stream.
    let first = h2_frame(0x1, END_STREAM | END_HEADERS, 1, &get("/b/a", "GET"));
    let closed = trickle_until_closed(&proxy, &ca, &[], first, |_| h2_frame(0x0, 0, 1, b"x")).await;
    assert!(closed, "DATA on a finished stream kept the connection");
    // A window of 0, so the 451's body never leaves; an upload that goes on.
    let first = h2_frame(0x1, END_HEADERS, 1, &get("/b/b", "PUT"));
    let closed = trickle_until_closed(&proxy, &ca, &[0, 4, 0, 0, 0, 0], first, |_| {
        h2_frame(0x0, 0, 1, b"x")
    })
    .await;
    assert!(closed, "DATA beside a stuck response kept the connection");
    // Header blocks that are no request (no :method), each on a new stream.
    let closed = trickle_until_closed(&proxy, &ca, &[], Vec::new(), |i| {
        let block = h2_block(&[(":path", "/b/c"), (":authority", "s3.test")]);
        h2_frame(0x1, END_STREAM | END_HEADERS, 2 * i + 1, &block)
    })
    .await;
    assert!(closed, "requestless header blocks kept the connection");
    allowed_client_served(&proxy, &ca).await;
    assert_eq!(origin.request_count(), 2);
}
