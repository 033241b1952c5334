//! Export of closed segments to S3 (SPEC §10, `[audit.export]`), through
//! the real binary against a real signature-checking S3 server, `s3s-fs`
//! (installed by scripts/test into `.ci/tools/bin`, before this suite
//! runs: a missing binary fails these tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::proxy::BIN;
use crate::support::{Client, Dns, Layout, Origin, Proxy, config, ips, standard_geo};

const ACCESS_KEY: &str = "AKIAEXPORTRESIDENCY1";
const SECRET_KEY: &str = "export/Secret+Key/0123456789";
const BUCKET: &str = "evidence";
const ORIGIN_NAME: &str = "paris-1";

/// `s3s-fs`, as scripts/test installs it.
fn s3s_fs_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/tools/bin/s3s-fs");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test installs it (cargo install s3s-fs@0.14.1 --features binary --locked --root .ci/tools)",
        bin.display()
    );
    bin
}

/// A running s3s-fs on 127.0.0.10 (DE), checking SigV4 against one key.
struct Store {
    child: Child,
    root: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Store {
    /// Starts on `port` (0: any) serving `root`.
    async fn start(root: &Path, log: &Path, port: u16) -> Self {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let before = std::fs::read_to_string(log).unwrap_or_default().len();
        let child = Command::new(s3s_fs_bin())
            .args(["--host", ips::ORIGIN, "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .env("RUST_LOG", "s3s::service=debug,s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut port = 0;
        for _ in 0..1500 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(at) = text[before.min(text.len())..].find("server is running at http://") {
                let rest = &text[before + at + "server is running at http://".len()..];
                let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.' && c != ':');
                let addr = &rest[..end.unwrap_or(rest.len())];
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(
            port,
            0,
            "s3s-fs did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Self {
            child,
            root: root.to_owned(),
            log: log.to_owned(),
            port,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The object `<origin>/<name>` under prefix `audit/`.
    fn object(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(
            self.root
                .join(BUCKET)
                .join("audit")
                .join(ORIGIN_NAME)
                .join(name),
        )
        .ok()
    }

    /// PUT requests the store received, by URI path.
    fn puts(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if let Some(at) = line.find("req: Request { method: PUT, uri: ") {
                let rest = &line[at + "req: Request { method: PUT, uri: ".len()..];
                let uri = rest.split([',', ' ', '?']).next().unwrap_or_default();
                *out.entry(uri.to_owned()).or_default() += 1;
            }
        }
        out
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A proxy config with a trail in `dir` rotated at every batch, signed
/// with a key made in `dir`, exported to `endpoint`.
fn export_config(
    geo: &crate::support::TestGeo,
    up: &Origin,
    dir: &Path,
    endpoint: &str,
    extra: &str,
    tail: &str,
) -> String {
    replica_config(geo, up, dir, endpoint, extra, tail, ORIGIN_NAME)
}

/// [`export_config`] for the replica named `origin`.
fn replica_config(
    geo: &crate::support::TestGeo,
    up: &Origin,
    dir: &Path,
    endpoint: &str,
    extra: &str,
    tail: &str,
    origin: &str,
) -> String {
    let out = Command::new(BIN)
        .args(["audit", "keygen", "--name", "test-key", "test-key"])
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("secret"), format!("{SECRET_KEY}\n")).unwrap();
    format!(
        "{}\n{tail}\n[audit]\npath = \"{}\"\nsigning_key = \"{}\"\norigin = \"{origin}\"\n\
         checkpoint_every = \"1h\"\nrotate_size = 1\n\n[audit.export]\nendpoint = \"{endpoint}\"\n\
         bucket = \"{BUCKET}\"\nprefix = \"audit/\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{}\"\n{extra}\n",
        config(geo, up, "", "", ""),
        dir.join("audit").join("audit.jsonl").display(),
        dir.join("test-key").display(),
        dir.join("secret").display(),
    )
}

/// Closed segments and their checkpoint files in the trail directory.
fn closed_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    names.sort();
    names
}

fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1)
}

async fn wait_until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..1500 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn requests(proxy: &Proxy, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let r = Client::bound_to(ips::FR)
            .get(proxy.addr(), "/b/k", &[])
            .await;
        statuses.push(r.status.as_u16());
    }
    statuses
}

/// Every closed segment and checkpoint file arrives in the bucket under
/// `<prefix><origin>/<name>`, byte for byte, and the spool drains.
#[tokio::test]
async fn rotated_segments_and_checkpoints_arrive_byte_for_byte() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("s3"), &dir.path().join("s3.log"), 0).await;
    let endpoint = format!("http://{}:{}", ips::ORIGIN, store.port);
    let proxy = Proxy::start(&export_config(&geo, &up, dir.path(), &endpoint, "", ""));
    assert_eq!(requests(&proxy, 3).await, [200, 200, 200]);
    let closed = closed_files(dir.path());
    assert!(
        closed.len() >= 6,
        "3 segments and their checkpoints: {closed:?}"
    );
    wait_until("the spool to drain", async || {
        let m = proxy.metrics().await;
        metric(&m, "residency_audit_export_spool_bytes") == 0
            && metric(&m, "residency_audit_export_uploads_total") >= closed.len() as i64
    })
    .await;
    for name in &closed {
        let local = std::fs::read(dir.path().join("audit").join(name)).unwrap();
        assert_eq!(store.object(name).as_deref(), Some(&local[..]), "{name}");
    }
    assert!(
        closed.iter().any(|n| n.ends_with(".checkpoints")),
        "{closed:?}"
    );
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "residency_audit_export_failures_total"), 0);
    let s3_log = std::fs::read_to_string(&store.log).unwrap();
    assert_eq!(s3_log.matches("SignatureDoesNotMatch").count(), 0);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(proxy.config_path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "audit export: {endpoint} bucket {BUCKET} prefix \"audit/\" (no Object Lock, \
             spool_max 1073741824 bytes, when full: refuse requests); allowed addresses: {}:{}\n",
            ips::ORIGIN,
            store.port
        )),
        "{stdout}"
    );
}

