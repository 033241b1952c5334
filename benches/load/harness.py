"""Load harness for residency-proxy (see benches/load/run).

Starts, on loopback only: a fast origin (examples/bench-origin), nginx with
ngx_http_geoip2 doing the same job as the proxy (GeoIP lookup of the client
on every request against the same database, 451 outside the EEA, streaming
without buffering), and residency-proxy with the audit trail on and off.
Measures them interleaved, each figure the median of ROUNDS runs, and prints
a Markdown table with ratios. Figures are for comparing in one run on one
machine, not absolute.
"""

import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target", "release")
SECONDS = int(os.environ.get("LOAD_SECONDS", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
# Which measures to take: small, h2, large, idle (all by default). For a
# quick look while profiling, e.g. PARTS=small ROUNDS=1.
PARTS = set(os.environ.get("PARTS", "small,h2,large,idle").split(","))
OLD_BIN = os.environ.get("OLD_BIN", "")
CONNS = 64
IDLE_CONNS = 1000
EEA = ("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
       "NO IS LI GP GF MQ RE YT MF AX").split()

procs = []


def free_port(ip="127.0.0.1"):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(ip, port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((ip, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {ip}:{port}")


def start(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def pids_of(p):
    """The process and its children (nginx workers)."""
    out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    return [p.pid] + [int(x) for x in out]


def cpu_ticks(p):
    total = 0
    for pid in pids_of(p):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def rss_kib(p, key="VmRSS"):
    total = 0
    for pid in pids_of(p):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wrk(url):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNS}", f"-d{SECONDS}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        lat[pct] = v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} non-2xx responses\n{out}")
    return rps, lat["50"], lat["99"], total


def h2load(url):
    out = subprocess.run(["h2load", "-n", str(20000), "-c", "16", "-m", "10", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    if ok != 20000:
        raise SystemExit(f"{url}: only {ok} of 20000 succeeded\n{out}")
    return rps


def curl_speed(args):
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{speed_download} %{speed_upload}"] + args,
                         capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"curl {args}: HTTP {out[0]}")
    return float(out[1]), float(out[2])


def hold_connections(port, n):
    """Opens n keep-alive connections that each completed one request."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 4 + 1024:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed while holding connections")
            buf += chunk
        socks.append(s)
    return socks


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    tmp = tempfile.mkdtemp(prefix="rp-load-")
    geo = os.path.join(tmp, "geo.mmdb")
    subprocess.run([os.path.join(REL, "examples", "geo-overlay"),
                    os.path.join(ROOT, "geodata", "geo-whois-asn-country.mmdb"), geo, "127.0.0.1/32=FR", "127.0.0.10/32=FR"],
                   check=True)
    big = os.path.join(tmp, "upload.bin")
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)

    origin_port = free_port("127.0.0.10")
    start([os.path.join(REL, "examples", "bench-origin"), f"127.0.0.10:{origin_port}"])
    wait_port("127.0.0.10", origin_port)

    nginx_port, nginx_tls, nginx_logged = free_port(), free_port(), free_port()
    allowed = "\n".join(f"        {c} 1;" for c in EEA)
    # The job: 451 outside the EEA, else to the origin, streaming both ways.
    location = """        location / {
            if ($eea = 0) { return 451; }
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }"""
    conf = f"""
load_module /usr/lib/nginx/modules/ngx_http_geoip2_module.so;
worker_processes 2;
worker_rlimit_nofile 8192;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    geoip2 {geo} {{
        $client_country source=$remote_addr country_code;
    }}
    map $client_country $eea {{
        default 0;
{allowed}
    }}
    upstream origin {{ server 127.0.0.10:{origin_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        listen 127.0.0.1:{nginx_tls} ssl http2;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        keepalive_requests 1000000;
        client_max_body_size 0;
{location}
    }}
    # The same, with nginx's per-request access log (unbuffered, as the
    # proxy's audit trail is): for comparison with the audit trail's cost.
    server {{
        listen 127.0.0.1:{nginx_logged};
        keepalive_requests 1000000;
        access_log {tmp}/nginx-access.log;
{location}
    }}
}}
"""
    open(f"{tmp}/nginx.conf", "w").write(conf)
    nginx = start(["nginx", "-c", f"{tmp}/nginx.conf", "-g", "daemon off;"])
    wait_port("127.0.0.1", nginx_port)

    # Signed checkpoints (issue 16): the same trail, with a checkpoint signed
    # every second (60 times the default rate), to show that signing is per
    # checkpoint, not per record.
    subprocess.run([os.path.join(REL, "residency-proxy"), "audit", "keygen", f"{tmp}/audit.key"],
                   check=True, capture_output=True)
    proxies = {}
    variants = [("residency-proxy", True, False), ("residency-proxy, audit off", False, False),
                ("residency-proxy, signed", True, True)]
    # OLD_BIN=path/to/residency-proxy: an earlier build beside this one, audit
    # on, so a change's cost is a paired ratio from one run.
    if OLD_BIN:
        variants.append(("residency-proxy, OLD_BIN", True, False))
    for name, audit, signed in variants:
        port, tls_port, admin = free_port(), free_port(), free_port()
        signing = f'signing_key = "{tmp}/audit.key"\ncheckpoint_every = "1s"\n' if signed else ""
        cfg = f"""
[server]
listen = ["127.0.0.1:{port}"]
tls_listen = ["127.0.0.1:{tls_port}"]
max_connections = 20000
[server.tls]
cert = "{tmp}/cert.pem"
key = "{tmp}/key.pem"
[admin]
listen = "127.0.0.1:{admin}"
[geoip]
database = "{geo}"
[policy]
allow_networks = []
[[route]]
name = "bench"
upstreams = ["http://127.0.0.10:{origin_port}"]
[audit]
enabled = {"true" if audit else "false"}
path = "{tmp}/audit-{port}.jsonl"
{signing}"""
        path = f"{tmp}/rp-{port}.toml"
        open(path, "w").write(cfg)
        binary = OLD_BIN if name.endswith("OLD_BIN") else os.path.join(REL, "residency-proxy")
        p = start([binary, "run", "--config", path], env={**os.environ, "RUST_LOG": "warn"})
        wait_port("127.0.0.1", port)
        proxies[name] = (p, port, tls_port)

    idle_rss = {"residency-proxy": rss_kib(proxies["residency-proxy"][0]), "nginx + geoip2": rss_kib(nginx)}
    targets = [("direct", None, f"http://127.0.0.10:{origin_port}"),
               ("nginx + geoip2", nginx, f"http://127.0.0.1:{nginx_port}")]
    targets += [(n, p, f"http://127.0.0.1:{port}") for n, (p, port, _) in proxies.items()]
    # Small objects only: nginx with its access log on.
    logged = ("nginx, access log on", nginx, f"http://127.0.0.1:{nginx_logged}")

    small = {n: [] for n, _, _ in targets + [logged]}
    cpu = {n: [] for n, _, _ in targets + [logged]}
    for r in range(ROUNDS if "small" in PARTS else 0):
        for name, proc, base in targets + [logged]:
            before = cpu_ticks(proc) if proc else 0
            rps, p50, p99, total = wrk(base + "/small")
            if proc:
                ticks = cpu_ticks(proc) - before
                cpu[name].append(ticks / os.sysconf("SC_CLK_TCK") / total * 10000)
            small[name].append((rps, p50, p99))
            print(f"round {r + 1} small {name}: {rps:.0f} req/s p50 {p50:.2f} ms p99 {p99:.2f} ms", file=sys.stderr)

    h2 = {"nginx + geoip2": [], "residency-proxy": []}
    for _ in range(ROUNDS if "h2" in PARTS else 0):
        h2["nginx + geoip2"].append(h2load(f"https://127.0.0.1:{nginx_tls}/small"))
        h2["residency-proxy"].append(h2load(f"https://127.0.0.1:{proxies['residency-proxy'][2]}/small"))

    large = {n: {"down": [], "up": []} for n, _, _ in targets[:3]}
    for _ in range(ROUNDS if "large" in PARTS else 0):
        for name, _, base in targets[:3]:
            down, _ = curl_speed([base + "/large"])
            _, up = curl_speed(["-T", big, base + "/upload"])
            large[name]["down"].append(down / 1e6)
            large[name]["up"].append(up / 1e6)
            print(f"large {name}: down {down / 1e6:.0f} MB/s up {up / 1e6:.0f} MB/s", file=sys.stderr)
    peak = {"residency-proxy": rss_kib(proxies["residency-proxy"][0], "VmHWM"), "nginx + geoip2": rss_kib(nginx, "VmHWM")}

    held = {}
    for name, proc, port in (("residency-proxy", proxies["residency-proxy"][0], proxies["residency-proxy"][1]),
                             ("nginx + geoip2", nginx, nginx_port)) if "idle" in PARTS else ():
        socks = hold_connections(port, IDLE_CONNS)
        time.sleep(0.5)
        held[name] = rss_kib(proc)
        for s in socks:
            s.close()

    med = statistics.median
    def row(name):
        v = small[name]
        return med(x[0] for x in v), med(x[1] for x in v), med(x[2] for x in v)

    lines = []
    lines.append(f"Load run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
                 f"{SECONDS}s per wrk run, median of {ROUNDS}; wrk -t2 -c{CONNS} on the same machine.")
    lines.append("")
    lines.append("| measure | direct | nginx + geoip2 | nginx, access log on | residency-proxy | rp, audit off | rp / nginx | rp / direct |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    if "small" in PARTS:
        rp, ng, di = row("residency-proxy"), row("nginx + geoip2"), row("direct")
        rp_off, ng_log = row("residency-proxy, audit off"), row("nginx, access log on")
        lines.append(f"| 1 KiB GET, req/s | {di[0]:.0f} | {ng[0]:.0f} | {ng_log[0]:.0f} | {rp[0]:.0f} | {rp_off[0]:.0f} | {rp[0] / ng[0]:.2f} | {rp[0] / di[0]:.2f} |")
        lines.append(f"| 1 KiB GET, p50 ms | {di[1]:.2f} | {ng[1]:.2f} | {ng_log[1]:.2f} | {rp[1]:.2f} | {rp_off[1]:.2f} | {rp[1] / ng[1]:.2f} | |")
        lines.append(f"| 1 KiB GET, p99 ms | {di[2]:.2f} | {ng[2]:.2f} | {ng_log[2]:.2f} | {rp[2]:.2f} | {rp_off[2]:.2f} | {rp[2] / ng[2]:.2f} | |")
        c_rp, c_ng, c_off = med(cpu["residency-proxy"]), med(cpu["nginx + geoip2"]), med(cpu["residency-proxy, audit off"])
        c_log = med(cpu["nginx, access log on"])
        lines.append(f"| CPU s per 10,000 requests | | {c_ng:.3f} | {c_log:.3f} | {c_rp:.3f} | {c_off:.3f} | {c_rp / c_ng:.2f} | |")
    if "h2" in PARTS:
        h_ng, h_rp = med(h2["nginx + geoip2"]), med(h2["residency-proxy"])
        lines.append(f"| 1 KiB GET over TLS h2 (h2load -c16 -m10), req/s | | {h_ng:.0f} | | {h_rp:.0f} | | {h_rp / h_ng:.2f} | |")
    if "large" in PARTS:
        for d, label in (("down", "1 GiB download, MB/s"), ("up", "1 GiB upload, MB/s")):
            dd, nn, rr = (med(large[n][d]) for n in ("direct", "nginx + geoip2", "residency-proxy"))
            lines.append(f"| {label} | {dd:.0f} | {nn:.0f} | | {rr:.0f} | | {rr / nn:.2f} | {rr / dd:.2f} |")
    lines.append(f"| RSS idle, MiB | | {idle_rss['nginx + geoip2'] / 1024:.1f} | | {idle_rss['residency-proxy'] / 1024:.1f} | | | |")
    if "idle" in PARTS:
        lines.append(f"| RSS, {IDLE_CONNS} idle keep-alive connections, MiB | | {held['nginx + geoip2'] / 1024:.1f} | | {held['residency-proxy'] / 1024:.1f} | | | |")
    if "large" in PARTS:
        lines.append(f"| peak RSS through the 1 GiB transfers, MiB | | {peak['nginx + geoip2'] / 1024:.1f} | | {peak['residency-proxy'] / 1024:.1f} | | | |")
    if "small" in PARTS:
        sg = row("residency-proxy, signed")
        c_sg = med(cpu["residency-proxy, signed"])
        lines.append("")
        lines.append(f"Audit signing (a signed checkpoint every second): {sg[0]:.0f} req/s against {rp[0]:.0f} unsigned "
                     f"({sg[0] / rp[0]:.3f}x), p99 {sg[2]:.2f} ms against {rp[2]:.2f} ms, "
                     f"CPU {c_sg:.3f} s against {c_rp:.3f} s per 10,000 requests ({c_sg / c_rp:.3f}x).")
    if "small" in PARTS and OLD_BIN:
        ob = row("residency-proxy, OLD_BIN")
        c_ob = med(cpu["residency-proxy, OLD_BIN"])
        lines.append(f"This build against OLD_BIN ({OLD_BIN}), audit on: {rp[0]:.0f} against {ob[0]:.0f} req/s "
                     f"({rp[0] / ob[0]:.3f}x), p99 {rp[2]:.2f} against {ob[2]:.2f} ms, "
                     f"CPU {c_rp:.3f} against {c_ob:.3f} s per 10,000 requests ({c_rp / c_ob:.3f}x).")
    table = "\n".join(lines)
    print(table)
    if PARTS >= {"small", "h2", "large", "idle"}:
        open(os.path.join(ROOT, "benches", "load", "last-run.md"), "w").write(table + "\n")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
