"""Issue 19, point 5: the transfer map, in a real browser.

A proxy with an internal client network and an internal storage, a route in
monitor mode to a storage in the US, and a `[transparency]` section
declaring Switzerland only, serves internal, allowed-by-override, flagged
(on one and on both sides) and blocked requests. Then the page made by
`transfers --format html` from its audit trail, and the live page of
`/transfers?format=html`, are opened in headless Chromium (Debian's
chromium and chromium-driver, through Selenium), in French and in English,
and checked: no console error, no network request but the page itself,
the shaded countries exactly the transfer destinations of the JSON report
with the same counts in their titles, internal flows and blocked attempts
not shaded, the declared legal content shown (and the undeclared
destination flagged), and the page printing on one or two A4 pages.
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
from pathlib import Path

import pytest

from servers import ANSI, LISTENING, PROXY_BIN, stop, wait_until

FR = "127.0.0.2"
US = "127.0.0.5"
CH = "127.0.0.7"
INTERNAL_CLIENT = "127.0.0.8"  # in no country: admitted by allow_networks
STORAGE = "127.0.0.10"  # DE
STORAGE_US = "127.0.0.11"  # US
INTERNAL_STORAGE = "127.0.0.12"  # in no country: admitted by allow_networks
COUNTRIES = {FR: "FR", US: "US", CH: "CH", STORAGE: "DE", STORAGE_US: "US"}

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

    def get(self, source: str, path: str) -> int:
        host, port = self.http.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                          source_address=(source, 0))
        conn.request("GET", path, headers={"host": "s3.test"})
        status = conn.getresponse().status
        conn.close()
        return status

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
        assert proxy.get(FR, "/b/k") == 200  # inside
        assert proxy.get(CH, "/b/k") == 200  # allowed by override
        assert proxy.get(CH, "/b/k2") == 200
        assert proxy.get(US, "/b/k") == 451  # blocked: an attempt
        assert proxy.get(INTERNAL_CLIENT, "/b/k") == 200  # internal client
        assert proxy.get(US, "/watch/k") == 200  # flagged on both sides
        assert proxy.get(FR, "/watch/k") == 200  # flagged storage side
        assert proxy.get(FR, "/internal/k") == 200  # internal storage
        wait_until(lambda: proxy.records() >= 8, "8 audit records")
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
    # CH by override (2), US flagged (client 1 + storage 2); CN-free: the
    # blocked US request and the internal client and storage are not here.
    assert expected == {"CH": 2, "US": 3}, report
    got = {s["country"]: s["transfers"] for s in seen["shaded"]}
    assert got == expected, seen["shaded"]
    for s in seen["shaded"]:
        name = names[s["country"]]
        assert s["title"].startswith(f"{name} : {expected[s['country']]} "), s["title"]
        assert s["fill"] != seen["plain_fill"], s
    assert "unknown" not in got, "internal flows are never shaded"
    assert 1 <= seen["pages"] <= 2, f"{seen['pages']} A4 pages"


FR_NAMES = {"CH": "Suisse", "US": "États-Unis"}
EN_NAMES = {"CH": "Switzerland", "US": "United States"}


def test_generated_page_in_french_and_english(traffic, browser, tmp_path):
    directory, proxy = traffic
    report = json.loads(transfers(proxy, "--format", "json"))
    assert [r["country"] for r in report["attempts_refused"]] == ["US"], report
    assert report["internal"] == 2, report
    for lang, names in (("fr", FR_NAMES), ("en", EN_NAMES)):
        page = tmp_path / f"transfers-{lang}.html"
        page.write_text(transfers(proxy, "--format", "html", "--lang", lang))
        assert page.stat().st_size < 500_000
        url = page.as_uri()
        seen = open_page(browser, url, tmp_path / "screenshots", f"report-{lang}")
        check_page(seen, url, report, lang, names)
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
        assert "dpo@hopital.example" in seen["text"]
