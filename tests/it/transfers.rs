//! `residency-proxy transfers`: the cartography of flows outside the EEA,
//! from audit files sealed by the library's `Chain`.

use std::path::Path;
use std::process::{Command, Output};

use residency_proxy::audit::{AuditRecord, Chain};
use serde_json::json;

use crate::audit::record;
use crate::support::proxy::BIN;

struct Req {
    client: &'static str,
    upstream: Option<&'static str>,
    decision: &'static str,
    side: Option<&'static str>,
    identity: &'static str,
    up: u64,
    down: u64,
}

fn req(r: &Req, n: u64) -> AuditRecord {
    let mut rec = record(n);
    rec.client_country = r.client.into();
    rec.upstream_country = r.upstream.map(Into::into);
    rec.upstream_ip = r.upstream.map(|_| "192.0.2.10".into());
    rec.decision = r.decision.into();
    rec.side = r.side.map(Into::into);
    rec.reason = r.side.map(|s| {
        if s == "client" {
            "country_not_allowed".into()
        } else {
            "no_allowed_upstream_ip".into()
        }
    });
    rec.status = if r.decision == "blocked" { 451 } else { 200 };
    rec.identity = r.identity.into();
    rec.bytes_up = r.up;
    rec.bytes_down = r.down;
    rec
}

/// FR/DE inside; US, CN, CH and unknown outside; blocked, flagged and
/// allowed-by-override; identities alice, bob and anonymous.
const LOG: [Req; 7] = [
    Req {
        client: "FR",
        upstream: Some("DE"),
        decision: "allowed",
        side: None,
        identity: "alice",
        up: 100,
        down: 1000,
    },
    Req {
        client: "US",
        upstream: None,
        decision: "blocked",
        side: Some("client"),
        identity: "alice",
        up: 0,
        down: 0,
    },
    Req {
        client: "US",
        upstream: Some("FR"),
        decision: "flagged",
        side: Some("client"),
        identity: "bob",
        up: 10,
        down: 20,
    },
    Req {
        client: "CH",
        upstream: Some("DE"),
        decision: "allowed",
        side: None,
        identity: "alice",
        up: 5,
        down: 50,
    },
    Req {
        client: "DE",
        upstream: Some("CN"),
        decision: "blocked",
        side: Some("upstream"),
        identity: "bob",
        up: 0,
        down: 0,
    },
    Req {
        client: "unknown",
        upstream: Some("unknown"),
        decision: "allowed",
        side: None,
        identity: "anonymous",
        up: 1,
        down: 2,
    },
    Req {
        client: "US",
        upstream: Some("DE"),
        decision: "allowed",
        side: None,
        identity: "alice",
        up: 3,
        down: 4,
    },
];

/// Writes `reqs` as records 1.. into `a.jsonl` (the first three) and
/// `b.jsonl` (the rest), one chain.
fn write_log(dir: &Path, reqs: &[Req]) {
    let mut chain = Chain::new();
    let mut a = String::new();
    let mut b = String::new();
    for (i, r) in reqs.iter().enumerate() {
        let line = chain.seal(&mut req(r, i as u64 + 1));
        let file = if i < 3 { &mut a } else { &mut b };
        file.push_str(&line);
        file.push('\n');
    }
    std::fs::write(dir.join("a.jsonl"), a).unwrap();
    std::fs::write(dir.join("b.jsonl"), b).unwrap();
}

