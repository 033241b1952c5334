//! Attacks on the proxy (issue 8, point 2), beyond those of `limits.rs` and
//! `client_ip.rs`: more smuggling shapes, header abuse, every way an
//! untrusted peer might claim an address, garbage from a trusted one, slow
//! clients in numbers, and HTTP/2 rapid reset and header floods. Each test
//! checks what the origin saw and that a well-behaved client is still served.
//!
//! The classes of issue 13 (hardening, second round), and where their
//! adversarial tests are (SECURITY.md, "Hardening, second round", has the
//! unit, property and fuzz tests beside them):
//!
//! 1. `Forwarded`/`X-Forwarded-For` parsed whole, a malformed chain never
//!    believed: this file, section "forwarding chains that hide their hop";
//!    `client_ip.rs` (`malformed_xff_from_trusted_proxy_is_untraceable`).
//! 2. routing not dodged by spelling the path, bucket or host otherwise:
//!    this file, section "route spellings"; `cli.rs` for `check`'s warning.
//! 3. every refusal leaves evidence, the client judged first: this file,
//!    section "every refusal leaves evidence" (HTTP/2 refusals, the garbage
//!    flood and its budget); `refusals.rs` (HTTP/1.1 refusals, refusals
//!    before routing, mutated requests, live and offline cartography).
//! 4. the trail cannot lose its head silently: `audit.rs` (genesis,
//!    `--from`, `--expect-last`, reloads of `[audit] path`/`enabled`).
//! 5. no idle connection holds a slot forever: `starvation.rs`.
//! 6. a trusted proxy that names no client is not the client: this file,
//!    `a_trusted_proxy_naming_no_client_does_not_lend_its_address` (end of
//!    "forwarding chains that hide their hop"); `client_ip.rs`.
//! 7. every IPv6 form that embeds IPv4 unwrapped by its RFC layout:
//!    `embedded.rs` (client and upstream side); this file,
//!    `ipv4_wrapped_in_ipv6_through_proxy_protocol_keeps_its_verdict`.
//! 8. nothing the operator writes crashes or silently breaks it:
//!    `operator_values.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::client::connect_from;
use crate::support::tls::{TestCa, client_config, https_get};
use crate::support::{
    Client, Layout, Origin, Proxy, TestGeo, config, ips, raw_exchange, standard_geo,
};

const QUIET: Duration = Duration::from_secs(2);

async fn setup(server: &str) -> (TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, server, "", ""));
    (geo, origin, proxy)
}

/// A well-behaved FR client gets its 200.
async fn still_served(proxy: &Proxy) {
    let rsp = tokio::time::timeout(
        Duration::from_secs(10),
        Client::bound_to(ips::FR).get(proxy.addr(), "/b/well-behaved", &[]),
    )
    .await
    .expect("a well-behaved client is answered");
    assert_eq!(rsp.status, 200);
}

fn targets(origin: &Origin) -> Vec<String> {
    origin.seen().iter().map(|s| s.target.clone()).collect()
}

// ---------------------------------------------------------------- smuggling

#[tokio::test]
async fn content_length_with_transfer_encoding_in_either_order_is_one_request_then_close() {
    let (_g, origin, proxy) = setup("").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: s3.test\r\n\r\n";
    for (n, head) in [
        "Content-Length: 30\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 30",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\nContent-Length: 44",
    ]
    .iter()
    .enumerate()
    {
        let req = format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\n{head}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
        );
        let mut s = connect_from(ips::FR, proxy.addr()).await;
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .is_ok();
        let out = String::from_utf8_lossy(&out);
        // The body is read as chunked (never by the Content-Length), the one
        // response closes the connection, and the smuggled request is never read.
        assert!(
            closed,
            "{head:?}: the connection must be closed after the response"
        );
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{head:?}: {out}");
        assert!(out.starts_with("HTTP/1.1 200"), "{head:?}: {out}");
        let seen = origin.seen();
        assert_eq!(seen.len(), n + 1, "{:?}", targets(&origin));
        let last = &seen[n];
        assert_eq!(last.target, "/b/k");
        assert_eq!(last.body_len, 5);
        assert!(!last.headers.contains_key("content-length"), "{head:?}");
        assert_eq!(last.headers["transfer-encoding"], "chunked");
    }
    assert!(!targets(&origin).contains(&"/smuggled".to_owned()));
    still_served(&proxy).await;
}

#[tokio::test]
async fn obfuscated_transfer_encodings_are_refused() {
    let (_g, origin, proxy) = setup("").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: s3.test\r\n\r\n";
    for te in [
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: \"chunked\"",
        "Transfer-Encoding: chunked;q=1",
        "Transfer-Encoding: ch unked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: chunked\r\nTransfer-encoding: x",
        "Transfer-Encoding:\u{b}chunked",
        "Transfer-Encoding: \u{0}chunked",
        "Transfer-Encoding\t: chunked",
        " Transfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\n : chunked",
    ] {
        let req = format!(
            "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\n{te}\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{te:?}: {out:?}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{te:?}: {out}");
    }
    // HTTP/1.0 has no chunked coding at all.
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        format!("POST /b/k HTTP/1.0\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    assert_eq!(origin.request_count(), 0, "{:?}", targets(&origin));
    still_served(&proxy).await;
}

#[tokio::test]
async fn broken_chunk_framing_never_completes_upstream_or_smuggles() {
    let (_g, origin, proxy) = setup("").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: s3.test\r\n\r\n";
    for chunks in [
        "fffffffffffffffff1\r\nx\r\n0\r\n\r\n",
        "-1\r\nx\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhello\r\n0\r\nX-Trailer: a\r\n b\r\n\r\n",
    ] {
        let req = format!(
            "PUT /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{smuggled}"
        );
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(out.matches("HTTP/1.1 ").count() <= 1, "{chunks:?}: {out}");
        assert!(!out.starts_with("HTTP/1.1 200"), "{chunks:?}: {out}");
    }
    // The origin may have seen requests start, but never a smuggled one and
    // never a body the client did not frame correctly.
    for s in origin.seen() {
        assert_eq!(s.target, "/b/k");
        assert!(s.body_len <= 5, "{}", s.body_len);
    }
    still_served(&proxy).await;
}

// ------------------------------------------------------------- header abuse

#[tokio::test]
async fn invalid_hosts_and_request_targets_are_refused() {
    let (_g, origin, proxy) = setup("").await;
    for req in [
        "GET /b/k HTTP/1.1\r\nHost: s3.test@evil.example\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: evil.example/x\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: \r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: s3.test evil.example\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: s3.test\\evil\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: s3.t\u{e9}st\r\n\r\n",
        "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nhost: s3.test\r\n\r\n",
        // Authority-form is for CONNECT only.
        "GET s3.test:80 HTTP/1.1\r\nHost: s3.test\r\n\r\n",
        // Absolute-form must agree with Host.
        "GET http://evil.example/b/k HTTP/1.1\r\nHost: s3.test\r\n\r\n",
        "GET http://s3.test@evil.example/b/k HTTP/1.1\r\nHost: s3.test\r\n\r\n",
    ] {
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{req:?}: {out:?}");
    }
    // Asterisk-form matches no route.
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        b"OPTIONS * HTTP/1.1\r\nHost: s3.test\r\n\r\n",
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out:?}");
    assert!(out.contains("<Code>NoSuchRoute</Code>"), "{out:?}");
    assert_eq!(origin.request_count(), 0, "{:?}", targets(&origin));
    still_served(&proxy).await;
}

