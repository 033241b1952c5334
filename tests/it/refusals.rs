//! Every refusal leaves evidence (issue 13, point 3): a request refused by
//! the HTTP layer (hyper's 400/414/431) or by the proxy before the policy
//! judged it (CONNECT, bad `Host`, `OPTIONS *`, bad `TE`, fail-closed 503)
//! leaves exactly one audit record, with the client's address and country
//! and decision `refused`, and one count; and the live and the offline
//! cartography both list it as refused, never as an allowed flow.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::proxy::{BIN, assert_audit_verifies};
use crate::support::{
    Client, Layout, Origin, Proxy, TestGeo, config, ips, raw_exchange, standard_geo,
};

const QUIET: Duration = Duration::from_secs(2);

/// A proxy with its audit file in `dir` and `audit_extra` in `[audit]`.
async fn start(dir: &Path, server: &str, audit_extra: &str) -> (TestGeo, Origin, Proxy) {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = format!(
        "{}\n[audit]\npath = \"{}\"\n{audit_extra}\n",
        config(&geo, &origin, server, "", ""),
        dir.join("a.jsonl").display()
    );
    let proxy = Proxy::start(&toml);
    (geo, origin, proxy)
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    crate::support::proxy::records_in(path)
}

/// Waits until `path` holds `n` records (a refusal by the HTTP layer is
/// recorded as its connection ends, possibly after the client saw it).
async fn wait_records(path: &Path, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        let r = records(path);
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} audit records, found {}", records(path).len());
}