fn transfers(dir: &Path, format: &str) -> Output {
    Command::new(BIN)
        .args([
            "transfers",
            "--audit",
            "a.jsonl",
            "b.jsonl",
            "--format",
            format,
        ])
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The form the help shows (`…T15:20:04Z`) is accepted and covers its
/// whole second; a field out of range or a leap second is refused with
/// the error, never read as some other period.
#[test]
fn since_and_until_take_the_documented_form_and_refuse_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let one = run(
        dir.path(),
        &[
            "--format",
            "json",
            "--since",
            "2026-11-28T15:20:04Z",
            "--until",
            "2026-11-28T15:20:04Z",
        ],
    );
    let one: serde_json::Value = serde_json::from_str(&stdout_ok(&one)).unwrap();
    assert_eq!(one["records"], 1);
    for bad in [
        "2026-13-01",
        "2026-02-30",
        "2026-11-28T24:00:00Z",
        "2026-11-28T15:60",
        "2026-12-31T23:59:60Z",
        "2026-11-28T15:20:04+01:00",
    ] {
        let out = run(dir.path(), &["--until", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--until \"{bad}\" is not a date or time")),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty(), "{bad}");
    }
}

#[test]
fn a_since_after_until_is_a_usage_error_naming_both_not_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    for (since, until) in [
        ("2026-11-29", "2026-11-28"),
        ("2026-11-28T15:20:05Z", "2026-11-28T15:20:04Z"),
    ] {
        for format in ["md", "json", "html"] {
            let out = run(
                dir.path(),
                &["--format", format, "--since", since, "--until", until],
            );
            assert_eq!(out.status.code(), Some(2), "{since} {until} {format}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!("--since \"{since}\" is after --until \"{until}\": the period is empty\n"),
            );
            assert!(out.stdout.is_empty(), "{since} {until} {format}");
        }
    }
    // A value holding a line break or a direction override stays on the
    // one line, written \u{…}.
    for (bad, shown) in [
        ("2026-12-06\n", "2026-12-06\\u{a}"),
        ("2026-12-06\t", "2026-12-06\\u{9}"),
        ("2026\u{202e}-12-06", "2026\\u{202e}-12-06"),
    ] {
        let out = run(dir.path(), &["--since", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("--since \"{shown}\" is not a date")),
            "{err}"
        );
    }
    // The same second on both sides still holds its record.
    let out = run(
        dir.path(),
        &[
            "--format",
            "json",
            "--since",
            "2026-11-28T15:20:04.000Z",
            "--until",
            "2026-11-28T15:20:04Z",
        ],
    );
    let one: serde_json::Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(one["records"], 1);
}

fn t(s: u64) -> String {
    format!("2026-11-28T15:20:{s:02}.123Z")
}

#[test]
fn json_counts_each_side_and_country_outside_the_eea() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(&transfers(dir.path(), "json"))).unwrap();
    let row = |side: &str, country: &str, n: [u64; 7], first: u64, last: u64| {
        json!({
            "side": side, "country": country,
            "requests": n[0], "allowed_by_override": n[1], "allowed_by_grant": n[2],
            "flagged": n[3], "bytes_up": n[4], "bytes_down": n[5], "identities": n[6],
            "first_seen": t(first), "last_seen": t(last),
        })
    };
    let attempt = |side: &str, country: &str, blocked: u64, at: u64| {
        json!({
            "side": side, "country": country, "blocked": blocked, "refused": 0,
            "identities": 1, "first_seen": t(at), "last_seen": t(at),
        })
    };
    assert_eq!(doc["records"], 7);
    assert_eq!(doc["from"], t(1));
    assert_eq!(doc["to"], t(7));
    assert_eq!(doc["internal"], 0);
    assert_eq!(
        doc["transfers"],
        json!([
            row("client", "US", [2, 1, 0, 1, 13, 24, 2], 3, 7),
            row("client", "CH", [1, 1, 0, 0, 5, 50, 1], 4, 4),
            row("client", "unknown", [1, 1, 0, 0, 1, 2, 1], 6, 6),
            row("upstream", "unknown", [1, 1, 0, 0, 1, 2, 1], 6, 6),
        ])
    );
    assert_eq!(
        doc["attempts_refused"],
        json!([
            attempt("client", "US", 1, 2),
            attempt("upstream", "CN", 1, 5)
        ])
    );
}

