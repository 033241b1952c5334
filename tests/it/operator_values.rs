//! Issue 13 point 8: nothing the operator can write crashes the proxy or
//! silently breaks it. The database is read into memory, so a file
//! truncated in place while the proxy runs changes nothing until a reload,
//! which refuses it; and every duration is bounded at validation, so a value
//! that would overflow a deadline is refused by `check` and by reload.

use std::path::Path;
use std::process::Command;

use crate::support::proxy::BIN;
use crate::support::{Client, Origin, Proxy, ips};

const SHIPPED_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geodata/geo-whois-asn-country.mmdb"
);

/// A proxy on a copy of the shipped database (its real 8.8.8.8 = US and
/// 90.0.0.1 = FR), clients named by a trusted proxy's X-Forwarded-For,
/// the origin allowed by network.
fn config(db: &Path, origin: &Origin, geoip_extra: &str, server_extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["{trusted}/32"]
client_ip_source = "x-forwarded-for"
{server_extra}

[admin]
listen = "127.0.0.1:0"

[geoip]
database = "{db}"
{geoip_extra}

[policy]
# The origin (loopback, no country in the shipped database).
allow_networks = ["{origin_ip}/32"]

[[route]]
name = "s3"
upstreams = ["{upstream}"]
"#,
        trusted = ips::TRUSTED,
        origin_ip = ips::ORIGIN,
        db = db.display(),
        upstream = origin.url(),
    )
}

async fn assert_judged_by_the_database(proxy: &Proxy) {
    let via = Client::bound_to(ips::TRUSTED);
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("x-forwarded-for", "90.0.0.1")])
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let rsp = via
        .get(proxy.addr(), "/b/k", &[("x-forwarded-for", "8.8.8.8")])
        .await;
    assert_eq!(rsp.status, 451);
    assert_eq!(
        rsp.header("x-residency-decision"),
        "blocked; side=client; country=US; reason=country_not_allowed"
    );
}

#[tokio::test]
async fn a_database_truncated_in_place_keeps_serving_and_is_refused_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    std::fs::copy(SHIPPED_DB, &db).unwrap();
    let origin = Origin::start(ips::ORIGIN).await;
    let mut proxy = Proxy::start(&config(
        &db,
        &origin,
        "watch = true\nwatch_interval = \"200ms\"",
        "",
    ));
    assert_judged_by_the_database(&proxy).await;

    // `truncate -s 4096` on the file in use: a memory-mapped reader died of
    // SIGBUS at the next lookup.
    let ok = Command::new("truncate")
        .args(["-s", "4096"])
        .arg(&db)
        .status()
        .unwrap();
    assert!(ok.success());
    assert_judged_by_the_database(&proxy).await;

    // The watcher sees the change and reloads: refused, the old database
    // keeps serving. An explicit SIGHUP is refused the same way.
    proxy.wait_for_log("GeoIP database replaced", 1).await;
    proxy.wait_for_log("reload refused", 1).await;
    assert_judged_by_the_database(&proxy).await;
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 2).await;
    assert!(
        proxy.logs().contains("cannot open GeoIP database"),
        "{}",
        proxy.logs()
    );
    assert_judged_by_the_database(&proxy).await;
    assert!(proxy.is_running());
    assert!(!proxy.logs().contains("reloaded"), "{}", proxy.logs());

    // A sound file written over it in place is read whole at the next reload.
    std::fs::write(&db, std::fs::read(SHIPPED_DB).unwrap()).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    assert_judged_by_the_database(&proxy).await;
}

#[tokio::test]
async fn a_duration_that_would_overflow_a_deadline_is_refused_by_check_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    std::fs::copy(SHIPPED_DB, &db).unwrap();
    let origin = Origin::start(ips::ORIGIN).await;
    let good = config(&db, &origin, "", "");
    let absurd = config(&db, &origin, "", "idle_timeout = \"18446744073709551615s\"");
    let path = dir.path().join("absurd.toml");
    std::fs::write(&path, &absurd).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = absurd
        .lines()
        .position(|l| l.starts_with("idle_timeout"))
        .unwrap()
        + 1;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:{line}:16: duration \"18446744073709551615s\" is too long (at most \"24h\", \"1440m\", \"86400s\")\n",
            path.display()
        )
    );

    let proxy = Proxy::start(&good);
    assert_judged_by_the_database(&proxy).await;
    std::fs::write(proxy.config_path(), &absurd).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    assert_judged_by_the_database(&proxy).await;
    assert!(!proxy.logs().contains("panicked"), "{}", proxy.logs());
}
