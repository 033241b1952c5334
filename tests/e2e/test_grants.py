"""Issue 15, point 6: a real S3 client from a US address lists and reads
through the proxy with a valid signed grant for its access key id, and
without the grant gets AccessDenied (the proxy's 451). The grant is made,
signed and checked with the proxy's own CLI (`grants keygen`, `grants
sign`, `grants check`), as an operator would."""

from __future__ import annotations

import subprocess
import time

import pytest

from clients import BUCKET, CLIENTS, ClientFailed, seed
from servers import ACCESS_KEY, PROXY_BIN, US


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def cli(*args: str) -> str:
    done = subprocess.run([str(PROXY_BIN), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def signed_grants(directory) -> str:
    """The `[grants]` section of a config whose file holds one grant for
    ACCESS_KEY from the US, signed by approver "dpo"."""
    key = directory / "dpo.key"
    public = cli("grants", "keygen", str(key)).strip()
    grants = directory / "grants.toml"
    now = time.time()
    grants.write_text(
        f'[[grant]]\nid = "CHG-E2E-1"\nidentity = "{ACCESS_KEY}"\nproof = "sigv4"\n'
        f'owner = "Jane Doe <jane@vendor.example>"\npurpose = "e2e: support read"\n'
        f'from_countries = ["US"]\nmethods = ["GET", "HEAD"]\n'
        f"not_before = {utc(now - 3600)}\nnot_after = {utc(now + 3600)}\n"
    )
    cli("grants", "sign", "--key", str(key), "--approver", "dpo", str(grants), "CHG-E2E-1")
    return (f'\n[grants]\nfile = "{grants}"\n'
            f'approvers = [{{ name = "dpo", public_key = "{public}" }}]\n')


@pytest.mark.parametrize("client_name", ["boto3", "awscli"])
def test_a_us_client_reads_only_with_a_valid_grant(client_name, s3, start_proxy, small, tmp_path):
    seed(s3.url, tmp_path, small.path)
    section = signed_grants(tmp_path)
    granted = start_proxy(s3.url, extra=section)
    checked = subprocess.run([str(PROXY_BIN), "grants", "check", "--config", str(granted.config)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "grant CHG-E2E-1 (line 2, identity AKIAE2ERESIDENCY0001, proof sigv4): valid" in checked.stdout
    out = tmp_path / "out"
    out.mkdir()

    client = CLIENTS[client_name](granted.http, US, tmp_path / "client-granted")
    assert "seed.bin" in client.list_keys(BUCKET)
    client.get(BUCKET, "seed.bin", out / "seed.bin")
    assert (out / "seed.bin").read_bytes() == small.path.read_bytes()
    records = granted.audit()
    assert records and all(r["grant"] == "CHG-E2E-1" for r in records), records
    assert all(r["decision"] == "allowed" and r["client_country"] == "US" for r in records)
    assert 'residency_grant_requests_total{grant="CHG-E2E-1",route="s3"}' in granted.metrics()
    # Outside the grant's methods: refused as if it did not exist.
    with pytest.raises(ClientFailed) as failure:
        client.put(BUCKET, "new.bin", small.path)
    assert "AccessDenied" in str(failure.value) or "451" in str(failure.value)

    before = len(s3.requests())
    plain = start_proxy(s3.url)
    refused = CLIENTS[client_name](plain.http, US, tmp_path / "client-plain")
    with pytest.raises(ClientFailed) as failure:
        refused.list_keys(BUCKET)
    assert "AccessDenied" in str(failure.value), str(failure.value)
    assert len(s3.requests()) == before
    assert all("grant" not in r for r in plain.audit())
