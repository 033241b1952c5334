//! SPEC §4 client address: peers, trusted proxies, forwarding headers, the
//! PROXY protocol, and IPv6 wrappings of IPv4 addresses.

use std::time::Duration;

use crate::support::{Client, Layout, Origin, Proxy, config, ips, raw_exchange, standard_geo};

async fn setup(source: &str) -> (crate::support::TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"{source}\"",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
    (geo, origin, proxy)
}

#[tokio::test]
async fn spoofed_xff_from_untrusted_peer_is_ignored() {
    let (_g, origin, proxy) = setup("x-forwarded-for").await;
    let rsp = Client::bound_to(ips::US)
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-forwarded-for", ips::FR), ("forwarded", "for=127.0.0.2")],
        )
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=US; reason=country_not_allowed"
    );
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn trusted_xff_is_honoured_rightmost_untrusted_first() {
    let (_g, origin, proxy) = setup("x-forwarded-for").await;
    let via = Client::bound_to(ips::TRUSTED);
    // The trusted proxy reports a US client: blocked.
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("x-forwarded-for", ips::US)])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=US; reason=country_not_allowed"
    );
    // A US client that forged an FR entry: the right-most untrusted entry is the US one.
    let forged = format!("{}, {}", ips::FR, ips::US);
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("x-forwarded-for", &forged)])
        .await;
    assert_eq!(rsp.status, 451);
    // An FR client behind the trusted proxy: allowed, and the origin sees the chain extended.
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("x-forwarded-for", ips::FR)])
        .await;
    assert_eq!(rsp.status, 200);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["x-forwarded-for"],
        format!("{}, {}", ips::FR, ips::TRUSTED)
    );
}

#[tokio::test]
async fn malformed_xff_from_trusted_proxy_is_untraceable() {
    let (_g, origin, proxy) = setup("x-forwarded-for").await;
    for bad in [
        "unknown",
        "127.0.0.002",
        "0x7f.0.0.2",
        "fe80::1%eth0",
        "127.0.0.2 127.0.0.3",
    ] {
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", bad)])
            .await;
        assert_eq!(rsp.status, 451, "{bad}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            "blocked; side=client; country=unknown; reason=untraceable_address",
            "{bad}"
        );
    }
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn ipv6_wrapped_us_addresses_are_blocked() {
    let (_g, origin, proxy) = setup("x-forwarded-for").await;
    // 127.0.0.5 is US; every IPv6 form that embeds it must be judged as it.
    for wrapped in [
        "::ffff:127.0.0.5",
        "::127.0.0.5",
        "64:ff9b::7f00:5",
        "64:ff9b:1:7f00:0:500::",
        "2002:7f00:5::1",
    ] {
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", wrapped)])
            .await;
        assert_eq!(rsp.status, 451, "{wrapped}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            "blocked; side=client; country=US; reason=country_not_allowed",
            "{wrapped}"
        );
    }
    // The same wrappings of an FR address pass.
    for wrapped in ["::ffff:127.0.0.2", "64:ff9b::7f00:2", "2002:7f00:2::"] {
        let rsp = Client::bound_to(ips::TRUSTED)
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", wrapped)])
            .await;
        assert_eq!(rsp.status, 200, "{wrapped}");
    }
    // Teredo hides the client.
    let rsp = Client::bound_to(ips::TRUSTED)
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-forwarded-for", "2001:0:4136:e378:8000:63bf:3fff:fdd2")],
        )
        .await;
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=unknown; reason=untraceable_address"
    );
    assert_eq!(origin.request_count(), 3);
}

