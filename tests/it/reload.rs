//! Reload, whatever sets it off (SIGHUP, the database watch, the TLS
//! watch): a key read only at start is refused on every trigger, never
//! ignored; a refused reload names every problem on one plain line and
//! changes nothing, the audit file included; an applied one logs what
//! changed with the policy version before and after, and marks the change
//! in the audit trail with one record that `audit verify` accepts and
//! `transfers` does not count.

use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::proxy::{BIN, assert_audit_verifies, records_in};
use crate::support::tls::TestCa;
use crate::support::{Client, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

/// `[geoip] watch` every 200 ms, and HTTPS with `[server.tls] watch`.
fn watched_config(geo: &TestGeo, origin: &Origin, ca: &TestCa) -> String {
    let (cert, key) = ca.write_leaf("server", &["s3.test"]);
    config(geo, origin, "", "", "")
        .replace(
            &format!("database = \"{}\"", geo.path().display()),
            &format!(
                "database = \"{}\"\nwatch = true\nwatch_interval = \"200ms\"",
                geo.path().display()
            ),
        )
        .replace(
            "[admin]",
            &format!(
                "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
                 watch = true\nwatch_interval = \"200ms\"\n\n[admin]",
                cert.display(),
                key.display()
            ),
        )
}

fn edit(proxy: &Proxy, f: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(proxy.config_path(), f(&text)).unwrap();
}

/// The log lines containing `needle`.
fn lines_with(proxy: &Proxy, needle: &str) -> Vec<String> {
    proxy
        .logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A start-only key changed in the file is refused by each trigger, naming
/// the key with both values; nothing is logged "reloaded" while it is
/// ignored. Then the file is put back and the next trigger applies.
#[tokio::test]
async fn a_start_only_change_is_refused_by_every_trigger() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let proxy = Proxy::start(&watched_config(&geo, &origin, &ca));
    let original = std::fs::read_to_string(proxy.config_path()).unwrap();
    edit(&proxy, |t| format!("{t}queue = 8\nenabled = true\n"));
    let message = "[audit] queue (running with 4096, file has 8) cannot change on reload (read only at start); restart to apply";

    // The database watch: the database rewritten (same content, new inode).
    standard_geo(Layout::IpLocationDb).write_to(geo.path());
    proxy.wait_for_log("reload refused", 1).await;
    // The TLS watch: a renewed certificate and key, renamed over.
    let (cert, key) = ca.leaf(&["s3.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let tls = original.split("[server.tls]").nth(1).unwrap();
    let path_of = |key: &str| {
        let line = tls.lines().find(|l| l.starts_with(key)).unwrap();
        line.split('"').nth(1).unwrap().to_owned()
    };
    std::fs::rename(&k, path_of("key = ")).unwrap();
    std::fs::rename(&c, path_of("cert = ")).unwrap();
    proxy.wait_for_log("reload refused", 2).await;
    // SIGHUP.
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 3).await;

    let refused = lines_with(&proxy, "reload refused");
    assert_eq!(refused.len(), 3, "{}", proxy.logs());
    for (line, trigger) in refused
        .iter()
        .zip(["database watch", "TLS watch", "SIGHUP"])
    {
        assert!(line.contains(message), "{line}");
        assert!(line.contains(trigger), "{trigger}: {line}");
    }
    assert!(!proxy.logs().contains("reloaded"), "{}", proxy.logs());

    std::fs::write(proxy.config_path(), &original).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
}

/// One refused reload with several problems says all of them, each once,
/// on one line separated by `; `, in plain text: no `\n` escape, no Rust
/// `Debug` output of addresses, and both a missing database and a missing
/// TLS key. It does not reopen the audit file either.
#[tokio::test]
async fn a_refused_reload_names_every_problem_on_one_plain_line() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let proxy = Proxy::start(&watched_config(&geo, &origin, &ca));
    let missing = tempfile::tempdir().unwrap();
    let db = missing.path().join("gone.mmdb");
    let key = missing.path().join("gone.key");
    edit(&proxy, |t| {
        let with_key = t
            .lines()
            .map(|l| {
                if l.starts_with("key = ") {
                    format!("key = \"{}\"", key.display())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        with_key
            .replace(
                &format!("database = \"{}\"", geo.path().display()),
                &format!("database = \"{}\"", db.display()),
            )
            .replace(
                "listen = [\"127.0.0.1:0\"]",
                "listen = [\"127.0.0.1:0\", \"127.0.0.1:1\"]",
            )
    });
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    let line = &lines_with(&proxy, "reload refused")[0];
    assert!(
        line.contains(
            "[server] listen (running with 127.0.0.1:0, file has 127.0.0.1:0, 127.0.0.1:1) cannot change on reload (read only at start); restart to apply; "
        ),
        "{line}"
    );
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains(&key.display().to_string()), "{line}");
    assert!(!line.contains("\\n"), "{line}");
    assert_eq!(line.matches("gone.mmdb").count(), 1, "{line}");
    assert!(
        !proxy.logs().contains("audit file reopened"),
        "{}",
        proxy.logs()
    );

    // Several problems of the file itself: each at its place, one line.
    edit(&proxy, |_| {
        "[policy]\nallow_countries = [\"XX\"]\ndeny_networks = [\"10.0.0.0/33\"]\n\
         [[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\nallow_networks = []\n"
            .to_owned()
    });
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 2).await;
    let line = &lines_with(&proxy, "reload refused")[1];
    let path = proxy.config_path().display().to_string();
    assert!(
        line.contains(&format!(
            "{path}:2:20: unknown country code \"XX\" (expected an ISO 3166-1 alpha-2 code such as \"FR\", or \"EEA\"); {path}:3:18: invalid network \"10.0.0.0/33\""
        )),
        "{line}"
    );
    assert_eq!(line.matches("10.0.0.0/33").count(), 1, "{line}");
    assert!(!line.contains("\\n") && !line.contains("\\\""), "{line}");
    assert!(
        !proxy.logs().contains("audit file reopened"),
        "{}",
        proxy.logs()
    );
    assert!(proxy.logs().contains("SIGHUP"), "{}", proxy.logs());
}

/// `[audit] path` is applied by every trigger: a database-watch reload
/// moves the trail like SIGHUP does.
#[tokio::test]
async fn an_audit_path_change_applies_on_a_database_watch_reload() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let proxy = Proxy::start(&watched_config(&geo, &origin, &ca));
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.jsonl");
    let old = proxy.audit_path().display().to_string();
    edit(&proxy, |t| t.replace(&old, &other.display().to_string()));
    standard_geo(Layout::IpLocationDb).write_to(geo.path());
    proxy.wait_for_log("reloaded", 1).await;
    let line = &lines_with(&proxy, "reloaded")[0];
    assert!(line.contains("database watch"), "{line}");
    assert!(line.contains("[audit] path"), "{line}");
    let fr = Client::bound_to(ips::FR);
    assert_eq!(fr.get(proxy.addr(), "/b/k", &[]).await.status, 200);
    for _ in 0..500 {
        if !records_in(&other).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(records_in(&other).len(), 1);
    assert!(records_in(&proxy.audit_path()).is_empty());
}

/// A reload that changes the rules logs each changed line with the policy
/// version before and after, and writes one policy change record between
/// the requests decided under each: the trail alone says which rules were
/// in force when. `audit verify` accepts it, `transfers` does not count it,
/// and a reload that changes no rule writes none.
#[tokio::test]
async fn a_policy_change_is_logged_and_marked_once_in_the_trail() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let us = Client::bound_to(ips::US);
    assert_eq!(us.get(proxy.addr(), "/b/k", &[]).await.status, 451);
    let wait_records = |n: usize| {
        let path = proxy.audit_path();
        async move {
            for _ in 0..500 {
                if records_in(&path).len() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            records_in(&path)
        }
    };
    let before = wait_records(1).await[0]["policy_version"]
        .as_str()
        .unwrap()
        .to_owned();

    edit(&proxy, |t| {
        t.replace(
            "allow_networks = []",
            "allow_networks = []\nallow_countries = [\"EEA\", \"US\"]",
        )
    });
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(us.get(proxy.addr(), "/b/k", &[]).await.status, 200);
    let records = wait_records(3).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let mark = &records[1];
    let after = records[2]["policy_version"].as_str().unwrap().to_owned();
    assert_ne!(before, after);
    assert_eq!(mark["decision"], "policy");
    assert_eq!(mark["reason"], "policy_changed");
    assert_eq!(mark["route"], serde_json::Value::Null);
    assert_eq!(mark["status"], 0);
    assert_eq!(mark["policy_version"], after.as_str());
    assert_eq!(mark["policy_change"]["previous"], before.as_str());
    let changes: Vec<&str> = mark["policy_change"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes[0].starts_with("policy.allow_countries: AT,AX,BE,"),
        "{changes:?}"
    );
    assert!(changes[0].ends_with(",SK,US,YT"), "{changes:?}");
    assert!(
        changes[1].starts_with("route[s3].policy.allow_countries: AT,"),
        "{changes:?}"
    );
    // The rules hash to the new version.
    let rules: String = mark["policy_change"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}\n", l.as_str().unwrap()))
        .collect();
    let digest: String = Sha256::digest(rules.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, after);
    // The log line: both versions and what changed, in plain text.
    let line = &lines_with(&proxy, "reloaded")[0];
    assert!(
        line.contains(&format!("policy_version_before={before}")),
        "{line}"
    );
    assert!(line.contains(&format!("policy_version={after}")), "{line}");
    assert!(
        line.contains("rules_changed=policy.allow_countries: AT,"),
        "{line}"
    );
    assert!(line.contains("settings_changed=none"), "{line}");

    // The trail verifies; the report counts the two requests only.
    assert_audit_verifies(&[&proxy.audit_path()]);
    let out = Command::new(BIN)
        .args(["transfers", "--format", "json", "--audit"])
        .arg(proxy.audit_path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 2, "{report:#}");
    // The blocked request is an attempt, the allowed one a transfer (the
    // transfer rule of issue 19).
    let rows = report["transfers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["country"], "US", "{report:#}");
    assert_eq!(rows[0]["requests"], 1, "{report:#}");
    assert_eq!(rows[0]["allowed_by_override"], 1, "{report:#}");
    let attempts = report["attempts_refused"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{report:#}");
    assert_eq!(attempts[0]["country"], "US", "{report:#}");
    assert_eq!(attempts[0]["blocked"], 1, "{report:#}");

    // A reload that changes no rule: no record, and the log says so.
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 2).await;
    let line = &lines_with(&proxy, "reloaded")[1];
    assert!(line.contains("rules_changed=none"), "{line}");
    assert!(
        line.contains(&format!("policy_version_before={after}")),
        "{line}"
    );
    assert_eq!(us.get(proxy.addr(), "/b/k", &[]).await.status, 200);
    let records = wait_records(4).await;
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_eq!(records[3]["decision"], "allowed");
}

/// A refused file leaves nothing behind: a route it adds gets no metric
/// series, whether it was refused for a start-only key or a database.
#[tokio::test]
async fn a_refused_reload_leaves_no_metric_series_of_its_routes() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let original = std::fs::read_to_string(proxy.config_path()).unwrap();
    let phantom = format!(
        "\n[[route]]\nname = \"phantom\"\npath_prefix = \"/p\"\nupstreams = [\"{}\"]\n",
        origin.url()
    );
    let with_route = original.replacen("\n[audit]", &format!("{phantom}\n[audit]"), 1);
    std::fs::write(
        proxy.config_path(),
        with_route.replace("listen = [\"127.0.0.1:0\"]", "listen = [\"127.0.0.1:1\"]"),
    )
    .unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    std::fs::write(
        proxy.config_path(),
        with_route.replace(&geo.path().display().to_string(), "/nonexistent.mmdb"),
    )
    .unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 2).await;
    let m = proxy.metrics().await;
    assert!(m.contains("route=\"s3\""), "{m}");
    assert!(!m.contains("phantom"), "{m}");
    // Applied, the route gets its series.
    std::fs::write(proxy.config_path(), &with_route).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    assert!(proxy.metrics().await.contains("route=\"phantom\""));
}
