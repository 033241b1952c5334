//! SPEC §4, issue 13 point 7: every IPv6 form that embeds an IPv4 address is
//! judged as that IPv4 address, read by its RFC layout, on the client side
//! (an X-Forwarded-For entry from a trusted proxy) and on the upstream side
//! (an AAAA answer from a real DNS server) alike. The addresses below are
//! written out by hand from RFC 6052 §2.2 Figure 1, for six operator prefixes
//! (one per defined length) and the two well-known ones.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use crate::support::proxy::BIN;
use crate::support::{Client, Dns, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

/// One prefix of each length RFC 6052 defines, disjoint, in 3fff::/20 (the
/// documentation prefix), plus the two well-known ones.
const NAT64_PREFIXES: &str = r#"nat64_prefixes = ["64:ff9b::/96", "64:ff9b:1::/48", "3fff:1::/32", "3fff:2:100::/40", "3fff:3:1::/48", "3fff:4:1:100::/56", "3fff:5:1:1::/64", "3fff:6:1:1:1:1::/96"]"#;

/// Every form embedding 127.0.0.<n>, by layout, written from RFC 6052
/// Figure 1: the four octets 7f 00 00 <n> follow the prefix, skipping octet
/// 8 (the "u" octet, zero), and the suffix is zero.
fn forms(n: u8) -> Vec<(&'static str, String)> {
    vec![
        ("SIIT ::ffff:0:0:0/96", format!("::ffff:0:7f00:{n:x}")),
        ("IPv4-mapped", format!("::ffff:7f00:{n:x}")),
        ("NAT64 64:ff9b::/96", format!("64:ff9b::7f00:{n:x}")),
        (
            "NAT64 64:ff9b:1::/48",
            format!("64:ff9b:1:7f00:0:{n:x}00::"),
        ),
        ("NAT64 /32", format!("3fff:1:7f00:{n:x}::")),
        ("NAT64 /40", format!("3fff:2:17f:0:{n:x}::")),
        ("NAT64 /48", format!("3fff:3:1:7f00:0:{n:x}00::")),
        ("NAT64 /56", format!("3fff:4:1:17f:0:{n:x}::")),
        ("NAT64 /64", format!("3fff:5:1:1:7f:0:{n:x}00:0")),
        ("NAT64 /96", format!("3fff:6:1:1:1:1:7f00:{n:x}")),
    ]
}

fn with_prefixes(toml: &str) -> String {
    toml.replacen("[geoip]\n", &format!("[geoip]\n{NAT64_PREFIXES}\n"), 1)
}

/// The issue's example: 64:ff9b:1:7f00:2:100:7f00:101 embeds 127.0.2.1 at
/// the /48 layout; its last 32 bits spell 127.0.1.1.
fn geo_with_issue_example() -> TestGeo {
    standard_geo(Layout::IpLocationDb)
        .map("127.0.2.1", "US")
        .map("127.0.1.1", "FR")
        .build()
}

#[tokio::test]
async fn clients_in_every_embedding_layout_are_judged_as_the_ipv4_address() {
    let geo = geo_with_issue_example();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"x-forwarded-for\"",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&with_prefixes(&config(&geo, &origin, &server, "", "")));
    let via = Client::bound_to(ips::TRUSTED);
    let mut us = forms(5);
    us.push(("issue 13 example", "64:ff9b:1:7f00:2:100:7f00:101".into()));
    for (layout, wrapped) in &us {
        let rsp = via
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", wrapped)])
            .await;
        assert_eq!(rsp.status, 451, "{layout} {wrapped}");
        assert_eq!(
            rsp.header("x-residency-decision"),
            "blocked; side=client; country=US; reason=country_not_allowed",
            "{layout} {wrapped}"
        );
    }
    let fr = forms(2);
    for (layout, wrapped) in &fr {
        let rsp = via
            .get(proxy.addr(), "/b/k", &[("x-forwarded-for", wrapped)])
            .await;
        assert_eq!(rsp.status, 200, "{layout} {wrapped}");
    }
    // A non-zero u octet (bits 64..71) is not the /48 layout: untraceable.
    let rsp = via
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-forwarded-for", "64:ff9b:1:7f00:100:200::")],
        )
        .await;
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=unknown; reason=untraceable_address"
    );
    assert_eq!(origin.request_count(), fr.len());
}

