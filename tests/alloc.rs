//! Judging an address allocates nothing: a counting global allocator
//! (per thread, so the test harness's own threads do not interfere) counts
//! allocations over thousands of judgments after a warm-up, with allowed,
//! blocked, unknown, IPv6, IPv6-wrapped (every RFC 6052 layout included)
//! and Teredo addresses, against the
//! shipped database and a policy that has network tables to search.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use residency_proxy::config::Config;
use residency_proxy::geo::GeoDb;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[expect(unsafe_code, reason = "a global allocator is an unsafe trait")]
// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is a thread-local counter that never allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const ADDRESSES: [&str; 21] = [
    "90.0.0.1",                             // FR, allowed
    "82.64.0.1",                            // FR
    "8.8.8.8",                              // US, blocked
    "1.1.1.1",                              // AU
    "10.1.2.3",                             // no country: unknown
    "127.0.0.1",                            // no country
    "192.168.1.1",                          // AU (private range, meaningless)
    "2a01:cb00::1",                         // FR, IPv6
    "2001:4860:4860::8888",                 // US, IPv6
    "::ffff:8.8.8.8",                       // mapped
    "::8.8.8.8",                            // compatible
    "64:ff9b::5a00:1",                      // NAT64 of 90.0.0.1
    "2002:808:808::1",                      // 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
    "203.0.113.7",                          // in deny_networks below
    "fd00::1",                              // in allow_networks below
    "::ffff:0:808:808",                     // SIIT of 8.8.8.8
    "64:ff9b:1:5a00:0:100::",               // NAT64 /48 layout of 90.0.0.1
    "64:ff9b:1:5a00:100:100::",             // NAT64 /48, u octet set: untraceable
    "2001:db8:5a00:1::",                    // NAT64 /32 layout (configured) of 90.0.0.1
    "2001:db8:1:2:5a:0:100:0",              // NAT64 /64 layout (configured) of 90.0.0.1
];

#[test]
fn judging_allocates_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        "[geoip]\ndatabase = \"{}\"\nnat64_prefixes = [\"64:ff9b::/96\", \"64:ff9b:1::/48\", \"2001:db8::/32\", \"2001:db8:1:2::/64\"]\n[policy]\nallow_networks = [\"fd00::/8\", \"100.64.0.0/10\"]\ndeny_networks = [\"203.0.113.0/24\"]\ndeny_countries = [\"CN\"]\n[[route]]\nname = \"r\"\nupstreams = [\"http://127.0.0.1:9\"]\n",
        root.join("geodata/geo-whois-asn-country.mmdb").display()
    );
    let config = Config::parse(Path::new("alloc.toml"), &toml).unwrap();
    let geo = GeoDb::open(&config.geoip_database).unwrap();
    let policy = &config.policy.policy;
    let ips: Vec<IpAddr> = ADDRESSES.iter().map(|s| s.parse().unwrap()).collect();

    let mut outcomes = Vec::new();
    for ip in &ips {
        outcomes.push(policy.judge(*ip, &geo));
    }
    // The verdicts are real, not a no-op being measured.
    assert!(outcomes[0].passes() && !outcomes[2].passes() && !outcomes[13].passes());
    assert!(!outcomes[16].passes() && outcomes[17].passes() && !outcomes[18].passes());
    assert!(outcomes[19].passes() && outcomes[20].passes());

    let before = allocations();
    let mut passed = 0u32;
    for _ in 0..1_000 {
        for ip in &ips {
            let v = policy.judge(black_box(*ip), &geo);
            passed += u32::from(
                black_box(policy.decide(&v)) == residency_proxy::policy::Decision::Allowed,
            );
        }
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "judging 16,000 addresses allocated {} times",
        after - before
    );
    // 90.0.0.1, 82.64.0.1, 2a01:cb00::1, 64:ff9b::5a00:1, fd00::1 and the
    // three other NAT64 layouts of 90.0.0.1 pass.
    assert_eq!(passed, 8 * 1_000);
}