#[tokio::test]
async fn ipv4_mapped_socket_peer_is_judged_as_ipv4() {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d peers.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml =
        config(&geo, &origin, "", "", "").replace("\"127.0.0.1:0\"", "\"[::ffff:127.0.0.1]:0\"");
    let proxy = Proxy::start(&toml);
    let to = std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), proxy.addr().port());
    let rsp = Client::bound_to(ips::US).get(to, "/b/k", &[]).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=US; reason=country_not_allowed"
    );
    let rsp = Client::bound_to(ips::FR).get(to, "/b/k", &[]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn forwarded_header_from_trusted_proxy() {
    let (_g, origin, proxy) = setup("forwarded").await;
    let via = Client::bound_to(ips::TRUSTED);
    let rsp = via
        .get(
            proxy.addr(),
            "/b/k",
            &[("forwarded", "for=127.0.0.5;proto=https")],
        )
        .await;
    assert_eq!(rsp.status, 451);
    let rsp = via
        .get(
            proxy.addr(),
            "/b/k",
            &[("forwarded", "for=\"[::ffff:127.0.0.5]:443\"")],
        )
        .await;
    assert_eq!(rsp.status, 451);
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("forwarded", "for=127.0.0.2")])
        .await;
    assert_eq!(rsp.status, 200);
    // X-Forwarded-For is not the configured source: ignored.
    let rsp = via
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-forwarded-for", ips::US), ("forwarded", "for=127.0.0.2")],
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_from_trusted_peer() {
    let (_g, origin, proxy) = setup("proxy-protocol").await;
    let get = "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n";
    let quiet = Duration::from_secs(3);

    let v1_us = format!("PROXY TCP4 127.0.0.5 127.0.0.1 40000 8080\r\n{get}");
    let out = raw_exchange(ips::TRUSTED, proxy.addr(), v1_us.as_bytes(), quiet).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    assert!(out.contains("country=US"), "{out}");

    let v1_fr = format!("PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\n{get}");
    let out = raw_exchange(ips::TRUSTED, proxy.addr(), v1_fr.as_bytes(), quiet).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // v2, TCP over IPv4, source 127.0.0.6 (CN).
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 127, 0, 0, 6, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90,
    ]);
    v2.extend_from_slice(get.as_bytes());
    let out = raw_exchange(ips::TRUSTED, proxy.addr(), &v2, quiet).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    assert!(out.contains("country=CN"), "{out}");

    // An untrusted peer cannot announce anything: its PROXY line is not HTTP.
    let out = raw_exchange(ips::US, proxy.addr(), v1_fr.as_bytes(), quiet).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    // A trusted peer with a malformed header is disconnected without a reply.
    let out = raw_exchange(
        ips::TRUSTED,
        proxy.addr(),
        format!("PROXY TCP4 127.0.0.002 127.0.0.1 1 2\r\n{get}").as_bytes(),
        quiet,
    )
    .await;
    assert_eq!(out, "");
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn incoming_residency_headers_are_stripped() {
    let (_g, origin, proxy) = setup("x-forwarded-for").await;
    let rsp = Client::bound_to(ips::FR)
        .get(
            proxy.addr(),
            "/b/k",
            &[
                ("x-residency-decision", "allowed"),
                ("x-residency-client-country", "FR"),
            ],
        )
        .await;
    assert_eq!(rsp.status, 200);
    let seen = origin.seen();
    assert!(
        seen[0]
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-residency-")),
        "{:?}",
        seen[0].headers
    );
    // The origin's forged decision header never reaches the client either.
    assert_ne!(rsp.header("x-residency-decision"), "forged-by-origin");
}

/// A proxy trusting `TRUSTED` for `source`, with `extra` server settings.
async fn setup_with(source: &str, extra: &str) -> (crate::support::TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"{source}\"\n{extra}",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
    (geo, origin, proxy)
}

/// Every PROXY header that names no client: v1 `UNKNOWN`, v2 `LOCAL`, v2
/// `PROXY` with the unspecified family, v2 `PROXY` over `AF_UNIX`.
fn nameless_proxy_headers() -> Vec<(&'static str, Vec<u8>)> {
    let sig = b"\r\n\r\n\0\r\nQUIT\n";
    let v2 = |command: u8, family: u8, block: &[u8]| {
        let mut h = sig.to_vec();
        h.extend_from_slice(&[command, family]);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    };
    vec![
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "v1 UNKNOWN with addresses",
            b"PROXY UNKNOWN 127.0.0.2 127.0.0.1 40000 8080\r\n".to_vec(),
        ),
        ("v2 LOCAL", v2(0x20, 0x00, &[])),
        (
            "v2 LOCAL with an address block",
            v2(
                0x20,
                0x11,
                &[127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90],
            ),
        ),
        ("v2 UNSPEC", v2(0x21, 0x00, &[])),
        ("v2 AF_UNIX", v2(0x21, 0x31, &[b'/'; 216])),
    ]
}

