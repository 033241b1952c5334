//! SPEC §11 operator jurisdiction, end to end: an upstream located in DE
//! (the origin's address) or a client located in FR, operated from the US
//! according to a generated operator database, under each
//! `on_foreign_operator`; per-route override; `allow_networks` winning; a
//! corrupt operator database refused at start and at reload; `lookup` on the
//! shipped databases.

use std::process::Command;
use std::time::Duration;

use crate::support::{Client, Layout, Origin, Proxy, TestOperators, config, ips, standard_geo};

const BIN: &str = env!("CARGO_BIN_EXE_residency-proxy");

/// The origin (located DE) operated from the US, AS 16509; the FR client
/// operated from FR unless `client_us`.
fn operators(client_us: bool) -> TestOperators {
    let ops = TestOperators::new()
        .map(ips::ORIGIN, "US", Some(16509))
        .map(ips::DE, "DE", Some(3320));
    if client_us {
        ops.map(ips::FR, "US", Some(16509))
    } else {
        ops.map(ips::FR, "FR", None)
    }
    .build()
}

struct Setup {
    _geo: crate::support::TestGeo,
    ops: TestOperators,
    origin: Origin,
    proxy: Proxy,
}

async fn setup(client_us: bool, policy: &str, route: &str) -> Setup {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let ops = operators(client_us);
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = with_operators(&config(&geo, &origin, "", policy, route), &ops);
    let proxy = Proxy::start(&toml);
    Setup {
        _geo: geo,
        ops,
        origin,
        proxy,
    }
}

fn with_operators(toml: &str, ops: &TestOperators) -> String {
    toml.replacen(
        "[policy]\n",
        &format!(
            "operator_database = \"{}\"\n\n[policy]\n",
            ops.path().display()
        ),
        1,
    )
}

async fn wait_records(proxy: &Proxy, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        let r = proxy.audit_records();
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} audit records");
}

const UPSTREAM_FLAGGED: &str =
    "flagged; side=upstream; country=DE; reason=foreign_operator; operator=US; asn=16509";
const UPSTREAM_BLOCKED: &str =
    "blocked; side=upstream; country=DE; reason=foreign_operator; operator=US; asn=16509";

#[tokio::test]
async fn an_upstream_operated_from_outside_is_dialled_and_flagged_under_flag() {
    let s = setup(false, r#"on_foreign_operator = "flag""#, "").await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(rsp.header("x-origin"), "yes");
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
    assert_eq!(s.origin.request_count(), 1);
    let r = &wait_records(&s.proxy, 1).await[0];
    assert_eq!(r["decision"], "flagged");
    assert_eq!(r["side"], "upstream");
    assert_eq!(r["reason"], "foreign_operator");
    assert_eq!(r["upstream_country"], "DE");
    assert_eq!(r["upstream_operator"], "US");
    assert_eq!(r["upstream_asn"], 16509);
    assert_eq!(r["client_operator"], "FR");
    assert!(r.get("client_asn").is_none(), "{r}");
    let metrics = s.proxy.metrics().await;
    assert!(
        metrics.contains(
            r#"residency_flagged_transfers_total{country="DE",reason="foreign_operator",route="s3",side="upstream"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_operated_from_outside_is_never_dialled_under_block() {
    let s = setup(false, r#"on_foreign_operator = { upstream = "block" }"#, "").await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451, "{}", rsp.text());
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_BLOCKED);
    assert!(
        rsp.text()
            .contains("the storage upstream is operated from outside the allowed area"),
        "{}",
        rsp.text()
    );
    assert_eq!(s.origin.connection_count(), 0);
    let r = &wait_records(&s.proxy, 1).await[0];
    assert_eq!(r["decision"], "blocked");
    assert_eq!(r["reason"], "foreign_operator");
    assert_eq!(r["upstream_operator"], "US");
    assert_eq!(r["upstream_asn"], 16509);
    assert!(r["upstream_ip"].is_null(), "never dialled: {r}");
}

#[tokio::test]
async fn a_foreign_operator_is_untouched_under_ignore_but_recorded() {
    let s = setup(true, "", "").await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("x-residency-decision"), "");
    assert_eq!(s.origin.request_count(), 1);
    let r = &wait_records(&s.proxy, 1).await[0];
    assert_eq!(r["decision"], "allowed");
    assert_eq!(r["client_operator"], "US");
    assert_eq!(r["upstream_operator"], "US");
}

#[tokio::test]
async fn a_client_operated_from_outside_is_flagged_or_blocked_per_its_side() {
    let s = setup(true, r#"on_foreign_operator = { client = "flag" }"#, "").await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "flagged; side=client; country=FR; reason=foreign_operator; operator=US; asn=16509"
    );
    assert_eq!(s.origin.request_count(), 1);
    // A DE client operated from DE is not foreign.
    let rsp = Client::bound_to(ips::DE)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.header("x-residency-decision")),
        (200, "")
    );
    drop(s);

    let s = setup(true, r#"on_foreign_operator = { client = "block" }"#, "").await;
    let req = http::Request::put("/b/k")
        .header("host", "s3.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"secret",
        )))
        .unwrap();
    let rsp = Client::bound_to(ips::FR).send(s.proxy.addr(), req).await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=FR; reason=foreign_operator; operator=US; asn=16509"
    );
    assert_eq!(s.origin.connection_count(), 0);
    let r = &wait_records(&s.proxy, 1).await[0];
    assert_eq!(
        (r["side"].as_str(), r["reason"].as_str()),
        (Some("client"), Some("foreign_operator"))
    );
    assert_eq!(r["bytes_up"], 0);
}

