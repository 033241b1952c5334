"""The processes an end-to-end scenario runs: the real `residency-proxy`
binary, the signature-checking S3 server `s3s-fs`, dnsmasq as the DNS
server of upstream names, a TCP trap that counts connections, plus the
generated GeoIP database and test PKI they read.

Everything listens on 127.0.0.0/8 and reports the port it was given;
readiness is a line the process logs, never a sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("E2E_PROXY_BIN", REPO / "target/debug/residency-proxy"))
S3S_FS_BIN = Path(os.environ.get("E2E_S3S_FS_BIN", REPO / ".ci/tools/bin/s3s-fs"))

# Client and server addresses, and the countries the test database gives them.
FR = "127.0.0.2"  # an allowed client
DE = "127.0.0.3"  # another allowed client
US = "127.0.0.5"  # a blocked client
STORAGE = "127.0.0.10"  # s3s-fs, in the EEA (DE)
STORAGE_US = "127.0.0.11"  # where a rogue DNS answer points (US)
COUNTRIES = {FR: "FR", DE: "DE", US: "US", STORAGE: "DE", STORAGE_US: "US"}

ACCESS_KEY = "AKIAE2ERESIDENCY0001"
# '/' and '+' on purpose: they must survive every client and never be logged.
SECRET_KEY = "e2e/Secret+Key/never-in-the-audit-trail-0123"
REGION = "us-east-1"

STARTUP = 30  # seconds any process has to report readiness
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def wait_until(predicate, what: str, timeout: float = STARTUP, logs=lambda: ""):
    """Polls `predicate` until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.02)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- GeoIP database and PKI -------------------------------------------------


def make_geo(path: Path) -> Path:
    """Writes a MaxMind-layout database mapping each test address to its
    country (`{"country": {"iso_code": "FR"}}`); nothing else has one."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="E2E-Country")
    for ip, code in COUNTRIES.items():
        writer.insert_network(IPSet([f"{ip}/32"]), {"country": {"iso_code": code}})
    writer.to_db_file(str(path))
    return path


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(directory: Path) -> Pki:
    """A test CA and a server certificate for 127.0.0.1 and localhost, with
    Debian's openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "key.pem", directory / "server.csr", directory / "cert.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=residency-proxy e2e test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return Pki(ca=ca, cert=cert, key=key)


# --- s3s-fs -----------------------------------------------------------------

REQUEST_LINE = re.compile(
    r"s3s::service: req: Request \{ method: (?P<method>[A-Z]+), uri: (?P<uri>\S+), "
    r"version: [^,]+, headers: \{(?P<headers>.*?)\}, body:"
)
HEADER = re.compile(r'"([^"]+)": "([^"]*)"')


@dataclass
class UpstreamRequest:
    method: str
    uri: str
    headers: dict[str, str]

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