/// With Object Lock, each PUT carries the mode, the retain-until date and
/// a SHA-256 checksum, inside the signature: the store checks the
/// signature (and the checksum) and takes the objects.
#[tokio::test]
async fn object_lock_headers_are_signed_and_sent() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("s3"), &dir.path().join("s3.log"), 0).await;
    let endpoint = format!("http://{}:{}", ips::ORIGIN, store.port);
    let proxy = Proxy::start(&export_config(
        &geo,
        &up,
        dir.path(),
        &endpoint,
        "object_lock_mode = \"COMPLIANCE\"\nretain = \"2d\"",
        "",
    ));
    assert_eq!(requests(&proxy, 1).await, [200]);
    let closed = closed_files(dir.path());
    wait_until("an upload or a failure", async || {
        let m = proxy.metrics().await;
        metric(&m, "residency_audit_export_uploads_total") >= closed.len() as i64
            || metric(&m, "residency_audit_export_failures_total") > 0
    })
    .await;
    let m = proxy.metrics().await;
    assert_eq!(
        metric(&m, "residency_audit_export_failures_total"),
        0,
        "{}",
        std::fs::read_to_string(&store.log).unwrap()
    );
    for name in &closed {
        let local = std::fs::read(dir.path().join("audit").join(name)).unwrap();
        assert_eq!(store.object(name).as_deref(), Some(&local[..]), "{name}");
    }
    let log = std::fs::read_to_string(&store.log).unwrap();
    let puts: Vec<&str> = log.lines().filter(|l| l.contains("method: PUT")).collect();
    assert_eq!(puts.len(), closed.len(), "{log}");
    for put in puts {
        assert!(
            put.contains("\"x-amz-object-lock-mode\": \"COMPLIANCE\""),
            "{put}"
        );
        assert!(
            put.contains("\"x-amz-object-lock-retain-until-date\": \"20"),
            "{put}"
        );
        assert!(put.contains("\"x-amz-checksum-sha256\": \""), "{put}");
        assert!(
            put.contains("x-amz-object-lock-mode%3Bx-amz-object-lock-retain-until-date")
                || put.contains("x-amz-object-lock-mode;x-amz-object-lock-retain-until-date"),
            "signed: {put}"
        );
    }
}

/// The store down while requests flow: segments wait in the spool, the
/// failures are counted; once it is back every file arrives exactly once
/// and the spool drains.
#[tokio::test]
async fn a_store_down_then_back_receives_every_segment_exactly_once() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    let log = dir.path().join("s3.log");
    let mut store = Store::start(&root, &log, 0).await;
    let port = store.port;
    store.stop();
    let endpoint = format!("http://{}:{port}", ips::ORIGIN);
    let proxy = Proxy::start(&export_config(
        &geo,
        &up,
        dir.path(),
        &endpoint,
        "on_error = \"continue\"",
        "",
    ));
    assert_eq!(requests(&proxy, 3).await, [200, 200, 200]);
    wait_until("a failed upload", async || {
        let m = proxy.metrics().await;
        metric(&m, "residency_audit_export_failures_total") >= 1
            && metric(&m, "residency_audit_export_spool_bytes") > 0
    })
    .await;
    assert_eq!(requests(&proxy, 2).await, [200, 200]);
    let closed = closed_files(dir.path());
    let store = Store::start(&root, &log, port).await;
    wait_until("the spool to drain", async || {
        metric(&proxy.metrics().await, "residency_audit_export_spool_bytes") == 0
    })
    .await;
    for name in &closed {
        let local = std::fs::read(dir.path().join("audit").join(name)).unwrap();
        assert_eq!(store.object(name).as_deref(), Some(&local[..]), "{name}");
    }
    let puts = store.puts();
    assert_eq!(puts.len(), closed.len(), "{puts:?}");
    assert!(puts.values().all(|&n| n == 1), "each file once: {puts:?}");
    let acks = std::fs::read_to_string(dir.path().join("audit/audit.jsonl.exported")).unwrap();
    let acks: Vec<&str> = acks.lines().collect();
    assert_eq!(acks, closed.iter().map(String::as_str).collect::<Vec<_>>());
}

