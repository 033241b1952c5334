//! The real `residency-proxy` binary, started on a config written by the test.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_residency-proxy");

/// Runs `residency-proxy audit verify` on `paths`, in that order.
pub fn audit_verify(paths: &[&Path]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify"])
        .args(paths)
        .output()
        .unwrap()
}

/// Asserts that `audit verify` accepts `paths`; returns what it printed.
pub fn assert_audit_verifies(paths: &[&Path]) -> String {
    let out = audit_verify(paths);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running proxy process; killed when dropped.
pub struct Proxy {
    child: Child,
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Writes `toml` to a temporary file and runs the proxy on it, waiting
    /// until it logs its listening addresses (one per `server.listen`).
    pub fn start(toml: &str) -> Self {
        Self::start_args(toml, &[])
    }

    /// The same, with global options before `run` (e.g. `--log-format json`).
    pub fn start_args(toml: &str, global: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        let toml = own_audit(toml, dir.path());
        let toml = toml.as_str();
        std::fs::write(&config, toml).unwrap();
        let listen_count = count_listen(toml);
        let mut child = Command::new(BIN)
            .args(global)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,residency_proxy=debug")
            .env_remove("RUST_LOG_STYLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                for (marker, kind) in [
                    ("listening on http://", 0),
                    ("admin endpoints on http://", 1),
                    ("listening on https://", 2),
                ] {
                    if let Some(rest) = line.split(marker).nth(1) {
                        let end = rest
                            .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                            .unwrap_or(rest.len());
                        let addr = rest[..end].parse::<SocketAddr>().unwrap();
                        let _ = tx.send((kind, addr));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut addrs = Vec::new();
        let mut admin = None;
        let mut tls_addrs = Vec::new();
        while addrs.len() + tls_addrs.len() < listen_count {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok((1, a)) => admin = Some(a),
                Ok((2, a)) => tls_addrs.push(a),
                Ok((_, a)) => addrs.push(a),
                Err(_) => {
                    let status = child.try_wait().unwrap();
                    // Never leave a half-started proxy behind.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "proxy did not start (exit: {status:?}); logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Self {
            child,
            addrs,
            tls_addrs,
            admin,
            logs,
            _dir: dir,
            config,
        }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first HTTPS address.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addrs[0]
    }

    /// The admin listener's address (logged before the data listeners).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("admin listener enabled")
    }

    /// The admin `/metrics` text (any status).
    pub async fn metrics(&self) -> String {
        super::Client::bound_to("127.0.0.1")
            .get(self.admin_addr(), "/metrics", &[])
            .await
            .text()
    }

    /// Every listening address, in config order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file it runs on (tests may rewrite it and send SIGHUP).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file with `toml` (for a reload), keeping this
    /// proxy's own audit file unless `toml` chooses one, as [`Proxy::start`]
    /// does: a reload test changes what it means to, not the audit path.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), own_audit(toml, self._dir.path())).unwrap();
    }

    /// The audit file (when the test did not configure one).
    pub fn audit_path(&self) -> PathBuf {
        self._dir.path().join("audit.jsonl")
    }

    /// The audit records written so far, parsed.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        records_in(&self.audit_path())
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (up to 5 s) until `needle` appears `count` times in the logs:
    /// the log pipe is read by another thread, so a line may trail the
    /// response it belongs to.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        for _ in 0..500 {
            if self.logs().matches(needle).count() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {needle:?} in logs:\n{}", self.logs());
    }

    /// Peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit, up to `limit`; returns the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn count_listen(toml: &str) -> usize {
    let v: toml::Value = toml::from_str(toml).unwrap();
    let count = |key: &str, default: usize| {
        v.get("server")
            .and_then(|s| s.get(key))
            .and_then(|l| l.as_array())
            .map_or(default, Vec::len)
    };
    count("listen", 1) + count("tls_listen", 0)
}

/// The complete records of an audit file. The proxy may be appending while
/// the test reads: a last line without its newline is a record half
/// written, not yet a record.
pub fn records_in(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `toml` with an `[audit]` path in `dir` when it configures none: every
/// proxy of the suite writes its own trail, never the default relative
/// path shared by the whole checkout.
fn own_audit(toml: &str, dir: &Path) -> String {
    if toml.contains("[audit]") {
        toml.to_owned()
    } else {
        format!(
            "{toml}\n[audit]\npath = \"{}\"\n",
            dir.join("audit.jsonl").display()
        )
    }
}
