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
            "requests": n[0], "blocked": n[1], "flagged": n[2], "allowed_by_override": n[3],
            "refused": 0, "bytes_up": n[4], "bytes_down": n[5], "identities": n[6],
            "first_seen": t(first), "last_seen": t(last),
        })
    };
    assert_eq!(
        doc,
        json!({
            "records": 7,
            "from": t(1),
            "to": t(7),
            "unrecorded_refusals": 0,
            "transfers": [
                row("client", "US", [3, 1, 1, 1, 13, 24, 2], 2, 7),
                row("client", "CH", [1, 0, 0, 1, 5, 50, 1], 4, 4),
                row("client", "unknown", [1, 0, 0, 1, 1, 2, 1], 6, 6),
                row("upstream", "CN", [1, 1, 0, 0, 0, 0, 1], 5, 5),
                row("upstream", "unknown", [1, 0, 0, 1, 1, 2, 1], 6, 6),
            ]
        })
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
        "| side | country | requests | blocked | flagged | allowed | refused | bytes up | bytes down | identities | first seen | last seen |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n\
         | client | US | 3 | 1 | 1 | 1 | 0 | 13 | 24 | 2 | {t2} | {t7} |\n\
         | client | CH | 1 | 0 | 0 | 1 | 0 | 5 | 50 | 1 | {t4} | {t4} |\n\
         | client | unknown | 1 | 0 | 0 | 1 | 0 | 1 | 2 | 1 | {t6} | {t6} |\n\
         | upstream | CN | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 1 | {t5} | {t5} |\n\
         | upstream | unknown | 1 | 0 | 0 | 1 | 0 | 1 | 2 | 1 | {t6} | {t6} |\n",
        t2 = t(2),
        t4 = t(4),
        t5 = t(5),
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

#[test]
fn html_is_one_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &LOG);
    let html = stdout_ok(&transfers(dir.path(), "html"));
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<title>Transfers outside the EEA</title>"));
    assert!(html.contains("from 7 audit records dated"));
    assert!(html.contains(
        "<tr><td>client</td><td>US</td><td class=\"n\">3</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">1</td>"
    ), "{html}");
    assert!(
        html.contains(
            "<tr><td>upstream</td><td>CN</td><td class=\"n\">1</td><td class=\"n\">1</td>"
        )
    );
    assert!(html.contains("<svg "));
    assert!(html.contains("<style>"));
    for external in [
        "http://", "https://", "href=", "src=", "<script", "<link", "url(", "@import",
    ] {
        assert!(!html.contains(external), "{external} in {html}");
    }
}

#[test]
fn country_values_from_the_files_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [Req {
        client: "<script>",
        upstream: None,
        decision: "blocked",
        side: Some("client"),
        identity: "x",
        up: 0,
        down: 0,
    }];
    write_log(dir.path(), &hostile);
    let html = stdout_ok(&transfers(dir.path(), "html"));
    assert!(html.contains("<td>&lt;script&gt;</td>"), "{html}");
    assert!(html.contains(">client &lt;script&gt;</text>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    let md = stdout_ok(&transfers(dir.path(), "md"));
    assert!(md.contains("| client | \\<script\\> | 1 | 1 |"), "{md}");
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
    assert!(html.contains("No transfer outside the EEA was recorded."));
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