/// With `on_error = "fail-closed"`, a spool over `spool_max` refuses
/// requests with 503 like a failing trail, until the store takes it.
#[tokio::test]
async fn a_full_spool_refuses_requests_when_fail_closed() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    let log = dir.path().join("s3.log");
    let mut store = Store::start(&root, &log, 0).await;
    let port = store.port;
    store.stop();
    let endpoint = format!("http://{}:{port}", ips::ORIGIN);
    let proxy = Proxy::start(&export_config(
        &geo,
        &up,
        dir.path(),
        &endpoint,
        "spool_max = 1",
        "",
    ));
    assert_eq!(requests(&proxy, 1).await, [200]);
    wait_until("requests refused", async || {
        requests(&proxy, 1).await == [503]
    })
    .await;
    let _store = Store::start(&root, &log, port).await;
    wait_until("requests served again", async || {
        requests(&proxy, 1).await == [200]
    })
    .await;
}

/// An export endpoint whose name resolves outside the area is refused by
/// `check` and by `run`, and never dialled.
#[tokio::test]
async fn an_export_endpoint_outside_the_area_is_refused_and_never_dialled() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let trap = Origin::start(ips::ORIGIN_US).await;
    let dns = Dns::start(&[("store.example.test", ips::ORIGIN_US)]);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://store.example.test:{}", trap.addr().port());
    let resolver = format!(
        "[resolver]\nnameservers = [\"{}\"]\ntimeout = \"1s\"\n",
        dns.addr()
    );
    let toml = export_config(&geo, &up, dir.path(), &endpoint, "", &resolver);
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "[audit.export] endpoint {endpoint} has no address the policy allows"
        )) && stderr.contains(&format!("{} (US)", trap.addr())),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has no address the policy allows"),
        "{stderr}"
    );
    assert_eq!(trap.connection_count(), 0, "the store outside was dialled");
}

/// Three replicas export to one bucket; `audit verify s3://…` reads it
/// through `[audit.export]` and verifies each origin's chain on its own
/// against its signed checkpoints, `transfers` reports them together, and
/// an object rewritten in the store fails its chain alone, named by its
/// `s3://` key.
#[tokio::test]
async fn three_replicas_chains_verify_from_s3() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("s3"), &dir.path().join("s3.log"), 0).await;
    let endpoint = format!("http://{}:{}", ips::ORIGIN, store.port);
    let names = ["lyon-1", "paris-1", "paris-2"];
    let mut configs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let home = dir.path().join(name);
        std::fs::create_dir(&home).unwrap();
        let toml = replica_config(&geo, &up, &home, &endpoint, "", "", name);
        // One key for the fleet: the first replica's.
        for file in ["test-key", "test-key.pub"].into_iter().filter(|_| i > 0) {
            std::fs::copy(dir.path().join(names[0]).join(file), home.join(file)).unwrap();
        }
        let mut proxy = Proxy::start(&toml);
        assert_eq!(requests(&proxy, i + 2).await, vec![200; i + 2]);
        let closed = closed_files(&home);
        wait_until("the spool to drain", async || {
            let m = proxy.metrics().await;
            metric(&m, "residency_audit_export_spool_bytes") == 0
                && metric(&m, "residency_audit_export_uploads_total") >= closed.len() as i64
        })
        .await;
        proxy.signal("TERM");
        assert_eq!(proxy.wait_exit(Duration::from_secs(20)), Some(0));
        configs.push((home.join("proxy.toml"), toml));
    }
    let (config, toml) = &configs[0];
    std::fs::write(config, toml).unwrap();
    let mut args: Vec<String> = ["audit", "verify", "--config"].map(str::to_owned).to_vec();
    args.push(config.display().to_string());
    args.push("--key".into());
    args.push(
        dir.path()
            .join(names[0])
            .join("test-key.pub")
            .display()
            .to_string(),
    );
    args.push(format!("s3://{BUCKET}/audit/"));
    let verify = || {
        Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for ((line, name), n) in lines.iter().zip(names).zip([2, 3, 4]) {
        assert!(
            line.starts_with(&format!(
                "{name}/audit: ok: {n} records in {n} files, from genesis to "
            )),
            "{line}"
        );
        assert!(
            line.contains(&format!("(origin {name}, key test-key)")),
            "{line}"
        );
        assert!(
            line.contains(&format!("of s3://{BUCKET}/audit/{name}/audit-")),
            "{line}"
        );
    }
    let out = Command::new(BIN)
        .args(["transfers", "--format", "json", "--config"])
        .arg(config)
        .args(["--audit", &format!("s3://{BUCKET}/audit/")])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 9);
    // paris-2's first segment rewritten in the store.
    let objects = store.root.join(BUCKET).join("audit").join("paris-2");
    let mut first: Vec<PathBuf> = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    first.sort();
    let text = std::fs::read_to_string(&first[0]).unwrap();
    std::fs::write(&first[0], text.replacen("\"FR\"", "\"DE\"", 1)).unwrap();
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().count(),
        2,
        "the other chains verify: {stdout}"
    );
    assert!(
        stderr.starts_with(&format!(
            "paris-2/audit: s3://{BUCKET}/audit/paris-2/audit-00000001-"
        )),
        "{stderr}"
    );
}

