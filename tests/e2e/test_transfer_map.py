"""Issue 19, point 5: the transfer map, in a real browser.

A proxy with an internal client network and an internal storage, a route in
monitor mode to a storage in the US, and a `[transparency]` section
declaring Switzerland only, serves internal, allowed-by-override,
allowed-by-grant (a grant made and signed with the proxy's CLI for a
vendor key from Japan), flagged (on one and on both sides) and blocked
requests. Then the page made by
`transfers --format html` from its audit trail, and the live page of
`/transfers?format=html`, are opened in headless Chromium (Debian's
chromium and chromium-driver, through Selenium), in French and in English,
and checked: no console error, no network request but the page itself,
the shaded countries exactly the transfer destinations of the JSON report
with the same counts in their titles, internal flows and blocked attempts
not shaded, the grant's flows shown as transfers "by grant" with their
count (in the map's titles and the detail table, live and in the report),
the declared legal content shown (and the undeclared destination flagged), and the page printing on one or two A4 pages.
Screenshots and the pages are saved in the test's directory.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from servers import ANSI, LISTENING, PROXY_BIN, stop, wait_until

FR = "127.0.0.2"
US = "127.0.0.5"
CH = "127.0.0.7"
JP = "127.0.0.6"  # admitted only by the grant, for VENDOR_KEY
INTERNAL_CLIENT = "127.0.0.8"  # in no country: admitted by allow_networks
STORAGE = "127.0.0.10"  # DE
STORAGE_US = "127.0.0.11"  # US
INTERNAL_STORAGE = "127.0.0.12"  # in no country: admitted by allow_networks
COUNTRIES = {FR: "FR", US: "US", CH: "CH", JP: "JP", STORAGE: "DE", STORAGE_US: "US"}
VENDOR_KEY = "AKIAE2EVENDORJP0001"
GRANT = "CHG-E2E-MAP"

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

TRANSPARENCY = """
[transparency]
entity = "Hôpital Exemple, 1 rue de la Paix, 75002 Paris"
certificate = "HDS 2026-042, activités 1 à 6"
contact = "dpo@hopital.example"

