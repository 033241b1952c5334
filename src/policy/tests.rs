//! Properties of `judge`, over random addresses, against the shipped
//! database: IPv6 wrappings never change a verdict, and deny always beats
//! allow, for networks and for countries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn geo() -> &'static GeoDb {
    static GEO: OnceLock<GeoDb> = OnceLock::new();
    GEO.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        GeoDb::open(&root.join("geodata/geo-whois-asn-country.mmdb")).expect("shipped database")
    })
}

fn countries(codes: &[&str]) -> CountrySet {
    let mut set = CountrySet::new();
    for c in codes {
        set.insert(Country::from_code(c).expect("valid code"));
    }
    set
}

fn nets(list: &[IpNet]) -> NetworkTable {
    NetworkTable::compile(list)
}

/// A policy with something for every rule to do.
fn busy_policy(unknown_allowed: bool) -> Policy {
    let parse = |v: &[&str]| -> Vec<IpNet> { v.iter().map(|n| n.parse().expect("net")).collect() };
    let mut allow = crate::geo::eea();
    allow.insert(Country::from_code("CH").expect("CH"));
    Policy {
        mode: Mode::Enforce,
        allow_countries: allow,
        deny_countries: countries(&["CN", "RU", "DE"]),
        unknown_allowed,
        allow_networks: nets(&parse(&["100.64.0.0/10", "8.8.4.0/24", "fd00::/8"])),
        deny_networks: nets(&parse(&["203.0.113.0/24", "90.0.0.0/16", "2a01:cb00::/32"])),
        nat64: Nat64Prefixes::default(),
        operator_countries: crate::geo::eea(),
        on_foreign_operator: OperatorActions::default(),
    }
}

