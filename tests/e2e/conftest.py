"""Fixtures of the end-to-end suite: the GeoIP database and test PKI (one per
session), a fresh s3s-fs per test, and proxies started on configs the test
writes. scripts/test installs everything this needs and runs it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import servers
from servers import PROXY_BIN, S3S_FS_BIN, Proxy, S3Server, sha256_file


def pytest_configure(config):
    for binary, how in ((PROXY_BIN, "cargo build --locked"),
                        (S3S_FS_BIN, "scripts/test (cargo install s3s-fs)")):
        if not Path(binary).exists():
            raise pytest.UsageError(f"{binary} is missing: run {how}")
    # boto3 runs in this process: no profile, config file or credentials of
    # the machine may change what it sends.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


@pytest.fixture(scope="session")
def geo(tmp_path_factory) -> Path:
    """The test database; `residency-proxy lookup` proves the proxy reads it."""
    directory = tmp_path_factory.mktemp("geo")
    path = servers.make_geo(directory / "e2e.mmdb")
    config = directory / "lookup.toml"
    config.write_text(f'[geoip]\ndatabase = "{path}"\n\n[policy]\nallow_networks = []\n\n'
                      f'[[route]]\nname = "s3"\nupstreams = ["http://127.0.0.10:9"]\n')
    for ip, country in servers.COUNTRIES.items():
        out = servers.lookup(config, ip)
        assert country in out.split(), out
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> servers.Pki:
    return servers.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_support(tmp_path_factory, geo, pki) -> str | None:
    """None when the proxy accepts a TLS listener, else why not."""
    directory = tmp_path_factory.mktemp("tls-check")
    config = directory / "tls.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n\n'
        f'[server.tls]\ncert = "{pki.cert}"\nkey = "{pki.key}"\n\n'
        f'[geoip]\ndatabase = "{geo}"\n\n'
        f'[[route]]\nname = "s3"\nupstreams = ["http://127.0.0.10:9"]\n'
        f'[audit]\npath = "{directory / "audit.jsonl"}"\n'
    )
    done = servers.proxy_check(config)
    if done.returncode != 0 and "unknown field" in done.stderr:
        return ("TLS termination ([server] tls_listen, [server.tls]) is not in this build of "
                f"residency-proxy yet: `check` says {done.stderr.strip()!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    return None


@pytest.fixture
def s3(tmp_path):
    server = S3Server(tmp_path / "s3root", tmp_path / "s3s-fs.log")
    yield server
    server.close()
    # Its objects (hundreds of MiB per scenario) go; its log stays.
    shutil.rmtree(tmp_path / "s3root", ignore_errors=True)


@pytest.fixture
def start_proxy(tmp_path, geo):
    """Starts proxies in front of an upstream; all are stopped at the end."""
    started = []

    def start(upstream: str, *, preserve_host: bool = True, **kwargs) -> Proxy:
        route = f'upstreams = ["{upstream}"]\npreserve_host = {str(preserve_host).lower()}\n'
        proxy = Proxy(tmp_path / f"proxy{len(started)}", geo, route, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


class Blob:
    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self.sha256 = sha256_file(path)


@pytest.fixture(scope="session")
def big(tmp_path_factory) -> Blob:
    """100 MiB and a bit (not a whole number of parts) of random bytes."""
    path = tmp_path_factory.mktemp("data") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(12345))
    return Blob(path)


@pytest.fixture(scope="session")
def small(tmp_path_factory) -> Blob:
    path = tmp_path_factory.mktemp("data") / "small.bin"
    path.write_bytes(os.urandom(70_001))
    return Blob(path)