#[tokio::test]
async fn without_the_operator_prefix_its_addresses_are_plain_ipv6() {
    // The default list has only the well-known prefixes: 3fff:6:... is
    // ordinary IPv6, unknown to the database, so unknown_country decides.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let server = format!(
        "trusted_proxies = [\"{}/32\"]\nclient_ip_source = \"x-forwarded-for\"",
        ips::TRUSTED
    );
    let proxy = Proxy::start(&config(&geo, &origin, &server, "", ""));
    let rsp = Client::bound_to(ips::TRUSTED)
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-forwarded-for", "3fff:6:1:1:1:1:7f00:2")],
        )
        .await;
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=unknown; reason=unknown_country"
    );
    assert_eq!(origin.request_count(), 0);
}

const NAME: &str = "storage.test";

fn dns_config(geo: &TestGeo, dns: &Dns, port: u16) -> String {
    with_prefixes(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[admin]
listen = "127.0.0.1:0"

[geoip]
database = "{db}"

[resolver]
nameservers = ["{dns}"]
min_ttl = "1s"
max_ttl = "2s"
timeout = "1s"

[policy]
allow_networks = []

[[route]]
name = "s3"
upstreams = ["http://{NAME}:{port}"]
connect_timeout = "1s"
"#,
        db = geo.path().display(),
        dns = dns.addr(),
    ))
}

#[tokio::test]
async fn upstream_answers_in_every_embedding_layout_are_judged_as_the_ipv4_address() {
    let geo = geo_with_issue_example();
    // 127.0.0.11 is ORIGIN_US, 127.0.0.10 is ORIGIN (DE).
    let us: Vec<String> = forms(11)
        .into_iter()
        .map(|f| f.1)
        .chain(["64:ff9b:1:7f00:2:100:7f00:101".to_owned()])
        .collect();
    let de: Vec<String> = forms(10).into_iter().map(|f| f.1).collect();
    let untraceable = "64:ff9b:1:7f00:100:a00::";
    let records: Vec<(&str, &str)> = us
        .iter()
        .chain(&de)
        .map(|a| (NAME, a.as_str()))
        .chain([(NAME, untraceable)])
        .collect();
    let dns = Dns::start(&records);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, dns_config(&geo, &dns, 9)).unwrap();
    let out = Command::new(BIN)
        .args(["upstreams", "--json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let addresses = v[0]["upstreams"][0]["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), records.len(), "{v}");
    let verdict = |want: &str| {
        let want: IpAddr = want.parse().unwrap();
        addresses
            .iter()
            .find(|a| {
                let got: SocketAddr = a["address"].as_str().unwrap().parse().unwrap();
                got.ip() == want
            })
            .unwrap_or_else(|| panic!("{want} not in {v}"))
    };
    for a in &us {
        let got = verdict(a);
        assert_eq!(got["country"], "US", "{a}: {got}");
        assert_eq!(got["allowed"], false, "{a}: {got}");
    }
    for a in &de {
        let got = verdict(a);
        assert_eq!(got["country"], "DE", "{a}: {got}");
        assert_eq!(got["allowed"], true, "{a}: {got}");
    }
    assert_eq!(verdict(untraceable)["reason"], "untraceable_address");

    // Served: a name whose only answers embed a US address is refused with
    // the US verdict, before any connection is attempted (an attempt at
    // these addresses would fail as 502, not 451).
    let us_origin = Origin::start(ips::ORIGIN_US).await;
    let only_us: Vec<(&str, &str)> = us.iter().map(|a| (NAME, a.as_str())).collect();
    dns.set(&only_us);
    let proxy = Proxy::start(&dns_config(&geo, &dns, us_origin.addr().port()));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451, "{}", rsp.text());
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=upstream; country=US; reason=no_allowed_upstream_ip"
    );
    assert_eq!(us_origin.connection_count(), 0);
}