/// `[audit.export]` is read by the exporter at start: a reload changing
/// it is refused whole, naming the section, never applied while ignored.
#[tokio::test]
async fn a_reload_changing_the_export_is_refused_naming_it() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("s3"), &dir.path().join("s3.log"), 0).await;
    let endpoint = format!("http://{}:{}", ips::ORIGIN, store.port);
    let proxy = Proxy::start(&export_config(&geo, &up, dir.path(), &endpoint, "", ""));
    let text = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(proxy.config_path(), format!("{text}spool_max = 4096\n")).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("reload refused", 1).await;
    let logs = proxy.logs();
    assert!(
        logs.contains("[audit.export] spool_max (running with 1073741824, file has 4096) cannot change on reload (read only at start); restart to apply"),
        "{logs}"
    );
    assert_eq!(requests(&proxy, 1).await, [200]);
}

/// Export without rotation would never export anything: `check` warns.
#[tokio::test]
async fn check_warns_about_export_without_rotation() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{}:9", ips::ORIGIN);
    let path = dir.path().join("proxy.toml");
    let check = |toml: String| {
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let toml = export_config(&geo, &up, dir.path(), &endpoint, "", "");
    let warning = "WARNING: [audit.export] without [audit] rotate_size or rotate_every";
    assert!(!check(toml.clone()).contains(warning));
    let stdout = check(toml.replace("rotate_size = 1\n", ""));
    assert!(stdout.contains(warning), "{stdout}");
}

/// Each upload resolves and judges the endpoint again: when its name
/// moves outside the area while the proxy runs, uploads fail (counted)
/// and the address outside is never dialled.
#[tokio::test]
async fn an_export_endpoint_moving_outside_the_area_is_never_dialled() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let up = Origin::start(ips::ORIGIN).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(&dir.path().join("s3"), &dir.path().join("s3.log"), 0).await;
    let trap = Origin::start_at(
        std::net::SocketAddr::new(ips::ORIGIN_US.parse().unwrap(), store.port),
        None,
    )
    .await;
    let dns = Dns::start(&[("store.example.test", ips::ORIGIN)]);
    let endpoint = format!("http://store.example.test:{}", store.port);
    let resolver = format!(
        "[resolver]\nnameservers = [\"{}\"]\nmin_ttl = \"0s\"\nmax_ttl = \"1s\"\ntimeout = \"1s\"\n",
        dns.addr()
    );
    let proxy = Proxy::start(&export_config(
        &geo,
        &up,
        dir.path(),
        &endpoint,
        "",
        &resolver,
    ));
    assert_eq!(requests(&proxy, 1).await, [200]);
    let closed = closed_files(dir.path());
    wait_until("the first upload", async || {
        metric(
            &proxy.metrics().await,
            "residency_audit_export_uploads_total",
        ) >= closed.len() as i64
    })
    .await;
    dns.set(&[("store.example.test", ips::ORIGIN_US)]);
    // Each request closes a segment to upload; once the cached answer
    // expires, the upload finds the new one.
    wait_until("a refused upload", async || {
        assert_eq!(requests(&proxy, 1).await, [200]);
        metric(
            &proxy.metrics().await,
            "residency_audit_export_failures_total",
        ) >= 1
    })
    .await;
    assert!(
        proxy.logs().contains("has no address the policy allows"),
        "{}",
        proxy.logs()
    );
    assert_eq!(trap.connection_count(), 0, "the store outside was dialled");
    assert!(metric(&proxy.metrics().await, "residency_audit_export_spool_bytes") > 0);
}