class S3Server:
    """A running s3s-fs on STORAGE, checking SigV4 and SigV2 signatures
    against one key pair. Its debug log records every request it received
    (method, URI as received, headers) and every response."""

    def __init__(self, root: Path, log: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.log = log
        env = dict(os.environ, RUST_LOG="s3s::service=debug,s3s_fs=info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [str(S3S_FS_BIN), "--host", STORAGE, "--port", "0",
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(root)],
            stdin=subprocess.DEVNULL, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
        )
        match = wait_until(
            lambda: re.search(r"server is running at http://([\d.]+):(\d+)", self.text()),
            "s3s-fs to listen", logs=self.text,
        )
        self.port = int(match.group(2))
        self.url = f"http://{STORAGE}:{self.port}"

    def text(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace"))

    def requests(self) -> list[UpstreamRequest]:
        found = []
        for m in REQUEST_LINE.finditer(self.text()):
            headers = dict(HEADER.findall(m.group("headers")))
            found.append(UpstreamRequest(m.group("method"), m.group("uri"), headers))
        return found

    def signature_mismatches(self) -> int:
        return self.text().count("SignatureDoesNotMatch")

    def close(self) -> None:
        stop(self.proc)


# --- dnsmasq and the trap -----------------------------------------------------


def dnsmasq_binary() -> str:
    for candidate in ("dnsmasq", "/usr/sbin/dnsmasq"):
        try:
            subprocess.run([candidate, "--version"], capture_output=True, check=True, timeout=10)
            return candidate
        except (OSError, subprocess.CalledProcessError):
            continue
    raise AssertionError("dnsmasq is installed by scripts/test (Debian package dnsmasq-base)")


def free_port_udp_tcp() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


class Dns:
    """dnsmasq on 127.0.0.1, answering only from a hosts file, TTL 1 s."""

    def __init__(self, directory: Path, records: list[tuple[str, str]]):
        hosts = directory / "dns-hosts"
        hosts.write_text("".join(f"{ip} {name}\n" for name, ip in records))
        self.port = free_port_udp_tcp()
        self.proc = subprocess.Popen(
            [dnsmasq_binary(), "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--no-negcache", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--local-ttl=1", "--user=root", "--pid-file=", f"--port={self.port}",
             f"--addn-hosts={hosts}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(answers, "dnsmasq to listen")
        self.addr = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        stop(self.proc)


class TcpTrap:
    """A plain TCP listener that counts connections and bytes and answers
    nothing: anything it sees is data that went where it must not go."""

    def __init__(self, host: str, port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.bytes = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while chunk := conn.recv(65536):
                    self.bytes += len(chunk)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()


# --- the proxy ----------------------------------------------------------------

LISTENING = re.compile(r"(listening on|admin endpoints on) (https?)://([\d.]+:\d+)")


class Proxy:
    """The real residency-proxy binary on a config written by the test.

    `route` is the TOML of the `[[route]]` body; `tls` adds an HTTPS listener
    with the given PKI; `resolver` is a DNS server `IP:port`."""

    def __init__(self, directory: Path, geo: Path, route: str, *, tls: Pki | None = None,
                 resolver: str | None = None, extra: str = ""):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.audit_path = directory / "audit.jsonl"
        self.log_path = directory / "proxy.log"
        server = 'listen = ["127.0.0.1:0"]\n'
        if tls:
            server += (f'tls_listen = ["127.0.0.1:0"]\n\n[server.tls]\n'
                       f'cert = "{tls.cert}"\nkey = "{tls.key}"\n')
        resolver_toml = (f'[resolver]\nnameservers = ["{resolver}"]\nmin_ttl = "1s"\n'
                         f'max_ttl = "2s"\ntimeout = "1s"\n') if resolver else ""
        self.config = directory / "proxy.toml"
        self.config.write_text(
            f"[server]\n{server}\n"
            f'[admin]\nlisten = "127.0.0.1:0"\n\n'
            f'[geoip]\ndatabase = "{geo}"\n\n'
            f"[policy]\nallow_networks = []\n\n"
            f"{resolver_toml}\n"
            f'[[route]]\nname = "s3"\n{route}\n\n'
            f'[audit]\npath = "{self.audit_path}"\n'
            f"{extra}"
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(PROXY_BIN), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"),
        )
        threading.Thread(target=self._read_logs, daemon=True).start()
        self.http = self.https = self.admin = None
        wanted = 3 if tls else 2
        wait_until(lambda: len(self._listeners()) >= wanted or self.proc.poll() is not None,
                   "the proxy to listen", logs=self.logs)
        found = self._listeners()
        if self.proc.poll() is not None:
            raise AssertionError(f"proxy exited with {self.proc.returncode}:\n{self.logs()}")
        for kind, scheme, addr in found:
            if kind == "admin endpoints on":
                self.admin = f"http://{addr}"
            elif scheme == "https":
                self.https = f"https://{addr}"
            else:
                self.http = f"http://{addr}"

    def _read_logs(self) -> None:
        with open(self.log_path, "w") as sink:
            for raw in self.proc.stderr:
                line = ANSI.sub("", raw.decode(errors="replace").rstrip("\n"))
                self.lines.append(line)
                sink.write(line + "\n")
                sink.flush()

    def _listeners(self):
        return [m.groups() for line in list(self.lines) if (m := LISTENING.search(line))]

    def logs(self) -> str:
        return "\n".join(self.lines)

    def url(self, tls: bool) -> str:
        return self.https if tls else self.http

    def audit(self) -> list[dict]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]

    def audit_after(self, count: int) -> list[dict]:
        """The records after the first `count`."""
        return self.audit()[count:]

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"{self.admin}/metrics", timeout=10) as rsp:
            return rsp.read().decode()

    def verify_audit(self) -> subprocess.CompletedProcess:
        return subprocess.run([str(PROXY_BIN), "audit", "verify", str(self.audit_path)],
                              capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        stop(self.proc)


def proxy_check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROXY_BIN), "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def lookup(config: Path, ip: str) -> str:
    done = subprocess.run([str(PROXY_BIN), "lookup", "--config", str(config), ip],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
