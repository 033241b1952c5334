//! What an operations team relies on (issue 20): audit files readable by
//! their owner only, SIGUSR1 reopening the audit file without applying
//! config edits, certificate expiry and database age in `check` and in the
//! metrics, a watched certificate picked up when renewed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, KeyPair};

use crate::support::proxy::{BIN, assert_audit_verifies};
use crate::support::tls::{TestCa, client_config, https_get};
use crate::support::{Client, Layout, Origin, Proxy, TestGeo, config, ips, standard_geo};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn records(proxy: &Proxy, n: usize) {
    for _ in 0..500 {
        if proxy.audit_records().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} audit records");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A self-signed certificate for `name` valid until `not_after` (Unix
/// seconds), written as `<stem>.pem` and `<stem>.key` in `dir`.
fn write_cert(dir: &Path, stem: &str, name: &str, not_after: u64) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn with_tls(geo: &TestGeo, origin: &Origin, tls: &str) -> String {
    config(geo, origin, "", "", "").replace(
        "[admin]",
        &format!("tls_listen = [\"127.0.0.1:0\"]\n{tls}\n\n[admin]"),
    )
}

/// HTTPS GET of /b/k until it succeeds: "reloaded" is logged just before
/// the new snapshot (and its certificates) is stored.
async fn https_status_once_reloaded(
    addr: std::net::SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
) -> u16 {
    for _ in 0..100 {
        if let Ok((_, rsp)) = https_get(ips::FR, addr, "s3.test", client.clone(), "/b/k").await {
            return rsp.status.as_u16();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no TLS handshake succeeded after the reload");
}

#[tokio::test]
async fn audit_files_are_created_readable_by_their_owner_only() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    records(&proxy, 1).await;
    // 0600 whatever the umask lets through (the test runs with 022).
    assert_eq!(mode(&proxy.audit_path()), 0o600);
    // The file a rotation makes the proxy create is 0600 too.
    std::fs::rename(proxy.audit_path(), proxy.audit_path().with_extension("1")).unwrap();
    proxy.signal("USR1");
    proxy.wait_for_log("audit file reopened", 1).await;
    Client::bound_to(ips::FR)
        .get(proxy.addr(), "/b/k", &[])
        .await;
    records(&proxy, 1).await;
    assert_eq!(mode(&proxy.audit_path()), 0o600);
}

#[tokio::test]
async fn sigusr1_reopens_the_audit_file_and_applies_no_config_edit() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let toml = config(&geo, &origin, "", "", "");
    let proxy = Proxy::start(&toml);
    let addr = proxy.addr();
    let get = |ip: &'static str| async move {
        Client::bound_to(ip)
            .get(addr, "/b/k", &[])
            .await
            .status
            .as_u16()
    };
    assert_eq!(get(ips::FR).await, 200);
    assert_eq!(get(ips::US).await, 451);
    records(&proxy, 2).await;
    // logrotate: rename, then the signal. Meanwhile an edit waits in the file.
    let rotated = proxy.audit_path().with_extension("jsonl-20260101");
    std::fs::rename(proxy.audit_path(), &rotated).unwrap();
    let edited = std::fs::read_to_string(proxy.config_path())
        .unwrap()
        .replace(
            "allow_networks = []",
            "allow_networks = []\nallow_countries = [\"EEA\", \"US\"]",
        );
    std::fs::write(proxy.config_path(), edited).unwrap();
    proxy.signal("USR1");
    proxy.wait_for_log("audit file reopened", 1).await;
    // The edit is not in force: US is still refused.
    assert_eq!(get(ips::US).await, 451);
    assert_eq!(get(ips::FR).await, 200);
    records(&proxy, 2).await;
    assert!(proxy.audit_path().exists());
    assert!(!proxy.logs().contains("reloaded"), "{}", proxy.logs());
    // One chain across the rotated file and the new one.
    let out = assert_audit_verifies(&[&rotated, &proxy.audit_path()]);
    assert!(out.starts_with("ok: 4 records in 2 files"), "{out}");
    // The edit was valid: SIGHUP applies it.
    proxy.signal("HUP");
    proxy.wait_for_log("reloaded", 1).await;
    // "reloaded" is logged just before the new snapshot is stored.
    let mut status = 0;
    for _ in 0..100 {
        status = get(ips::US).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
}

#[test]
fn check_prints_certificate_expiry_and_warns_within_30_days() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(Origin::start(ips::ORIGIN));
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let (soon_c, soon_k) = write_cert(dir.path(), "soon", "s3.test", t + 10 * 86_400);
    let (late_c, late_k) = write_cert(dir.path(), "late", "late.test", t + 90 * 86_400);
    let (gone_c, gone_k) = write_cert(dir.path(), "gone", "gone.test", t - 86_400);
    let toml = with_tls(
        &geo,
        &origin,
        &format!(
            "[server.tls]\ncert = \"{soon_c}\"\nkey = \"{soon_k}\"\n\
             [[server.tls.sni]]\nnames = [\"late.test\"]\ncert = \"{late_c}\"\nkey = \"{late_k}\"\n\
             [[server.tls.sni]]\nnames = [\"gone.test\"]\ncert = \"{gone_c}\"\nkey = \"{gone_k}\"\n"
        ),
    );
    let (ok, out) = check(&toml);
    // Warnings, not a failure: the proxy would serve with these.
    assert!(ok, "{out}");
    for name in ["default", "late.test", "gone.test"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("certificate {name} ("))
                    && l.contains("): expires ")),
            "{name}: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("WARNING: certificate default (")
                && (l.contains("expires in 9 days") || l.contains("expires in 10 days"))),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with("WARNING: certificate gone.test (") && l.contains(" expired on ")
        ),
        "{out}"
    );
    assert!(!out.contains("WARNING: certificate late.test"), "{out}");
    // A fresh database: no age warning.
    assert!(!out.contains("WARNING: geoip"), "{out}");
}