#[tokio::test]
async fn a_target_naming_another_host_never_makes_the_proxy_dial_it() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    // A server outside the area (US) that a client would like reached.
    let elsewhere = Origin::start(ips::ORIGIN_US).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let other = elsewhere.addr();
    for req in [
        format!("GET http://{other}/b/k HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("GET /b/k HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
        format!("GET //{other}/b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n"),
    ] {
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{req:?}: {out:?}");
    }
    // Every request went to the configured upstream, in origin form.
    assert_eq!(elsewhere.request_count(), 0);
    assert_eq!(elsewhere.connection_count(), 0);
    assert_eq!(
        targets(&origin),
        ["/b/k", "/b/k", &format!("//{other}/b/k")]
    );
}

#[tokio::test]
async fn upgrade_requests_are_forwarded_as_plain_requests() {
    let (_g, origin, proxy) = setup("").await;
    for upgrade in [
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
    ] {
        let req = format!("GET /b/k HTTP/1.1\r\nHost: s3.test\r\n{upgrade}\r\nX-After: 1\r\n\r\n");
        let out = raw_exchange(ips::FR, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
        assert!(!out.to_ascii_lowercase().contains("upgrade"), "{out:?}");
    }
    for seen in origin.seen() {
        assert!(!seen.headers.contains_key("upgrade"), "{:?}", seen.headers);
        assert!(!seen.headers.contains_key("http2-settings"));
        assert!(!seen.headers.contains_key("connection"));
        assert_eq!(seen.headers["x-after"], "1");
    }
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn an_upstream_answering_101_opens_no_tunnel() {
    // A storage that switches protocols uninvited would turn the proxy into
    // an untraced pipe; the proxy must not follow it.
    let listener = TcpListener::bind((ips::ORIGIN, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut first = true;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    if first {
                        first = false;
                        let _ = s
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    let geo = standard_geo(Layout::IpLocationDb).build();
    let placeholder = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &placeholder, "", "", "")
        .replace(&placeholder.url(), &format!("http://{addr}"));
    let proxy = Proxy::start(&toml);
    let mut s = connect_from(ips::FR, proxy.addr()).await;
    s.write_all(
        b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(head.contains("<Code>BadGateway</Code>"), "{head}");
    // Bytes that only a tunnel would carry never reach the upstream.
    let _ = s.write_all(b"\x16\x03\x01 tunnelled bytes\r\n\r\n").await;
    let _ = tokio::time::timeout(QUIET, s.read(&mut buf)).await;
    let seen = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
    assert!(!seen.contains("tunnelled"), "{seen}");
    assert!(!seen.to_ascii_lowercase().contains("upgrade:"), "{seen}");
    task.abort();
}

// ------------------------------------------------------- client-IP spoofing

/// Every header some proxy or CDN has used to name the client.
const CLAIMS: [&str; 12] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-residency-client-ip",
];

#[tokio::test]
async fn an_untrusted_peer_cannot_claim_an_address_under_any_source() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    for source in ["peer", "x-forwarded-for", "forwarded", "proxy-protocol"] {
        let server = format!(
            "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"{source}\"",
            ips::TRUSTED
        );
        let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
        let mut headers: Vec<(&str, &str)> = CLAIMS
            .iter()
            .map(|h| {
                let v = if *h == "forwarded" {
                    "for=127.0.0.2"
                } else {
                    ips::FR
                };
                (*h, v)
            })
            .collect();
        headers.push(("x-forwarded-for", ips::TRUSTED));
        headers.push(("forwarded", "for=127.0.0.20"));
        if source != "proxy-protocol" {
            let rsp = Client::bound_to(ips::US)
                .get(proxy.addr(), "/b/k", &headers)
                .await;
            assert_eq!(rsp.status, 451, "{source}");
            assert_eq!(
                rsp.header("x-residency-decision"),
                "blocked; side=client; country=US; reason=country_not_allowed",
                "{source}"
            );
        }
        // A PROXY header (v1 and v2) from an untrusted peer is not HTTP.
        let get = "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n";
        let v1 = format!("PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\n{get}");
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90,
        ]);
        v2.extend_from_slice(get.as_bytes());
        for bytes in [v1.as_bytes(), &v2] {
            let out = raw_exchange(ips::US, proxy.addr(), bytes, QUIET).await;
            assert!(
                out.is_empty() || out.starts_with("HTTP/1.1 400"),
                "{source}: {out:?}"
            );
        }
        assert_eq!(origin.request_count(), 0, "{source}");
    }
}

/// A config trusting `TRUSTED` for `source`.
async fn trusting(source: &str) -> (TestGeo, Origin, Proxy) {
    setup(&format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"{source}\"",
        ips::TRUSTED
    ))
    .await
}