#[test]
fn markdown_is_the_default_format() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let out = Command::new(BIN)
        .args(["transfers", "--audit", "a.jsonl", "--audit", "b.jsonl"])
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let md = stdout_ok(&out);
    assert_eq!(md, stdout_ok(&transfers(dir.path(), "md")));
    let table = format!(
        "| side | country | requests | by override | by grant | flagged | bytes up | bytes down | identities | first seen | last seen |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n\
         | client | US | 2 | 1 | 0 | 1 | 13 | 24 | 2 | {t3} | {t7} |\n\
         | client | CH | 1 | 1 | 0 | 0 | 5 | 50 | 1 | {t4} | {t4} |\n\
         | client | unknown | 1 | 1 | 0 | 0 | 1 | 2 | 1 | {t6} | {t6} |\n\
         | upstream | unknown | 1 | 1 | 0 | 0 | 1 | 2 | 1 | {t6} | {t6} |\n",
        t3 = t(3),
        t4 = t(4),
        t6 = t(6),
        t7 = t(7),
    );
    assert!(md.starts_with("# Transfers outside the EEA\n\n"), "{md}");
    assert!(
        md.contains(&format!(
            "from 7 audit records dated {} to {}.\n",
            t(1),
            t(7)
        )),
        "{md}"
    );
    assert!(md.contains(&table), "{md}");
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["transfers", "--audit", "a.jsonl", "b.jsonl"])
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

const TRANSPARENCY: &str = r#"
[[route]]
name = "s3"
upstreams = ["http://127.0.0.1:9000"]

[transparency]
entity = "Hôpital Exemple, 1 rue de la Paix, Paris"
certificate = "HDS 2026-042, activités 1 à 6, jusqu'au 2029-01-31"
contact = "dpo@hopital.example"

[[transparency.country]]
code = "CH"
basis = "adequacy"
basis_detail = "décision 2000/518/CE"
recipients = "Prestataire de support (sous-traitant)"
purposes = "maintenance"
data = "journaux techniques"
"#;

#[test]
fn html_page_is_french_by_default_english_on_request_with_the_declarations() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    std::fs::write(dir.path().join("p.toml"), TRANSPARENCY).unwrap();
    let fr = stdout_ok(&run(
        dir.path(),
        &["--format", "html", "--config", "p.toml"],
    ));
    assert!(
        fr.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"),
        "{fr}"
    );
    assert!(fr.contains("<title>Cartographie des transferts de données hors de l’EEE</title>"));
    assert!(fr.contains("Hôpital Exemple, 1 rue de la Paix, Paris"));
    assert!(
        fr.contains("<td>Prestataire de support (sous-traitant)</td>"),
        "{fr}"
    );
    assert!(fr.contains("<tr data-country=\"CH\"><td>Suisse <small>(CH)</small></td>"));
    assert!(fr.contains("<tr data-country=\"US\"><td>États-Unis <small>(US)</small></td>"));
    assert!(fr.contains("AUCUNE BASE LÉGALE DÉCLARÉE"));
    assert!(
        fr.contains("<li><code>a.jsonl</code></li><li><code>b.jsonl</code></li>")
            || fr.contains("<li><code>a.jsonl</code></li>\n<li><code>b.jsonl</code></li>"),
        "{fr}"
    );
    // The one link: an empty inline icon, so browsers ask for no favicon.
    let fr_ = fr.replacen("<link rel=\"icon\" href=\"data:,\">", "", 1);
    for external in [
        "http://", "https://", "href=", "src=", "<script", "<link", "url(", "@import",
    ] {
        assert!(!fr_.contains(external), "{external} in {fr}");
    }
    let en = stdout_ok(&run(
        dir.path(),
        &["--format", "html", "--config", "p.toml", "--lang", "en"],
    ));
    assert!(en.contains("<title>Map of data transfers outside the EEA</title>"));
    assert!(en.contains("<td>Switzerland <small>(CH)</small></td>"));
    assert!(en.contains("NO LEGAL BASIS DECLARED"));
    let md = stdout_ok(&run(dir.path(), &["--config", "p.toml"]));
    assert!(
        md.contains(
            "\n## Legal bases of the transfers\n\n\
             Published by Hôpital Exemple, 1 rue de la Paix, Paris; HDS certificate: HDS 2026-042, \
             activités 1 à 6, jusqu'au 2029-01-31; contact: dpo@hopital.example.\n\n\
             | country | transfers | legal basis | recipients | purposes | data categories |\n\
             |---|--:|---|---|---|---|\n\
             | CH | 1 | Adequacy decision (GDPR Art. 45): décision 2000/518/CE | \
             Prestataire de support (sous-traitant) | maintenance | journaux techniques |\n\
             | US | 2 | **NO LEGAL BASIS DECLARED** | | | |\n\
             | unknown | 2 | **NO LEGAL BASIS DECLARED** | | | |\n"
        ),
        "{md}"
    );
    let out = run(dir.path(), &["--format", "html", "--lang", "de"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "unknown --lang \"de\" (expected fr or en)\n"
    );
}