#[test]
fn check_warns_when_the_database_is_older_than_max_age() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/geodata/geo-whois-asn-country.mmdb"
    );
    let toml = format!(
        "[geoip]\ndatabase = \"{shipped}\"\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n"
    );
    // The shipped snapshot is months old: the default max_age (30 days) warns.
    let (ok, out) = check(&toml);
    assert!(ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("WARNING: geoip ")
            && l.contains("older than [geoip] max_age (30 days)")),
        "{out}"
    );
    // A fresh database passes the same check silently.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let (ok, out) = check(&toml.replace(shipped, &geo.path().display().to_string()));
    assert!(ok, "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[test]
fn check_warns_when_the_operator_database_is_older_than_max_age() {
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = format!("{root}/geodata/iptoasn-country.mmdb");
    let geo = standard_geo(Layout::IpLocationDb).build();
    let toml = |operators: &str| {
        format!(
            "[geoip]\ndatabase = \"{}\"\noperator_database = \"{operators}\"\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n",
            geo.path().display()
        )
    };
    // The shipped operator snapshot is months old, the country database
    // fresh: only the operator database is warned about.
    let (ok, out) = check(&toml(&shipped));
    assert!(ok, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("WARNING")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].starts_with(&format!("WARNING: geoip operator {shipped}: built "))
            && warnings[0].contains("older than [geoip] max_age (30 days)"),
        "{out}"
    );
    // A fresh operator database passes silently.
    let fresh = crate::support::TestOperators::new()
        .map(ips::FR, "FR", None)
        .build();
    let (ok, out) = check(&toml(&fresh.path().display().to_string()));
    assert!(ok, "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[tokio::test]
async fn metrics_export_build_info_and_certificate_expiry() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let (c, k) = write_cert(dir.path(), "server", "s3.test", t + 50 * 86_400);
    let expiry = (t + 50 * 86_400) as f64;
    let toml = with_tls(
        &geo,
        &origin,
        &format!("[server.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n"),
    );
    let proxy = Proxy::start(&toml);
    let m = proxy.metrics().await;
    let line = |prefix: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {m}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        line("residency_tls_certificate_expiry_timestamp_seconds{name=\"default\"} "),
        expiry
    );
    let commit = option_env!("RESIDENCY_PROXY_COMMIT").unwrap_or("unknown");
    assert_eq!(
        line(&format!(
            "residency_build_info{{commit=\"{commit}\",version=\"{}\"}} ",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
}

#[tokio::test]
async fn watched_certificate_is_served_once_renewed() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Proxy CA");
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let (c, k) = write_cert(dir.path(), "old", "s3.test", t + 5 * 86_400);
    let toml = with_tls(
        &geo,
        &origin,
        &format!(
            "[server.tls]\ncert = \"{c}\"\nkey = \"{k}\"\nwatch = true\nwatch_interval = \"200ms\"\n"
        ),
    );
    let proxy = Proxy::start(&toml);
    let before = proxy.metrics().await;
    assert!(
        before.contains(&format!(
            "residency_tls_certificate_expiry_timestamp_seconds{{name=\"default\"}} {}",
            t + 5 * 86_400
        )),
        "{before}"
    );
    // The self-signed certificate is not trusted by a client of the CA.
    let h1 = client_config(&ca, None, &[b"http/1.1"]);
    assert!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", h1.clone(), "/b/k")
            .await
            .is_err()
    );
    // Renewal as certbot or a Secret update does it: new files renamed over.
    let (cert, key) = ca.leaf(&["s3.test"]);
    std::fs::write(dir.path().join("new.pem"), cert).unwrap();
    std::fs::write(dir.path().join("new.key"), key).unwrap();
    std::fs::rename(dir.path().join("new.key"), &k).unwrap();
    std::fs::rename(dir.path().join("new.pem"), &c).unwrap();
    proxy
        .wait_for_log("TLS certificate or key replaced; reloading", 1)
        .await;
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(https_status_once_reloaded(proxy.tls_addr(), h1).await, 200);
    let after = proxy.metrics().await;
    assert!(
        !after.contains(&format!("{{name=\"default\"}} {}", t + 5 * 86_400)),
        "{after}"
    );
}

#[tokio::test]
async fn watched_certificate_follows_a_kubernetes_secret_volume_update() {
    // The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> a
    // timestamped directory; an update writes a new directory and renames
    // a new ..data symlink over the old one.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let ca = TestCa::new("Cluster CA");
    let other = TestCa::new("Old CA");
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path();
    let write_version = |name: &str, issuer: &TestCa| {
        let (cert, key) = issuer.leaf(&["s3.test"]);
        std::fs::create_dir(volume.join(name)).unwrap();
        std::fs::write(volume.join(name).join("tls.crt"), cert).unwrap();
        std::fs::write(volume.join(name).join("tls.key"), key).unwrap();
        std::os::unix::fs::symlink(name, volume.join("..data_tmp")).unwrap();
        std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    };
    write_version("..2026_12_01_00_00_00.1", &other);
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), volume.join(f)).unwrap();
    }
    let toml = with_tls(
        &geo,
        &origin,
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nwatch = true\nwatch_interval = \"200ms\"\n",
            volume.join("tls.crt").display(),
            volume.join("tls.key").display()
        ),
    );
    let proxy = Proxy::start(&toml);
    let client = client_config(&ca, None, &[b"http/1.1"]);
    assert!(
        https_get(ips::FR, proxy.tls_addr(), "s3.test", client.clone(), "/b/k")
            .await
            .is_err()
    );
    write_version("..2026_12_02_00_00_00.2", &ca);
    proxy.wait_for_log("reloaded", 1).await;
    assert_eq!(
        https_status_once_reloaded(proxy.tls_addr(), client).await,
        200
    );
    // One reload for one update: the certificate and key changed together.
    assert_eq!(proxy.logs().matches("reload refused").count(), 0);
}