#[tokio::test]
async fn garbage_odd_spellings_and_overlong_chains_from_a_trusted_proxy_never_pass() {
    let (_g, origin, proxy) = trusting("x-forwarded-for").await;
    let fr_spellings = [
        "0x7f.0.0.2",
        "0177.0.0.2",
        "127.0.0.02",
        "127.2",
        "2130706434",
        "127.0.0.2.",
        "[127.0.0.2]",
        "127.0.0.2%eth0",
        "::ffff:127.0.0.2%eth0",
        "[::ffff:127.0.0.2%25eth0]",
        "127.0.0.2:65536",
        "127.0.0.2:0x50",
        "127.0.0.2:",
        "[::ffff:127.0.0.2]:80x",
        "\"127.0.0.2\"",
        "127.0.0.2;127.0.0.3",
        "127.0.0.2\t127.0.0.3",
        "127.0.0.2,",
        "127.0.0.2, ,",
        "for=127.0.0.2",
        "unknown",
        "_hidden",
        "localhost",
        "０.０.０.２",
    ];
    let long_garbage = "x".repeat(60_000);
    let long_chain = format!("{}{}", "127.0.0.2, ".repeat(5_000), ips::US);
    let values: Vec<&str> = fr_spellings
        .iter()
        .copied()
        .chain([long_garbage.as_str(), long_chain.as_str()])
        .collect();
    for v in values {
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", v)])
            .await;
        assert_eq!(rsp.status, 451, "{v:?}");
        let decision = rsp.header("x-residency-decision");
        assert!(
            decision.ends_with("reason=untraceable_address")
                || decision.ends_with("country=US; reason=country_not_allowed"),
            "{v:?}: {decision}"
        );
    }
    // Bytes that are not visible ASCII.
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-Forwarded-For: 127.0.0.2\xff\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out:?}");
    assert!(out.contains("reason=untraceable_address"), "{out:?}");
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn forwarded_header_tricks_from_a_trusted_proxy_never_pass() {
    let (_g, origin, proxy) = trusting("forwarded").await;
    for v in [
        "for=127.0.0.5",
        "for=\"127.0.0.2, for=127.0.0.5\"",
        "for=127.0.0.2;for=127.0.0.2",
        "for=\"127.0.0.2",
        "for=127.0.0.2\"",
        "for=_hidden",
        "for=unknown",
        "for=",
        "by=127.0.0.2",
        "for=127.0.0.2, for=\"[2001:0:4136:e378:8000:63bf:3fff:fdd2]\"",
        "for=\"[64:ff9b::7f00:5]:443\"",
        "for=\"[2002:7f00:5::1]\"",
        "for=::ffff:127.0.0.2",
        "for=127.0.0.2\\",
        "for=127.0.0.2, for=127.0.0.5;proto=https",
    ] {
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("forwarded", v)])
            .await;
        assert_eq!(
            rsp.status,
            451,
            "{v:?}: {}",
            rsp.header("x-residency-decision")
        );
    }
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn ipv4_wrapped_in_ipv6_through_proxy_protocol_keeps_its_verdict() {
    let (_g, origin, proxy) = trusting("proxy-protocol").await;
    let get = "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n";
    // US (127.0.0.5) in every IPv6 form SPEC §4 names.
    let wrapped: [[u8; 16]; 6] = [
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 5],
        [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 127, 0, 0, 5],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 5],
        [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 5],
        // 64:ff9b:1::/48: two octets, the zero u octet, two octets.
        [0, 0x64, 0xff, 0x9b, 0, 1, 127, 0, 0, 0, 5, 0, 0, 0, 0, 0],
        [0x20, 0x02, 127, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ];
    for addr in wrapped {
        let text = std::net::Ipv6Addr::from(addr).to_string();
        let v1 = format!("PROXY TCP6 {text} ::1 40000 8080\r\n{get}");
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), v1.as_bytes(), QUIET).await;
        assert!(out.starts_with("HTTP/1.1 451"), "v1 {text}: {out:?}");
        assert!(out.contains("country=US"), "v1 {text}: {out:?}");
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v2.extend_from_slice(&addr);
        v2.extend_from_slice(&[0; 15]);
        v2.push(1);
        v2.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90]);
        v2.extend_from_slice(get.as_bytes());
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), &v2, QUIET).await;
        assert!(out.starts_with("HTTP/1.1 451"), "v2 {text}: {out:?}");
        assert!(out.contains("country=US"), "v2 {text}: {out:?}");
    }
    // Odd spellings in a v1 header are a malformed header: no reply at all.
    for bad in ["0x7f.0.0.2", "127.0.0.02", "::ffff:127.0.0.2%eth0", "127.2"] {
        let v1 = format!("PROXY TCP4 {bad} 127.0.0.1 40000 8080\r\n{get}");
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), v1.as_bytes(), QUIET).await;
        assert_eq!(out, "", "{bad}");
    }
    assert_eq!(origin.request_count(), 0);
}

// ----------------------------------------------------- slow, greedy clients

#[tokio::test]
async fn a_crowd_of_slow_uploads_and_slow_readers_does_not_starve_a_good_client() {
    let (_g, origin, proxy) = setup("idle_timeout = \"30s\"").await;
    let mut slow = Vec::new();
    // Uploads that promise a megabyte and send a byte now and then.
    for _ in 0..40 {
        let mut s = connect_from(ips::DE, proxy.addr()).await;
        s.write_all(b"PUT /b/slow HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 1000000\r\n\r\nx")
            .await
            .unwrap();
        slow.push(s);
    }
    // Readers that ask for 64 MiB and never read it.
    for _ in 0..20 {
        let mut s = connect_from(ips::NO, proxy.addr()).await;
        s.write_all(b"GET /download/67108864 HTTP/1.1\r\nHost: s3.test\r\n\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    for round in 0..5 {
        for s in &mut slow[..40] {
            let _ = s.write_all(b"y").await;
        }
        let rsp = Client::bound_to(ips::FR)
            .get(proxy.addr(), &format!("/b/good-{round}"), &[])
            .await;
        assert_eq!(rsp.status, 200);
    }
    let before = proxy.peak_rss_kib();
    drop(slow);
    still_served(&proxy).await;
    // 20 stalled 64 MiB downloads are not buffered in the proxy.
    assert!(before < 200 * 1024, "peak RSS {before} KiB");
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.target != "/b/slow" || s.body_len < 1_000_000)
    );
}

// ------------------------------------------------------------------- HTTP/2

/// Raw HTTP/2 over TLS, frame by frame, for what a polite client never sends.
struct RawH2 {
    write: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    read: tokio::task::JoinHandle<Vec<u8>>,
}