#[test]
fn since_and_until_count_only_the_period_after_verifying_everything() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&stdout_ok(&run(dir.path(), &all))).unwrap()
    };
    let one = json(&[
        "--since",
        "2026-11-28T15:20:04",
        "--until",
        "2026-11-28T15:20:04",
    ]);
    assert_eq!(one["records"], 1);
    assert_eq!(one["transfers"][0]["country"], "CH");
    assert_eq!(json(&["--until", "2026-11-28"])["records"], 7);
    assert_eq!(json(&["--since", "2026-11-29"])["records"], 0);
    let out = run(dir.path(), &["--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--since \"yesterday\" is not a date or time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn country_values_from_the_files_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [Req {
        client: "<script>",
        upstream: None,
        decision: "flagged",
        side: Some("client"),
        identity: "x",
        up: 0,
        down: 0,
    }];
    write_log(dir.path(), &hostile);
    let html = stdout_ok(&transfers(dir.path(), "html"));
    assert!(html.contains("<td>&lt;script&gt;</td>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    let md = stdout_ok(&transfers(dir.path(), "md"));
    assert!(
        md.contains("| client | \\<script\\> | 1 | 0 | 0 | 1 |"),
        "{md}"
    );
}

#[test]
fn nothing_outside_the_eea_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG[..1]);
    let md = stdout_ok(&transfers(dir.path(), "md"));
    assert!(
        md.ends_with("\nNo transfer outside the EEA was recorded.\n"),
        "{md}"
    );
    let html = stdout_ok(&transfers(dir.path(), "html"));
    assert!(html.contains("Aucun transfert hors de l’EEE n’a été enregistré sur la période."));
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_ok(&transfers(dir.path(), "json"))).unwrap();
    assert_eq!(doc["records"], 1);
    assert_eq!(doc["transfers"], json!([]));
}

#[test]
fn a_log_that_does_not_verify_gives_no_report() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let path = dir.path().join("b.jsonl");
    let edited =
        std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"status\":451", "\"status\":200", 1);
    std::fs::write(&path, edited).unwrap();
    let out = transfers(dir.path(), "json");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "b.jsonl:2: hash mismatch (record edited) (request_id 0000000000000005)\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(out.status.code(), Some(1));
}

/// The internal, allowed-by-override, flagged (on one and on both sides),
/// blocked and refused requests of [`mixed_traffic`], as (side, country,
/// requests, by override, by grant, flagged) transfer rows and (side,
/// country, blocked, refused) attempt rows.
type Rows = (
    Vec<(String, String, u64, u64, u64, u64)>,
    Vec<(String, String, u64, u64)>,
);

