//! What `deploy/` and the Dockerfile promise about the real binary: every
//! metric and label that the Grafana dashboard and the Prometheus alerts
//! query is one a running proxy exports; the shipped container and
//! Kubernetes configs pass `check`; the image's health check answers; the
//! systemd unit reloads with SIGHUP inside its sandbox. `deploy/check` lints
//! and schema-validates the same files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::proxy::BIN;
use crate::support::tls::TestCa;
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Series names (with `_bucket`, `_sum`, `_count`) and label names of a
/// Prometheus text scrape.
struct Exported {
    names: BTreeSet<String>,
    labels: BTreeSet<String>,
}

impl Exported {
    fn parse(scrape: &str) -> Self {
        let mut names = BTreeSet::new();
        let mut labels = BTreeSet::new();
        for line in scrape.lines().filter(|l| !l.starts_with('#')) {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
            if let Some(rest) = line[end..].strip_prefix('{') {
                let body = &rest[..rest.rfind('}').unwrap()];
                // Label values of this proxy hold no '=' or ',' (SPEC §5).
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    labels.insert(pair.split('=').next().unwrap().to_owned());
                }
            }
        }
        Self { names, labels }
    }
}

/// Series Prometheus makes itself for every target, and the target labels
/// it attaches to every series.
const SYNTHETIC_SERIES: [&str; 1] = ["up"];
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Metric names and label names a PromQL expression refers to. Grafana
/// variables (`$route`, `$__rate_interval`), strings, numbers, durations and
/// function names are skipped; identifiers after `by`, `without`, `on`,
/// `ignoring`, `group_left`, `group_right` and inside `{}` are labels.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

fn promql_refs(expr: &str) -> Refs {
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];
    // Aggregations may put `by (...)` between their name and their `(`.
    const AGGREGATIONS: [&str; 14] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut refs = Refs::default();
    let mut in_braces = false;
    let mut label_list = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' => i += expr[i..].find(']').expect("unclosed [") + 1,
            b'{' => {
                in_braces = true;
                i += 1;
            }
            b'}' => {
                in_braces = false;
                i += 1;
            }
            b')' => {
                label_list = false;
                i += 1;
            }
            b'$' => {
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i += expr[i..].find('}').expect("unclosed ${") + 1;
                } else {
                    while i < b.len() && is_ident(b[i]) {
                        i += 1;
                    }
                }
            }
            // Numbers and durations: 0.99, 30, 1e3, 10m.
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if is_ident(c) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().bytes().next();
                if in_braces || label_list {
                    refs.labels.insert(word.to_owned());
                } else if LABEL_LISTS.contains(&word) {
                    // `group_left` may stand without a list.
                    label_list = next == Some(b'(');
                } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                    || AGGREGATIONS.contains(&word)
                    || next == Some(b'(')
                {
                    // An operator keyword, or a function or aggregation.
                } else {
                    refs.metrics.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    refs
}

/// A Grafana variable query: `label_values(selector, label)` names a
/// label besides its selector; anything else is PromQL.
fn variable_refs(query: &str) -> Refs {
    let Some(inner) = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
    else {
        return promql_refs(query);
    };
    match inner.rsplit_once(',') {
        Some((selector, label)) => {
            let mut refs = promql_refs(selector);
            refs.labels.insert(label.trim().to_owned());
            refs
        }
        None => Refs {
            labels: BTreeSet::from([inner.trim().to_owned()]),
            ..Refs::default()
        },
    }
}

/// Every `expr` of deploy/prometheus/alerts.yml, by alert name. The file is
/// written with `expr: |` blocks; this reads exactly that shape (promtool
/// in deploy/check parses it fully).
fn alert_exprs() -> BTreeMap<String, String> {
    let text = read("deploy/prometheus/alerts.yml");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    let mut alert = None;
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            alert = Some(name.trim().to_owned());
        } else if let Some(value) = trimmed.strip_prefix("expr:") {
            let indent = line.len() - trimmed.len();
            let expr = if value.trim() == "|" {
                lines[n + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                value.trim().to_owned()
            };
            let name = alert.take().expect("an expr follows its alert name");
            out.insert(name, expr);
        }
    }
    assert_eq!(
        out.len(),
        text.matches("- alert: ").count(),
        "every alert has one expr"
    );
    out
}

/// Every query of the dashboard: panel targets (rows' nested panels
/// included) and variable queries, each with where it was found.
fn dashboard_queries(dash: &serde_json::Value) -> Vec<(String, Refs)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, Refs)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push((format!("panel {title:?}: {expr}"), promql_refs(expr)));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap();
            out.push((format!("variable ${}: {q}", v["name"]), variable_refs(q)));
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/residency-proxy.json"))
        .expect("deploy/grafana/residency-proxy.json is JSON")
}

