//! SPEC §4 decisions, end to end: who is allowed, who gets 451, what the
//! client reads and what the origin sees.

use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

const US_BLOCKED: &str = "blocked; side=client; country=US; reason=country_not_allowed";

async fn setup(policy: &str, route: &str) -> (crate::support::TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", policy, route));
    (geo, origin, proxy)
}

#[tokio::test]
async fn eea_clients_are_allowed_and_reach_the_origin() {
    let (_g, origin, proxy) = setup("", "").await;
    for ip in [ips::FR, ips::DE, ips::NO] {
        let rsp = Client::bound_to(ip)
            .get(proxy.addr(), "/bucket/key", &[])
            .await;
        assert_eq!(rsp.status, 200, "{ip}: {}", rsp.text());
        assert_eq!(rsp.header("x-origin"), "yes");
        assert_eq!(
            rsp.header("x-residency-decision"),
            "",
            "allowed requests carry no decision header"
        );
        assert_eq!(rsp.header("x-residency-request-id").len(), 16);
    }
    assert_eq!(origin.request_count(), 3);
}

#[tokio::test]
async fn us_client_gets_451_with_s3_xml_and_origin_sees_nothing() {
    let (_g, origin, proxy) = setup("", "").await;
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/bucket/key?versionId=3", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    assert_eq!(rsp.header("content-type"), "application/xml");
    let id = rsp.header("x-residency-request-id").to_owned();
    assert_eq!(
        rsp.text(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>blocked by data-residency policy: client country US is outside the allowed area</Message><Resource>/bucket/key</Resource><RequestId>{id}</RequestId></Error>\n"
        )
    );
    assert_eq!(origin.request_count(), 0);
    assert_eq!(origin.connection_count(), 0);
    proxy.wait_for_log("request blocked", 1).await;
    let logs = proxy.logs();
    assert!(
        logs.contains("country=\"US\"") || logs.contains("country=US"),
        "{logs}"
    );
}

#[tokio::test]
async fn cn_client_is_blocked() {
    let (_g, origin, proxy) = setup("", "").await;
    let rsp = Client::bound_to(ips::CN)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=CN; reason=country_not_allowed"
    );
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn head_request_blocked_has_no_body() {
    let (_g, origin, proxy) = setup("", "").await;
    let req = http::Request::head("/b/k")
        .header("host", "s3.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let rsp = Client::bound_to(ips::US).send(proxy.addr(), req).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(rsp.header("x-residency-decision"), US_BLOCKED);
    assert!(rsp.body.is_empty());
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn ch_is_blocked_unless_a_route_allows_it() {
    let (_g, origin, proxy) = setup("", "").await;
    let rsp = Client::bound_to(ips::CH)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=CH; reason=country_not_allowed"
    );
    assert_eq!(origin.request_count(), 0);
    drop(proxy);

    let (_g, origin, proxy) = setup("", r#"allow_countries = ["EEA", "CH"]"#).await;
    let rsp = Client::bound_to(ips::CH)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn unknown_country_is_denied_by_default_and_allowed_on_request() {
    let (_g, origin, proxy) = setup("", "").await;
    let rsp = Client::bound_to(ips::UNMAPPED)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=unknown; reason=unknown_country"
    );
    assert_eq!(origin.request_count(), 0);
    drop(proxy);

    let (_g, origin, proxy) = setup(r#"unknown_country = "allow""#, "").await;
    let rsp = Client::bound_to(ips::UNMAPPED)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn deny_beats_allow() {
    let (_g, origin, proxy) = setup(r#"deny_countries = ["FR"]"#, "").await;
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=FR; reason=country_denied"
    );
    let rsp = Client::bound_to(ips::DE)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
    drop(proxy);

    // deny_networks beats allow_networks and allow_countries.
    let policy = r#"allow_networks = ["127.0.0.0/8"]
deny_networks = ["127.0.0.3/32"]"#;
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "").replace("allow_networks = []", policy);
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::DE)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=DE; reason=network_denied"
    );
    // allow_networks lets a US address through.
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn monitor_mode_passes_and_flags() {
    let (_g, origin, proxy) = setup(r#"mode = "monitor""#, "").await;
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "flagged; side=client; country=US; reason=country_not_allowed"
    );
    assert_eq!(origin.request_count(), 1);
    proxy.wait_for_log("request flagged", 1).await;
    // Allowed clients are not flagged.
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.header("x-residency-decision"), "");
}

#[tokio::test]
async fn routes_override_the_policy() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut toml = config(&geo, &origin, "", "", "");
    toml.push_str(&format!(
        r#"
[[route]]
name = "observed"
path_prefix = "/observed/"
upstreams = ["{0}"]
mode = "monitor"

[[route]]
name = "swiss"
path_prefix = "/swiss/"
upstreams = ["{0}"]
allow_countries = ["CH", "DE"]
"#,
        origin.url()
    ));
    let proxy = Proxy::start(&toml);
    let us = Client::bound_to(ips::US);
    assert_eq!(us.get(proxy.addr(), "/plain/k", &[]).await.status, 451);
    let rsp = us.get(proxy.addr(), "/observed/k", &[]).await;
    assert_eq!(rsp.status, 200, "{} {:?}", rsp.text(), rsp.headers);
    assert!(rsp.header("x-residency-decision").starts_with("flagged;"));
    assert_eq!(
        Client::bound_to(ips::CH)
            .get(proxy.addr(), "/swiss/k", &[])
            .await
            .status,
        200
    );
    // The swiss route's list (CH and DE, where the origin is) replaces the
    // global one: FR is not in it.
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/swiss/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn no_route_is_404_no_such_route() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", r#"hosts = ["s3.example.org"]"#);
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 404);
    assert!(
        rsp.text().contains("<Code>NoSuchRoute</Code>"),
        "{}",
        rsp.text()
    );
    let rsp = Client::bound_to(ips::FR)
        .send(
            proxy.addr(),
            http::Request::get("/b/k")
                .header("host", "s3.example.org:8080")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn upstream_outside_the_area_is_451_on_the_upstream_side() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN_US).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
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
        origin.connection_count(),
        0,
        "nothing may be sent to a rejected upstream"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_bad_gateway() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    // Port 1 on the origin address: nothing listens there.
    let toml = config(&geo, &origin, "", "", "")
        .replace(&origin.url(), &format!("http://{}:1", ips::ORIGIN));
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 502);
    assert!(
        rsp.text().contains("<Code>BadGateway</Code>"),
        "{}",
        rsp.text()
    );
    assert!(
        !rsp.text().contains("127.0.0.10"),
        "internal detail must not reach the client"
    );
}

#[tokio::test]
async fn blocked_status_line_names_the_policy_for_head_only_clients() {
    let (_g, _origin, proxy) = setup("", "").await;
    let out = crate::support::raw_exchange(
        ips::US,
        proxy.addr(),
        b"HEAD /b/k HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 451 Blocked By Data-Residency Policy\r\n"),
        "{out}"
    );
}