impl RawH2 {
    /// Connects; the server's frames are collected until it closes or `listen` ends.
    async fn connect(source: &str, to: SocketAddr, ca: &TestCa, listen: Duration) -> Self {
        let tcp = connect_from(source, to).await;
        let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(ca, None, &[b"h2"]))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut r, mut w) = tokio::io::split(tls);
        let read = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = tokio::time::timeout(listen, r.read_to_end(&mut out)).await;
            out
        });
        w.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        w.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        Self { write: w, read }
    }

    /// Writes `bytes`; false once the server has closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.write.write_all(bytes).await.is_ok() && self.write.flush().await.is_ok()
    }

    /// The frame types the server sent, with GOAWAY and RST_STREAM error codes.
    async fn received(self) -> Vec<(u8, Option<u32>)> {
        drop(self.write);
        let bytes = self.read.await.unwrap();
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 9 <= bytes.len() {
            let len = usize::from(bytes[at]) << 16
                | usize::from(bytes[at + 1]) << 8
                | usize::from(bytes[at + 2]);
            let kind = bytes[at + 3];
            let code = match kind {
                0x7 if at + 17 <= bytes.len() => Some(&bytes[at + 13..at + 17]),
                0x3 if at + 13 <= bytes.len() => Some(&bytes[at + 9..at + 13]),
                _ => None,
            }
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
            frames.push((kind, code));
            at += 9 + len;
        }
        frames
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
fn hpack_len(n: usize, out: &mut Vec<u8>) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    let mut rest = n - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2).
fn hpack(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0];
    hpack_len(name.len(), &mut out);
    out.extend_from_slice(name.as_bytes());
    hpack_len(value.len(), &mut out);
    out.extend_from_slice(value.as_bytes());
    out
}

fn request_block(path: &str) -> Vec<u8> {
    [
        hpack(":method", "GET"),
        hpack(":scheme", "https"),
        hpack(":path", path),
        hpack(":authority", "s3.test"),
    ]
    .concat()
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

async fn h2_setup() -> (TestGeo, Origin, TestCa, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let toml = ca.with_tls_listener(&config(&geo, &origin, "", "", ""), &["s3.test"]);
    let proxy = Proxy::start(&toml);
    (geo, origin, ca, proxy)
}

/// A well-behaved client over h2 gets its 200.
async fn h2_served(proxy: &Proxy, ca: &TestCa, path: &str) {
    let cfg = client_config(ca, None, &[b"h2"]);
    let (version, rsp) = tokio::time::timeout(
        Duration::from_secs(10),
        https_get(ips::FR, proxy.tls_addr(), "s3.test", cfg, path),
    )
    .await
    .expect("a well-behaved h2 client is answered")
    .unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(rsp.status, 200);
}

#[tokio::test]
async fn h2_rapid_reset_is_cut_off_and_a_good_client_stays_served() {
    let (_g, origin, ca, proxy) = h2_setup().await;
    let mut attacker =
        RawH2::connect(ips::US, proxy.tls_addr(), &ca, Duration::from_secs(20)).await;
    let block = request_block("/b/reset");
    let mut sent = 0u32;
    let mut open = true;
    // HEADERS then RST_STREAM(CANCEL), 10 000 times, in batches.
    'attack: for batch in 0..100u32 {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            let id = 2 * (batch * 100 + i) + 1;
            bytes.extend(frame(0x1, END_STREAM | END_HEADERS, id, &block));
            bytes.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
        }
        if !attacker.send(&bytes).await {
            open = false;
            break 'attack;
        }
        sent += 100;
        if batch % 20 == 0 {
            h2_served(&proxy, &ca, &format!("/b/during-{batch}")).await;
        }
    }
    let frames = attacker.received().await;
    // The server gives up on the attacker (GOAWAY, ENHANCE_YOUR_CALM = 0xb)
    // or at least never spends an upstream request on it.
    let goaway = frames.iter().find(|(k, _)| *k == 0x7);
    assert!(
        !open || goaway.is_some(),
        "{sent} resets sent without the server objecting: {frames:?}"
    );
    if let Some((_, code)) = goaway {
        assert_eq!(*code, Some(0xb), "{frames:?}");
    }
    assert!(
        origin.seen().iter().all(|s| s.target != "/b/reset"),
        "a blocked client's streams never reach the origin"
    );
    h2_served(&proxy, &ca, "/b/after").await;
    still_served(&proxy).await;
}