/// The IPv6 forms of SPEC §4 that embed `v4`; `noise` fills the bits the
/// form leaves free.
fn wrappings(v4: Ipv4Addr, noise: u64) -> Vec<Ipv6Addr> {
    let a = u128::from(u32::from(v4));
    let noise = u128::from(noise);
    let mut forms = vec![
        Ipv6Addr::from(0xffff_u128 << 32 | a),      // ::ffff:a.b.c.d
        Ipv6Addr::from(0xffff_u128 << 48 | a),      // ::ffff:0:a.b.c.d (SIIT)
        Ipv6Addr::from(0x0064_ff9b_u128 << 96 | a), // 64:ff9b::a.b.c.d
        // 64:ff9b:1::/48: two octets at bits 48..63, the zero u octet, two
        // octets at bits 72..87, then the suffix.
        Ipv6Addr::from(
            0x0064_ff9b_0001_u128 << 80
                | (a >> 16) << 64
                | (a & 0xffff) << 40
                | (noise & 0xff_ffff_ffff),
        ),
        Ipv6Addr::from(0x2002_u128 << 112 | a << 80 | (noise & ((1 << 80) - 1))), // 6to4
    ];
    if u32::from(v4) > 1 {
        // ::a.b.c.d (:: and ::1 are not IPv4-compatible addresses).
        forms.push(Ipv6Addr::from(a));
    }
    forms
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn wrapping_an_ipv4_address_never_changes_its_verdict(
        raw in any::<u32>(),
        noise in any::<u64>(),
        unknown_allowed in any::<bool>(),
    ) {
        let policy = busy_policy(unknown_allowed);
        let v4 = Ipv4Addr::from(raw);
        let plain = policy.judge(IpAddr::V4(v4), geo());
        for wrapped in wrappings(v4, noise) {
            prop_assert_eq!(policy.judge(IpAddr::V6(wrapped), geo()), plain, "{}", wrapped);
        }
    }

    #[test]
    fn wrapping_in_ipv6_never_escapes_a_deny_network(
        raw in any::<u32>(),
        prefix in 8u8..=32,
        noise in any::<u64>(),
    ) {
        let v4 = Ipv4Addr::from(raw);
        let net = IpNet::new(IpAddr::V4(v4), prefix).expect("prefix").trunc();
        let policy = Policy {
            allow_countries: countries(&["US", "FR", "AU", "CN"]),
            unknown_allowed: true,
            deny_networks: nets(&[net]),
            ..busy_policy(true)
        };
        for wrapped in wrappings(v4, noise) {
            let v = policy.judge(IpAddr::V6(wrapped), geo());
            prop_assert_eq!(v.reason, Some(Reason::NetworkDenied), "{}", wrapped);
        }
    }

    #[test]
    fn a_deny_network_beats_an_allow_network_holding_the_same_address(
        raw in any::<u128>(),
        v6 in any::<bool>(),
        deny_prefix in 0u8..=32,
        allow_prefix in 0u8..=32,
    ) {
        let ip = if v6 { IpAddr::V6(Ipv6Addr::from(raw)) } else { IpAddr::V4(Ipv4Addr::from(raw as u32)) };
        // Judge the canonical form, so the nets are written in its family.
        let canon = match crate::geo::canonicalize(ip, &Nat64Prefixes::default()) {
            crate::geo::Canonical::Ip(c) => c,
            crate::geo::Canonical::Untraceable(t) => IpAddr::V6(t),
        };
        let scale = if canon.is_ipv6() { 4 } else { 1 };
        let deny = IpNet::new(canon, deny_prefix * scale).expect("prefix").trunc();
        let allow = IpNet::new(canon, allow_prefix * scale).expect("prefix").trunc();
        let policy = Policy {
            allow_networks: nets(&[allow]),
            deny_networks: nets(&[deny]),
            unknown_allowed: true,
            ..busy_policy(true)
        };
        let v = policy.judge(ip, geo());
        prop_assert_eq!(v.reason, Some(Reason::NetworkDenied));
        prop_assert_eq!(policy.decide(&v), Decision::Blocked);
    }

    #[test]
    fn a_denied_country_beats_its_own_allowance(raw in any::<u32>()) {
        let ip = IpAddr::V4(Ipv4Addr::from(raw));
        let Some(country) = geo().country(ip) else {
            return Ok(());
        };
        let both = {
            let mut s = CountrySet::new();
            s.insert(country);
            s
        };
        let policy = Policy {
            mode: Mode::Enforce,
            allow_countries: both,
            deny_countries: both,
            unknown_allowed: true,
            allow_networks: NetworkTable::default(),
            deny_networks: NetworkTable::default(),
            nat64: Nat64Prefixes::default(),
            operator_countries: CountrySet::new(),
            on_foreign_operator: OperatorActions::default(),
        };
        let v = policy.judge(ip, geo());
        prop_assert_eq!(v.reason, Some(Reason::CountryDenied));
        prop_assert_eq!(v.country, Some(country));
    }

    #[test]
    fn monitor_mode_changes_the_decision_never_the_verdict(raw in any::<u32>()) {
        let ip = IpAddr::V4(Ipv4Addr::from(raw));
        let enforce = busy_policy(false);
        let monitor = Policy { mode: Mode::Monitor, ..busy_policy(false) };
        let (a, b) = (enforce.judge(ip, geo()), monitor.judge(ip, geo()));
        prop_assert_eq!(a, b);
        let expected = if a.passes() { Decision::Allowed } else { Decision::Flagged };
        prop_assert_eq!(monitor.decide(&b), expected);
    }
}

#[test]
fn the_wrappings_are_those_of_the_spec() {
    let forms: Vec<String> = wrappings(Ipv4Addr::new(8, 8, 8, 8), 0)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        forms,
        [
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "64:ff9b::808:808",
            "64:ff9b:1:808:8:800::",
            "2002:808:808::",
            "::808:808"
        ]
    );
}

fn operators() -> &'static OperatorDb {
    static DB: OnceLock<OperatorDb> = OnceLock::new();
    DB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        OperatorDb::open(&root.join("geodata/iptoasn-country.mmdb")).expect("shipped database")
    })
}