#[tokio::test]
async fn monitor_mode_flags_what_block_would_refuse() {
    let s = setup(
        false,
        "mode = \"monitor\"\non_foreign_operator = \"block\"",
        "",
    )
    .await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
    assert_eq!(s.origin.request_count(), 1);
}

#[tokio::test]
async fn a_route_overrides_on_foreign_operator_per_side() {
    // Global: block both sides; the route lets its upstream be flagged.
    let s = setup(
        false,
        r#"on_foreign_operator = "block""#,
        r#"on_foreign_operator = { upstream = "flag" }"#,
    )
    .await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
    drop(s);
    // The client side kept the global "block".
    let s = setup(
        true,
        r#"on_foreign_operator = "block""#,
        r#"on_foreign_operator = { upstream = "ignore" }"#,
    )
    .await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    assert!(
        rsp.header("x-residency-decision")
            .starts_with("blocked; side=client;")
    );
    // A route's operator_countries replaces the global list.
    drop(s);
    let s = setup(
        true,
        r#"on_foreign_operator = "block""#,
        r#"operator_countries = ["EEA", "US"]"#,
    )
    .await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.header("x-residency-decision")),
        (200, "")
    );
}

#[tokio::test]
async fn allow_networks_wins_over_a_foreign_operator() {
    let s = setup(
        true,
        "on_foreign_operator = \"block\"",
        "allow_networks = [\"127.0.0.10/32\", \"127.0.0.2/32\"]",
    )
    .await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.header("x-residency-decision")),
        (200, "")
    );
    assert_eq!(s.origin.request_count(), 1);
}

