//! The command line, run as users run it: exact stdout, stderr, exit codes.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::proxy::BIN;
use crate::support::{Layout, ips, standard_geo};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("residency-proxy {}\n", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["lookup", "--help"],
    ] {
        let out = run(&cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            text(&out.stdout).contains("Usage: residency-proxy"),
            "{cmd:?}"
        );
    }
}

#[test]
fn shipped_config_checks_and_prints_the_eea_expansion() {
    let out = run(&["check"]);
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(
        s.starts_with("config config/residency-proxy.toml: ok\n"),
        "{s}"
    );
    assert!(
        s.contains("EEA alias (37 codes): AT AX BE BG CY CZ DE DK EE ES FI FR GF GP GR HR HU IE IS IT LI LT LU LV MF MQ MT NL NO PL PT RE RO SE SI SK YT\n"),
        "{s}"
    );
    assert!(
        s.contains("upstream http://127.0.0.1:9000: unknown allowed by allow_networks"),
        "{s}"
    );
    assert!(
        s.contains("IPv4 unwrapped from: ::ffff:0:0/96 ::ffff:0:0:0/96 ::/96 2002::/16, NAT64 64:ff9b::/96 64:ff9b:1::/48\n"),
        "{s}"
    );
}

#[test]
fn lookup_on_the_shipped_config() {
    let out = run(&[
        "lookup",
        "8.8.8.8",
        "90.0.0.1",
        "::ffff:8.8.8.8",
        "127.0.0.1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "8.8.8.8\tUS\tblocked\tcountry_not_allowed by allow_countries (not listed)\n\
         90.0.0.1\tFR\tallowed\tby allow_countries\n\
         ::ffff:8.8.8.8 (judged as 8.8.8.8)\tUS\tblocked\tcountry_not_allowed by allow_countries (not listed)\n\
         127.0.0.1\tunknown\tallowed\tby allow_networks\n"
    );
    let out = run(&["lookup", "--json", "8.8.8.8"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["country"], "US");
    assert_eq!(v[0]["decision"], "blocked");
    assert_eq!(v[0]["reason"], "country_not_allowed");
}

#[test]
fn lookup_refuses_what_is_not_an_ip() {
    let out = run(&["lookup", "8.8.8.8", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "invalid IP address \"not-an-ip\" (expected IPv4 such as 8.8.8.8 or IPv6 such as 2001:db8::1)\n"
    );
}

fn check_file(toml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr).replace(path.to_str().unwrap(), "bad.toml");
    (out.status.code(), text(&out.stdout), stderr)
}

#[test]
fn unknown_key_is_refused_with_line_and_column() {
    let (code, stdout, stderr) =
        check_file("[policy]\nmode = \"enforce\"\n  alow_countries = [\"FR\"]\n");
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("bad.toml:3:3: unknown field \"alow_countries\", expected one of"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn every_problem_is_reported_at_once_with_hints() {
    let toml = r#"[server]
listen = ["0.0.0.0:80", "nope"]
header_read_timeout = "10 seconds"
trusted_proxies = ["10.0.0.0/33"]

[policy]
allow_countries = ["EEA", "UK", "XX"]

[[route]]
name = "s3"
upstreams = ["ftp://x"]
"#;
    let (code, _, stderr) = check_file(toml);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "bad.toml:2:25: invalid listen address \"nope\" (expected IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\")\n\
         bad.toml:3:23: invalid duration \"10 seconds\" (expected an integer and a unit: \"250ms\", \"10s\", \"5m\", \"1h\", \"30d\")\n\
         bad.toml:4:20: invalid network \"10.0.0.0/33\" (expected CIDR such as \"10.0.0.0/8\" or \"fd00::/8\")\n\
         bad.toml:7:27: unknown country code \"UK\" (did you mean \"GB\"?)\n\
         bad.toml:7:33: unknown country code \"XX\" (expected an ISO 3166-1 alpha-2 code such as \"FR\", or \"EEA\")\n\
         bad.toml:11:14: invalid upstream \"ftp://x\": scheme must be http or https (expected \"http://host:port\" or \"https://host:port\")\n"
    );
}

#[test]
fn bad_enum_value_and_syntax_errors_are_located() {
    let (code, _, stderr) = check_file("[policy]\nmode = \"block\"\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("bad.toml:2:8: unknown variant \"block\", expected"),
        "{stderr}"
    );
    let (code, _, stderr) = check_file("[policy\n");
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("bad.toml:1:"), "{stderr}");
}

#[test]
fn missing_config_and_database_are_clear_errors() {
    let out = run(&["check", "--config", "does/not/exist.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "does/not/exist.toml: cannot read config file: No such file or directory (os error 2)\n"
    );
    let (code, _, stderr) = check_file(
        "[geoip]\ndatabase = \"/nonexistent/x.mmdb\"\n[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("cannot open GeoIP database /nonexistent/x.mmdb: "),
        "{stderr}"
    );
}

#[test]
fn check_shows_each_upstream_literal_verdict() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let toml = format!(
        "[geoip]\ndatabase = \"{}\"\n[policy]\nallow_networks = []\n[[route]]\nname = \"s3\"\nupstreams = [\"http://{}:9000\", \"http://{}:9000\"]\n",
        geo.path().display(),
        ips::ORIGIN,
        ips::ORIGIN_US
    );
    let (code, stdout, stderr) = check_file(&toml);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("upstream http://127.0.0.10:9000: DE allowed by allow_countries\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "upstream http://127.0.0.11:9000: US rejected by allow_countries (not listed)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn shipped_config_parses_to_the_defaults() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/residency-proxy.toml"
    ));
    let shipped = residency_proxy::config::Config::load(path).unwrap();
    // The same file with every documented key removed gives the same result.
    let minimal = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n";
    let defaults = residency_proxy::config::Config::parse(path, minimal).unwrap();
    // Every value, compared as a value (watch intervals and compiled
    // policies included): a Debug string could hide a difference.
    assert_eq!(shipped, defaults);
    assert_eq!(shipped.audit.export, None, "export is off by default");
    // The commented [audit.export] section, uncommented, gives the
    // defaults of its optional keys.
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split_once("# [audit.export]\n").unwrap().1;
    let keys: String = section
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let required = "endpoint = \"https://s3.fr-par.scw.cloud\"\nbucket = \"residency-audit\"\n\
        region = \"fr-par\"\naccess_key_id = \"SCWXXXXXXXXXXXXXXXXX\"\n\
        secret_access_key_file = \"/etc/residency-proxy/s3-secret\"\n";
    let export = |keys: &str| {
        residency_proxy::config::Config::parse(path, &format!("{minimal}[audit.export]\n{keys}"))
            .unwrap()
            .audit
            .export
            .unwrap()
    };
    let documented = export(&keys);
    assert_eq!(keys.lines().count(), 10, "{keys}");
    assert_eq!(documented, export(required));
    assert_eq!(documented.prefix, "");
    assert_eq!(documented.spool_max, 1 << 30);
    assert!(documented.fail_closed);
    assert_eq!(documented.object_lock, None);
}

