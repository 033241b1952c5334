//! SPEC §1 upstream side with a real DNS server (dnsmasq): every resolved
//! address is judged, only judged addresses are dialled, DNS changes and
//! rebinding never route data outside the area, HTTPS upstreams are verified
//! against the name while dialled at the judged address.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::proxy::BIN;
use crate::support::tls::TestCa;
use crate::support::{Client, Dns, Layout, Origin, Proxy, TestGeo, ips, standard_geo};

const NAME: &str = "storage.test";

/// An EEA origin on 127.0.0.10 (DE) and a non-EEA one on 127.0.0.11 (US),
/// on the same port, as one DNS name would reach them.
async fn two_origins() -> (Origin, Origin) {
    let de = Origin::start(ips::ORIGIN).await;
    let us_addr = SocketAddr::new(ips::ORIGIN_US.parse().unwrap(), de.addr().port());
    let us = Origin::start_at(us_addr, None).await;
    (de, us)
}

fn dns_config(geo: &TestGeo, dns: &Dns, url: &str, policy: &str, route: &str) -> String {
    format!(
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
{policy}

[[route]]
name = "s3"
upstreams = ["{url}"]
connect_timeout = "1s"
{route}
"#,
        db = geo.path().display(),
        dns = dns.addr(),
    )
}

#[tokio::test]
async fn eea_only_name_is_used() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", ""));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(de.request_count(), 1);
    assert_eq!(us.connection_count(), 0);
}

#[tokio::test]
async fn non_eea_only_name_is_blocked_and_its_origin_receives_nothing() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN_US)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", ""));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=upstream; country=US; reason=no_allowed_upstream_ip"
    );
    assert!(rsp.text().contains("<Code>AccessDenied</Code>"));
    assert_eq!(
        us.connection_count(),
        0,
        "not a single connection to the US origin"
    );
    assert_eq!(de.connection_count(), 0);
}

#[tokio::test]
async fn mixed_name_sends_every_request_to_the_eea_origin() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN_US), (NAME, ips::ORIGIN)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", ""));
    for i in 0..100 {
        let rsp = Client::bound_to(ips::FR)
            .get(proxy.addr(), &format!("/b/k{i}"), &[])
            .await;
        assert_eq!(rsp.status, 200);
    }
    assert_eq!(de.request_count(), 100);
    assert_eq!(us.connection_count(), 0);
    proxy.wait_for_log("upstream address rejected", 1).await;
}

#[tokio::test]
async fn rebinding_to_a_non_eea_address_never_reaches_it() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", ""));
    let client = Client::bound_to(ips::FR);
    assert_eq!(client.get(proxy.addr(), "/b/k", &[]).await.status, 200);

    dns.set(&[(NAME, ips::ORIGIN_US)]);
    let changed = Instant::now();
    let mut statuses = Vec::new();
    // Keep asking through the cache expiry (max_ttl = 2s) and beyond.
    while changed.elapsed() < Duration::from_secs(4) {
        statuses.push(client.get(proxy.addr(), "/b/k", &[]).await.status.as_u16());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 451),
        "{statuses:?}"
    );
    assert_eq!(
        *statuses.last().unwrap(),
        451,
        "after max_ttl the new answer is in force: {statuses:?}"
    );
    assert_eq!(
        us.connection_count(),
        0,
        "the rebound address was never dialled"
    );
}

#[tokio::test]
async fn dns_server_down_is_502_with_no_connection_anywhere() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let mut dns = Dns::start(&[(NAME, ips::ORIGIN)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let toml = dns_config(&geo, &dns, &url, "", "");
    dns.stop();
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 502, "{}", rsp.text());
    assert!(rsp.text().contains("<Code>BadGateway</Code>"));
    assert_eq!(de.connection_count() + us.connection_count(), 0);
    // Not ready either.
    let ready = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/readyz", &[])
        .await;
    assert_eq!(ready.status, 503);
}

#[tokio::test]
async fn monitor_mode_connects_and_flags_the_upstream() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN_US)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "mode = \"monitor\"", ""));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "flagged; side=upstream; country=US; reason=no_allowed_upstream_ip"
    );
    assert_eq!(us.request_count(), 1);
    proxy.wait_for_log("request flagged", 1).await;
}