fn rows_of(v: &serde_json::Value) -> Rows {
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap().to_owned();
    let n = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap();
    let transfers = v["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(r, "side"),
                s(r, "country"),
                n(r, "requests"),
                n(r, "allowed_by_override"),
                n(r, "allowed_by_grant"),
                n(r, "flagged"),
            )
        })
        .collect();
    let attempts = v["attempts_refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(r, "side"),
                s(r, "country"),
                n(r, "blocked"),
                n(r, "refused"),
            )
        })
        .collect();
    (transfers, attempts)
}

/// A proxy with an internal client network and an internal storage, a
/// route in monitor mode to a storage in the US, and the same requests
/// every time: returns it once they are all recorded.
pub(crate) async fn mixed_traffic() -> (
    crate::support::TestGeo,
    Vec<crate::support::Origin>,
    crate::support::Proxy,
) {
    use crate::support::{Client, Layout, Origin, Proxy, ips, raw_exchange, standard_geo};
    const INTERNAL_STORAGE: &str = "127.0.0.12";
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let us = Origin::start(ips::ORIGIN_US).await;
    let internal = Origin::start(INTERNAL_STORAGE).await;
    let toml = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[admin]
listen = "127.0.0.1:0"

[geoip]
database = "{db}"

[policy]
allow_countries = ["EEA", "CH"]
allow_networks = ["{unmapped}/32", "{internal}/32"]

[[route]]
name = "watch"
path_prefix = "/watch/"
mode = "monitor"
upstreams = ["{us}"]

[[route]]
name = "internal"
path_prefix = "/internal/"
upstreams = ["{internal_url}"]

[[route]]
name = "s3"
upstreams = ["{origin}"]
"#,
        db = geo.path().display(),
        unmapped = ips::UNMAPPED,
        internal = INTERNAL_STORAGE,
        us = us.url(),
        internal_url = internal.url(),
        origin = origin.url(),
    );
    let proxy = Proxy::start(&toml);
    let get = |ip: &'static str, path: &'static str| {
        let to = proxy.addr();
        async move { Client::bound_to(ip).get(to, path, &[]).await.status }
    };
    assert_eq!(get(ips::FR, "/b/k").await, 200); // inside
    assert_eq!(get(ips::CH, "/b/k").await, 200); // override
    assert_eq!(get(ips::US, "/b/k").await, 451); // blocked
    assert_eq!(get(ips::UNMAPPED, "/b/k").await, 200); // internal client
    assert_eq!(get(ips::US, "/watch/k").await, 200); // flagged, both sides
    assert_eq!(get(ips::FR, "/watch/k").await, 200); // flagged upstream
    assert_eq!(get(ips::FR, "/internal/k").await, 200); // internal storage
    raw_exchange(
        ips::CN,
        proxy.addr(),
        b"GARBAGE\r\n\r\n",
        std::time::Duration::from_millis(200),
    )
    .await; // refused
    // The host's own client refused (a probe with a bad request): internal.
    raw_exchange(
        ips::UNMAPPED,
        proxy.addr(),
        b"GARBAGE\r\n\r\n",
        std::time::Duration::from_millis(200),
    )
    .await;
    for _ in 0..500 {
        if proxy.audit_records().len() >= 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.audit_records().len(), 9);
    (geo, vec![origin, us, internal], proxy)
}