fn operator_policy(client: OperatorAction, upstream: OperatorAction) -> Policy {
    Policy {
        allow_countries: crate::geo::eea(),
        deny_countries: CountrySet::new(),
        allow_networks: nets(&[]),
        deny_networks: nets(&[]),
        on_foreign_operator: OperatorActions { client, upstream },
        ..busy_policy(false)
    }
}

#[test]
fn a_foreign_operator_is_checked_after_the_country_per_side() {
    use OperatorAction::{Block, Flag, Ignore};
    let aws_paris: IpAddr = "15.188.0.1".parse().unwrap();
    let orange: IpAddr = "90.0.0.1".parse().unwrap();
    let p = operator_policy(Flag, Block);
    let v = p.judge_side(aws_paris, Side::Client, geo(), Some(operators()));
    assert_eq!(v.country, Country::from_code("FR"));
    assert_eq!(v.operator.country, Country::from_code("US"));
    assert_eq!(
        (v.reason, v.advisory),
        (Some(Reason::ForeignOperator), true)
    );
    assert_eq!(p.decide(&v), Decision::Flagged);
    let v = p.judge_side(aws_paris, Side::Upstream, geo(), Some(operators()));
    assert_eq!(
        (v.reason, v.advisory),
        (Some(Reason::ForeignOperator), false)
    );
    assert_eq!(p.decide(&v), Decision::Blocked);
    let v = p.judge_side(orange, Side::Upstream, geo(), Some(operators()));
    assert_eq!((v.reason, v.foreign_operator), (None, false));
    // ignore: looked up for evidence, verdict untouched.
    let p = operator_policy(Ignore, Ignore);
    let v = p.judge_side(aws_paris, Side::Client, geo(), Some(operators()));
    assert_eq!((v.reason, v.foreign_operator), (None, true));
    // no operator database: nothing known, nothing foreign.
    let p = operator_policy(Block, Block);
    let v = p.judge_side(aws_paris, Side::Client, geo(), None);
    assert_eq!((v.reason, v.operator), (None, Operator::default()));
}

#[test]
fn allow_networks_wins_over_a_foreign_operator() {
    let p = Policy {
        allow_networks: nets(&["15.188.0.0/16".parse().unwrap()]),
        ..operator_policy(OperatorAction::Block, OperatorAction::Block)
    };
    let v = p.judge_side(
        "15.188.0.1".parse().unwrap(),
        Side::Client,
        geo(),
        Some(operators()),
    );
    assert_eq!((v.rule, v.reason), (Rule::AllowNetworks, None));
    assert!(v.foreign_operator, "still evidence");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The operator check only ever adds a failure to an address the
    /// country decision passed: it never lets through one that failed, and
    /// never changes the country or the reason of a failure.
    #[test]
    fn the_operator_check_never_loosens_the_country_decision(raw in any::<u32>(), six in any::<u128>(), v6 in any::<bool>()) {
        let ip = if v6 { IpAddr::V6(Ipv6Addr::from(six)) } else { IpAddr::V4(Ipv4Addr::from(raw)) };
        for action in [OperatorAction::Ignore, OperatorAction::Flag, OperatorAction::Block] {
            let p = Policy { on_foreign_operator: OperatorActions { client: action, upstream: action }, ..busy_policy(false) };
            let country = p.judge(ip, geo());
            let full = p.judge_side(ip, Side::Client, geo(), Some(operators()));
            prop_assert_eq!(full.country, country.country);
            if country.reason.is_some() {
                prop_assert_eq!((full.reason, full.rule, full.advisory), (country.reason, country.rule, false));
            } else if full.reason.is_some() {
                prop_assert_eq!(full.reason, Some(Reason::ForeignOperator));
                prop_assert!(full.foreign_operator && action != OperatorAction::Ignore);
                prop_assert_ne!(country.rule, Rule::AllowNetworks);
            }
        }
    }
}
