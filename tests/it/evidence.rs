//! SPEC §5–§7 evidence, end to end: exact metric counts after allowed,
//! blocked and flagged requests (and a promtool check of a real scrape), the
//! audit trail's records and chain, purpose, fail-closed, rotation, the live
//! cartography and structured logs.

use std::process::Command;
use std::time::Duration;

use crate::support::proxy::{BIN, assert_audit_verifies, audit_verify, records_in};
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

async fn scrape(proxy: &Proxy) -> String {
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/metrics", &[])
        .await;
    assert_eq!(rsp.status, 200);
    assert!(
        rsp.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    rsp.text()
}

/// The value of the series `name{labels}` (labels in Prometheus' sorted order).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
}

/// Waits until the audit file holds `n` records (the last one of a response
/// is written as its body ends, possibly after the client read it).
async fn wait_records(proxy: &Proxy, n: usize) -> Vec<serde_json::Value> {
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

#[tokio::test]
async fn metrics_count_each_decision_exactly() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut toml = config(&geo, &origin, "", "", "");
    toml.push_str(&format!(
        "\n[[route]]\nname = \"watch\"\npath_prefix = \"/watch/\"\nupstreams = [\"{}\"]\nmode = \"monitor\"\n",
        origin.url()
    ));
    let proxy = Proxy::start(&toml);
    let put = |ip: &'static str, path: &'static str| {
        let to = proxy.addr();
        async move {
            let req = http::Request::put(path)
                .header("host", "s3.test")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"0123456789",
                )))
                .unwrap();
            Client::bound_to(ip).send(to, req).await
        }
    };
    assert_eq!(put(ips::FR, "/b/1").await.status, 200);
    assert_eq!(put(ips::DE, "/b/2").await.status, 200);
    assert_eq!(put(ips::US, "/b/3").await.status, 451);
    assert_eq!(put(ips::US, "/b/4").await.status, 451);
    assert_eq!(put(ips::CN, "/b/5").await.status, 451);
    assert_eq!(put(ips::US, "/watch/6").await.status, 200);
    wait_records(&proxy, 6).await;

    let m = scrape(&proxy).await;
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="allowed",route="s3"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="blocked",route="s3"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="flagged",route="s3"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="flagged",route="watch"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_blocked_transfers_total{country="US",reason="country_not_allowed",route="s3",side="client"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_blocked_transfers_total{country="CN",reason="country_not_allowed",route="s3",side="client"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_flagged_transfers_total{country="US",reason="country_not_allowed",route="watch",side="client"}"#
        ),
        Some(1.0)
    );
    // Only proxied bodies count: two allowed uploads of 10 bytes, one flagged.
    assert_eq!(
        value(
            &m,
            r#"residency_transfer_bytes_total{direction="upload",route="s3"}"#
        ),
        Some(20.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_transfer_bytes_total{direction="upload",route="watch"}"#
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &m,
            r#"residency_request_duration_seconds_count{route="s3"}"#
        ),
        Some(5.0)
    );
    assert_eq!(value(&m, "residency_audit_records_total"), Some(6.0));
    assert_eq!(value(&m, "residency_audit_write_errors_total"), Some(0.0));
    assert_eq!(
        value(&m, r#"residency_config_reloads_total{result="failure"}"#),
        Some(0.0)
    );
    assert!(value(&m, "residency_geoip_database_build_timestamp_seconds").unwrap() > 1.7e9);
    // No address, path or key ever appears in a label.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("127.0.0") && !line.contains("/b/"), "{line}");
    }
    // The policy version in the info metric is the one in the records.
    let version = proxy.audit_records()[0]["policy_version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        value(
            &m,
            &format!("residency_policy_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN_US).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    // One of each: allowed client with blocked upstream, blocked client.
    Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    let m = scrape(&proxy).await;
    assert_eq!(
        value(
            &m,
            r#"residency_upstream_ips_rejected_total{country="US",route="s3"}"#
        ),
        Some(1.0)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.prom");
    std::fs::write(&file, &m).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_request_leaves_one_audit_record_with_identity_and_purpose() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEFR/20261128/eu-west-3/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=deadbeefcafe";
    let rsp = Client::bound_to(ips::FR)
        .get(
            proxy.addr(),
            "/bucket/patients/123.json",
            &[("authorization", sigv4), ("x-access-purpose", "care")],
        )
        .await;
    assert_eq!(rsp.status, 200);
    let presigned = "/bucket/scan.dcm?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAPRESIGNED%2F20261128%2Feu-west-3%2Fs3%2Faws4_request&X-Amz-Signature=abc";
    assert_eq!(
        Client::bound_to(ips::US)
            .get(proxy.addr(), presigned, &[])
            .await
            .status,
        451
    );
    assert_eq!(
        Client::bound_to(ips::DE)
            .get(proxy.addr(), "/nobucket", &[])
            .await
            .status,
        200
    );
    let records = wait_records(&proxy, 3).await;
    let by_id = |rsp_id: &str| records.iter().find(|r| r["request_id"] == rsp_id).cloned();
    let first = by_id(rsp.header("x-residency-request-id")).expect("record of the first request");
    assert_eq!(first["identity"], "AKIAEXAMPLEFR");
    assert_eq!(first["purpose"], "care");
    assert_eq!(first["object_key"], "bucket/patients/123.json");
    assert_eq!(first["client_country"], "FR");
    assert_eq!(first["upstream_ip"], ips::ORIGIN);
    assert_eq!(first["upstream_country"], "DE");
    assert_eq!(first["decision"], "allowed");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "s3");
    let text = std::fs::read_to_string(proxy.audit_path()).unwrap();
    assert!(
        !text.contains("deadbeefcafe") && !text.contains("X-Amz-Signature"),
        "no secret in the trail"
    );
    let blocked = records.iter().find(|r| r["status"] == 451).unwrap();
    assert_eq!(blocked["identity"], "AKIAPRESIGNED");
    assert_eq!(blocked["decision"], "blocked");
    assert_eq!(blocked["side"], "client");
    assert_eq!(blocked["reason"], "country_not_allowed");
    assert_eq!(blocked["client_country"], "US");
    assert!(blocked["upstream_ip"].is_null());
    let anonymous = records
        .iter()
        .find(|r| r["client_country"] == "DE")
        .unwrap();
    assert_eq!(anonymous["identity"], "anonymous");
    assert!(anonymous["purpose"].is_null());

    // The trail verifies.
    let stdout = assert_audit_verifies(&[&proxy.audit_path()]);
    assert!(stdout.starts_with("ok: 3 records in 1 file,"));
}

#[tokio::test]
async fn object_keys_can_be_hashed_or_left_out() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    for (mode, expected) in [
        (
            "sha256",
            serde_json::json!("a4c4b3c4e3d1a1a3f1b3e8b0c31e4d0dd74b5ac2d4d2e2c8f9c1d8b0c8a2a1f0"),
        ),
        ("none", serde_json::Value::Null),
    ] {
        let toml = config(&geo, &origin, "", "", "");
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("a.jsonl");
        let toml = format!(
            "{toml}\n[audit]\npath = \"{}\"\nobject_key = \"{mode}\"\n",
            audit.display()
        );
        let proxy = Proxy::start(&toml);
        Client::bound_to(ips::FR)
            .get(proxy.addr(), "/bucket/patient-42", &[])
            .await;
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&audit).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(!text.contains("patient-42"), "{mode}: {text}");
        if mode == "sha256" {
            let key = record["object_key"].as_str().unwrap();
            assert_eq!(key.len(), 64);
            assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
            let _ = expected;
        } else {
            assert_eq!(record["object_key"], expected);
        }
    }
}