#[tokio::test]
async fn https_upstream_is_verified_against_the_name_and_dialled_at_the_judged_ip() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let ca = TestCa::new("Residency Test CA");
    let tls_origin = Origin::start_at(
        SocketAddr::new(ips::ORIGIN.parse().unwrap(), 0),
        Some(ca.server_config(&[NAME])),
    )
    .await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN)]);
    let url = format!("https://{NAME}:{}", tls_origin.addr().port());
    let route = format!("[route.tls]\nca = \"{}\"", ca.pem_path().display());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", &route));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(tls_origin.request_count(), 1);
    drop(proxy);

    // A certificate for another name, or from another CA, is refused: 502.
    let wrong_name = Origin::start_at(
        SocketAddr::new(ips::ORIGIN.parse().unwrap(), 0),
        Some(ca.server_config(&["other.test"])),
    )
    .await;
    let url = format!("https://{NAME}:{}", wrong_name.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", &route));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 502);
    assert_eq!(wrong_name.request_count(), 0);
    proxy.wait_for_log("TLS handshake", 1).await;
    drop(proxy);

    let other_ca = TestCa::new("Another CA");
    let route = format!("[route.tls]\nca = \"{}\"", other_ca.pem_path().display());
    let url = format!("https://{NAME}:{}", tls_origin.addr().port());
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", &route));
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 502);
    assert_eq!(tls_origin.request_count(), 1, "nothing more reached it");
}

#[tokio::test]
async fn reload_that_rejects_the_upstream_never_reuses_its_pooled_connection() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, _us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN)]);
    let url = format!("http://{NAME}:{}", de.addr().port());
    let toml = dns_config(&geo, &dns, &url, "", "");
    let proxy = Proxy::start(&toml);
    let client = Client::bound_to(ips::FR);
    assert_eq!(client.get(proxy.addr(), "/b/k", &[]).await.status, 200);
    assert_eq!(de.connection_count(), 1, "a pooled connection now exists");
    proxy.write_config(&toml.replace(
        "allow_networks = []",
        "allow_networks = []\ndeny_countries = [\"DE\"]",
    ));
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    let rsp = client.get(proxy.addr(), "/b/k", &[]).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=upstream; country=DE; reason=no_allowed_upstream_ip"
    );
    assert_eq!(
        de.request_count(),
        1,
        "the pooled connection was not reused"
    );
}

#[tokio::test]
async fn upstreams_command_and_readyz_report_each_address() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (de, _us) = two_origins().await;
    let dns = Dns::start(&[(NAME, ips::ORIGIN), (NAME, ips::ORIGIN_US)]);
    let port = de.addr().port();
    let url = format!("http://{NAME}:{port}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, dns_config(&geo, &dns, &url, "", "")).unwrap();
    let out = Command::new(BIN)
        .args(["upstreams", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("route s3 (enforce): ready\n  upstream {url}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "    127.0.0.10:{port}\tDE\tallowed by allow_countries\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("    127.0.0.11:{port}\tUS\trejected: country_not_allowed by allow_countries (not listed)\n")),
        "{stdout}"
    );

    // Only the US address left: exit 1, and the JSON says why.
    dns.set(&[(NAME, ips::ORIGIN_US)]);
    let out = Command::new(BIN)
        .args(["upstreams", "--json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "route s3: no upstream address may be used\n"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ready"], false);
    assert_eq!(v[0]["upstreams"][0]["addresses"][0]["country"], "US");
    assert_eq!(
        v[0]["upstreams"][0]["addresses"][0]["reason"],
        "country_not_allowed"
    );

    // /readyz follows the same rule; /healthz only says the process answers.
    let proxy = Proxy::start(&dns_config(&geo, &dns, &url, "", ""));
    let admin = Client::bound_to("127.0.0.1");
    assert_eq!(
        admin.get(proxy.admin_addr(), "/healthz", &[]).await.text(),
        "ok\n"
    );
    let ready = admin.get(proxy.admin_addr(), "/readyz", &[]).await;
    assert_eq!(ready.status, 503);
    let v: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(v["ready"], false);
    dns.set(&[(NAME, ips::ORIGIN)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = admin.get(proxy.admin_addr(), "/readyz", &[]).await;
        if ready.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never became ready: {}",
            ready.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
