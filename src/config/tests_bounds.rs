//! Nothing the operator can write is taken without a bound: every duration
//! and size key of the shipped config (which shows every key with its
//! default, so a new key is covered as soon as it is documented) refuses an
//! absurd value, at the value's line and column; and `[geoip]
//! nat64_prefixes` refuses what RFC 6052 does not define.

use std::path::Path;

use super::{Config, ConfigError, Problem};

const SHIPPED: &str = include_str!("../../config/residency-proxy.toml");

fn problems(text: &str, what: &str) -> Vec<Problem> {
    match Config::parse(Path::new("c.toml"), text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("{what}: expected Invalid, got {e:?}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

/// `(line index, key, value column, is_duration)` of every uncommented
/// `key = "<integer><unit>"` and `key = <integer>` line.
fn bounded_keys() -> Vec<(usize, String, usize, bool)> {
    let mut keys = Vec::new();
    for (i, line) in SHIPPED.lines().enumerate() {
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        if key.starts_with('#') || key.contains(' ') {
            continue;
        }
        let column = key.len() + 4;
        let quoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
        if let Some(v) = quoted {
            if super::duration::parse_age(v).is_ok() {
                keys.push((i, key.to_owned(), column, true));
            }
        } else if value.parse::<u64>().is_ok() {
            keys.push((i, key.to_owned(), column, false));
        }
    }
    keys
}

#[test]
fn every_duration_and_size_key_refuses_an_absurd_value_at_its_position() {
    let keys = bounded_keys();
    let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    // The derivation found what exists today (so the test cannot pass by
    // finding nothing); new keys join this list by themselves.
    for known in [
        "header_read_timeout",
        "idle_timeout",
        "shutdown_grace",
        "watch_interval",
        "min_ttl",
        "max_ttl",
        "timeout",
        "connect_timeout",
        "response_timeout",
        "max_header_bytes",
        "max_headers",
        "max_connections",
        "queue",
        "max_age",
        "protocol_error_records",
        "protocol_error_window",
        "checkpoint_every",
        "rotate_size",
        "rotate_every",
    ] {
        assert!(names.contains(&known), "{known} not found in {names:?}");
    }
    let lines: Vec<&str> = SHIPPED.lines().collect();
    for (i, key, column, is_duration) in &keys {
        // Keys whose 0 is documented as "off" or "summaries only" take it;
        // ages (never added to a clock) go up to 3650 days.
        let zero_means_off = ["protocol_error_records", "rotate_size"].contains(&key.as_str());
        let absurd: &[&str] = match (*is_duration, key.as_str()) {
            (true, "max_age") => &["\"18446744073709551615s\"", "\"3651d\""],
            (true, _) => &[
                "\"18446744073709551615s\"",
                "\"18446744073709551615ms\"",
                "\"25h\"",
            ],
            (false, _) if zero_means_off => &["9223372036854775807"],
            (false, _) => &["9223372036854775807", "0"],
        };
        for value in absurd {
            let mut edited = lines.clone();
            let line = format!("{key} = {value}");
            edited[*i] = &line;
            let found = problems(&edited.join("\n"), &line);
            assert!(
                found.iter().any(|p| p.line == i + 1 && p.column == *column),
                "{key} = {value}: {found:?}"
            );
        }
    }
}

fn with_nat64(list: &str) -> String {
    SHIPPED.replace(
        "nat64_prefixes = [\"64:ff9b::/96\", \"64:ff9b:1::/48\"]",
        &format!("nat64_prefixes = {list}"),
    )
}

#[test]
fn nat64_prefixes_of_every_rfc_6052_length_are_accepted() {
    let text = with_nat64(
        "[\"2001:db8::/32\", \"2001:db8:100::/40\", \"2001:db8:122::/48\", \"2001:db8:122:300::/56\", \"2001:db8:122:344::/64\", \"2001:db8:122:344::/96\"]",
    );
    assert_ne!(text, SHIPPED, "the shipped config lists nat64_prefixes");
    let config = Config::parse(Path::new("c.toml"), &text).unwrap();
    assert_eq!(config.nat64_prefixes.iter().count(), 6);
    assert_eq!(config.policy.policy.nat64, config.nat64_prefixes);
    assert_eq!(config.routes[0].policy.policy.nat64, config.nat64_prefixes);
    assert_eq!(
        config.server.trusted_proxies.nat64(),
        &config.nat64_prefixes
    );
}

#[test]
fn nat64_prefixes_rfc_6052_does_not_define_are_refused_at_their_position() {
    for (bad, why) in [
        (
            "2001:db8::/33",
            "RFC 6052 defines no layout for a /33 prefix",
        ),
        (
            "2001:db8::/128",
            "RFC 6052 defines no layout for a /128 prefix",
        ),
        ("2001:db8::1/96", "bits are set after the prefix length"),
        ("10.0.0.0/8", "expected an IPv6 network"),
        ("::/96", "overlaps the IPv4-compatible form"),
        ("::ffff:0:0/96", "overlaps the IPv4-mapped form"),
        ("2002:a00::/32", "overlaps the 6to4 form"),
        ("2001::/32", "overlaps Teredo"),
    ] {
        let text = with_nat64(&format!("[\"64:ff9b::/96\", \"{bad}\"]"));
        let line = text
            .lines()
            .position(|l| l.starts_with("nat64_prefixes"))
            .unwrap();
        let found = problems(&text, bad);
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert_eq!(
            (found[0].line, found[0].column),
            (line + 1, 35),
            "{bad}: {found:?}"
        );
        assert!(found[0].message.contains(why), "{bad}: {found:?}");
    }
}

#[test]
fn a_network_inside_an_unwrapped_form_is_refused_as_it_would_never_match() {
    for (net, form) in [
        ("64:ff9b::/96", "the NAT64 prefix 64:ff9b::/96"),
        ("64:ff9b:1:7f00::/64", "the NAT64 prefix 64:ff9b:1::/48"),
        ("::ffff:0:a00:0/104", "the SIIT form"),
        ("::a00:0/104", "the IPv4-compatible form"),
        ("2002:a00::/24", "the 6to4 form"),
    ] {
        let text = SHIPPED.replace(
            "deny_networks = []",
            &format!("deny_networks = [\"{net}\"]"),
        );
        let found = problems(&text, net);
        assert_eq!(found.len(), 1, "{net}: {found:?}");
        assert!(found[0].message.contains(form), "{net}: {found:?}");
        assert!(found[0].message.contains("would never match"), "{net}");
    }
    // The mapped form is matched as IPv4, ::1 is not IPv4-compatible, and
    // Teredo networks match Teredo addresses: all accepted.
    for net in [
        "::ffff:10.0.0.0/104",
        "::1/128",
        "2001::/32",
        "64:ff9b::/32",
    ] {
        let text = SHIPPED.replace(
            "deny_networks = []",
            &format!("deny_networks = [\"{net}\"]"),
        );
        assert!(Config::parse(Path::new("c.toml"), &text).is_ok(), "{net}");
    }
}

#[test]
fn trusted_proxies_are_matched_through_the_configured_nat64_prefixes() {
    let text = with_nat64("[\"64:ff9b::/96\", \"3fff:5:1:1::/64\"]")
        .replace("trusted_proxies = []", "trusted_proxies = [\"10.0.0.1\"]");
    let config = Config::parse(Path::new("c.toml"), &text).unwrap();
    let trusted = &config.server.trusted_proxies;
    let is = |ip: &str| crate::proxy::client_ip::is_trusted(ip.parse().unwrap(), trusted);
    assert!(is("10.0.0.1"));
    assert!(is("64:ff9b::a00:1"));
    assert!(is("3fff:5:1:1:a:0:100:0"));
    // Not listed any more: ordinary IPv6.
    assert!(!is("64:ff9b:1:a00:0:100::"));
    assert!(!is("3fff:5:1:1:b:0:100:0"));
}