#[tokio::test]
async fn a_corrupt_operator_database_is_refused_at_start_and_at_reload() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, b"not a maxmind database").unwrap();
    let toml = format!(
        "[geoip]\ndatabase = \"{}\"\noperator_database = \"{}\"\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.10:9\"]\n",
        geo.path().display(),
        bad.display()
    );
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot open GeoIP database {}", bad.display())),
        "{err}"
    );

    // At reload: the operator file is replaced by a corrupt one; the
    // reload is refused and the old database keeps flagging.
    let s = setup(false, r#"on_foreign_operator = "flag""#, "").await;
    let path = s.ops.path().to_owned();
    let tmp = path.with_extension("new");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    s.proxy.signal("HUP");
    s.proxy.wait_for_log("reload refused", 1).await;
    let rsp = Client::bound_to(ips::FR)
        .get(s.proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
}

#[test]
fn lookup_on_the_shipped_databases_separates_location_and_operator() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let cfg = dir.path().join("lookup.toml");
    std::fs::write(
        &cfg,
        format!(
            "[geoip]\ndatabase = \"{root}/geodata/geo-whois-asn-country.mmdb\"\noperator_database = \"{root}/geodata/iptoasn-country.mmdb\"\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["lookup", "--config"])
        .arg(&cfg)
        .args(["15.188.0.1", "90.0.0.1"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "15.188.0.1\tFR\toperated US\tallowed\tby allow_countries\n\
         90.0.0.1\tFR\toperated FR\tallowed\tby allow_countries\n"
    );
    let out = Command::new(BIN)
        .args(["lookup", "--json", "--config"])
        .arg(&cfg)
        .arg("15.188.0.1")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v[0]["country"], &v[0]["operator"], &v[0]["asn"]),
        (&"FR".into(), &"US".into(), &serde_json::Value::Null)
    );
}

#[test]
fn on_foreign_operator_errors_are_located_and_name_the_choices() {
    let toml = "[policy]\non_foreign_operator = \"warn\"\noperator_countries = [\"EEA\", \"UK\"]\n\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\non_foreign_operator = { upstream = \"block\", server = \"flag\" }\n";
    let err = residency_proxy::config::Config::parse(std::path::Path::new("bad.toml"), toml)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "bad.toml:2:23: invalid on_foreign_operator \"warn\" (expected \"ignore\", \"flag\" or \"block\")\n\
         bad.toml:3:30: unknown country code \"UK\" (did you mean \"GB\"?)\n\
         bad.toml:8:23: unknown side \"server\" in on_foreign_operator (expected client or upstream)"
    );
    let ok = "[policy]\non_foreign_operator = { client = \"flag\" }\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\non_foreign_operator = \"block\"\n";
    let cfg = residency_proxy::config::Config::parse(std::path::Path::new("ok.toml"), ok).unwrap();
    let g = cfg.policy.policy.on_foreign_operator;
    assert_eq!((g.client.as_str(), g.upstream.as_str()), ("flag", "ignore"));
    let r = cfg.routes[0].policy.policy.on_foreign_operator;
    assert_eq!((r.client.as_str(), r.upstream.as_str()), ("block", "block"));
}

#[tokio::test]
async fn a_replaced_operator_database_is_reloaded_when_watched() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let ops = operators(false);
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = with_operators(
        &config(&geo, &origin, "", r#"on_foreign_operator = "flag""#, ""),
        &ops,
    )
    .replacen(
        "operator_database",
        "watch = true\nwatch_interval = \"200ms\"\noperator_database",
        1,
    );
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
    // The origin's network is now operated from DE: written, then renamed.
    let tmp = tempfile::tempdir().unwrap();
    let next = TestOperators::new()
        .map(ips::ORIGIN, "DE", Some(3320))
        .build();
    let staged = tmp.path().join("staged.mmdb");
    std::fs::copy(next.path(), &staged).unwrap();
    std::fs::rename(&staged, ops.path()).unwrap();
    proxy
        .wait_for_log("GeoIP database replaced; reloading", 1)
        .await;
    proxy.wait_for_log("reloaded", 1).await;
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(
        (rsp.status.as_u16(), rsp.header("x-residency-decision")),
        (200, "")
    );
}