/// Scrapes a proxy that has served an allowed, a client-blocked, a flagged
/// (monitor route) and an upstream-blocked request (route whose storage is
/// in the US), so that every labelled family has a series.
async fn scrape_after_every_decision() -> String {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let abroad = Origin::start(ips::ORIGIN_US).await;
    // HTTPS too, for the certificate expiry series.
    let ca = TestCa::new("Proxy CA");
    let (cert, key) = ca.write_leaf("server", &["s3.test"]);
    let mut toml = config(&geo, &origin, "", "", "").replace(
        "[admin]",
        &format!(
            "tls_listen = [\"127.0.0.1:0\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[admin]",
            cert.display(),
            key.display()
        ),
    );
    toml.push_str(&format!(
        "\n[[route]]\nname = \"watch\"\npath_prefix = \"/watch/\"\nupstreams = [\"{}\"]\nmode = \"monitor\"\n\
         \n[[route]]\nname = \"abroad\"\npath_prefix = \"/abroad/\"\nupstreams = [\"{}\"]\n",
        origin.url(),
        abroad.url()
    ));
    // An operator database, for its build time series; on_foreign_operator
    // stays "ignore", so no decision below changes.
    let operators = crate::support::TestOperators::new()
        .map(ips::ORIGIN, "DE", Some(3320))
        .build();
    let toml = toml.replacen(
        "[policy]\n",
        &format!(
            "operator_database = \"{}\"\n\n[policy]\n",
            operators.path().display()
        ),
        1,
    );
    assert!(toml.contains("operator_database"));
    let proxy = Proxy::start(&toml);
    for (ip, path, status) in [
        (ips::FR, "/b/k", 200),
        (ips::US, "/b/k", 451),
        (ips::US, "/watch/k", 200),
        (ips::FR, "/abroad/k", 451),
    ] {
        let rsp = Client::bound_to(ip).get(proxy.addr(), path, &[]).await;
        assert_eq!(rsp.status, status, "{ip} {path}");
    }
    // The last audit record of a response is written as its body ends.
    for _ in 0..500 {
        if proxy.audit_records().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rsp = Client::bound_to("127.0.0.1")
        .get(proxy.admin_addr(), "/metrics", &[])
        .await;
    assert_eq!(rsp.status, 200);
    rsp.text()
}

fn missing(refs: &Refs, exported: &Exported) -> Vec<String> {
    let metrics = refs
        .metrics
        .iter()
        .filter(|m| !exported.names.contains(*m) && !SYNTHETIC_SERIES.contains(&m.as_str()))
        .map(|m| format!("metric {m}"));
    let labels = refs
        .labels
        .iter()
        .filter(|l| !exported.labels.contains(*l) && !TARGET_LABELS.contains(&l.as_str()))
        .map(|l| format!("label {l}"));
    metrics.chain(labels).collect()
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_what_the_proxy_exports() {
    let exported = Exported::parse(&scrape_after_every_decision().await);
    for family in [
        "residency_blocked_transfers_total",
        "residency_flagged_transfers_total",
        "residency_upstream_ips_rejected_total",
        "residency_request_duration_seconds_bucket",
        "residency_tls_certificate_expiry_timestamp_seconds",
        "residency_build_info",
    ] {
        assert!(exported.names.contains(family), "{family} not in scrape");
    }

    let mut queries = dashboard_queries(&dashboard());
    for (alert, expr) in alert_exprs() {
        queries.push((format!("alert {alert}: {expr}"), promql_refs(&expr)));
    }
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, refs) in &queries {
        assert!(!refs.metrics.is_empty(), "no metric found in {place}");
        used.extend(refs.metrics.iter().cloned());
        for m in missing(refs, &exported) {
            problems.push(format!("{m} is not exported, in {place}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The reader itself: it found the families the panels are about.
    for name in [
        "residency_requests_total",
        "residency_request_duration_seconds_bucket",
        "residency_geoip_database_build_timestamp_seconds",
        "residency_tls_certificate_expiry_timestamp_seconds",
        "residency_build_info",
        "up",
    ] {
        assert!(used.contains(name), "{name} not found in any query");
    }
}

#[test]
fn promql_reader_tells_metrics_from_labels_functions_and_variables() {
    let refs = promql_refs(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(residency_request_duration_seconds_bucket{job=~"$job", route=~"a|b"}[$__rate_interval])))
           > on (route) group_left 3 * (foo_total offset 1h or vector(0)) unless bar:ratio{x!="1"} and ${var}"#,
    );
    assert_eq!(
        refs.metrics,
        BTreeSet::from([
            "bar:ratio".to_owned(),
            "foo_total".to_owned(),
            "residency_request_duration_seconds_bucket".to_owned(),
        ])
    );
    assert_eq!(
        refs.labels,
        BTreeSet::from(["job", "le", "route", "x"].map(str::to_owned))
    );
    let v = variable_refs(r#"label_values(residency_requests_total{job=~"$job"}, route)"#);
    assert_eq!(
        v.metrics,
        BTreeSet::from(["residency_requests_total".to_owned()])
    );
    assert_eq!(
        v.labels,
        BTreeSet::from(["job", "route"].map(str::to_owned))
    );
}

#[test]
fn dashboard_uses_its_datasource_variable_everywhere() {
    let dash = dashboard();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let uid = format!("${{{}}}", ds["name"].as_str().unwrap());
    let mut ids = BTreeSet::new();
    let mut panels: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id {p}");
        panels.extend(p["panels"].as_array().into_iter().flatten());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
        }
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["datasource"]["uid"],
            uid.as_str(),
            "variable {}",
            v["name"]
        );
    }
}

/// A shipped config with the paths that only exist in the image or the pod
/// pointed at the repository's database, a temporary audit directory and a
/// test certificate (for the Secret the tls component mounts).
fn localised(path: &str, audit_dir: &Path) -> String {
    let db = repo("geodata/geo-whois-asn-country.mmdb");
    let ca = TestCa::new("Pod CA");
    let (cert, key) = ca.leaf(&["s3.hds.example"]);
    let (cert_path, key_path) = (audit_dir.join("tls.crt"), audit_dir.join("tls.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    read(path)
        .lines()
        .map(|line| {
            if line.starts_with("database = ") {
                format!("database = \"{}\"", db.display())
            } else if line.starts_with("cert = ") {
                format!("cert = \"{}\"", cert_path.display())
            } else if line.starts_with("key = ") {
                format!("key = \"{}\"", key_path.display())
            } else if line.starts_with("path = ") {
                format!("path = \"{}\"", audit_dir.join("audit.jsonl").display())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_container_and_kubernetes_configs_pass_check() {
    for path in [
        "deploy/docker/residency-proxy.toml",
        "deploy/kubernetes/base/residency-proxy.toml",
        "deploy/kubernetes/overlays/example/residency-proxy.toml",
    ] {
        let raw: toml::Value = toml::from_str(&read(path)).unwrap();
        // Probes and scrapes come from outside the container.
        assert_eq!(
            raw["admin"]["listen"].as_str(),
            Some("0.0.0.0:9090"),
            "{path}"
        );
        // The only writable path of the image and the pods.
        let audit = raw["audit"]["path"].as_str().unwrap();
        assert!(
            audit.starts_with("/var/lib/residency-proxy/audit/"),
            "{path}: {audit}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("residency-proxy.toml");
        std::fs::write(&file, localised(path, dir.path())).unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dockerfile_runs_the_image_config_and_checks_its_admin_port() {
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile
            .contains(r#"CMD ["run", "--config", "/etc/residency-proxy/residency-proxy.toml"]"#)
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/residency-proxy"]"#));
    assert!(dockerfile.contains("COPY deploy/docker/residency-proxy.toml /etc/residency-proxy/"));
    assert!(dockerfile.contains("EXPOSE 8080 8443 9090"));
    assert!(
        dockerfile
            .contains(r#"CMD ["/usr/local/bin/residency-proxy-healthcheck", "127.0.0.1:9090"]"#)
    );
    assert!(dockerfile.contains("--locked"));
    let image: toml::Value = toml::from_str(&read("deploy/docker/residency-proxy.toml")).unwrap();
    assert_eq!(image["server"]["listen"][0].as_str(), Some("0.0.0.0:8080"));
    assert!(
        image["geoip"]["database"]
            .as_str()
            .unwrap()
            .starts_with("/usr/share/residency-proxy/geodata/")
    );
    assert!(dockerfile.contains("COPY geodata/ /usr/share/residency-proxy/geodata/"));
}

#[tokio::test]
async fn image_healthcheck_passes_on_a_live_proxy_and_fails_on_a_closed_port() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let check = |addr: String| {
        Command::new("bash")
            .arg(repo("deploy/docker/healthcheck"))
            .arg(addr)
            .output()
            .unwrap()
    };
    let out = check(proxy.admin_addr().to_string());
    assert!(out.status.success(), "{out:?}");
    // A port nothing listens on: the proxy's own, once it is gone.
    let admin = proxy.admin_addr();
    drop(proxy);
    assert!(!check(admin.to_string()).status.success());
}

/// `Key=value` lines of a unit file, by section, in file order.
fn unit_directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
        } else {
            let (k, v) = line.split_once('=').expect("Key=value");
            out.push((section.clone(), k.to_owned(), v.to_owned()));
        }
    }
    out
}

#[test]
fn systemd_unit_reloads_with_sighup_inside_its_sandbox() {
    let unit = unit_directives(&read("deploy/systemd/residency-proxy.service"));
    let all = |key: &str| -> Vec<&str> {
        unit.iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let v = all(key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    };
    let config = "--config /etc/residency-proxy/residency-proxy.toml";
    assert_eq!(
        one("ExecStart"),
        format!("/usr/local/bin/residency-proxy run {config}")
    );
    assert_eq!(
        all("ExecReload"),
        [
            format!("/usr/local/bin/residency-proxy check {config}").as_str(),
            "/bin/kill -HUP $MAINPID"
        ]
    );
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "residency-proxy"),
        ("ReadWritePaths", "/var/lib/residency-proxy"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // Stopping waits longer than the default shutdown_grace (30 s) drains.
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop}");
}

#[test]
fn logrotate_reopens_with_sigusr1_and_systemd_passes_the_key_as_a_credential() {
    // SIGUSR1 reopens the audit file only; SIGHUP would apply pending edits.
    let logrotate = read("deploy/logrotate/residency-proxy");
    let post: Vec<&str> = logrotate
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "postrotate")
        .skip(1)
        .take_while(|l| *l != "endscript")
        .collect();
    assert_eq!(
        post,
        ["systemctl kill --kill-who=main --signal=USR1 residency-proxy.service"]
    );
    assert!(logrotate.contains("/var/lib/residency-proxy/audit/audit.jsonl {"));
    let dropin = unit_directives(&read("deploy/systemd/tls.conf"));
    assert_eq!(
        dropin,
        [
            (
                "Service",
                "LoadCredential",
                "tls.crt:/etc/residency-proxy/tls/tls.crt"
            ),
            (
                "Service",
                "LoadCredential",
                "tls.key:/etc/residency-proxy/tls/tls.key"
            ),
        ]
        .map(|(s, k, v)| (s.to_owned(), k.to_owned(), v.to_owned()))
    );
    // The paths the drop-in's header tells the config to use are where
    // systemd puts the credentials of this unit.
    let header = read("deploy/systemd/tls.conf");
    for name in ["tls.crt", "tls.key"] {
        assert!(
            header.contains(&format!(
                "\"/run/credentials/residency-proxy.service/{name}\""
            )),
            "{name}"
        );
    }
}

/// The geomap panel draws blocked and flagged transfers by country without
/// fetching map tiles: its base layer is Grafana's own country outlines,
/// each data layer places a query's `country` label (an ISO code) with
/// Grafana's built-in gazetteer, and nothing in it names an external URL.
/// (Its queries are checked against a live scrape with the others, in
/// `dashboard_and_alerts_query_only_what_the_proxy_exports`.)
#[test]
fn dashboard_map_places_countries_by_iso_code_and_fetches_no_tiles() {
    let dash = dashboard();
    let maps: Vec<&serde_json::Value> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "geomap")
        .collect();
    assert_eq!(maps.len(), 1, "one geomap panel");
    let map = maps[0];
    assert!(
        !map.to_string().contains("http"),
        "no external URL in the map panel: {map}"
    );
    let base = &map["options"]["basemap"];
    assert_eq!(base["type"], "geojson", "a vector base layer, not tiles");
    assert!(
        base["config"]["src"]
            .as_str()
            .unwrap()
            .starts_with("public/maps/"),
        "served by Grafana itself: {base}"
    );
    let mut drawn = BTreeSet::new();
    for layer in map["options"]["layers"].as_array().unwrap() {
        assert_eq!(layer["type"], "markers");
        let location = &layer["location"];
        assert_eq!(location["mode"], "lookup");
        assert_eq!(location["lookup"], "country");
        assert_eq!(location["gazetteer"], "public/gazetteer/countries.json");
        assert_eq!(layer["filterData"]["id"], "byRefId");
        let ref_id = layer["filterData"]["options"].as_str().unwrap();
        let target = map["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["refId"] == ref_id)
            .unwrap_or_else(|| panic!("layer {} draws no query", layer["name"]));
        assert_eq!(target["format"], "table");
        assert_eq!(target["instant"], true);
        let expr = target["expr"].as_str().unwrap();
        assert!(expr.starts_with("sum by (country) ("), "{expr}");
        // Grafana names the value of each of several table queries so.
        assert_eq!(
            layer["config"]["style"]["size"]["field"],
            format!("Value #{ref_id}").as_str()
        );
        drawn.extend(promql_refs(expr).metrics);
    }
    assert_eq!(
        drawn,
        BTreeSet::from(
            [
                "residency_blocked_transfers_total",
                "residency_flagged_transfers_total"
            ]
            .map(str::to_owned)
        )
    );
}
