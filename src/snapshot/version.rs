//! The policy version: the first 12 hex digits of SHA-256 over a canonical
//! text of everything that decides a verdict (docs/reference.md, "Policy
//! version"), built from compiled values so that neither the file's
//! spelling nor a toolchain's `Debug` output can change it.

use sha2::{Digest, Sha256};

use crate::access::Access;
use crate::config::{Config, RouteSpec};
use crate::geo::GeoDb;

/// What identifies a database build in the policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseBuild {
    /// `database_type` from the metadata.
    pub kind: String,
    /// `build_epoch` from the metadata.
    pub epoch: u64,
    /// Nodes in the search tree.
    pub nodes: u32,
}

impl DatabaseBuild {
    /// The build of `db`.
    pub fn of(db: &GeoDb) -> Self {
        Self {
            kind: db.database_type().to_owned(),
            epoch: db.build_epoch(),
            nodes: db.node_count(),
        }
    }
}

/// The first 12 hex digits of SHA-256 over [`canonical`]: everything that
/// decides a verdict, in a form that only changes when a decision can.
pub fn policy_version(
    config: &Config,
    access: &Access,
    geo: &DatabaseBuild,
    operators: Option<&DatabaseBuild>,
) -> String {
    Sha256::digest(canonical(config, access, geo, operators).as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The canonical text the policy version hashes (docs/reference.md,
/// "Policy version"): one `key value` line per fact, in a fixed order,
/// built from compiled values only — countries as sorted ISO codes
/// (aliases expanded), networks as their merged address ranges, hosts,
/// buckets, domains and upstreams sorted — so neither the spelling nor
/// the order of a list in the file, nor a toolchain's `Debug` output,
/// changes it. Routes stay in file order: ties between routes go to the
/// first. Version 1 of this format starts with `residency-policy 1`.
/// The identity registry and the valid grants (SPEC §9) follow the
/// routes, only when `[identities]` or `[grants]` is configured, so a
/// policy without them keeps the version it had before they existed.
pub fn canonical(
    config: &Config,
    access: &Access,
    geo: &DatabaseBuild,
    operators: Option<&DatabaseBuild>,
) -> String {
    let mut out = String::from("residency-policy 1\n");
    let mut line = |key: &str, value: &dyn std::fmt::Display| push(&mut out, key, value);
    let s = &config.server;
    line("client_ip_source", &s.client_ip_source.as_str());
    line(
        "trusted_proxy_without_client",
        &match s.trusted_proxy_without_client {
            crate::config::TrustedProxyWithoutClient::Untraceable => "untraceable",
            crate::config::TrustedProxyWithoutClient::Peer => "peer",
        },
    );
    line(
        "trusted_proxies",
        &joined(s.trusted_proxies.ranges().collect()),
    );
    line("s3_domains", &sorted(s.s3_domains.clone()));
    line(
        "nat64_prefixes",
        &sorted(
            config
                .nat64_prefixes
                .iter()
                .map(|p| p.to_string())
                .collect(),
        ),
    );
    line(
        "database",
        &format!("{} {} {}", geo.kind, geo.epoch, geo.nodes),
    );
    line(
        "operator_database",
        &operators.map_or_else(
            || "none".to_owned(),
            |o| format!("{} {} {}", o.kind, o.epoch, o.nodes),
        ),
    );
    policy_lines(&mut out, "policy.", &config.policy.policy);
    for r in &config.routes {
        route_lines(&mut out, r);
    }
    access_lines(&mut out, config, access);
    out
}

/// A free-form value (an id, an identity, a path prefix, a list of
/// names) as a JSON string or array: one line, and no two values alike.
fn quoted<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `all` for an absent or empty list, else the sorted names quoted.
fn names(list: Option<&[String]>) -> String {
    match list {
        None | Some([]) => "all".to_owned(),
        Some(l) => {
            let mut l = l.to_vec();
            l.sort();
            l.dedup();
            quoted(&l)
        }
    }
}

/// The registry and the valid grants: `identities …`, then one
/// `identity <id> …` line per entry, then one `grant <id> …` line per
/// valid grant, each sorted by id. A grant that
/// opens nothing (bad signature, too long…) is left out: it decides
/// nothing. Time does not enter: an expired grant keeps its line until a
/// reload drops it from the file.
fn access_lines(out: &mut String, config: &Config, access: &Access) {
    use crate::access::canonical::rfc3339;
    if let Some(ids) = &config.access.identities {
        push(
            out,
            "identities",
            &format!(
                "require_known={} on_overdue={}",
                ids.require_known,
                match ids.on_overdue {
                    crate::access::OnOverdue::Flag => "flag",
                    crate::access::OnOverdue::Refuse => "refuse",
                }
            ),
        );
        let mut entries: Vec<&crate::access::files::Identity> = access.identities.iter().collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        for i in entries {
            push(
                out,
                "identity",
                &format!(
                    "{} proof={} routes={} overdue={}",
                    quoted(&i.id),
                    i.proof.as_str(),
                    names(i.routes.as_deref()),
                    rfc3339(i.reviewed.saturating_add(access.review_every))
                ),
            );
        }
    }
    if config.access.grants.is_some() {
        let mut valid: Vec<&crate::access::canonical::Signed> = access
            .reports
            .iter()
            .filter(|r| r.problems.is_empty())
            .map(|r| &r.entry.signed)
            .collect();
        valid.sort_by(|a, b| a.id.cmp(&b.id));
        for g in valid {
            let mut countries = g.from_countries.clone();
            countries.sort();
            countries.dedup();
            push(
                out,
                "grant",
                &format!(
                    "{} identity={} proof={} countries={} routes={} methods={} path_prefix={} window={}/{}",
                    quoted(&g.id),
                    quoted(&g.identity),
                    g.proof.as_str(),
                    countries.join(","),
                    names(Some(&g.routes)),
                    names(Some(&g.methods)),
                    quoted(&g.path_prefix),
                    rfc3339(g.not_before),
                    rfc3339(g.not_after)
                ),
            );
        }
    }
}

fn push(out: &mut String, key: &str, value: &dyn std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{key} {value}");
}

fn joined(items: Vec<String>) -> String {
    items.join(",")
}

fn sorted(mut items: Vec<String>) -> String {
    items.sort();
    items.dedup();
    items.join(",")
}

fn policy_lines(out: &mut String, prefix: &str, p: &crate::policy::Policy) {
    let mut line = |key: &str, value: &dyn std::fmt::Display| push(out, key, value);
    let codes = |set: &crate::geo::CountrySet| joined(set.iter().map(|c| c.to_string()).collect());
    line(&format!("{prefix}mode"), &p.mode.as_str());
    line(
        &format!("{prefix}allow_countries"),
        &codes(&p.allow_countries),
    );
    line(
        &format!("{prefix}deny_countries"),
        &codes(&p.deny_countries),
    );
    line(
        &format!("{prefix}unknown_country"),
        &if p.unknown_allowed { "allow" } else { "deny" },
    );
    line(
        &format!("{prefix}allow_networks"),
        &joined(p.allow_networks.ranges().collect()),
    );
    line(
        &format!("{prefix}deny_networks"),
        &joined(p.deny_networks.ranges().collect()),
    );
    line(
        &format!("{prefix}operator_countries"),
        &codes(&p.operator_countries),
    );
    line(
        &format!("{prefix}on_foreign_operator"),
        &format!(
            "client={} upstream={}",
            p.on_foreign_operator.client.as_str(),
            p.on_foreign_operator.upstream.as_str()
        ),
    );
}

fn route_lines(out: &mut String, r: &RouteSpec) {
    {
        let mut line = |key: &str, value: &dyn std::fmt::Display| push(out, key, value);
        line("route", &r.name);
        let hosts = r
            .hosts
            .iter()
            .map(|h| match h {
                crate::config::HostPattern::Exact(n) => n.to_ascii_lowercase(),
                crate::config::HostPattern::Suffix(n) => format!("*{}", n.to_ascii_lowercase()),
            })
            .collect();
        line("route.hosts", &sorted(hosts));
        line("route.path_prefix", &r.path_prefix);
        line("route.buckets", &sorted(r.buckets.clone()));
        let upstreams = r
            .upstreams
            .iter()
            .map(|u| {
                let host = match &u.host {
                    crate::config::UpstreamHost::Name(n) => n.to_ascii_lowercase(),
                    crate::config::UpstreamHost::Ip(ip) => match ip {
                        std::net::IpAddr::V4(a) => a.to_string(),
                        std::net::IpAddr::V6(a) => format!("[{a}]"),
                    },
                };
                let scheme = if u.https { "https" } else { "http" };
                format!("{scheme}://{host}:{}", u.port)
            })
            .collect();
        line("route.upstreams", &sorted(upstreams));
    }
    policy_lines(out, "route.policy.", &r.policy.policy);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{DatabaseBuild, canonical, policy_version};
    use crate::access::{Access, keys};
    use crate::config::Config;

    const BASE: &str = "[server]\ntrusted_proxies = [\"10.1.0.0/16\"]\n\
        client_ip_source = \"x-forwarded-for\"\ns3_domains = [\"s3.example.org\"]\n\
        [policy]\nallow_countries = [\"FR\", \"DE\"]\ndeny_countries = [\"RU\"]\n\
        allow_networks = [\"127.0.0.0/8\"]\ndeny_networks = [\"10.9.0.0/16\"]\n\
        [[route]]\nname = \"a\"\nhosts = [\"a.example.org\", \"*.b.example.org\"]\n\
        path_prefix = \"/a/\"\nbuckets = [\"one\", \"two\"]\n\
        upstreams = [\"http://127.0.0.1:9000\", \"https://s3.example.org:443\"]\n\
        [[route]]\nname = \"b\"\nupstreams = [\"http://127.0.0.2:9000\"]\n\
        mode = \"monitor\"\nallow_countries = [\"EEA\"]\n";

    fn build() -> DatabaseBuild {
        DatabaseBuild {
            kind: "GeoLite2-Country".into(),
            epoch: 1_790_000_000,
            nodes: 1000,
        }
    }

    fn version_of(text: &str) -> String {
        let config = Config::parse(Path::new("c.toml"), text).unwrap();
        policy_version(&config, &Access::default(), &build(), None)
    }

    /// The version of a fixed config is a fixed value: no toolchain or
    /// dependency update may change it (a change of this value is a change
    /// of the documented format, and must say so in docs/reference.md).
    #[test]
    fn the_version_of_a_fixed_config_is_a_fixed_value() {
        let config = Config::parse(Path::new("c.toml"), BASE).unwrap();
        let text = canonical(&config, &Access::default(), &build(), None);
        assert!(
            text.starts_with(
                "residency-policy 1\n\
                 client_ip_source x-forwarded-for\n\
                 trusted_proxy_without_client untraceable\n\
                 trusted_proxies 10.1.0.0-10.1.255.255\n\
                 s3_domains s3.example.org\n\
                 nat64_prefixes 64:ff9b:1::/48,64:ff9b::/96\n\
                 database GeoLite2-Country 1790000000 1000\n\
                 operator_database none\n\
                 policy.mode enforce\n\
                 policy.allow_countries DE,FR\n\
                 policy.deny_countries RU\n\
                 policy.unknown_country deny\n\
                 policy.allow_networks 127.0.0.0-127.255.255.255\n\
                 policy.deny_networks 10.9.0.0-10.9.255.255\n\
                 policy.operator_countries AT,"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "route a\n\
                 route.hosts *.b.example.org,a.example.org\n\
                 route.path_prefix /a/\n\
                 route.buckets one,two\n\
                 route.upstreams http://127.0.0.1:9000,https://s3.example.org:443\n\
                 route.policy.mode enforce\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("route b\nroute.hosts \nroute.path_prefix /\n"),
            "{text}"
        );
        assert_eq!(version_of(BASE), "118550b5fe2e");
    }

    /// Spelling, case and the order of list entries do not change the
    /// version: it is computed from what the lists compile to.
    #[test]
    fn the_version_does_not_depend_on_spelling_or_list_order() {
        let base = version_of(BASE);
        for (from, to) in [
            ("[\"FR\", \"DE\"]", "[\"de\", \"FR\", \"fr\"]"),
            (
                "[\"10.1.0.0/16\"]",
                "[\"10.1.128.0/17\", \"10.1.5.0/24\", \"10.1.0.0/17\"]",
            ),
            ("[\"10.9.0.0/16\"]", "[\"10.9.3.4/16\"]"),
            ("[\"127.0.0.0/8\"]", "[\"::ffff:127.0.0.0/104\"]"),
            (
                "[\"a.example.org\", \"*.b.example.org\"]",
                "[\"*.B.example.org\", \"A.example.org.\"]",
            ),
            ("[\"one\", \"two\"]", "[\"two\", \"one\"]"),
            (
                "[\"http://127.0.0.1:9000\", \"https://s3.example.org:443\"]",
                "[\"https://S3.example.org\", \"http://127.0.0.1:9000\"]",
            ),
            (
                "client_ip_source = \"x-forwarded-for\"\n",
                "client_ip_source   =   'x-forwarded-for' # why\n",
            ),
        ] {
            assert!(BASE.contains(from), "{from}");
            let text = BASE.replacen(from, to, 1);
            assert_eq!(version_of(&text), base, "{from} -> {to}");
        }
        // Keys that equal their defaults, written or not.
        let explicit = BASE.replace(
            "[policy]\n",
            "[policy]\nmode = \"enforce\"\nunknown_country = \"deny\"\n",
        );
        assert_eq!(version_of(&explicit), base);
    }

    /// Each thing that changes a decision changes the version: the policy
    /// and each route's, the networks, the trusted proxies and the client
    /// address source, the routes and their modes, and each database build.
    #[test]
    fn each_thing_that_decides_changes_the_version() {
        let base = version_of(BASE);
        let edits: &[(&str, &str)] = &[
            ("[\"FR\", \"DE\"]", "[\"FR\"]"),
            ("[\"RU\"]", "[\"RU\", \"BY\"]"),
            ("[\"127.0.0.0/8\"]", "[\"127.0.0.0/9\"]"),
            ("[\"10.9.0.0/16\"]", "[\"10.9.0.0/15\"]"),
            ("[\"10.1.0.0/16\"]", "[\"10.1.0.0/24\"]"),
            (
                "client_ip_source = \"x-forwarded-for\"",
                "client_ip_source = \"forwarded\"",
            ),
            (
                "[server]\n",
                "[server]\ntrusted_proxy_without_client = \"peer\"\n",
            ),
            ("[\"s3.example.org\"]", "[\"s3.example.net\"]"),
            ("[policy]\n", "[policy]\nmode = \"monitor\"\n"),
            ("[policy]\n", "[policy]\nunknown_country = \"allow\"\n"),
            ("[policy]\n", "[policy]\noperator_countries = [\"FR\"]\n"),
            ("[policy]\n", "[policy]\non_foreign_operator = \"flag\"\n"),
            (
                "[policy]\n",
                "[policy]\non_foreign_operator = { upstream = \"block\" }\n",
            ),
            (
                "[policy]\n",
                "[geoip]\nnat64_prefixes = [\"64:ff9b::/96\"]\n[policy]\n",
            ),
            ("name = \"a\"", "name = \"c\""),
            ("\"a.example.org\"", "\"c.example.org\""),
            ("path_prefix = \"/a/\"", "path_prefix = \"/a\""),
            ("[\"one\", \"two\"]", "[\"one\"]"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9001"),
            ("http://127.0.0.1:9000", "https://127.0.0.1:9000"),
            ("mode = \"monitor\"", "mode = \"enforce\""),
            (
                "allow_countries = [\"EEA\"]",
                "allow_countries = [\"EEA\", \"CH\"]",
            ),
            (
                "allow_countries = [\"EEA\"]\n",
                "allow_countries = [\"EEA\"]\ndeny_networks = [\"10.0.0.0/8\"]\n",
            ),
            (
                "allow_countries = [\"EEA\"]\n",
                "allow_countries = [\"EEA\"]\non_foreign_operator = \"block\"\n",
            ),
        ];
        for (from, to) in edits {
            assert!(BASE.contains(from), "{from}");
            let text = BASE.replacen(from, to, 1);
            assert_ne!(version_of(&text), base, "{from} -> {to}");
        }
        // The order of the routes (ties go to the first).
        let (head, routes) = BASE.split_at(BASE.find("[[route]]").unwrap());
        let second = routes.rfind("[[route]]").unwrap();
        let swapped = format!("{head}{}{}", &routes[second..], &routes[..second]);
        assert_ne!(version_of(&swapped), base);
        // Each database build.
        let config = Config::parse(Path::new("c.toml"), BASE).unwrap();
        let other = |f: fn(&mut DatabaseBuild)| {
            let mut b = build();
            f(&mut b);
            b
        };
        let none = Access::default();
        for changed in [
            other(|b| b.epoch += 1),
            other(|b| b.nodes += 1),
            other(|b| b.kind.push('x')),
        ] {
            assert_ne!(policy_version(&config, &none, &changed, None), base);
            let with = policy_version(&config, &none, &build(), Some(&build()));
            assert_ne!(with, base, "an operator database");
            assert_ne!(
                policy_version(&config, &none, &build(), Some(&changed)),
                with
            );
        }
    }

    /// A `[[grant]]` for `identity` with `extra` lines (each key not in
    /// them gets a default: sigv4, one purpose, US, one day's window),
    /// signed by `key` as approver "dpo".
    fn grant(key: &keys::SigningKey, id: &str, identity: &str, extra: &str) -> String {
        let body = format!(
            "[[grant]]\nid = \"{id}\"\nidentity = \"{identity}\"\nowner = \"Jane Doe\"\n{extra}\n"
        );
        let body = [
            ("proof", "proof = \"sigv4\"\n"),
            ("purpose", "purpose = \"support\"\n"),
            ("from_countries", "from_countries = [\"US\"]\n"),
            ("not_before", "not_before = 2026-12-07T08:00:00Z\n"),
            ("not_after", "not_after = 2026-12-07T18:00:00Z\n"),
        ]
        .iter()
        .filter(|(k, _)| !body.contains(&format!("\n{k} =")))
        .fold(body.clone(), |b, (_, line)| b + line);
        let entry =
            crate::access::files::grants(Path::new("g.toml"), &body, Some(&["a", "b"])).unwrap();
        let sig = key.sign(&entry[0].signed.canonical());
        format!("{body}approvals = [{{ approver = \"dpo\", signature = \"{sig}\" }}]\n\n")
    }

    const REGISTRY: &str = "[[identity]]\nid = \"AKIACHU01\"\nowner = \"Dr A. Martin\"\n\
        role = \"archive\"\nproof = \"sigv4\"\ngranted = 2026-01-10\nreviewed = 2026-01-10\n\
        reviewer = \"DPO\"\n\n\
        [[identity]]\nid = \"CN=lab,O=Vendor\"\nowner = \"Jane Doe\"\nrole = \"support\"\n\
        routes = [\"a\"]\ngranted = 2026-02-01\nreviewed = 2026-02-01\nreviewer = \"DPO\"\n\n";

    /// The version of BASE with `[identities]` (`options` added to the
    /// section) over `registry` and `[grants]` over `grants`, both files
    /// written in `dir`.
    fn governed_version(
        dir: &Path,
        key: &keys::SigningKey,
        registry: &str,
        options: &str,
        grants: &str,
    ) -> String {
        let (ids, gs) = (dir.join("identities.toml"), dir.join("grants.toml"));
        std::fs::write(&ids, registry).unwrap();
        std::fs::write(&gs, grants).unwrap();
        let text = format!(
            "{BASE}[identities]\nfile = \"{}\"\n{options}\n\
             [grants]\nfile = \"{}\"\napprovers = [{{ name = \"dpo\", public_key = \"{}\" }}]\n",
            ids.display(),
            gs.display(),
            key.public()
        );
        let config = Config::parse(Path::new("c.toml"), &text).unwrap();
        let access = crate::access::load(
            &config.access,
            &config.routes,
            &config.server.s3_domains,
            &crate::metrics::Metrics::new(),
        )
        .unwrap();
        policy_version(&config, &access, &build(), None)
    }

    fn approver() -> keys::SigningKey {
        let (private, _) = keys::keygen().unwrap();
        keys::SigningKey::parse(&private).unwrap()
    }

    /// The identity registry and the grants decide too: a change of any
    /// fact a decision reads (a grant's identity, proof, countries,
    /// routes, methods, path prefix or window, a grant added, removed or
    /// no longer valid; an entry's id, proof, routes or review date,
    /// `require_known`, `on_overdue`, `review_every`) changes the version.
    #[test]
    fn a_change_of_a_grant_or_an_identity_changes_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let key = approver();
        let one = grant(
            &key,
            "CHG-1",
            "AKIAVENDOR",
            "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\"",
        );
        let two = grant(&key, "CHG-2", "CN=lab,O=Vendor", "proof = \"mtls\"");
        let grants = format!("{one}{two}");
        let v = |registry: &str, options: &str, grants: &str| {
            governed_version(dir.path(), &key, registry, options, grants)
        };
        let base = v(REGISTRY, "", &grants);
        assert_ne!(base, version_of(BASE), "the registry and grants count");
        assert_eq!(v(REGISTRY, "", &grants), base, "stable");
        let edited_grant =
            |extra: &str| format!("{}{two}", grant(&key, "CHG-1", "AKIAVENDOR", extra));
        for (what, grants) in [
            (
                "another identity",
                format!(
                    "{}{two}",
                    grant(
                        &key,
                        "CHG-1",
                        "AKIAOTHER",
                        "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\""
                    )
                ),
            ),
            (
                "another id",
                format!(
                    "{}{two}",
                    grant(
                        &key,
                        "CHG-3",
                        "AKIAVENDOR",
                        "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\""
                    )
                ),
            ),
            (
                "another route",
                edited_grant("routes = [\"b\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\""),
            ),
            (
                "any route",
                edited_grant("methods = [\"GET\"]\npath_prefix = \"/r/\""),
            ),
            (
                "another method",
                edited_grant(
                    "routes = [\"a\"]\nmethods = [\"GET\", \"PUT\"]\npath_prefix = \"/r/\"",
                ),
            ),
            (
                "another prefix",
                edited_grant("routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/s/\""),
            ),
            (
                "another country",
                edited_grant(
                    "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\"\nfrom_countries = [\"US\", \"CA\"]",
                ),
            ),
            (
                "a later end",
                edited_grant(
                    "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\"\nnot_after = 2026-12-07T19:00:00Z",
                ),
            ),
            (
                "an earlier start",
                edited_grant(
                    "routes = [\"a\"]\nmethods = [\"GET\"]\npath_prefix = \"/r/\"\nnot_before = 2026-12-07T07:00:00Z",
                ),
            ),
            (
                "proof",
                format!("{one}{}", grant(&key, "CHG-2", "CN=lab,O=Vendor", "")),
            ),
            ("a grant removed", one.clone()),
            (
                "a grant no longer valid",
                format!(
                    "{one}{}",
                    two.replacen("purpose = \"support\"", "purpose = \"support!\"", 1)
                ),
            ),
        ] {
            assert_ne!(v(REGISTRY, "", &grants), base, "{what}");
        }
        for (what, registry, options) in [
            (
                "an entry removed",
                REGISTRY.split("\n\n").next().unwrap().to_owned() + "\n",
                "",
            ),
            (
                "another id",
                REGISTRY.replacen("AKIACHU01", "AKIACHU02", 1),
                "",
            ),
            (
                "another proof",
                REGISTRY.replacen("proof = \"sigv4\"", "proof = \"mtls\"", 1),
                "",
            ),
            (
                "another route",
                REGISTRY.replacen("routes = [\"a\"]", "routes = [\"b\"]", 1),
                "",
            ),
            (
                "any route",
                REGISTRY.replacen("routes = [\"a\"]\n", "", 1),
                "",
            ),
            (
                "reviewed later",
                REGISTRY.replacen("reviewed = 2026-01-10", "reviewed = 2026-03-10", 1),
                "",
            ),
            ("require_known", REGISTRY.to_owned(), "require_known = true"),
            ("on_overdue", REGISTRY.to_owned(), "on_overdue = \"refuse\""),
            (
                "review_every",
                REGISTRY.to_owned(),
                "review_every = \"180d\"",
            ),
        ] {
            assert_ne!(v(&registry, options, &grants), base, "{what}");
        }
    }

    /// What does not decide leaves the version as it is: the order of the
    /// entries in either file and of a grant's lists, a grant's purpose
    /// edited and signed again, an entry's owner, role and reviewer.
    #[test]
    fn reordering_the_identities_or_grants_files_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let key = approver();
        let one = grant(
            &key,
            "CHG-1",
            "AKIAVENDOR",
            "methods = [\"GET\", \"HEAD\"]\nfrom_countries = [\"US\", \"CA\"]",
        );
        let two = grant(&key, "CHG-2", "AKIALAB", "routes = [\"a\", \"b\"]");
        let v =
            |registry: &str, grants: &str| governed_version(dir.path(), &key, registry, "", grants);
        let base = v(REGISTRY, &format!("{one}{two}"));
        let (first, second) = REGISTRY.split_at(REGISTRY.find("\n\n").unwrap() + 2);
        let swapped = format!("{second}{first}");
        for (what, registry, grants) in [
            ("grants swapped", REGISTRY.to_owned(), format!("{two}{one}")),
            ("entries swapped", swapped, format!("{one}{two}")),
            (
                "lists reordered",
                REGISTRY.to_owned(),
                format!(
                    "{}{}",
                    grant(
                        &key,
                        "CHG-1",
                        "AKIAVENDOR",
                        "methods = [\"HEAD\", \"GET\"]\nfrom_countries = [\"CA\", \"US\"]"
                    ),
                    grant(&key, "CHG-2", "AKIALAB", "routes = [\"b\", \"a\"]")
                ),
            ),
            (
                "purpose signed again",
                REGISTRY.to_owned(),
                format!(
                    "{}{two}",
                    grant(
                        &key,
                        "CHG-1",
                        "AKIAVENDOR",
                        "methods = [\"GET\", \"HEAD\"]\nfrom_countries = [\"US\", \"CA\"]\npurpose = \"another\""
                    )
                ),
            ),
            (
                "owner, role, reviewer",
                REGISTRY
                    .replacen("Dr A. Martin", "Dr B. Martin", 1)
                    .replacen("role = \"archive\"", "role = \"other\"", 1)
                    .replacen("reviewer = \"DPO\"", "reviewer = \"CISO\"", 1),
                format!("{one}{two}"),
            ),
        ] {
            assert_eq!(v(&registry, &grants), base, "{what}");
        }
    }

    /// An [`Access`] holding the valid grants `grants` as (id, identity,
    /// path prefix), as `load` would leave it.
    fn access_with(grants: &[(String, String, String)]) -> Access {
        let mut access = Access::default();
        for (id, identity, prefix) in grants {
            access.reports.push(crate::access::GrantReport {
                entry: crate::access::files::GrantEntry {
                    signed: crate::access::canonical::Signed {
                        id: id.clone(),
                        identity: identity.clone(),
                        proof: crate::access::Proof::Sigv4,
                        owner: "o".into(),
                        purpose: "p".into(),
                        from_countries: vec!["US".into()],
                        routes: vec![],
                        methods: vec![],
                        path_prefix: prefix.clone(),
                        not_before: 0,
                        not_after: 3600,
                    },
                    approvals: vec![],
                    approvals_span: None,
                    end: 0,
                    line: 1,
                },
                problems: vec![],
            });
        }
        access
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever an id, an identity or a path prefix holds (spaces,
        /// quotes, `=`, newlines, brackets), each grant is one line, two
        /// different grant sets never share a canonical text, the order
        /// of the file does not count, and a reload names the grant that
        /// went by its exact id.
        #[test]
        fn grant_lines_are_unambiguous_whatever_the_values_hold(
            grants in proptest::collection::vec(
                ("[ -~\n\té]{0,12}", "[ -~\n\té]{0,12}", "[ -~\n\té]{0,8}"),
                1..5,
            ),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 0usize..3,
        ) {
            // Ids are unique in a file (a duplicate is refused).
            let mut grants = grants;
            grants.sort_by(|a, b| a.0.cmp(&b.0));
            grants.dedup_by(|a, b| a.0 == b.0);
            let text = BASE.to_owned() + "[grants]\nfile = \"g.toml\"\n";
            let config = Config::parse(Path::new("c.toml"), &text).unwrap();
            let rules = |g: &[(String, String, String)]| {
                canonical(&config, &access_with(g), &build(), None)
            };
            let base = rules(&grants);
            proptest::prop_assert_eq!(
                base.lines().filter(|l| l.starts_with("grant ")).count(),
                grants.len()
            );
            let mut reversed = grants.clone();
            reversed.reverse();
            proptest::prop_assert_eq!(rules(&reversed), base.clone());
            // One value of one grant changed: another text.
            let i = pick.index(grants.len());
            let mut other = grants.clone();
            let field = match flip {
                0 => &mut other[i].1,
                1 => &mut other[i].2,
                _ => &mut other[i].0,
            };
            field.push(' ');
            if flip != 2 || !grants.iter().any(|g| g.0 == other[i].0) {
                proptest::prop_assert_ne!(rules(&other), base.clone());
            }
            // One grant gone: the reload names it by its exact id.
            let mut fewer = grants.clone();
            let gone = fewer.remove(i);
            let changes = crate::reload::rule_changes(&base, &rules(&fewer));
            proptest::prop_assert_eq!(changes, vec![format!("grant {} removed", gone.0)]);
        }

        /// Networks written in any order, repeated, or split into halves
        /// that cover the same addresses give the same version.
        #[test]
        fn networks_covering_the_same_addresses_give_the_same_version(
            nets in proptest::collection::vec((proptest::prelude::any::<u32>(), 8u8..=31), 1..6),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let written: Vec<ipnet::Ipv4Net> = nets
                .iter()
                .map(|&(a, p)| ipnet::Ipv4Net::new(a.into(), p).unwrap().trunc())
                .collect();
            let list = |nets: &[String]| {
                nets.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
            };
            let plain: Vec<String> = written.iter().map(ToString::to_string).collect();
            let mut split: Vec<String> = written
                .iter()
                .flat_map(|n| n.subnets(n.prefix_len() + 1).unwrap().map(|s| s.to_string()))
                .chain(plain.iter().take(1).cloned())
                .collect();
            // A deterministic shuffle from the seed.
            let mut state = seed;
            for i in (1..split.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                split.swap(i, usize::try_from(state >> 33).unwrap_or(0) % (i + 1));
            }
            let text = |nets: &[String]| {
                BASE.replacen("deny_networks = [\"10.9.0.0/16\"]", &format!("deny_networks = [{}]", list(nets)), 1)
                    .replacen("trusted_proxies = [\"10.1.0.0/16\"]", &format!("trusted_proxies = [{}]", list(nets)), 1)
            };
            proptest::prop_assert_eq!(version_of(&text(&plain)), version_of(&text(&split)));
        }
    }
}
