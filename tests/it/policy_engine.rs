//! The policy engine through the library API, against generated databases:
//! rule order, both record layouts, unwrapping, and the database checks.

use std::net::IpAddr;
use std::path::Path;

use residency_proxy::config::Config;
use residency_proxy::geo::{Country, GeoDb};
use residency_proxy::policy::{Reason, Rule};

use crate::support::{Layout, TestGeo, ips, standard_geo};

fn policy(geo: &TestGeo, extra: &str) -> Config {
    let nets = if extra.contains("allow_networks") {
        ""
    } else {
        "allow_networks = []"
    };
    let toml = format!(
        "[geoip]\ndatabase = \"{}\"\n[policy]\n{nets}\n{extra}\n[[route]]\nname = \"r\"\nupstreams = [\"http://127.0.0.10:9\"]\n",
        geo.path().display()
    );
    Config::parse(Path::new("test.toml"), &toml).unwrap()
}

fn judge(cfg: &Config, geo: &GeoDb, ip: &str) -> (Option<String>, Option<Reason>, Rule) {
    let v = cfg.policy.policy.judge(ip.parse::<IpAddr>().unwrap(), geo);
    (v.country.map(|c| c.to_string()), v.reason, v.rule)
}

#[test]
fn all_three_layouts_give_the_country() {
    for layout in [
        Layout::MaxMind,
        Layout::RegisteredOnly,
        Layout::IpLocationDb,
    ] {
        let geo = standard_geo(layout).build();
        let db = GeoDb::open(geo.path()).unwrap();
        for (ip, cc) in [(ips::FR, "FR"), (ips::US, "US"), (ips::CH, "CH")] {
            assert_eq!(
                db.country(ip.parse().unwrap()),
                Country::from_code(cc),
                "{layout:?} {ip}"
            );
        }
        assert_eq!(
            db.country(ips::UNMAPPED.parse().unwrap()),
            None,
            "{layout:?}"
        );
    }
}

#[test]
fn country_wins_over_registered_country() {
    // The MaxMind layout writes registered_country ZZ beside the real country.
    let geo = standard_geo(Layout::MaxMind).build();
    let db = GeoDb::open(geo.path()).unwrap();
    assert_eq!(
        db.country(ips::DE.parse().unwrap()),
        Country::from_code("DE")
    );
}

#[test]
fn rules_apply_in_spec_order() {
    let geo = standard_geo(Layout::IpLocationDb)
        .map("127.0.1.0/24", "FR")
        .build();
    let db = GeoDb::open(geo.path()).unwrap();
    let cfg = policy(
        &geo,
        "deny_countries = [\"CN\"]\nallow_networks = [\"127.0.0.6/32\", \"127.0.1.0/24\"]\ndeny_networks = [\"127.0.1.128/25\"]",
    );
    // deny_networks beats allow_networks
    assert_eq!(
        judge(&cfg, &db, "127.0.1.200"),
        (
            Some("FR".into()),
            Some(Reason::NetworkDenied),
            Rule::DenyNetworks
        )
    );
    // allow_networks beats deny_countries
    assert_eq!(
        judge(&cfg, &db, ips::CN),
        (Some("CN".into()), None, Rule::AllowNetworks)
    );
    assert_eq!(
        judge(&cfg, &db, "127.0.1.5"),
        (Some("FR".into()), None, Rule::AllowNetworks)
    );
    assert_eq!(
        judge(&cfg, &db, ips::DE),
        (Some("DE".into()), None, Rule::AllowCountries)
    );
    assert_eq!(
        judge(&cfg, &db, ips::US),
        (
            Some("US".into()),
            Some(Reason::CountryNotAllowed),
            Rule::NotInAllowCountries
        )
    );
    assert_eq!(
        judge(&cfg, &db, ips::UNMAPPED),
        (None, Some(Reason::UnknownCountry), Rule::UnknownCountry)
    );
    // Teredo is untraceable unless a network rule says otherwise.
    assert_eq!(
        judge(&cfg, &db, "2001:0:4136:e378:8000:63bf:3fff:fdd2").1,
        Some(Reason::UntraceableAddress)
    );
    let cfg2 = policy(&geo, "allow_networks = [\"2001::/32\"]");
    assert_eq!(
        judge(&cfg2, &db, "2001:0:4136:e378:8000:63bf:3fff:fdd2").1,
        None
    );
    // deny_countries beats allow_countries (EEA includes FR).
    let cfg3 = policy(&geo, "deny_countries = [\"FR\"]");
    assert_eq!(judge(&cfg3, &db, ips::FR).1, Some(Reason::CountryDenied));
}

#[test]
fn wrapped_forms_get_the_ipv4_verdict_with_or_without_database_aliases() {
    for geo in [
        standard_geo(Layout::IpLocationDb).build(),
        standard_geo(Layout::IpLocationDb).with_aliasing().build(),
    ] {
        let db = GeoDb::open(geo.path()).unwrap();
        let cfg = policy(&geo, "");
        for wrapped in [
            "::ffff:127.0.0.5",
            "::127.0.0.5",
            "::ffff:0:127.0.0.5",
            "64:ff9b::127.0.0.5",
            "64:ff9b:1:7f00:0:500::",
            "2002:7f00:5::9",
        ] {
            assert_eq!(
                judge(&cfg, &db, wrapped),
                (
                    Some("US".into()),
                    Some(Reason::CountryNotAllowed),
                    Rule::NotInAllowCountries
                ),
                "{wrapped}"
            );
        }
        // A deny_networks entry for the IPv4 address also catches its wrappings.
        let cfg = policy(&geo, "deny_networks = [\"127.0.0.2/32\"]");
        assert_eq!(
            judge(&cfg, &db, "::ffff:127.0.0.2").1,
            Some(Reason::NetworkDenied)
        );
        assert_eq!(
            judge(&cfg, &db, "2002:7f00:2::").1,
            Some(Reason::NetworkDenied)
        );
    }
}

#[test]
fn ipv6_entries_are_looked_up_natively() {
    let geo = TestGeo::new(Layout::MaxMind)
        .map("2a01:cb00::/32", "FR")
        .map("2600::/16", "US")
        .build();
    let db = GeoDb::open(geo.path()).unwrap();
    let cfg = policy(&geo, "");
    assert_eq!(judge(&cfg, &db, "2a01:cb00::1").1, None);
    assert_eq!(
        judge(&cfg, &db, "2600:1::1").1,
        Some(Reason::CountryNotAllowed)
    );
}

#[test]
fn corrupt_or_missing_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.mmdb");
    let err = GeoDb::open(&missing).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot open GeoIP database"),
        "{err}"
    );
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, vec![0x42u8; 4096]).unwrap();
    assert!(GeoDb::open(&junk).is_err());
    // A real database cut in half.
    let geo = standard_geo(Layout::IpLocationDb).build();
    let bytes = std::fs::read(geo.path()).unwrap();
    let cut = dir.path().join("cut.mmdb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(GeoDb::open(&cut).is_err());
}
