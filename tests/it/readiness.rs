//! Readiness per route: `/readyz` is 200 while at least one route, and
//! every route with `required = true`, has an upstream address it may
//! dial, so one route whose storage is outside the area does not take the
//! whole process out of service; `check` fails on such a route unless
//! `--allow-unready-routes` says it is expected.

use std::process::Command;

use crate::support::proxy::BIN;
use crate::support::{Client, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

/// Route `s3` to the origin (DE) and route `us` to an upstream in the US,
/// with `us_extra` added to the `us` route.
fn two_routes(geo: &TestGeo, origin: &Origin, us_extra: &str) -> String {
    format!(
        "{}path_prefix = \"/b\"\n\n[[route]]\nname = \"us\"\npath_prefix = \"/us\"\n\
         upstreams = [\"http://{}:9000\"]\n{us_extra}\n",
        config(geo, origin, "", "", ""),
        ips::ORIGIN_US
    )
}

async fn readyz(proxy: &Proxy) -> (u16, serde_json::Value) {
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/readyz", &[])
        .await;
    (
        rsp.status.as_u16(),
        serde_json::from_slice(&rsp.body).unwrap(),
    )
}

#[tokio::test]
async fn one_route_without_an_allowed_upstream_leaves_the_process_ready() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&two_routes(&geo, &origin, ""));
    let (status, v) = readyz(&proxy).await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["ready"], true);
    assert_eq!(v["routes"][0]["ready"], true, "{v:#}");
    assert_eq!(v["routes"][1]["route"], "us");
    assert_eq!(v["routes"][1]["ready"], false, "{v:#}");
    assert_eq!(v["routes"][1]["required"], false, "{v:#}");
    // The other route serves; the unready one refuses, never dialling.
    let fr = Client::bound_to(ips::FR);
    assert_eq!(fr.get(proxy.addr(), "/b/k", &[]).await.status, 200);
    let rsp = fr.get(proxy.addr(), "/us/k", &[]).await;
    assert_eq!(rsp.status, 451);
    assert!(
        rsp.header("x-residency-decision")
            .starts_with("blocked; side=upstream; country=US"),
        "{}",
        rsp.header("x-residency-decision")
    );
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn a_required_route_without_an_allowed_upstream_makes_the_process_unready() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&two_routes(&geo, &origin, "required = true"));
    let (status, v) = readyz(&proxy).await;
    assert_eq!(status, 503, "{v:#}");
    assert_eq!(v["ready"], false);
    assert_eq!(v["routes"][1]["required"], true, "{v:#}");
}

#[tokio::test]
async fn no_route_with_an_allowed_upstream_makes_the_process_unready() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = two_routes(&geo, &origin, "").replace(
        &format!("upstreams = [\"{}\"]", origin.url()),
        &format!("upstreams = [\"http://{}:9000\"]", ips::ORIGIN_US),
    );
    let proxy = Proxy::start(&toml);
    let (status, v) = readyz(&proxy).await;
    assert_eq!(status, 503, "{v:#}");
    assert_eq!(v["routes"][0]["ready"], false, "{v:#}");
}

#[tokio::test]
async fn check_fails_on_a_route_without_an_allowed_upstream_unless_told() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, two_routes(&geo, &origin, "")).unwrap();
    let check = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .args(extra)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let unready = format!(
        "route us has no upstream address its policy allows: http://{0}:9000: {0}:9000 US country_not_allowed",
        ips::ORIGIN_US
    );
    let (code, stdout, stderr) = check(&[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "{unready}\n(pass --allow-unready-routes to accept such a route)"
        )),
        "{stderr}"
    );
    let (code, stdout, stderr) = check(&["--allow-unready-routes"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("WARNING: {unready}\n")),
        "{stdout}"
    );
    // A name that does not resolve where `check` runs: a warning only (the
    // proxy starts and waits for it).
    std::fs::write(
        &path,
        two_routes(&geo, &origin, "")
            .replace(
                &format!("http://{}:9000", ips::ORIGIN_US),
                "http://storage.invalid:9000",
            )
            .replace(
                "[admin]",
                "[resolver]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"200ms\"\n\n[admin]",
            ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("WARNING: route us has no upstream address that resolves here and its policy allows (judged again when it resolves): http://storage.invalid:9000: cannot resolve upstream host storage.invalid"),
        "{stdout}"
    );
    // In monitor mode any resolved address serves (flagged): not an error.
    std::fs::write(&path, two_routes(&geo, &origin, "mode = \"monitor\"")).unwrap();
    let (code, stdout, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("WARNING: route"), "{stdout}");
}