#[tokio::test]
async fn missing_purpose_is_428_when_required() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[audit]\npath = \"{}\"\nrequire_purpose = true\n",
        config(&geo, &origin, "", "", ""),
        dir.path().join("a.jsonl").display()
    );
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 428);
    assert!(
        rsp.text().contains("<Code>PreconditionRequired</Code>"),
        "{}",
        rsp.text()
    );
    assert!(rsp.text().contains("x-access-purpose"));
    assert_eq!(origin.request_count(), 0);
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[("x-access-purpose", "treatment")])
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 1);
    // A purpose in another script than ASCII is a purpose, recorded as
    // sent; bytes that are not UTF-8 are none (428, and its record).
    let rsp = Client::bound_to(ips::FR)
        .get(
            proxy.addr(),
            "/b/k",
            &[("x-access-purpose", "soins médicaux ☤")],
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(origin.request_count(), 2);
    let raw = crate::support::client::raw_exchange(
        ips::FR,
        proxy.addr(),
        b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nx-access-purpose: soins \xff\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 428"), "{raw}");
    assert_eq!(origin.request_count(), 2);
    let records = records_in(&dir.path().join("a.jsonl"));
    let purposes: Vec<&serde_json::Value> = records.iter().map(|r| &r["purpose"]).collect();
    assert_eq!(
        purposes,
        [
            &serde_json::Value::Null,
            &serde_json::json!("treatment"),
            &serde_json::json!("soins médicaux ☤"),
            &serde_json::Value::Null,
        ]
    );
    assert_audit_verifies(&[&dir.path().join("a.jsonl")]);
}

#[tokio::test]
async fn unwritable_audit_fails_closed_by_default_and_continues_on_request() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    // /dev/full accepts the open and fails every write (ENOSPC).
    let toml = format!(
        "{}\n[audit]\npath = \"/dev/full\"\n",
        config(&geo, &origin, "", "", "")
    );
    let proxy = Proxy::start(&toml);
    // The first request finds the trail healthy and is forwarded; its
    // record cannot be written, so its response is cut short rather than
    // completing untraced.
    let mut s = crate::support::client::connect_from(ips::FR, proxy.addr()).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"GET /download/100000 HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out),
    )
    .await;
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    let body = out.len() - head_end;
    assert!(body < 100_000, "the body must not complete: {body} bytes");
    // From then on the trail is known to be broken: 503 before anything is forwarded.
    let before = origin.request_count();
    let rsp = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 503);
    assert!(rsp.text().contains("<Code>ServiceUnavailable</Code>"));
    assert_eq!(
        origin.request_count(),
        before,
        "nothing forwarded while the trail is down"
    );
    let m = scrape(&proxy).await;
    assert!(
        value(&m, "residency_audit_write_errors_total").unwrap() >= 1.0,
        "{m}"
    );
    assert!(
        value(&m, "residency_audit_refused_requests_total").unwrap() >= 2.0,
        "{m}"
    );
    assert_eq!(value(&m, "residency_audit_records_total"), Some(0.0));
    drop(proxy);

    let toml = format!(
        "{}\n[audit]\npath = \"/dev/full\"\non_error = \"continue\"\n",
        config(&geo, &origin, "", "", "")
    );
    let proxy = Proxy::start(&toml);
    for _ in 0..2 {
        assert_eq!(
            Client::bound_to(ips::FR)
                .get(proxy.addr(), "/download/1000", &[])
                .await
                .body
                .len(),
            1000
        );
    }
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_and_the_chain_continues() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    for _ in 0..3 {
        Client::bound_to(ips::FR)
            .get(proxy.addr(), "/b/k", &[])
            .await;
    }
    wait_records(&proxy, 3).await;
    let rotated = proxy.audit_path().with_extension("jsonl.1");
    std::fs::rename(proxy.audit_path(), &rotated).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("audit file reopened", 1).await;
    for _ in 0..2 {
        Client::bound_to(ips::US)
            .get(proxy.addr(), "/b/k", &[])
            .await;
    }
    wait_records(&proxy, 2).await;
    let stdout = assert_audit_verifies(&[&rotated, &proxy.audit_path()]);
    assert!(stdout.starts_with("ok: 5 records in 2 files"), "{stdout}");
    // In the wrong order the chain breaks, at the first record of the first file given.
    let out = audit_verify(&[&proxy.audit_path(), &rotated]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn five_hundred_concurrent_requests_make_five_hundred_verified_records() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let addr = proxy.addr();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let ip = [ips::FR, ips::US, ips::DE, ips::CN][i % 4];
        tasks.push(tokio::spawn(async move {
            Client::bound_to(ip)
                .get(addr, &format!("/b/{i}"), &[])
                .await
                .status
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 250);
    assert_eq!(statuses.iter().filter(|s| **s == 451).count(), 250);
    let records = wait_records(&proxy, 500).await;
    assert_eq!(records.len(), 500);
    let stdout = assert_audit_verifies(&[&proxy.audit_path()]);
    assert!(stdout.starts_with("ok: 500 records in 1 file,"));
}

#[tokio::test]
async fn live_cartography_lists_flows_outside_the_eea() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(
        &geo,
        &origin,
        "",
        "",
        r#"allow_countries = ["EEA", "CH"]"#,
    ));
    Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    Client::bound_to(ips::CH)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    wait_records(&proxy, 4).await;
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/transfers", &[])
        .await;
    assert_eq!(rsp.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap();
    let rows = v["transfers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v:#}");
    assert_eq!(rows[0]["side"], "client");
    assert_eq!(rows[0]["country"], "CH");
    assert_eq!(rows[0]["allowed_by_override"], 1);
    assert!(rows[0]["bytes_down"].as_u64().unwrap() > 0);
    let attempts = v["attempts_refused"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{v:#}");
    assert_eq!(attempts[0]["country"], "US");
    assert_eq!(attempts[0]["blocked"], 2);
}

#[tokio::test]
async fn json_logs_carry_one_structured_event_per_blocked_request() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start_args(
        &config(&geo, &origin, "", "", ""),
        &["--log-format", "json"],
    );
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/bucket/secret-key", &[])
        .await;
    let id = rsp.header("x-residency-request-id").to_owned();
    proxy.wait_for_log("request blocked", 1).await;
    let logs = proxy.logs();
    let event: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request blocked")
        .expect("a JSON event for the blocked request");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["side"], "client");
    assert_eq!(event["country"], "US");
    assert_eq!(event["reason"], "country_not_allowed");
    assert_eq!(event["route"], "s3");
    assert_eq!(event["request_id"], id);
    assert!(
        !logs.contains("secret-key"),
        "object keys stay out of info logs"
    );
}

#[tokio::test]
async fn a_second_proxy_on_the_same_audit_file_is_refused() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let first = Proxy::start(&config(&geo, &origin, "", "", ""));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[audit]\npath = \"{}\"\n",
        config(&geo, &origin, "", "", ""),
        first.audit_path().display()
    );
    let path = dir.path().join("second.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked by another process"), "{stderr}");
    // The first keeps writing a chain that verifies.
    Client::bound_to(ips::FR)
        .get(first.addr(), "/b/k", &[])
        .await;
    wait_records(&first, 1).await;
    assert_audit_verifies(&[&first.audit_path()]);
}

/// `[audit] queue = 1`: nearly every request finds its worker's queue full
/// and writes the waiting records itself (backpressure): every request is
/// still served and traced once, and the chain verifies.
#[tokio::test]
async fn a_queue_of_one_record_still_traces_every_concurrent_request() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_section = format!("[audit]\npath = \"{}\"\nqueue = 1\n", audit.display());
    let proxy = Proxy::start(&config(&geo, &origin, "", "", &audit_section));
    let addr = proxy.addr();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let ip = [ips::FR, ips::US, ips::DE][i % 3];
            tokio::spawn(async move {
                Client::bound_to(ip)
                    .get(addr, &format!("/b/{i}"), &[])
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 200);
    assert_eq!(statuses.iter().filter(|s| **s == 451).count(), 100);
    let stdout = assert_audit_verifies(&[&audit]);
    assert!(stdout.starts_with("ok: 300 records in 1 file,"), "{stdout}");
}