/// `[audit.export]` values that cannot work are refused with their place.
#[test]
fn export_settings_that_cannot_work_are_refused() {
    let base = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n[audit.export]\n\
        endpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\nregion = \"r\"\naccess_key_id = \"k\"\n\
        secret_access_key_file = \"s\"\n";
    for (extra, message) in [
        (
            "object_lock_mode = \"compliance\"\nretain = \"1d\"\n",
            "bad.toml:10:20: object_lock_mode \"compliance\" is not",
        ),
        (
            "object_lock_mode = \"COMPLIANCE\"\n",
            "bad.toml:10:20: object_lock_mode needs a retain duration",
        ),
        (
            "retain = \"1d\"\n",
            "bad.toml:10:10: retain is set without object_lock_mode",
        ),
        (
            "prefix = \"/a/\"\n",
            "bad.toml:10:10: [audit.export] prefix \"/a/\" must not start with '/'",
        ),
        (
            "spool_max = 0\n",
            "bad.toml:10:13: spool_max = 0 is out of range",
        ),
    ] {
        let (code, _, stderr) = check_file(&format!("{base}{extra}"));
        assert_eq!(code, Some(1), "{extra}");
        assert!(stderr.starts_with(message), "{extra}: {stderr}");
    }
    let (code, _, stderr) = check_file(&base.replace("http://127.0.0.1:9", "ftp://x"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("invalid upstream \"ftp://x\""), "{stderr}");
}

#[test]
fn check_warns_when_routes_to_one_storage_judge_differently() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let route = |name: &str, extra: &str, port: u16| {
        format!(
            "[[route]]\nname = \"{name}\"\nupstreams = [\"http://127.0.0.10:{port}\"]\n{extra}\n"
        )
    };
    let head = format!("[geoip]\ndatabase = \"{}\"\n", geo.path().display());
    let toml = [
        head.clone(),
        route("hds", "buckets = [\"hds-bucket\"]", 9000),
        route(
            "records",
            "path_prefix = \"/records/\"\nallow_countries = [\"FR\"]",
            9000,
        ),
        route("catch-all", "mode = \"monitor\"", 9000),
        route(
            "elsewhere",
            "mode = \"monitor\"\npath_prefix = \"/x/\"",
            9001,
        ),
    ]
    .concat();
    let (code, stdout, stderr) = check_file(&toml);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("WARNING"))
        .collect();
    assert_eq!(warnings.len(), 4, "{stdout}");
    assert!(warnings[0].starts_with("WARNING: routes \"hds\" and \"records\" reach the same upstream http://127.0.0.10:9000 with different policies: "), "{stdout}");
    assert!(warnings[1].starts_with("WARNING: routes \"hds\" and \"catch-all\" reach the same upstream http://127.0.0.10:9000 with different modes (enforce and monitor): "), "{stdout}");
    assert!(warnings[2].starts_with("WARNING: routes \"records\" and \"catch-all\" reach the same upstream http://127.0.0.10:9000 with different modes (enforce and monitor): "), "{stdout}");
    assert!(
        warnings[3].starts_with("WARNING: routes name buckets but [server] s3_domains is empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "route hds: hosts any, path_prefix /, preserve_host true\n  buckets: hds-bucket\n"
        ),
        "{stdout}"
    );
    // Routes that agree, or reach different storages, are not warned about.
    let toml = [
        head,
        "[server]\ns3_domains = [\"s3.example\"]\n".to_owned(),
        route("hds", "buckets = [\"hds-bucket\"]", 9000),
        route("catch-all", "", 9000),
        route(
            "elsewhere",
            "mode = \"monitor\"\npath_prefix = \"/x/\"",
            9001,
        ),
    ]
    .concat();
    let (code, stdout, stderr) = check_file(&toml);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("WARNING"), "{stdout}");
}

#[test]
fn trusted_proxy_without_client_takes_untraceable_or_peer_only() {
    let (code, _, stderr) = check_file("[server]\ntrusted_proxy_without_client = \"client\"\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("bad.toml:2:32: unknown variant \"client\", expected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("untraceable") && stderr.contains("peer"),
        "{stderr}"
    );
}