/// The value of the series `name{labels}` (labels in sorted order), 0 if absent.
fn value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// The metrics once `series` has reached `want` (a refusal by the HTTP
/// layer is counted as its connection ends, which the client may see
/// first; its record is written before its count).
async fn metrics_when(proxy: &Proxy, series: &str, want: u64) -> String {
    for _ in 0..500 {
        let m = proxy.metrics().await;
        if value(&m, series) >= want {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.metrics().await
}

const REFUSED_NO_ROUTE: &str = r#"residency_requests_total{decision="refused",route="(none)"}"#;

fn refused_by(reason: &str) -> String {
    format!(r#"residency_refused_requests_total{{reason="{reason}"}}"#)
}

/// The rows of the live `/transfers`: transfers and attempts refused.
async fn live_rows(proxy: &Proxy) -> Vec<serde_json::Value> {
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/transfers", &[])
        .await;
    assert_eq!(rsp.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap();
    both(&v)
}

/// Transfers and attempts refused, one list.
fn both(v: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut rows = v["transfers"].as_array().unwrap().clone();
    rows.extend(v["attempts_refused"].as_array().unwrap().iter().cloned());
    rows
}

/// The rows of `transfers --format json` over `path`.
fn offline_rows(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["transfers", "--audit"])
        .arg(path)
        .args(["--format", "json"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    both(&v)
}

/// What both cartographies must agree on, per side and country: blocked,
/// flagged, allowed by override, refused (a transfer row and an attempt
/// row of one country added up).
fn counts(rows: &[serde_json::Value]) -> Vec<(String, String, u64, u64, u64, u64)> {
    let mut by: std::collections::BTreeMap<(String, String), [u64; 4]> = Default::default();
    for r in rows {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let key = (
            r["side"].as_str().unwrap().to_owned(),
            r["country"].as_str().unwrap().to_owned(),
        );
        let c = by.entry(key).or_default();
        for (i, k) in ["blocked", "flagged", "allowed_by_override", "refused"]
            .into_iter()
            .enumerate()
        {
            c[i] += n(k);
        }
    }
    by.into_iter()
        .map(|((side, country), c)| (side, country, c[0], c[1], c[2], c[3]))
        .collect()
}

fn audit_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("a.jsonl")
}

/// Each malformed HTTP/1.1 request hyper refuses, from a US client: the
/// status hyper sent, one record naming the client and the reason, one
/// count, and the client's row in `/transfers` says refused.
#[tokio::test]
async fn http1_layer_refusals_leave_one_record_and_one_count_each() {
    let dir = tempfile::tempdir().unwrap();
    let (_geo, origin, proxy) = start(dir.path(), "max_header_bytes = 4096", "").await;
    let path = audit_file(&dir);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "header section over max_header_bytes",
            format!(
                "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-Big: {}\r\n\r\n",
                "a".repeat(8000)
            )
            .into_bytes(),
            431,
            "http_head_too_large",
        ),
        (
            "more header fields than max_headers",
            format!(
                "GET /b/k HTTP/1.1\r\nHost: s3.test\r\n{}\r\n",
                (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
            431,
            "http_head_too_large",
        ),
        (
            "bad request line",
            b"GET /b/k HTTP/1.1 trailing\r\nHost: s3.test\r\n\r\n".to_vec(),
            400,
            "http_malformed",
        ),
        (
            "unknown version",
            b"GET /b/k HTTP/9.9\r\nHost: s3.test\r\n\r\n".to_vec(),
            400,
            "http_bad_version",
        ),
        (
            "bad method",
            b"G(T /b/k HTTP/1.1\r\nHost: s3.test\r\n\r\n".to_vec(),
            400,
            "http_bad_method",
        ),
        (
            "obs-fold",
            b"GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-A: a\r\n folded\r\n\r\n".to_vec(),
            400,
            "http_malformed",
        ),
        (
            "whitespace before the colon",
            b"GET /b/k HTTP/1.1\r\nHost : s3.test\r\n\r\n".to_vec(),
            400,
            "http_malformed",
        ),
        (
            "differing Content-Lengths",
            b"POST /b/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
                .to_vec(),
            400,
            "http_bad_content_length",
        ),
        (
            "a byte not allowed in the target",
            b"GET /b/k\x01x HTTP/1.1\r\nHost: s3.test\r\n\r\n".to_vec(),
            400,
            "http_bad_uri",
        ),
    ];
    for (n, (what, bytes, status, reason)) in cases.iter().enumerate() {
        let before = proxy.metrics().await;
        let answer = raw_exchange(ips::US, proxy.addr(), bytes, QUIET).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let all = wait_records(&path, n + 1).await;
        assert_eq!(all.len(), n + 1, "{what}: exactly one new record");
        let r = &all[n];
        assert_eq!(r["decision"], "refused", "{what}: {r}");
        assert_eq!(r["reason"], *reason, "{what}: {r}");
        assert_eq!(r["status"], *status, "{what}: {r}");
        assert_eq!(r["client_ip"], ips::US, "{what}: {r}");
        assert_eq!(r["client_country"], "US", "{what}: {r}");
        assert_eq!(r["client_ip_source"], "peer", "{what}: {r}");
        assert_eq!(r["route"], serde_json::Value::Null, "{what}: {r}");
        let after = metrics_when(
            &proxy,
            REFUSED_NO_ROUTE,
            value(&before, REFUSED_NO_ROUTE) + 1,
        )
        .await;
        assert_eq!(
            value(&after, REFUSED_NO_ROUTE),
            value(&before, REFUSED_NO_ROUTE) + 1,
            "{what}: one count"
        );
        assert_eq!(
            value(&after, &refused_by(reason)),
            value(&before, &refused_by(reason)) + 1,
            "{what}: one count by reason"
        );
    }
    assert_eq!(origin.request_count(), 0);
    let live = counts(&live_rows(&proxy).await);
    let n = cases.len() as u64;
    assert_eq!(live, [("client".into(), "US".into(), 0, 0, 0, n)]);
    assert_eq!(counts(&offline_rows(&path)), live);
    assert_audit_verifies(&[&path]);
}

/// Refusals before routing judge the client first: its address (here from
/// a trusted proxy's `X-Forwarded-For`) and country are recorded, the
/// decision is `refused`, and neither cartography calls it allowed.
#[tokio::test]
async fn refusals_before_routing_record_the_judged_client_and_are_never_allowed_flows() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "trusted_proxies = [\"{}\"]\nclient_ip_source = \"x-forwarded-for\"",
        ips::TRUSTED
    );
    let (_geo, origin, proxy) = start(dir.path(), &server, "").await;
    let path = audit_file(&dir);
    let xff = format!("X-Forwarded-For: {}\r\n", ips::US);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "CONNECT",
            format!("CONNECT s3.test:443 HTTP/1.1\r\nHost: s3.test:443\r\n{xff}\r\n"),
            405,
            "method_not_allowed",
        ),
        (
            "missing Host",
            format!("GET /b/k HTTP/1.1\r\n{xff}\r\n"),
            400,
            "bad_host",
        ),
        (
            "absolute form disagreeing with Host",
            format!("GET http://other.test/b/k HTTP/1.1\r\nHost: s3.test\r\n{xff}\r\n"),
            400,
            "bad_host",
        ),
        (
            "OPTIONS *",
            format!("OPTIONS * HTTP/1.1\r\nHost: s3.test\r\n{xff}\r\n"),
            404,
            "no_route",
        ),
        (
            "bad Transfer-Encoding",
            format!(
                "POST /b/k HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: gzip, chunked\r\n{xff}\r\n0\r\n\r\n"
            ),
            400,
            "bad_transfer_encoding",
        ),
    ];
    for (n, (what, req, status, reason)) in cases.iter().enumerate() {
        let before = proxy.metrics().await;
        let req = req.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(ips::TRUSTED, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let all = wait_records(&path, n + 1).await;
        assert_eq!(all.len(), n + 1, "{what}: exactly one new record");
        let r = &all[n];
        assert_eq!(r["decision"], "refused", "{what}: {r}");
        assert_eq!(r["reason"], *reason, "{what}: {r}");
        assert_eq!(r["status"], *status, "{what}: {r}");
        assert_eq!(r["client_ip"], ips::US, "{what}: {r}");
        assert_eq!(r["client_country"], "US", "{what}: {r}");
        assert!(r.get("client_ip_source").is_none(), "{what}: {r}");
        let after = proxy.metrics().await;
        assert_eq!(
            value(&after, REFUSED_NO_ROUTE),
            value(&before, REFUSED_NO_ROUTE) + 1,
            "{what}: one count"
        );
        assert_eq!(
            value(&after, &refused_by(reason)),
            value(&before, &refused_by(reason)) + 1,
            "{what}: one count by reason"
        );
        for d in ["allowed", "blocked", "flagged"] {
            let series = format!(r#"residency_requests_total{{decision="{d}",route="s3"}}"#);
            assert_eq!(value(&after, &series), value(&before, &series), "{what}");
        }
    }
    assert_eq!(origin.request_count(), 0);
    // A blocked request beside them, so the rows also show a policy decision.
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 451);
    wait_records(&path, cases.len() + 1).await;
    let live = counts(&live_rows(&proxy).await);
    let n = cases.len() as u64;
    assert_eq!(live, [("client".into(), "US".into(), 1, 0, 0, n)]);
    assert_eq!(counts(&offline_rows(&path)), live);
    assert_audit_verifies(&[&path]);
}

/// A missing purpose is refused after routing: counted on its route as
/// refused, recorded with the client, never an allowed flow.
#[tokio::test]
async fn a_missing_purpose_is_a_refusal_on_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = format!(
        "{}\n[audit]\npath = \"{}\"\nrequire_purpose = true\n",
        config(&geo, &origin, "", "", r#"allow_countries = ["EEA", "CH"]"#),
        audit_file(&dir).display()
    );
    let proxy = Proxy::start(&toml);
    let rsp = Client::bound_to(ips::CH)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 428);
    let r = &wait_records(&audit_file(&dir), 1).await[0];
    assert_eq!(
        (
            &r["decision"],
            &r["reason"],
            &r["client_country"],
            &r["route"]
        ),
        (
            &"refused".into(),
            &"purpose_required".into(),
            &"CH".into(),
            &"s3".into()
        ),
        "{r}"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="refused",route="s3"}"#
        ),
        1
    );
    assert_eq!(
        value(
            &m,
            r#"residency_requests_total{decision="allowed",route="s3"}"#
        ),
        0
    );
    let live = counts(&live_rows(&proxy).await);
    assert_eq!(live, [("client".into(), "CH".into(), 0, 0, 0, 1)]);
    assert_eq!(counts(&offline_rows(&audit_file(&dir))), live);
}

