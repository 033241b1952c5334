"""Issue 6, points 4 and 5: blocked, readably, once.

Point 4: from a US address, each client's operations fail with an error
that names the data-residency block, the proxy sees exactly the requests the
operation is made of (no SDK retries of a 451), s3s-fs sees none, and a
blocked multipart upload uploads no part.

Point 5: a route whose upstream name resolves (dnsmasq) to a US address
blocks the same operations with reason `no_allowed_upstream_ip`, and a
listener on that address accepts no connection.

What a client can print depends on the request: a 451 answer to HEAD has no
body (RFC 9110), so an operation whose first request is a HEAD reports only
the status, "451 Unavailable For Legal Reasons"; every other one prints the
proxy's S3 error message.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from clients import BUCKET, CLIENTS, ClientFailed, Rclone, seed
from servers import FR, STORAGE_US, US, Dns, TcpTrap

BLOCK_MESSAGE = "blocked by data-residency policy"
HEAD_ONLY = re.compile(r"451|Unavailable\s*For\s*Legal\s*Reasons|Blocked By Data-Residency Policy")

# Per client and operation, the requests it consists of when each is
# refused: one per S3 call, none repeated. rclone, given --retries 1 (see
# blocked_client), checks with HEAD what an upload would overwrite, and tries
# a path as an object (HEAD) and then as a folder (listing) when reading.
REQUESTS = {
    "boto3": {"head": ["HEAD"]},
    "awscli": {"head": ["HEAD"]},
    "s3cmd": {"get": ["HEAD"], "head": ["HEAD"]},
    "rclone": {"put": ["HEAD"], "multipart": ["HEAD"], "get": ["HEAD", "GET"], "head": ["HEAD", "GET"]},
}
DEFAULT_REQUESTS = {"list buckets": ["GET"], "create bucket": ["PUT"], "put": ["PUT"],
                    "get": ["GET"], "head": ["HEAD"], "multipart": ["POST"], "presigned get": ["GET"]}


def operations(client, small, big, out):
    ops = [
        ("list buckets", lambda: client.list_buckets()),
        ("create bucket", lambda: client.make_bucket("blocked-new-bucket")),
        ("put", lambda: client.put(BUCKET, "new.bin", small.path)),
        ("get", lambda: client.get(BUCKET, "seed.bin", out / "seed.bin")),
        ("head", lambda: client.head(BUCKET, "seed.bin")),
        ("multipart", lambda: client.put_large(BUCKET, "big.bin", big.path)),
    ]
    if not isinstance(client, Rclone):
        # rclone reads the object before it presigns a link; the others
        # presign offline, and curl then asks with the URL.
        ops.append(("presigned get", lambda: client.fetch(client.presign_get(BUCKET, "seed.bin"))))
    return ops


def blocked_client(name, proxy, source, tmp_path, tls, pki):
    client = CLIENTS[name](proxy.url(tls), source, tmp_path / f"client-{name}", ca=pki.ca if tls else None)
    if isinstance(client, Rclone):
        # rclone repeats a whole failed command --retries times (default 3)
        # whatever the error, 403 as much as 451; its low-level retries (the
        # SDK's) never repeat a 451. One attempt makes requests countable.
        client.flags = ["--retries", "1"]
    return client


def run_blocked(client, proxy, small, big, out):
    """Runs every operation; returns {operation: (error text, records)}."""
    seen = {}
    for op, call in operations(client, small, big, out):
        before = len(proxy.audit())
        with pytest.raises(ClientFailed) as failure:
            call()
        seen[op] = (str(failure.value), proxy.audit_after(before))
    return seen


def assert_blocked_once(name, seen, side, reason):
    for op, (text, records) in seen.items():
        expected = REQUESTS[name].get(op, DEFAULT_REQUESTS[op])
        got = [r["method"] for r in records]
        assert got == expected, f"{name} {op}: requests {got}, expected {expected}\n{text}"
        assert len(Counter((r["method"], r["object_key"]) for r in records)) == len(records), \
            f"{name} {op}: a request was repeated"
        for r in records:
            assert (r["decision"], r["side"], r["reason"], r["status"]) == ("blocked", side, reason, 451), r
            assert r["bytes_up"] == 0, f"{name} {op}: body bytes went upstream: {r}"
        if expected[0] == "HEAD":
            assert HEAD_ONLY.search(text), f"{name} {op}: {text}"
        else:
            assert BLOCK_MESSAGE in text, f"{name} {op}: {text}"


@pytest.mark.parametrize("transport", ["http", "tls"])
@pytest.mark.parametrize("client_name", list(CLIENTS))
def test_non_eea_client_is_refused_once_and_storage_sees_nothing(
        client_name, transport, s3, start_proxy, pki, tls_support, small, big, tmp_path):
    tls = transport == "tls"
    if tls and tls_support:
        pytest.skip(tls_support)
    seed(s3.url, tmp_path, small.path)
    upstream_before = len(s3.requests())
    proxy = start_proxy(s3.url, tls=pki if tls else None)
    client = blocked_client(client_name, proxy, US, tmp_path, tls, pki)
    out = tmp_path / "out"
    out.mkdir()

    seen = run_blocked(client, proxy, small, big, out)

    assert_blocked_once(client_name, seen, "client", "country_not_allowed")
    for op, (text, records) in seen.items():
        assert all(r["client_country"] == "US" and r["upstream_ip"] is None for r in records)
        if BLOCK_MESSAGE in text:
            assert "client country US is outside the allowed area" in text, text
    assert len(s3.requests()) == upstream_before, "s3s-fs received a request"
    # The metrics count the same requests as the audit trail.
    records = proxy.audit()
    blocked = metric(proxy.metrics(), "residency_requests_total", route="s3", decision="blocked")
    assert blocked == len(records) == sum(len(r) for _, r in seen.values())
    assert {r["identity"] for r in records} == {"AKIAE2ERESIDENCY0001"}
    verify = proxy.verify_audit()
    assert verify.returncode == 0, verify.stdout + verify.stderr


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("client_name", list(CLIENTS))
def test_upstream_name_resolving_outside_the_area_is_never_dialled(
        client_name, start_proxy, pki, small, big, tmp_path):
    trap = TcpTrap(STORAGE_US)
    dns = Dns(tmp_path, [("storage.e2e.test", STORAGE_US)])
    try:
        proxy = start_proxy(f"http://storage.e2e.test:{trap.port}", resolver=dns.addr)
        client = blocked_client(client_name, proxy, FR, tmp_path, False, pki)
        out = tmp_path / "out"
        out.mkdir()

        seen = run_blocked(client, proxy, small, big, out)

        assert_blocked_once(client_name, seen, "upstream", "no_allowed_upstream_ip")
        for op, (text, records) in seen.items():
            assert all(r["client_country"] == "FR" and r["upstream_country"] == "US" for r in records), records
            if BLOCK_MESSAGE in text:
                assert "no address of the storage upstream is inside the allowed area" in text, text
        assert (trap.connections, trap.bytes) == (0, 0), "the US address was dialled"
        assert metric(proxy.metrics(), "residency_blocked_transfers_total", side="upstream",
                      country="US", reason="no_allowed_upstream_ip") == len(proxy.audit())
    finally:
        dns.close()
        trap.close()