[[transparency.country]]
code = "CH"
basis = "adequacy"
basis_detail = "décision 2000/518/CE"
recipients = "Prestataire de support (sous-traitant)"
purposes = "Maintenance du service de stockage"
data = "Journaux techniques"
"""


class Storage:
    """A plain HTTP server answering 200 to anything, on `ip`."""

    def __init__(self, ip: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                body = b"object"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.url = f"http://{ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_geo(path: Path) -> Path:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="E2E-Country")
    for ip, code in COUNTRIES.items():
        writer.insert_network(IPSet([f"{ip}/32"]), {"country": {"iso_code": code}})
    writer.to_db_file(str(path))
    return path


def cli(*args: str) -> str:
    done = subprocess.run([str(PROXY_BIN), *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, RUST_LOG="off"))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def signed_grant(directory: Path) -> str:
    """The `[grants]` section of a config whose file holds one grant for
    VENDOR_KEY from Japan on the s3 route, made and signed with the CLI."""
    key = directory / "dpo.key"
    public = cli("grants", "keygen", str(key)).strip()
    grants = directory / "grants.toml"
    utc = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    now = time.time()
    grants.write_text(
        f'[[grant]]\nid = "{GRANT}"\nidentity = "{VENDOR_KEY}"\nproof = "sigv4"\n'
        f'owner = "Ken Sato <ken@vendor.example>"\npurpose = "support case 9001"\n'
        f'from_countries = ["JP"]\nroutes = ["s3"]\nmethods = ["GET"]\n'
        f"not_before = {utc(now - 3600)}\nnot_after = {utc(now + 3600)}\n"
    )
    cli("grants", "sign", "--key", str(key), "--approver", "dpo", str(grants), GRANT)
    return (f'\n[grants]\nfile = "{grants}"\n'
            f'approvers = [{{ name = "dpo", public_key = "{public}" }}]\n')


def sigv4(key: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={key}/20261206/eu-west-3/s3/aws4_request, "
            "SignedHeaders=host, Signature=0123abcd")


class MapProxy:
    def __init__(self, directory: Path, storages: dict[str, Storage]):
        geo = make_geo(directory / "geo.mmdb")
        self.audit = directory / "audit.jsonl"
        self.config = directory / "proxy.toml"
        self.config.write_text(
            '[server]\nlisten = ["127.0.0.1:0"]\n\n[admin]\nlisten = "127.0.0.1:0"\n\n'
            f'[geoip]\ndatabase = "{geo}"\n\n'
            '[policy]\nallow_countries = ["EEA", "CH"]\n'
            f'allow_networks = ["{INTERNAL_CLIENT}/32", "{INTERNAL_STORAGE}/32"]\n\n'
            f'[[route]]\nname = "watch"\npath_prefix = "/watch/"\nmode = "monitor"\n'
            f'upstreams = ["{storages["us"].url}"]\n\n'
            f'[[route]]\nname = "internal"\npath_prefix = "/internal/"\n'
            f'upstreams = ["{storages["internal"].url}"]\n\n'
            f'[[route]]\nname = "s3"\nupstreams = ["{storages["de"].url}"]\n\n'
            f'[audit]\npath = "{self.audit}"\n'
            f"{TRANSPARENCY}"
            f"{signed_grant(directory)}"
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(PROXY_BIN), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"),
        )
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: len(self._listeners()) >= 2 or self.proc.poll() is not None,
                   "the proxy to listen", logs=lambda: "\n".join(self.lines))
        assert self.proc.poll() is None, "\n".join(self.lines)
        found = {kind: addr for kind, _, addr in self._listeners()}
        self.http = found["listening on"]
        self.admin = found["admin endpoints on"]

    def _read(self) -> None:
        for raw in self.proc.stderr:
            self.lines.append(ANSI.sub("", raw.decode(errors="replace").rstrip("\n")))

    def _listeners(self):
        return [m.groups() for line in list(self.lines) if (m := LISTENING.search(line))]

    def get(self, source: str, path: str, key: str | None = None) -> tuple[int, str]:
        """(status, x-residency-decision) of a GET from `source`, claiming
        the access key id `key` when given."""
        host, port = self.http.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                          source_address=(source, 0))
        headers = {"host": "s3.test"}
        if key:
            headers["authorization"] = sigv4(key)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        decision = response.getheader("x-residency-decision", "")
        response.read()
        conn.close()
        return response.status, decision

    def records(self) -> int:
        return len(self.audit.read_text().splitlines()) if self.audit.exists() else 0

    def close(self) -> None:
        stop(self.proc)


def transfers(proxy: MapProxy, *args: str) -> str:
    done = subprocess.run(
        [str(PROXY_BIN), "transfers", "--audit", str(proxy.audit), "--config", str(proxy.config),
         *args],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, RUST_LOG="off"))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("transfer-map")
    storages = {"de": Storage(STORAGE), "us": Storage(STORAGE_US),
                "internal": Storage(INTERNAL_STORAGE)}
    proxy = MapProxy(directory, storages)
    try:
        assert proxy.get(FR, "/b/k")[0] == 200  # inside
        assert proxy.get(CH, "/b/k")[0] == 200  # allowed by override
        assert proxy.get(CH, "/b/k2")[0] == 200
        assert proxy.get(US, "/b/k")[0] == 451  # blocked: an attempt
        assert proxy.get(INTERNAL_CLIENT, "/b/k")[0] == 200  # internal client
        assert proxy.get(US, "/watch/k")[0] == 200  # flagged on both sides
        assert proxy.get(FR, "/watch/k")[0] == 200  # flagged storage side
        assert proxy.get(FR, "/internal/k")[0] == 200  # internal storage
        granted = f"allowed; side=client; country=JP; grant={GRANT}"
        assert proxy.get(JP, "/b/k", VENDOR_KEY) == (200, granted)  # by grant
        assert proxy.get(JP, "/b/k3", VENDOR_KEY) == (200, granted)
        # Without the grant's identity: an attempt, not a transfer.
        assert proxy.get(JP, "/b/k", "AKIAE2ESTRANGER0001")[0] == 451
        wait_until(lambda: proxy.records() >= 11, "11 audit records")
        yield directory, proxy
    finally:
        proxy.close()
        for s in storages.values():
            s.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Never let Selenium look for a driver or a browser elsewhere.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh: no state from a run before
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1600", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def expected_destinations(report: dict) -> dict[str, int]:
    """Country -> transfers, both sides together, from the JSON report."""
    out: dict[str, int] = {}
    for row in report["transfers"]:
        out[row["country"]] = out.get(row["country"], 0) + row["requests"]
    return out


def open_page(driver, url: str, shots: Path, name: str) -> dict:
    """Opens `url`; returns what the checks need, having saved a screenshot."""
    driver.get_log("performance")  # forget earlier pages
    driver.get_log("browser")
    driver.get(url)
    shots.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shots / f"{name}.png"))
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            # What the page asked for (the browser's own start page and
            # internal chrome:// documents are not the page's).
            if params.get("documentURL") == url or params["request"]["url"].startswith(
                    ("http:", "https:", "ws:", "wss:", "ftp:")):
                requests.append(params["request"]["url"])
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    shaded = driver.execute_script("""
        return Array.from(document.querySelectorAll('svg.map .t')).map(e => ({
            country: e.getAttribute('data-country'),
            transfers: Number(e.getAttribute('data-transfers')),
            title: e.querySelector('title').textContent,
            fill: getComputedStyle(e).fill,
        }))""")
    plain_fill = driver.execute_script(
        "return getComputedStyle(document.querySelector('svg.map path.l')).fill")
    pdf = driver.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})
    pdf_bytes = base64.b64decode(pdf["data"])
    (shots / f"{name}.pdf").write_bytes(pdf_bytes)
    return {
        "console": [e for e in driver.get_log("browser") if e["level"] == "SEVERE"],
        "requests": requests,
        "resources": resources,
        "shaded": shaded,
        "plain_fill": plain_fill,
        "text": driver.find_element("tag name", "body").text,
        "lang": driver.find_element("tag name", "html").get_attribute("lang"),
        "pages": len(re.findall(rb"/Type\s*/Page[^s]", pdf_bytes)),
    }


def check_page(seen: dict, url: str, report: dict, lang: str, names: dict[str, str]) -> None:
    assert seen["console"] == [], seen["console"]
    assert seen["requests"] == [url], seen["requests"]
    assert seen["resources"] == [], seen["resources"]
    assert seen["lang"] == lang
    expected = expected_destinations(report)
    # CH by override (2), JP by grant (2), US flagged (client 1 + storage
    # 2); the blocked US and JP requests and the internal client and
    # storage are not here.
    assert expected == {"CH": 2, "JP": 2, "US": 3}, report
    got = {s["country"]: s["transfers"] for s in seen["shaded"]}
    assert got == expected, seen["shaded"]
    for s in seen["shaded"]:
        name = names[s["country"]]
        assert s["title"].startswith(f"{name} : {expected[s['country']]} "), s["title"]
        # How each was allowed: JP only by the grant, CH only by override.
        by = {"CH": (2, 0, 0), "JP": (0, 2, 0), "US": (0, 0, 3)}[s["country"]]
        words = (("par dérogation", "par autorisation", "signalés") if lang == "fr"
                 else ("by override", "by grant", "flagged"))
        assert all(f"{n} {w}" in s["title"] for n, w in zip(by, words)), s["title"]
        assert s["fill"] != seen["plain_fill"], s
    assert "unknown" not in got, "internal flows are never shaded"
    assert 1 <= seen["pages"] <= 2, f"{seen['pages']} A4 pages"


FR_NAMES = {"CH": "Suisse", "JP": "Japon", "US": "États-Unis"}
EN_NAMES = {"CH": "Switzerland", "JP": "Japan", "US": "United States"}


def check_grant_row(driver, lang: str) -> None:
    """The detail table's row for Japan: client side, 2 transfers, all by
    the grant."""
    rows = driver.execute_script("""
        return Array.from(document.querySelectorAll('#transfers tbody tr')).map(
            r => Array.from(r.cells).map(c => c.textContent))""")
    japan = [r for r in rows if r[1] == {"fr": "Japon (JP)", "en": "Japan (JP)"}[lang]]
    assert len(japan) == 1, rows
    assert japan[0][2:6] == ["2", "0", "2", "0"], japan  # transfers, override, grant, flagged


def test_generated_page_in_french_and_english(traffic, browser, tmp_path):
    directory, proxy = traffic
    report = json.loads(transfers(proxy, "--format", "json"))
    assert sorted(r["country"] for r in report["attempts_refused"]) == ["JP", "US"], report
    assert report["internal"] == 2, report
    jp = [r for r in report["transfers"] if r["country"] == "JP"]
    assert len(jp) == 1 and jp[0]["side"] == "client", report
    assert (jp[0]["requests"], jp[0]["allowed_by_grant"], jp[0]["allowed_by_override"],
            jp[0]["flagged"]) == (2, 2, 0, 0), jp
    for lang, names in (("fr", FR_NAMES), ("en", EN_NAMES)):
        page = tmp_path / f"transfers-{lang}.html"
        page.write_text(transfers(proxy, "--format", "html", "--lang", lang))
        assert page.stat().st_size < 500_000
        url = page.as_uri()
        seen = open_page(browser, url, tmp_path / "screenshots", f"report-{lang}")
        check_page(seen, url, report, lang, names)
        check_grant_row(browser, lang)
        text = seen["text"]
        assert "Hôpital Exemple, 1 rue de la Paix, 75002 Paris" in text
        assert "HDS 2026-042, activités 1 à 6" in text
        assert "dpo@hopital.example" in text
        assert "Prestataire de support (sous-traitant)" in text
        assert "Maintenance du service de stockage" in text
        assert "Journaux techniques" in text
        if lang == "fr":
            assert "Cartographie des transferts de données hors de l’EEE" in text
            assert "Décision d’adéquation (art. 45 RGPD)" in text
            assert "AUCUNE BASE LÉGALE DÉCLARÉE" in text
            assert "Tentatives refusées" in text
        else:
            assert "Map of data transfers outside the EEA" in text
            assert "Adequacy decision (GDPR Art. 45)" in text
            assert "NO LEGAL BASIS DECLARED" in text
            assert "Attempts refused" in text


def test_live_page_shows_the_same_destinations(traffic, browser, tmp_path):
    directory, proxy = traffic
    report = json.loads(transfers(proxy, "--format", "json"))
    for lang, names in (("fr", FR_NAMES), ("en", EN_NAMES)):
        url = f"http://{proxy.admin}/transfers?format=html&lang={lang}"
        seen = open_page(browser, url, tmp_path / "screenshots", f"live-{lang}")
        check_page(seen, url, report, lang, names)
        check_grant_row(browser, lang)
        assert "dpo@hopital.example" in seen["text"]