/// Fail-closed: while the trail cannot be written, refusals are 503 and
/// still counted (the record cannot be written: that is why), with the
/// client's country in `/transfers`, never as allowed.
#[tokio::test]
async fn fail_closed_503_is_counted_as_refused_with_the_client() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = format!(
        "{}\n[audit]\npath = \"/dev/full\"\n",
        config(&geo, &origin, "", "", "")
    );
    let proxy = Proxy::start(&toml);
    // The first write fails and marks the trail down.
    let _ = Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/first", &[])
        .await;
    let before = proxy.metrics().await;
    let rsp = Client::bound_to(ips::US)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    assert_eq!(rsp.status, 503);
    let after = proxy.metrics().await;
    assert_eq!(
        value(&after, &refused_by("audit_unavailable")),
        value(&before, &refused_by("audit_unavailable")) + 1
    );
    assert_eq!(
        value(&after, REFUSED_NO_ROUTE),
        value(&before, REFUSED_NO_ROUTE) + 1
    );
    let live = counts(&live_rows(&proxy).await);
    assert_eq!(live, [("client".into(), "US".into(), 0, 0, 0, 1)]);
}

/// The sum of every `residency_requests_total` series.
fn all_requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("residency_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .sum()
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The class, not the examples: a request mutated anywhere (bytes
/// inserted, deleted or replaced with those parsers trip on) gets, for
/// every response the client receives, exactly one record and one count,
/// whichever layer answered — and none without a response.
#[tokio::test]
async fn any_mutated_request_leaves_one_record_and_one_count_per_response() {
    let dir = tempfile::tempdir().unwrap();
    let (_geo, _origin, proxy) = start(dir.path(), "", "").await;
    let path = audit_file(&dir);
    let base = b"GET /b/k?x=1 HTTP/1.1\r\nHost: s3.test\r\nX-A: v\r\nConnection: close\r\n\r\n";
    let alphabet: &[u8] = b"\0\x01\t \r\n:;,\"'/%?#@\\()<>\x7f\x80\xff aZ0";
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut records_before = 0;
    let mut counts_before = all_requests(&proxy.metrics().await);
    for case in 0..60 {
        let mut req = base.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(req.len());
            let byte = alphabet[rng.below(alphabet.len())];
            match rng.below(3) {
                0 => req.insert(at, byte),
                1 => {
                    req.remove(at);
                }
                _ => req[at] = byte,
            }
        }
        let answer = raw_exchange(ips::US, proxy.addr(), &req, Duration::from_secs(1)).await;
        let responses =
            answer.matches("HTTP/1.1 ").count() as u64 + answer.matches("HTTP/1.0 ").count() as u64;
        let mut counts = all_requests(&proxy.metrics().await);
        for _ in 0..500 {
            if counts - counts_before >= responses {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            counts = all_requests(&proxy.metrics().await);
        }
        let all = records(&path);
        let records = all.len();
        let what = String::from_utf8_lossy(&req).into_owned();
        for r in &all[records_before.min(records)..] {
            // A US client: refused or blocked, never allowed, always named.
            assert_eq!(r["client_ip"], ips::US, "case {case}: {what:?}: {r}");
            assert_ne!(r["decision"], "allowed", "case {case}: {what:?}: {r}");
        }
        assert_eq!(
            counts - counts_before,
            responses,
            "case {case}: {what:?} -> {answer:?}"
        );
        assert_eq!(
            (records - records_before) as u64,
            responses,
            "case {case}: {what:?} -> {answer:?}"
        );
        records_before = records;
        counts_before = counts;
    }
    assert_audit_verifies(&[&path]);
}

/// The record budget is validated like every other key, with its place.
#[test]
fn the_record_budget_is_validated_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[audit]\nprotocol_error_records = 2000000\nprotocol_error_window = \"0s\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", "bad.toml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "bad.toml:2:26: protocol_error_records = 2000000 is out of range (expected 0 to 1048576)\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:3:25: duration \"0s\" must be greater than zero\n"),
        "{stderr}"
    );
}

