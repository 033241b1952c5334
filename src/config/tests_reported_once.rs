//! A problem in a global `[policy]` list is reported once, at its place,
//! whichever lists the routes override (each route's policy is compiled
//! from the global lists it does not override).

use std::path::Path;

use super::{Config, ConfigError};

const LISTS: [(&str, &str); 5] = [
    ("allow_countries", "[\"XX\"]"),
    ("deny_countries", "[\"XX\"]"),
    ("allow_networks", "[\"10.0.0.0/33\"]"),
    ("deny_networks", "[\"10.0.0.0/33\"]"),
    ("operator_countries", "[\"XX\"]"),
];

fn messages(text: &str) -> Vec<String> {
    match Config::parse(Path::new("c.toml"), text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| p.message).collect()
        }
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The case of the review: `deny_networks = ["10.0.0.0/33"]` plus a route
/// with `allow_countries` gave the network error twice.
#[test]
fn a_bad_global_network_is_reported_once_beside_a_route_override() {
    let text = "[policy]\ndeny_networks = [\"10.0.0.0/33\"]\n\
        [[route]]\nname = \"a\"\nupstreams = [\"http://127.0.0.1:9000\"]\n\
        allow_countries = [\"FR\"]\n";
    let messages = messages(text);
    assert_eq!(
        messages,
        ["invalid network \"10.0.0.0/33\" (expected CIDR such as \"10.0.0.0/8\" or \"fd00::/8\")"]
    );
}

/// Every global list with a bad value, against every list a route (or two
/// routes) may override: each problem once, and a bad value in the route's
/// own list once more (its own place).
#[test]
fn every_bad_global_list_is_reported_once_whatever_the_routes_override() {
    for (global, bad) in LISTS {
        for (own, _) in LISTS {
            let route = |name: &str| {
                format!(
                    "[[route]]\nname = \"{name}\"\nupstreams = [\"http://127.0.0.1:9000\"]\n\
                     {own} = [\"FR\"]\n"
                )
                .replace(
                    "[\"FR\"]",
                    if own.ends_with("networks") {
                        "[\"10.0.0.0/8\"]"
                    } else {
                        "[\"FR\"]"
                    },
                )
            };
            let text = format!(
                "[policy]\n{global} = {bad}\n{}{}[[route]]\nname = \"c\"\nupstreams = [\"http://127.0.0.1:9000\"]\n",
                route("a"),
                route("b")
            );
            let messages = messages(&text);
            assert_eq!(
                messages.len(),
                1,
                "{global} bad, routes own {own}: {messages:?}"
            );
        }
    }
}