/// Issue 19 and issue 14 (5e): one rule for the live `/transfers` and the
/// report. The host's own networks are not transfers, blocked and refused
/// requests are attempts, and a request flagged on both sides is flagged on
/// both, live and in the report alike.
#[tokio::test]
async fn live_and_report_count_the_same_requests_the_same_way() {
    let (_geo, _origins, proxy) = mixed_traffic().await;
    let rsp = crate::support::Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/transfers", &[])
        .await;
    assert_eq!(rsp.status, 200);
    let live: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap();
    let out = Command::new(BIN)
        .args(["transfers", "--format", "json", "--audit"])
        .arg(proxy.audit_path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    let o = |s: &str| s.to_owned();
    let expected: Rows = (
        vec![
            (o("client"), o("CH"), 1, 1, 0, 0),
            (o("client"), o("US"), 1, 0, 0, 1),
            (o("upstream"), o("US"), 2, 0, 0, 2),
        ],
        vec![(o("client"), o("CN"), 0, 1), (o("client"), o("US"), 1, 0)],
    );
    assert_eq!(rows_of(&live), expected, "{live:#}");
    assert_eq!(rows_of(&report), expected, "{report:#}");
    assert_eq!(live["internal"], 3, "{live:#}");
    assert_eq!(report["internal"], 3, "{report:#}");
    for (l, r) in live["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(report["transfers"].as_array().unwrap())
    {
        assert_eq!(l["bytes_down"], r["bytes_down"], "{live:#} {report:#}");
        assert_eq!(l["bytes_up"], r["bytes_up"]);
    }
}

/// `check` warns about what the page would publish as undeclared: a
/// country outside the EEA the policy admits, monitor mode, and a country
/// the current audit file shows transfers to, each without a basis.
#[test]
fn check_warns_about_transfers_with_no_declared_basis() {
    let dir = tempfile::tempdir().unwrap();
    let geo = crate::support::standard_geo(crate::support::Layout::IpLocationDb).build();
    let mut chain = Chain::new();
    let mut trail = String::new();
    for (i, r) in LOG.iter().enumerate() {
        trail.push_str(&chain.seal(&mut req(r, i as u64 + 1)));
        trail.push('\n');
    }
    std::fs::write(dir.path().join("audit.jsonl"), trail).unwrap();
    let toml = TRANSPARENCY.replace(
        "[[route]]",
        &format!(
            "[geoip]\ndatabase = \"{}\"\n\n[policy]\nallow_countries = [\"EEA\", \"CH\", \"GB\"]\n\n\
             [audit]\npath = \"audit.jsonl\"\n\n[[route]]",
            geo.path().display()
        ),
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", "p.toml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = stdout_ok(&out);
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("[transparency]"))
        .collect();
    assert_eq!(
        warnings,
        [
            "WARNING: [policy] allow_countries admits GB, outside the EEA, and [transparency] \
             declares no legal basis for transfers there",
            "WARNING: the audit trail shows transfers to US and [transparency] declares no legal \
             basis for them",
        ],
        "{stdout}"
    );
}

/// The commented `[transparency]` example of the shipped config, once
/// uncommented, is a valid declaration.
#[test]
fn shipped_transparency_example_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/residency-proxy.toml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split_once("\n# [transparency]\n").unwrap().1;
    let keys: String = section
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| !l.starts_with("file = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let toml = format!(
        "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n[transparency]\n{keys}"
    );
    let config = residency_proxy::config::Config::parse(path, &toml).unwrap();
    let t = config.transparency.unwrap();
    assert!(t.entity.starts_with("Hôpital Exemple"));
    assert_eq!(t.countries.len(), 1);
    assert_eq!(t.countries[0].country.as_str(), "CH");
    assert_eq!(
        t.countries[0].basis,
        residency_proxy::config::LegalBasis::Adequacy
    );
}

/// Issue 19.4: the live `/transfers?format=html` is the report's page, from
/// the live counters: the same destinations and counts.
#[tokio::test]
async fn live_page_is_the_report_page_from_the_live_counters() {
    let (_geo, _origins, proxy) = mixed_traffic().await;
    let get = |path: &'static str| {
        let to = proxy.admin_addr();
        async move {
            crate::support::Client::bound_to("127.0.0.1")
                .get(to, path, &[])
                .await
        }
    };
    let rsp = get("/transfers?format=html").await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("content-type"), "text/html; charset=utf-8");
    let html = rsp.text();
    assert!(
        html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"),
        "{html}"
    );
    let out = Command::new(BIN)
        .args(["transfers", "--format", "html", "--audit"])
        .arg(proxy.audit_path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let report = stdout_ok(&out);
    let shaded = |html: &str| -> Vec<String> {
        let mut v: Vec<String> = html
            .match_indices("class=\"t c")
            .map(|(i, _)| {
                let tail = &html[i..];
                let at = tail.find("data-country=\"").unwrap() + 14;
                let end = tail.find("\" d=").or_else(|| tail.find("\" x=")).unwrap();
                tail[at..end].to_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        shaded(&html),
        ["CH\" data-transfers=\"1", "US\" data-transfers=\"3"],
        "{html}"
    );
    assert_eq!(shaded(&html), shaded(&report));
    let en = get("/transfers?format=html&lang=en").await.text();
    assert!(en.contains("<title>Map of data transfers outside the EEA</title>"));
    // Without format=html, the JSON as before.
    let json = get("/transfers?lang=en").await;
    assert_eq!(json.header("content-type"), "application/json");
}

/// What a client sends in the query of `/transfers` never panics and is
/// never written back: an unknown, repeated, re-cased or percent-encoded
/// `format` or `lang` gets the default (JSON, or the French page), a
/// huge query a 4xx, and the listener answers after each.
#[tokio::test]
async fn live_page_query_attacks_get_the_default_never_the_input() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_geo, _origins, proxy) = mixed_traffic().await;
    let to = proxy.admin_addr();
    let raw = |target: String| async move {
        let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the admin listener answers");
        String::from_utf8_lossy(&out).into_owned()
    };
    let page = |rsp: &str| rsp.contains("text/html") && rsp.contains("<!DOCTYPE html>");
    let json = |rsp: &str| rsp.contains("application/json") && rsp.contains("\"area\"");
    type Check = fn(&str) -> bool;
    let cases: &[(&str, Check)] = &[
        ("format=HTML", |r| !r.contains("<!DOCTYPE")),
        ("format=%68tml", |r| !r.contains("<!DOCTYPE")),
        ("format=html&format=json", |r| r.contains("<!DOCTYPE")),
        ("format=json&format=html", |r| r.contains("<!DOCTYPE")),
        ("format=html&lang=de", |r| r.contains("<html lang=\"fr\">")),
        ("format=html&lang=EN", |r| r.contains("<html lang=\"fr\">")),
        ("format=html&lang=en&lang=fr", |r| {
            r.contains("<html lang=\"en\">")
        }),
        ("format=html&lang", |r| r.contains("<html lang=\"fr\">")),
        ("format=html&lang=%00%FF", |r| {
            r.contains("<html lang=\"fr\">")
        }),
        ("=&&&=&format=html&=", |r| r.contains("<!DOCTYPE")),
        ("format=html&lang=%3Cscript%3Ex", |r| {
            !r.contains("script%3Ex")
        }),
        ("format=html&lang=<script>x", |r| !r.contains("<script>x")),
        ("format=html&lang=\"x", |r| !r.contains("\"x")),
    ];
    for (query, ok) in cases {
        let rsp = raw(format!("/transfers?{query}")).await;
        let status = rsp.get(9..12).unwrap_or("");
        if status == "200" {
            assert!(page(&rsp) || json(&rsp), "{query}: {rsp}");
            assert!(ok(&rsp), "{query}: {rsp}");
        } else {
            assert!(status.starts_with('4'), "{query}: {rsp}");
        }
    }
    // A huge query: a 4xx (or the default), never a hang or a crash.
    let huge = format!("/transfers?format=html&lang={}", "e".repeat(200_000));
    let rsp = raw(huge).await;
    let status = rsp.get(9..12).unwrap_or("");
    assert!(
        status.starts_with('4') || rsp.contains("<html lang=\"fr\">") || rsp.is_empty(),
        "{}",
        &rsp[..rsp.len().min(300)]
    );
    assert!(!rsp.contains("eeeeeeeeee"), "the query is written back");
    assert!(raw("/healthz".into()).await.contains("200 OK"));
}