/// A client that cannot be traced (a trusted proxy naming garbage) is of
/// unknown country in its record; the live table counts it the same way,
/// refused or blocked.
#[tokio::test]
async fn untraceable_clients_are_counted_alike_live_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "trusted_proxies = [\"{}\"]\nclient_ip_source = \"x-forwarded-for\"",
        ips::TRUSTED
    );
    let (_geo, origin, proxy) = start(dir.path(), &server, "").await;
    let path = audit_file(&dir);
    for (req, status) in [
        (
            "CONNECT s3.test:443 HTTP/1.1\r\nHost: s3.test:443\r\nX-Forwarded-For: not-an-address\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            "GET /b/k HTTP/1.1\r\nHost: s3.test\r\nX-Forwarded-For: not-an-address\r\nConnection: close\r\n\r\n",
            451,
        ),
    ] {
        let answer = raw_exchange(ips::TRUSTED, proxy.addr(), req.as_bytes(), QUIET).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
    }
    let all = wait_records(&path, 2).await;
    for r in &all {
        assert_eq!(r["client_ip"], serde_json::Value::Null, "{r}");
        assert_eq!(r["client_country"], "unknown", "{r}");
    }
    assert_eq!(origin.request_count(), 0);
    let live = counts(&live_rows(&proxy).await);
    assert_eq!(live, [("client".into(), "unknown".into(), 1, 0, 0, 1)]);
    assert_eq!(counts(&offline_rows(&path)), live);
}

/// Behind a trusted load balancer speaking the PROXY protocol, a request
/// the HTTP layer refuses is recorded with the client the PROXY header
/// named, and says so.
#[tokio::test]
async fn http_layer_refusals_behind_proxy_protocol_record_the_announced_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "trusted_proxies = [\"{}\"]\nclient_ip_source = \"proxy-protocol\"",
        ips::TRUSTED
    );
    let (_geo, _origin, proxy) = start(dir.path(), &server, "").await;
    let path = audit_file(&dir);
    let req = format!(
        "PROXY TCP4 {} 127.0.0.1 40000 8080\r\nGET /b/k HTTP/1.1\r\nHost : s3.test\r\n\r\n",
        ips::US
    );
    let answer = raw_exchange(ips::TRUSTED, proxy.addr(), req.as_bytes(), QUIET).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let r = &wait_records(&path, 1).await[0];
    assert_eq!(r["reason"], "http_malformed", "{r}");
    assert_eq!(r["client_ip"], ips::US, "{r}");
    assert_eq!(r["client_country"], "US", "{r}");
    assert_eq!(r["client_ip_source"], "proxy-protocol", "{r}");
}