const GET: &str = "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn a_trusted_proxy_naming_no_client_is_untraceable_by_default() {
    let quiet = Duration::from_secs(3);
    let untraceable = "blocked; side=client; country=unknown; reason=untraceable_address";
    let (_g, origin, proxy) = setup_with("proxy-protocol", "").await;
    for (what, header) in nameless_proxy_headers() {
        let mut bytes = header;
        bytes.extend_from_slice(GET.as_bytes());
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), &bytes, quiet).await;
        assert!(out.starts_with("HTTP/1.1 451"), "{what}: {out}");
        assert!(out.contains(untraceable), "{what}: {out}");
    }
    assert_eq!(origin.request_count(), 0);
    for source in ["x-forwarded-for", "forwarded"] {
        let (_g, origin, proxy) = setup_with(source, "").await;
        let via = Client::bound_to(ips::TRUSTED);
        // No header at all (a health check), and a chain of trusted hops only.
        let only_trusted = if source == "forwarded" {
            format!("for={}", ips::TRUSTED)
        } else {
            ips::TRUSTED.to_owned()
        };
        for headers in [vec![], vec![(source, only_trusted.as_str())]] {
            let rsp = via.get(proxy.addr(), "/b/k", &headers).await;
            assert_eq!(rsp.status, 451, "{source} {headers:?}");
            assert_eq!(
                rsp.header("x-residency-decision"),
                untraceable,
                "{source} {headers:?}"
            );
        }
        assert_eq!(origin.request_count(), 0, "{source}");
    }
}

#[tokio::test]
async fn trusted_proxy_without_client_peer_judges_the_proxy_itself() {
    let quiet = Duration::from_secs(3);
    let opt_in = "trusted_proxy_without_client = \"peer\"";
    let (_g, origin, proxy) = setup_with("proxy-protocol", opt_in).await;
    let headers = nameless_proxy_headers();
    for (what, header) in &headers {
        let mut bytes = header.clone();
        bytes.extend_from_slice(GET.as_bytes());
        // TRUSTED is mapped to FR: served as the proxy's own request.
        let out = raw_exchange(ips::TRUSTED, proxy.addr(), &bytes, quiet).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{what}: {out}");
    }
    assert_eq!(origin.request_count(), headers.len());
    // A named client is still the client.
    let v1_us = format!("PROXY TCP4 {} 127.0.0.1 40000 8080\r\n{GET}", ips::US);
    let out = raw_exchange(ips::TRUSTED, proxy.addr(), v1_us.as_bytes(), quiet).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    // An untrusted peer's nameless PROXY header is not HTTP: never served.
    for (what, header) in &headers {
        let mut bytes = header.clone();
        bytes.extend_from_slice(GET.as_bytes());
        let out = raw_exchange(ips::US, proxy.addr(), &bytes, quiet).await;
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 400"),
            "{what}: {out:?}"
        );
    }
    assert_eq!(origin.request_count(), headers.len());
    for source in ["x-forwarded-for", "forwarded"] {
        let (_g, origin, proxy) = setup_with(source, opt_in).await;
        let via = Client::bound_to(ips::TRUSTED);
        let rsp = via.get(proxy.addr(), "/b/k", &[]).await;
        assert_eq!(rsp.status, 200, "{source}");
        // A chain of trusted hops only: the left-most made the request.
        let only_trusted = if source == "forwarded" {
            format!("for={}", ips::TRUSTED)
        } else {
            ips::TRUSTED.to_owned()
        };
        let rsp = via
            .get(proxy.addr(), "/b/k", &[(source, &only_trusted)])
            .await;
        assert_eq!(rsp.status, 200, "{source}");
        // A US client named by the proxy is still refused.
        let us = if source == "forwarded" {
            format!("for={}", ips::US)
        } else {
            ips::US.to_owned()
        };
        let rsp = via.get(proxy.addr(), "/b/k", &[(source, &us)]).await;
        assert_eq!(rsp.status, 451, "{source}");
        assert_eq!(origin.request_count(), 2, "{source}");
    }
}
