"""Checks that each alert of alerts.yml has a unit test in which it fires
(alerts_test.yml), and writes the Grafana dashboard's queries as recording
rules, with the dashboard's variables replaced by plain values, so that
promtool can parse them.

    python check_rules.py coverage ALERTS.yml ALERTS_TEST.yml
    python check_rules.py dashboard DASHBOARD.json OUT.yml
"""

import json
import re
import sys

import yaml

# Grafana's variables, replaced by values of the same PromQL type.
VARIABLES = [
    (r"\$__rate_interval|\$__interval|\$__range", "5m"),
    (r"\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*", ".*"),
]


def coverage(alerts_path: str, tests_path: str) -> int:
    with open(alerts_path, encoding="utf-8") as f:
        alerts = [r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(tests_path, encoding="utf-8") as f:
        tests = yaml.safe_load(f)["tests"]
    fired, silent = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    failures = 0
    for name in alerts:
        missing = [what for what, seen in (("fires", fired), ("stays silent", silent)) if name not in seen]
        if missing:
            print(f"FAIL alert {name}: no test case where it {' or '.join(missing)}")
            failures += 1
        else:
            print(f"ok   alert {name}: tested firing and silent")
    for name in sorted((fired | silent) - set(alerts)):
        print(f"FAIL test names unknown alert {name}")
        failures += 1
    return 1 if failures else 0


def dashboard(dashboard_path: str, out_path: str) -> int:
    with open(dashboard_path, encoding="utf-8") as f:
        dash = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels or []:
            for t in p.get("targets", []):
                exprs.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels"))

    walk(dash.get("panels"))
    rules = []
    for n, (title, expr) in enumerate(exprs):
        for pattern, value in VARIABLES:
            expr = re.sub(pattern, value, expr)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr,
                      "labels": {"panel": title}})
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    print(f"ok   {len(rules)} dashboard queries written for promtool")
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    sys.exit({"coverage": coverage, "dashboard": dashboard}[cmd](*args))