#[tokio::test]
async fn h2_continuation_flood_is_cut_off_and_a_good_client_stays_served() {
    let (_g, origin, ca, proxy) = h2_setup().await;
    let mut attacker =
        RawH2::connect(ips::FR, proxy.tls_addr(), &ca, Duration::from_secs(20)).await;
    // A header block that never ends: HEADERS without END_HEADERS, then
    // CONTINUATION frames of 16 KiB each, up to 32 MiB.
    assert!(
        attacker
            .send(&frame(0x1, END_STREAM, 1, &request_block("/b/flood")))
            .await
    );
    let filler = hpack("x-flood", &"a".repeat(16_000));
    let mut sent = 0usize;
    let mut open = true;
    for _ in 0..2048 {
        if !attacker.send(&frame(0x9, 0, 1, &filler)).await {
            open = false;
            break;
        }
        sent += filler.len();
    }
    let frames = attacker.received().await;
    assert!(
        !open || frames.iter().any(|(k, _)| *k == 0x7),
        "{sent} bytes of one header block accepted: {frames:?}"
    );
    assert_eq!(origin.request_count(), 0);
    h2_served(&proxy, &ca, "/b/after").await;
    still_served(&proxy).await;
    // One connection refused: one record, whether h2 said GOAWAY or not.
    let refused: Vec<_> = proxy
        .audit_records()
        .into_iter()
        .filter(|r| r["decision"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["reason"], "h2_connection_error");
}

/// One h2 request from an FR client with extra header fields.
async fn h2_request(
    proxy: &Proxy,
    ca: &TestCa,
    path: &str,
    fields: &[(String, String)],
) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let tcp = connect_from(ips::FR, proxy.tls_addr()).await;
    let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(ca, None, &[b"h2"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("https://s3.test{path}"));
    for (k, v) in fields {
        req = req.header(k, v);
    }
    let rsp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn h2_oversize_and_numerous_headers_are_refused() {
    let (_g, origin, ca, proxy) = h2_setup().await;
    // More fields than max_headers (100): 431, as over HTTP/1.1.
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let (status, body) = h2_request(&proxy, &ca, "/b/many", &many).await;
    assert_eq!(status, 431);
    assert!(
        body.contains("<Code>RequestHeaderFieldsTooLarge</Code>"),
        "{body}"
    );
    let fine: Vec<(String, String)> = (0..90)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    assert_eq!(h2_request(&proxy, &ca, "/b/fine", &fine).await.0, 200);

    // A header block over max_header_bytes (64 KiB), in frames, then more
    // streams than the 100 concurrent allowed.
    let mut attacker = RawH2::connect(ips::FR, proxy.tls_addr(), &ca, QUIET).await;
    let mut block = request_block("/b/oversize");
    for i in 0..8 {
        block.extend(hpack(&format!("x-big-{i}"), &"b".repeat(10_000)));
    }
    let mut bytes = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(16_000).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let (kind, flags) = match (i, last) {
            (0, true) => (0x1, END_STREAM | END_HEADERS),
            (0, false) => (0x1, END_STREAM),
            (_, true) => (0x9, END_HEADERS),
            (_, false) => (0x9, 0),
        };
        bytes.extend(frame(kind, flags, 1, c));
    }
    for i in 0..200u32 {
        bytes.extend(frame(
            0x1,
            END_STREAM | END_HEADERS,
            3 + 2 * i,
            &request_block("/b/crowd"),
        ));
    }
    assert!(attacker.send(&bytes).await);
    let frames = attacker.received().await;
    // Refused stream by stream (RST_STREAM), not by killing the connection.
    assert!(frames.iter().any(|(k, _)| *k == 0x3), "{frames:?}");
    assert!(frames.iter().all(|(k, _)| *k != 0x7), "{frames:?}");
    let seen = targets(&origin);
    assert!(!seen.contains(&"/b/oversize".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"/b/many".to_owned()), "{seen:?}");
    assert!(seen.iter().filter(|t| *t == "/b/crowd").count() <= 200);
    h2_served(&proxy, &ca, "/b/after").await;
}

// ------------------------------------------------------ route spellings
// Issue 13, point 2: routes are chosen on what the storage acts on, so no
// spelling of a protected bucket or host reaches a laxer route.

/// An enforce route for a host, one for a bucket prefix, one for a
/// `buckets` list, one to another storage, and a monitor catch-all, with
/// virtual-hosting under `s3.example`.
async fn spelling_setup() -> (TestGeo, Origin, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let other = Origin::start(ips::ORIGIN).await;
    let mut toml = config(
        &geo,
        &origin,
        r#"s3_domains = ["s3.example"]"#,
        "",
        r#"hosts = ["records.s3.test"]"#,
    );
    toml.push_str(&format!(
        r#"
[[route]]
name = "hds"
path_prefix = "/hds-bucket/"
upstreams = ["{0}"]

[[route]]
name = "vault"
buckets = ["vault-bucket"]
upstreams = ["{0}"]

[[route]]
name = "elsewhere"
path_prefix = "/other-bucket/"
upstreams = ["{1}"]

[[route]]
name = "catch-all"
mode = "monitor"
upstreams = ["{0}"]
"#,
        origin.url(),
        other.url()
    ));
    let proxy = Proxy::start(&toml);
    (geo, origin, other, proxy)
}

/// Every spelling of a protected bucket or host from issue 13 and its
/// class: (target, Host, the route the storage's reading belongs to).
const SPELLINGS: &[(&str, &str, &str)] = &[
    ("/%68ds-bucket/patient.pdf", "storage.test", "hds"),
    ("/hds%2Dbucket/patient.pdf", "storage.test", "hds"),
    ("/hds%2dbucket/patient.pdf", "storage.test", "hds"),
    ("//hds-bucket/patient.pdf", "storage.test", "hds"),
    ("/hds-bucket?list-type=2", "storage.test", "hds"),
    ("/hds-bucket/?list-type=2", "storage.test", "hds"),
    ("/hds-bucket%2Fpatient.pdf", "storage.test", "hds"),
    ("/public/../hds-bucket/patient.pdf", "storage.test", "hds"),
    ("/%2E%2E/hds-bucket/patient.pdf", "storage.test", "hds"),
    ("/./hds-bucket/patient.pdf", "storage.test", "hds"),
    ("/patient.pdf", "hds-bucket.s3.example", "hds"),
    ("/patient.pdf", "HDS-Bucket.s3.example.", "hds"),
    ("/vault-bucket?list-type=2", "storage.test", "vault"),
    ("/vault%2Dbucket/a.pdf", "storage.test", "vault"),
    ("/?list-type=2", "vault-bucket.s3.example", "vault"),
    ("/a.pdf", "vault-bucket.s3.example.:8080", "vault"),
    ("/a.pdf", "vault-bucket.storage.test", "vault"),
    ("/b/patient.pdf", "records.s3.test.", "s3"),
    ("/b/patient.pdf", "RECORDS.S3.TEST", "s3"),
    ("/b/patient.pdf", "records.s3.test.:8080", "s3"),
];

fn spelled(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn every_spelling_of_a_protected_bucket_or_host_is_refused_451_by_its_enforce_route() {
    let (_g, origin, other, proxy) = spelling_setup().await;
    for (target, host, route) in SPELLINGS {
        let out = raw_exchange(
            ips::US,
            proxy.addr(),
            spelled(target, host).as_bytes(),
            QUIET,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 451"), "{target} {host}: {out}");
        assert!(
            out.contains("blocked; side=client; country=US; reason=country_not_allowed"),
            "{target} {host}: {out}"
        );
        let records = proxy.audit_records();
        let last = records.last().unwrap();
        assert_eq!(last["route"], *route, "{target} {host}: {last}");
    }
    // Absolute-form: its authority is the host (and must agree with Host).
    let absolute = "GET http://Records.S3.Test.:8080/b/k HTTP/1.1\r\nHost: records.s3.test.:8080\r\nConnection: close\r\n\r\n";
    let out = raw_exchange(ips::US, proxy.addr(), absolute.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    assert_eq!(proxy.audit_records().last().unwrap()["route"], "s3");
    let disagreeing = "GET http://records.s3.test./b/k HTTP/1.1\r\nHost: records.s3.test\r\nConnection: close\r\n\r\n";
    let out = raw_exchange(ips::US, proxy.addr(), disagreeing.as_bytes(), QUIET).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(origin.request_count(), 0, "{:?}", targets(&origin));
    assert_eq!(other.request_count(), 0);
    // The set-up is real: the catch-all lets the US client through, flagged.
    let out = raw_exchange(
        ips::US,
        proxy.addr(),
        spelled("/public/a", "storage.test").as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("flagged; side=client"), "{out}");
}

#[tokio::test]
async fn spellings_are_forwarded_byte_exact_for_an_allowed_client() {
    let (_g, origin, _other, proxy) = spelling_setup().await;
    for (target, host, _) in SPELLINGS {
        let out = raw_exchange(
            ips::FR,
            proxy.addr(),
            spelled(target, host).as_bytes(),
            QUIET,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{target} {host}: {out}");
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), SPELLINGS.len());
    for (s, (target, host, _)) in seen.iter().zip(SPELLINGS) {
        assert_eq!(s.target, *target);
        assert_eq!(s.headers["host"], *host);
    }
}

#[tokio::test]
async fn spellings_the_storages_read_differently_are_refused_400_when_no_route_is_strictest() {
    let (_g, origin, other, proxy) = spelling_setup().await;
    for (target, code) in [
        // Collapsed, or with %2F as a separator: another storage's route;
        // as sent: the catch-all.
        ("//other-bucket/x", "InvalidURI"),
        ("/other-bucket%2Fx", "InvalidURI"),
        ("/x/../other-bucket/x", "InvalidURI"),
        // Not percent-encoding at all.
        ("/hds-bucket/%zz", "InvalidURI"),
        ("/%6", "InvalidURI"),
    ] {
        let out = raw_exchange(
            ips::FR,
            proxy.addr(),
            spelled(target, "storage.test").as_bytes(),
            QUIET,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{target}: {out}");
        assert!(
            out.contains(&format!("<Code>{code}</Code>")),
            "{target}: {out}"
        );
    }
    for host in ["records.s3.test..", "rec%6Frds.s3.test", "[::1"] {
        let out = raw_exchange(
            ips::FR,
            proxy.addr(),
            spelled("/b/k", host).as_bytes(),
            QUIET,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{host}: {out}");
    }
    assert_eq!(origin.request_count(), 0, "{:?}", targets(&origin));
    assert_eq!(other.request_count(), 0);
    // Every refusal left its record.
    let records = proxy.audit_records();
    assert_eq!(records.len(), 8);
    assert!(records.iter().all(|r| r["status"] == 400), "{records:?}");
    // A canonical spelling reaches the other storage.
    let out = raw_exchange(
        ips::FR,
        proxy.addr(),
        spelled("/other-bucket/x", "storage.test").as_bytes(),
        QUIET,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(other.request_count(), 1);
}

#[tokio::test]
async fn h2_spellings_of_a_protected_bucket_or_host_meet_their_enforce_route() {
    use http_body_util::Empty;
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let (cert, key) = ca.write_leaf("server", &["s3.test"]);
    let mut toml = config(&geo, &origin, "", "", r#"hosts = ["records.s3.test"]"#).replace(
        "[admin]",
        &format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[admin]",
            cert.display(),
            key.display()
        ),
    );
    toml.push_str(&format!(
        "\n[[route]]\nname = \"hds\"\npath_prefix = \"/hds-bucket/\"\nupstreams = [\"{0}\"]\n\
         \n[[route]]\nname = \"catch-all\"\nmode = \"monitor\"\nupstreams = [\"{0}\"]\n",
        origin.url()
    ));
    let proxy = Proxy::start(&toml);
    // :authority and :path as the client wrote them.
    for uri in [
        "https://storage.test/%68ds-bucket/patient.pdf",
        "https://storage.test//hds-bucket/patient.pdf",
        "https://storage.test/hds-bucket?list-type=2",
        "https://records.s3.test./b/k",
        "https://RECORDS.s3.test.:8443/b/k",
    ] {
        let tcp = connect_from(ips::US, proxy.tls_addr()).await;
        let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_config(&ca, None, &[b"h2"]))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(uri)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 451, "{uri}");
    }
    assert_eq!(origin.request_count(), 0, "{:?}", targets(&origin));
}

// ------------------------------------------- every refusal leaves evidence
// (issue 13, point 3; HTTP/1.1 and pre-routing refusals: `refusals.rs`)

/// Waits until the proxy's audit file holds `n` records.
async fn audit_records(proxy: &Proxy, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        let r = proxy.audit_records();
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "expected {n} audit records, found {}",
        proxy.audit_records().len()
    );
}

/// The value of the series `name{labels}` (labels in sorted order), 0 if absent.
fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

const REFUSED_NO_ROUTE: &str = r#"residency_requests_total{decision="refused",route="(none)"}"#;

/// h2 refuses these itself, before the proxy's service sees a request: a
/// header block over `max_header_bytes` (its own 431, then a reset) and a
/// malformed request (a reset with PROTOCOL_ERROR). Each leaves exactly one
/// record naming the client, and one count.
#[tokio::test]
async fn h2_layer_refusals_leave_one_record_and_one_count_each() {
    let (_g, origin, ca, proxy) = h2_setup().await;
    let mut oversize = request_block("/b/oversize");
    for i in 0..8 {
        oversize.extend(hpack(&format!("x-big-{i}"), &"b".repeat(10_000)));
    }
    let mut oversize_frames = Vec::new();
    let chunks: Vec<&[u8]> = oversize.chunks(16_000).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let (kind, flags) = match (i, last) {
            (0, _) => (0x1, END_STREAM),
            (_, true) => (0x9, END_HEADERS),
            (_, false) => (0x9, 0),
        };
        oversize_frames.extend(frame(kind, flags, 1, c));
    }
    // No :path: malformed (RFC 9113 §8.3.1).
    let no_path = [
        hpack(":method", "GET"),
        hpack(":scheme", "https"),
        hpack(":authority", "s3.test"),
    ]
    .concat();
    let malformed = frame(0x1, END_STREAM | END_HEADERS, 1, &no_path);
    let cases = [
        (oversize_frames, 431, "h2_header_list_too_large"),
        (malformed, 0, "h2_protocol_error"),
    ];
    for (n, (bytes, status, reason)) in cases.iter().enumerate() {
        let before = proxy.metrics().await;
        let mut attacker = RawH2::connect(ips::CN, proxy.tls_addr(), &ca, QUIET).await;
        assert!(attacker.send(bytes).await);
        let frames = attacker.received().await;
        // h2's 431 (HEADERS) or a reset (RST_STREAM).
        assert!(
            frames.iter().any(|(k, _)| *k == 0x1 || *k == 0x3),
            "{reason}: {frames:?}"
        );
        // Every frame the server wrote is behind us, and so are the records.
        let all = audit_records(&proxy, n + 1).await;
        assert_eq!(all.len(), n + 1, "{reason}: exactly one record: {all:#?}");
        let r = &all[n];
        assert_eq!(r["decision"], "refused", "{r}");
        assert_eq!(r["reason"], *reason, "{r}");
        assert_eq!(r["status"], *status, "{r}");
        assert_eq!(r["client_ip"], ips::CN, "{r}");
        assert_eq!(r["client_country"], "CN", "{r}");
        assert_eq!(r["client_ip_source"], "peer", "{r}");
        let after = proxy.metrics().await;
        assert_eq!(
            metric(&after, REFUSED_NO_ROUTE),
            metric(&before, REFUSED_NO_ROUTE) + 1,
            "{reason}"
        );
        let by_reason = format!(r#"residency_refused_requests_total{{reason="{reason}"}}"#);
        assert_eq!(
            metric(&after, &by_reason),
            metric(&before, &by_reason) + 1,
            "{reason}"
        );
    }
    assert_eq!(origin.request_count(), 0);
    crate::support::proxy::assert_audit_verifies(&[&proxy.audit_path()]);
    h2_served(&proxy, &ca, "/b/after").await;
}

/// A proxy whose protocol-error records are limited to `max` per `window`.
async fn budgeted(max: u64, window: &str) -> (TestGeo, Origin, Proxy, tempfile::TempDir) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[audit]\npath = \"{}\"\nprotocol_error_records = {max}\nprotocol_error_window = \"{window}\"\n",
        config(&geo, &origin, "", "", ""),
        dir.path().join("a.jsonl").display()
    );
    let proxy = Proxy::start(&toml);
    (geo, origin, proxy, dir)
}

use crate::support::proxy::records_in;

/// A flood of garbage cannot become a flood of records: within one window
/// exactly `protocol_error_records` are written, every other refusal is
/// counted (dropped counter == N - budget), all N are counted as refused
/// requests and in `/transfers`, the chain verifies, and a good client is
/// still served.
#[tokio::test]
async fn a_flood_of_garbage_is_counted_whole_and_recorded_within_the_budget() {
    const N: u64 = 25;
    const BUDGET: u64 = 5;
    let (_g, _origin, proxy, dir) = budgeted(BUDGET, "1h").await;
    for _ in 0..N {
        let answer = raw_exchange(ips::CN, proxy.addr(), b"GARBAGE\r\n\r\n", QUIET).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    let path = dir.path().join("a.jsonl");
    // A refusal is counted as its connection ends, which the client may
    // see first: wait for the last count.
    let mut m = proxy.metrics().await;
    for _ in 0..500 {
        if metric(&m, REFUSED_NO_ROUTE) >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        m = proxy.metrics().await;
    }
    assert_eq!(metric(&m, REFUSED_NO_ROUTE), N, "{m}");
    assert_eq!(
        metric(&m, "residency_audit_protocol_errors_dropped_total"),
        N - BUDGET,
        "{m}"
    );
    // Each record is written before its count: all there (a last one may
    // still be in its worker's batch).
    let mut recs = records_in(&path);
    for _ in 0..500 {
        if recs.len() as u64 >= BUDGET {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        recs = records_in(&path);
    }
    assert_eq!(recs.len() as u64, BUDGET, "{recs:#?}");
    assert!(
        recs.iter()
            .all(|r| r["client_ip"] == ips::CN && r["decision"] == "refused")
    );
    let rows = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/transfers", &[])
        .await;
    let v: serde_json::Value = serde_json::from_slice(&rows.body).unwrap();
    assert_eq!(v["attempts_refused"][0]["country"], "CN", "{v:#}");
    assert_eq!(v["attempts_refused"][0]["refused"], N, "{v:#}");
    assert_eq!(v["transfers"], serde_json::json!([]), "{v:#}");
    crate::support::proxy::assert_audit_verifies(&[&path]);
    still_served(&proxy).await;
}

/// What was not recorded one by one is summarised when its window ends:
/// records + the summaries' `unrecorded` == every refusal, and the
/// summaries add up to the dropped counter.
#[tokio::test]
async fn refusals_over_the_budget_are_summarised_when_the_window_ends() {
    const N: u64 = 12;
    let (_g, _origin, proxy, dir) = budgeted(1, "2s").await;
    for _ in 0..N {
        raw_exchange(ips::CN, proxy.addr(), b"GARBAGE\r\n\r\n", QUIET).await;
    }
    let path = dir.path().join("a.jsonl");
    let mut settled = None;
    for _ in 0..1000 {
        let dropped = metric(
            &proxy.metrics().await,
            "residency_audit_protocol_errors_dropped_total",
        );
        let recs = records_in(&path);
        let summarised: u64 = recs.iter().filter_map(|r| r["unrecorded"].as_u64()).sum();
        if dropped > 0 && summarised == dropped {
            settled = Some((recs, dropped));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (recs, dropped) = settled.expect("the dropped refusals are summarised");
    let (summaries, singles): (Vec<_>, Vec<_>) =
        recs.iter().partition(|r| r["unrecorded"].is_u64());
    assert_eq!(singles.len() as u64 + dropped, N, "{recs:#?}");
    for s in &summaries {
        assert_eq!(s["decision"], "refused", "{s}");
        assert_eq!(s["reason"], "protocol_errors_unrecorded", "{s}");
        assert_eq!(s["status"], 0, "{s}");
    }
    let out = std::process::Command::new(crate::support::proxy::BIN)
        .args(["transfers", "--format", "json", "--audit"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unrecorded_refusals"], dropped, "{v:#}");
    crate::support::proxy::assert_audit_verifies(&[&path]);
}

/// Streams over the concurrency limit are refused one by one
/// (`REFUSED_STREAM`): each reset the client receives is one count, and one
/// record or one dropped-and-summarised refusal.
#[tokio::test]
async fn h2_refused_streams_are_counted_one_for_one() {
    let (_g, _origin, ca, proxy) = h2_setup().await;
    let mut attacker = RawH2::connect(ips::CN, proxy.tls_addr(), &ca, QUIET).await;
    let mut bytes = Vec::new();
    for i in 0..300u32 {
        bytes.extend(frame(
            0x1,
            END_STREAM | END_HEADERS,
            1 + 2 * i,
            &request_block("/b/crowd"),
        ));
    }
    assert!(attacker.send(&bytes).await);
    let frames = attacker.received().await;
    let refused = frames.iter().filter(|f| **f == (0x3, Some(7))).count() as u64;
    assert!(refused > 0, "{frames:?}");
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"residency_refused_requests_total{reason="h2_refused_stream"}"#
        ),
        refused
    );
    let records = proxy
        .audit_records()
        .iter()
        .filter(|r| r["reason"] == "h2_refused_stream")
        .inspect(|r| assert_eq!(r["client_ip"], ips::CN, "{r}"))
        .count() as u64;
    assert_eq!(
        records + metric(&m, "residency_audit_protocol_errors_dropped_total"),
        refused
    );
    crate::support::proxy::assert_audit_verifies(&[&proxy.audit_path()]);
}

/// Garbage instead of the HTTP/2 preface: h2 ends the connection without a
/// GOAWAY; it is still one record and one count.
#[tokio::test]
async fn h2_garbage_instead_of_the_preface_leaves_one_record() {
    let (_g, _origin, ca, proxy) = h2_setup().await;
    let tcp = connect_from(ips::CN, proxy.tls_addr()).await;
    let name = rustls::pki_types::ServerName::try_from("s3.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&ca, None, &[b"h2"]))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: s3.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(QUIET, tls.read_to_end(&mut out)).await;
    let mut m = proxy.metrics().await;
    for _ in 0..500 {
        if metric(&m, REFUSED_NO_ROUTE) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        m = proxy.metrics().await;
    }
    assert_eq!(metric(&m, REFUSED_NO_ROUTE), 1, "{m}");
    let r = audit_records(&proxy, 1).await;
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["reason"], "h2_connection_error", "{}", r[0]);
    assert_eq!(r[0]["client_ip"], ips::CN, "{}", r[0]);
    assert_eq!(r[0]["status"], 0, "{}", r[0]);
}

// ----------------------------------- forwarding chains that hide their hop

/// The attack of issue 13: a US client behind a trusted proxy that appends
/// what it saw (nginx: `$http_forwarded, for=$remote_addr`, or a field line
/// of its own) writes a value that would swallow the appended hop. Never
/// believed: untraceable, or the appended US hop itself.
#[tokio::test]
async fn a_client_value_cannot_swallow_the_hop_its_trusted_proxy_appended() {
    let untraceable = "blocked; side=client; country=unknown; reason=untraceable_address";
    let (_g, origin, proxy) = trusting("forwarded").await;
    let us = format!("for={}", ips::US);
    for client in [
        "for=127.0.0.2;x=\"",
        "for=127.0.0.2;proto=\"",
        "for=127.0.0.2;by=\"",
        "for=127.0.0.2;x=\"\\\"",
        "for=127.0.0.2;x=\"a,b;c\\",
        "for=\"127.0.0.2",
        "x=\", for=127.0.0.2",
    ] {
        // Appended to the client's field line, as nginx does.
        let appended = format!("{client}, {us}");
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("forwarded", &appended)])
            .await;
        assert_eq!(rsp.status, 451, "{appended:?}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            untraceable,
            "{appended:?}"
        );
        // As a field line of its own: a quote never spans field lines.
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(
                proxy.addr(),
                "/b/k",
                &[("forwarded", client), ("forwarded", &us)],
            )
            .await;
        assert_eq!(rsp.status, 451, "{client:?} / {us}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            untraceable,
            "{client:?}"
        );
    }
    // Well-formed values with quoted commas and escapes: the appended hop decides.
    for client in [
        "for=127.0.0.2;x=\"a, for=127.0.0.2\"",
        "for=127.0.0.2;x=\"\\\", for=127.0.0.2\"",
    ] {
        let appended = format!("{client}, {us}");
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("forwarded", &appended)])
            .await;
        assert_eq!(
            rsp.header("x-residency-decision"),
            "blocked; side=client; country=US; reason=country_not_allowed",
            "{appended:?}"
        );
    }
    // The same request with the FR client's own hop is served: the chain
    // grammar does not refuse what nginx writes for an honest client.
    let honest = format!("for={};proto=https, for={}", ips::US, ips::FR);
    let rsp = Client::bound_to(ips::TRUSTED)
        .get(proxy.addr(), "/b/k", &[("forwarded", &honest)])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);

    // X-Forwarded-For has no quoting; a quote or backslash is never believed.
    let (_g, origin, proxy) = trusting("x-forwarded-for").await;
    for client in ["127.0.0.2\"", "\"127.0.0.2", "127.0.0.2\\"] {
        let appended = format!("{client}, {}", ips::US);
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", &appended)])
            .await;
        assert_eq!(
            rsp.header("x-residency-decision"),
            untraceable,
            "{appended:?}"
        );
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(
                proxy.addr(),
                "/b/k",
                &[("x-forwarded-for", client), ("x-forwarded-for", ips::US)],
            )
            .await;
        assert_eq!(
            rsp.header("x-residency-decision"),
            untraceable,
            "{client:?}"
        );
    }
    assert_eq!(origin.request_count(), 0);
}

/// A trusted proxy that names no client is not the client (issue 13): the
/// load balancer's own, allowed, address is not lent to whoever is behind it.
#[tokio::test]
async fn a_trusted_proxy_naming_no_client_does_not_lend_its_address() {
    let untraceable = "reason=untraceable_address";
    let (_g, origin, proxy) = trusting("proxy-protocol").await;
    for header in [
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec(),
        b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x00".to_vec(),
    ] {
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), &bytes, QUIET).await;
        assert!(out.starts_with("HTTP/1.1 451"), "{header:?}: {out:?}");
        assert!(out.contains(untraceable), "{header:?}: {out:?}");
    }
    assert_eq!(origin.request_count(), 0);
    for source in ["x-forwarded-for", "forwarded"] {
        let (_g, origin, proxy) = trusting(source).await;
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[])
            .await;
        assert_eq!(rsp.status, 451, "{source}");
        assert!(
            rsp.header("x-residency-decision").ends_with(untraceable),
            "{source}"
        );
        assert_eq!(origin.request_count(), 0, "{source}");
    }
}