/// The same with the operator database and `on_foreign_operator = "block"`
/// on both sides: the second lookup allocates nothing either.
#[test]
fn judging_with_the_operator_database_allocates_nothing() {
    use residency_proxy::geo::OperatorDb;
    use residency_proxy::policy::{Reason, Side};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        "[geoip]\ndatabase = \"{}\"\noperator_database = \"{}\"\n[policy]\non_foreign_operator = \"block\"\nallow_networks = [\"fd00::/8\"]\n[[route]]\nname = \"r\"\nupstreams = [\"http://127.0.0.1:9\"]\n",
        root.join("geodata/geo-whois-asn-country.mmdb").display(),
        root.join("geodata/iptoasn-country.mmdb").display()
    );
    let config = Config::parse(Path::new("alloc.toml"), &toml).unwrap();
    let geo = GeoDb::open(&config.geoip_database).unwrap();
    let ops = OperatorDb::open(config.operator_database.as_deref().unwrap()).unwrap();
    let policy = &config.policy.policy;
    let mut ips: Vec<IpAddr> = ADDRESSES.iter().map(|s| s.parse().unwrap()).collect();
    ips.push("15.188.0.1".parse().unwrap()); // FR, operated from the US
    let aws = policy.judge_side(*ips.last().unwrap(), Side::Upstream, &geo, Some(&ops));
    assert_eq!(aws.reason, Some(Reason::ForeignOperator), "a real verdict");

    let before = allocations();
    let mut foreign = 0u32;
    for _ in 0..1_000 {
        for ip in &ips {
            for side in [Side::Client, Side::Upstream] {
                let v = policy.judge_side(black_box(*ip), side, &geo, Some(&ops));
                foreign += u32::from(black_box(v.reason) == Some(Reason::ForeignOperator));
            }
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "allocated {} times", after - before);
    assert!(foreign >= 2 * 1_000, "{foreign}");
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u8> = black_box(Vec::with_capacity(64));
    drop(v);
    assert_eq!(allocations() - before, 1);
}

/// Choosing the route of a canonically spelled request (the common case:
/// lower-case host, with port or trailing dot, a path without `%`, `//` or
/// dot segments) allocates nothing either.
#[test]
fn choosing_a_route_for_a_plain_spelling_allocates_nothing() {
    let toml = "[server]\ns3_domains = [\"s3.example\"]\n\
        [[route]]\nname = \"records\"\nhosts = [\"records.s3.test\"]\nupstreams = [\"http://127.0.0.1:9\"]\n\
        [[route]]\nname = \"hds\"\npath_prefix = \"/hds-bucket/\"\nupstreams = [\"http://127.0.0.1:9\"]\n\
        [[route]]\nname = \"vault\"\nbuckets = [\"vault-bucket\"]\nupstreams = [\"http://127.0.0.1:9\"]\n\
        [[route]]\nname = \"any\"\nmode = \"monitor\"\nupstreams = [\"http://127.0.0.1:9\"]\n";
    let config = Config::parse(Path::new("alloc.toml"), toml).unwrap();
    let requests = [
        ("storage.test:9000", "/hds-bucket/patient.pdf", 1),
        ("storage.test", "/hds-bucket", 1),
        ("storage.test", "/vault-bucket/a/b", 2),
        ("records.s3.test.", "/b/k", 0),
        ("records.s3.test:8080", "/", 0),
        ("s3.example", "/other/k", 3),
        ("[::1]", "/other/k", 3),
    ];
    let choose = |host: &str, path: &str| {
        residency_proxy::proxy::route::choose(
            config.routes.iter(),
            &config.server.s3_domains,
            host,
            path,
        )
    };
    for (host, path, want) in requests {
        assert_eq!(choose(host, path), Ok(Some(want)), "{host} {path}");
    }
    let before = allocations();
    for _ in 0..1_000 {
        for (host, path, _) in requests.iter().take(6) {
            black_box(choose(black_box(host), black_box(path))).unwrap();
        }
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "choosing 6,000 routes allocated {} times",
        after - before
    );
}

