"""Writes an audit trail that `residency-proxy audit verify` accepts: one
chain from genesis, records shaped as the proxy writes them (a mix of
allowed reads and writes from the EEA, some blocked and some flagged
requests from abroad), each sealed as `audit::Chain::seal` seals it: the
SHA-256 of the record's JSON without `hash` (its `prev` last), then
`,"hash":"…"` appended.

    python3 make_trail.py OUT.jsonl SIZE_BYTES

Prints the records and bytes written. A benchmark input, not a test.
"""

import hashlib
import json
import sys

GENESIS = "0" * 64

KINDS = [
    # (method, client ip, country, upstream ip, decision, side, reason, status, up, down)
    ("GET", "90.84.12.{n}", "FR", "10.20.0.11", "allowed", None, None, 200, 0, 183_422),
    ("PUT", "81.56.3.{n}", "FR", "10.20.0.12", "allowed", None, None, 200, 1_048_576, 0),
    ("GET", "213.95.4.{n}", "DE", "10.20.0.11", "allowed", None, None, 200, 0, 52_118),
    ("HEAD", "90.84.12.{n}", "FR", "10.20.0.13", "allowed", None, None, 200, 0, 0),
    ("GET", "203.0.113.{n}", "US", None, "blocked", "client", "country_not_allowed", 451, 0, 0),
    ("GET", "198.51.100.{n}", "CH", "10.20.0.11", "flagged", "client", "country_not_allowed", 200, 0, 9_876),
]


def record(i: int) -> dict:
    method, ip, country, upstream, decision, side, reason, status, up, down = KINDS[i % len(KINDS)]
    second = i // 50
    return {
        "time": "2026-12-%02dT%02d:%02d:%02d.%03dZ" % (
            1 + second // 86400 % 28, second // 3600 % 24, second // 60 % 60, second % 60, i % 1000),
        "request_id": "%016X" % (0x1F3A000000000000 + i),
        "route": "s3",
        "method": method,
        "object_key": "radiology/2026/12/study-%07d/series-%d/image-%04d.dcm" % (i // 200, i % 7, i % 1000),
        "client_ip": ip.format(n=i % 250 + 1),
        "client_country": country,
        "identity": "AKIACHU%09d" % (i % 40),
        "purpose": "care" if decision != "blocked" else None,
        "upstream_ip": upstream,
        "upstream_country": None,
        "decision": decision,
        "side": side,
        "reason": reason,
        "status": status,
        "bytes_up": up,
        "bytes_down": down,
        "duration_ms": 3 + i % 40,
        "policy_version": "3f2a9c1e",
    }


def main() -> int:
    out, size = sys.argv[1], int(sys.argv[2])
    prev, written, i = GENESIS, 0, 0
    with open(out, "w", encoding="utf-8") as f:
        while written < size:
            r = record(i)
            r["prev"] = prev
            body = json.dumps(r, separators=(",", ":"))
            prev = hashlib.sha256(body.encode()).hexdigest()
            line = body[:-1] + ',"hash":"' + prev + '"}\n'
            f.write(line)
            written += len(line)
            i += 1
    print(f"{i} records, {written} bytes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
