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