/// Judging access (SPEC §9) allocates nothing either: the registry lookup
/// (one hash lookup), a route restriction, an unknown identity, and the
/// grant scan for a client refused by country, admitted or not.
#[test]
fn judging_identities_and_grants_allocates_nothing() {
    use residency_proxy::access::{self, Facts, Judged, canonical, keys};
    let dir = tempfile::tempdir().unwrap();
    let now = 1_796_644_800; // 2026-12-07T12:00:00Z
    std::fs::write(
        dir.path().join("ids.toml"),
        "[[identity]]\nid = \"AKIAKNOWN\"\nowner = \"o\"\nrole = \"r\"\ngranted = 2026-06-01\nreviewed = 2026-06-01\nreviewer = \"d\"\n\
         [[identity]]\nid = \"AKIAVENDOR\"\nowner = \"v\"\nrole = \"r\"\nroutes = [\"r\"]\ngranted = 2026-06-01\nreviewed = 2026-06-01\nreviewer = \"d\"\n\
         [[identity]]\nid = \"AKIAOTHER\"\nowner = \"v\"\nrole = \"r\"\nroutes = [\"x\"]\ngranted = 2026-06-01\nreviewed = 2026-06-01\nreviewer = \"d\"\n",
    )
    .unwrap();
    let (private, public) = keys::keygen().unwrap();
    let key = keys::SigningKey::parse(&private).unwrap();
    let body = format!(
        "[[grant]]\nid = \"G\"\nidentity = \"AKIAVENDOR\"\nproof = \"sigv4\"\nowner = \"v\"\npurpose = \"p\"\nfrom_countries = [\"US\"]\n\
         methods = [\"GET\"]\npath_prefix = \"/b/\"\nnot_before = {}\nnot_after = {}\n",
        canonical::rfc3339(now - 3600),
        canonical::rfc3339(now + 3600)
    );
    let parsed = access::files::grants(Path::new("g"), &body, None).unwrap();
    let sig = key.sign(&parsed[0].signed.canonical());
    std::fs::write(
        dir.path().join("grants.toml"),
        format!("{body}approvals = [{{ approver = \"dpo\", signature = \"{sig}\" }}]\n"),
    )
    .unwrap();
    let toml = format!(
        "[[route]]\nname = \"r\"\nupstreams = [\"http://127.0.0.1:9\"]\n[[route]]\nname = \"x\"\npath_prefix = \"/x/\"\nupstreams = [\"http://127.0.0.1:9\"]\n\
         [identities]\nfile = \"{}\"\nrequire_known = true\n[grants]\nfile = \"{}\"\napprovers = [{{ name = \"dpo\", public_key = \"{public}\" }}]\n",
        dir.path().join("ids.toml").display(),
        dir.path().join("grants.toml").display()
    );
    let config = Config::parse(Path::new("alloc.toml"), &toml).unwrap();
    let metrics = residency_proxy::metrics::Metrics::new();
    let access = access::load(
        &config.access,
        &config.routes,
        &config.server.s3_domains,
        &metrics,
    )
    .unwrap();
    let us = residency_proxy::geo::Country::from_code("US");
    let fact = |identity, route, method, path, refused| Facts {
        identity,
        mtls_subject: None,
        route,
        method,
        path,
        host: "10.0.0.5:9000",
        copy_source: None,
        readings: &[],
        country: us,
        policy: if refused {
            access::Outcome::CountryNotAllowed
        } else {
            access::Outcome::Passes
        },
        now,
    };
    let cases = [
        (fact("AKIAKNOWN", 0, "GET", "/b/k", false), Judged::Pass),
        (
            fact("AKIAVENDOR", 0, "GET", "/b/k", true),
            Judged::Granted(0),
        ),
        (fact("AKIAVENDOR", 0, "PUT", "/b/k", true), Judged::Pass),
        (fact("AKIAVENDOR", 0, "GET", "/b/../c", true), Judged::Pass),
        (
            fact("AKIAVENDOR", 1, "GET", "/b/k", false),
            Judged::Refused(access::AccessRefusal::RouteNotGranted),
        ),
        (fact("AKIASTRANGER", 0, "GET", "/b/k", true), Judged::Pass),
        (
            fact("anonymous", 0, "GET", "/b/k", false),
            Judged::Refused(access::AccessRefusal::UnknownIdentity),
        ),
    ];
    for (f, want) in &cases {
        assert_eq!(access.judge(f), *want, "{f:?}");
    }
    let before = allocations();
    let mut granted = 0u32;
    for _ in 0..1_000 {
        for (f, _) in &cases {
            granted += u32::from(matches!(
                black_box(access.judge(black_box(f))),
                Judged::Granted(_)
            ));
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "allocated {} times", after - before);
    assert_eq!(granted, 1_000);
}