#[test]
fn upstreams_prints_location_operator_and_as() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let ops = operators(false);
    let dir = tempfile::tempdir().unwrap();
    let run = |action: &str| {
        let cfg = dir.path().join("u.toml");
        std::fs::write(
            &cfg,
            format!(
                "[geoip]\ndatabase = \"{}\"\noperator_database = \"{}\"\n[policy]\nallow_networks = []\non_foreign_operator = {{ upstream = \"{action}\" }}\n[[route]]\nname = \"s3\"\nupstreams = [\"http://{}:9\"]\n",
                geo.path().display(),
                ops.path().display(),
                ips::ORIGIN
            ),
        )
        .unwrap();
        Command::new(BIN)
            .args(["upstreams", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let out = run("flag");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "route s3 (enforce): ready\n  upstream http://127.0.0.10:9\n    127.0.0.10:9\tDE\toperated US AS16509\tflagged: foreign_operator by operator_countries (not listed)\n"
    );
    let out = run("block");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "127.0.0.10:9\tDE\toperated US AS16509\trejected: foreign_operator by operator_countries (not listed)"
        ),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn transfers_list_flows_inside_by_location_operated_from_outside() {
    let s = setup(true, r#"on_foreign_operator = { upstream = "flag" }"#, "").await;
    for _ in 0..2 {
        let rsp = Client::bound_to(ips::FR)
            .get(s.proxy.addr(), "/b/k", &[])
            .await;
        assert_eq!(rsp.header("x-residency-decision"), UPSTREAM_FLAGGED);
    }
    wait_records(&s.proxy, 2).await;
    let rsp = Client::bound_to("127.0.0.1")
        .get(s.proxy.admin_addr(), "/transfers", &[])
        .await;
    let v: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap();
    let rows: Vec<_> = v["operated_outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["side"].as_str().unwrap().to_owned(),
                r["operator"].as_str().unwrap().to_owned(),
                r["asn"].as_u64(),
                r["flagged"].as_u64().unwrap(),
                r["allowed"].as_u64().unwrap(),
            )
        })
        .collect();
    // The client (FR, operated US, ignored on its side) and the upstream
    // (DE, operated US, flagged), each twice; nothing in the country rows.
    assert_eq!(
        rows,
        [
            ("client".to_owned(), "US".to_owned(), Some(16509), 0, 2),
            ("upstream".to_owned(), "US".to_owned(), Some(16509), 2, 0),
        ],
        "{v:#}"
    );
    assert_eq!(v["transfers"], serde_json::json!([]));

    let out = Command::new(BIN)
        .arg("transfers")
        .arg("--audit")
        .arg(s.proxy.audit_path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("## Inside the area by location, operated from outside it\n"),
        "{md}"
    );
    assert!(
        md.contains("| client | US | 16509 | FR | 2 | 0 | 0 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("| upstream | US | 16509 | DE | 2 | 0 | 2 | 0 |"),
        "{md}"
    );
}

/// The value of the unlabelled series `name` in a scrape, if exported.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_operator_database_build_time_is_exported_while_one_is_configured() {
    const BUILD: &str = "residency_geoip_operator_database_build_timestamp_seconds";
    let s = setup(false, r#"on_foreign_operator = "flag""#, "").await;
    let built = residency_proxy::geo::GeoDb::open(s.ops.path())
        .unwrap()
        .build_epoch();
    assert!(built > 1_700_000_000, "{built}");
    let m = s.proxy.metrics().await;
    assert_eq!(gauge(&m, BUILD), Some(built as f64), "{m}");
    // A reload that removes the operator database removes the series: no
    // staleness alert can fire on a database no longer in use.
    let toml = std::fs::read_to_string(s.proxy.config_path()).unwrap();
    let without = toml.replacen(
        &format!("operator_database = \"{}\"\n", s.ops.path().display()),
        "",
        1,
    );
    assert_ne!(without, toml);
    s.proxy.write_config(&without);
    s.proxy.signal("HUP");
    s.proxy.wait_for_log("reloaded", 1).await;
    let m = s.proxy.metrics().await;
    assert_eq!(gauge(&m, BUILD), None, "{m}");
    assert!(!m.contains(BUILD), "{m}");
    // The country database's own gauge stays.
    assert!(gauge(&m, "residency_geoip_database_build_timestamp_seconds").is_some());
}
