//! A real DNS server for the tests: dnsmasq (Debian's dnsmasq-base,
//! installed by scripts/test) on 127.0.0.1 at a free port, answering only
//! from a hosts file the test writes, with a 1-second TTL. `set` rewrites the
//! records and sends SIGHUP, which makes dnsmasq re-read them (DNS changes,
//! rebinding).

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running dnsmasq; killed when dropped.
pub struct Dns {
    child: Child,
    addr: SocketAddr,
    hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> &'static str {
    if Command::new("dnsmasq").arg("--version").output().is_ok() {
        "dnsmasq"
    } else {
        "/usr/sbin/dnsmasq"
    }
}

impl Dns {
    /// Starts with `records`: (name, IP) pairs; a name may appear several times.
    pub fn start(records: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        write_hosts(&hosts, records);
        // A port free for both UDP and TCP at this moment.
        let port = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let mut child = Command::new(binary())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-negcache",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local-ttl=1",
                "--user=root",
                "--pid-file=",
                "--log-facility=-",
                "--log-queries",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed by scripts/test (Debian package dnsmasq-base)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Self {
                    child,
                    addr,
                    hosts,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("dnsmasq did not start on {addr}");
    }

    /// `IP:port` of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces every record and makes dnsmasq reload them.
    pub fn set(&self, records: &[(&str, &str)]) {
        write_hosts(&self.hosts, records);
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Stops the server (queries then fail).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_hosts(path: &std::path::Path, records: &[(&str, &str)]) {
    let text: String = records
        .iter()
        .map(|(name, ip)| format!("{ip} {name}\n"))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
