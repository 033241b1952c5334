use proptest::prelude::*;

use super::*;
use crate::audit::record::SideFields;
use crate::audit::record::example;
use crate::audit::sides::{record_fate, record_side, side_fields};
use crate::geo::eea;
use crate::refusal::REFUSED;

fn c(code: &str) -> Option<Country> {
    Country::from_code(code)
}

fn facts(location: &str, operator: Option<&str>, rule: Rule, decision: Decision) -> SideFacts {
    SideFacts {
        location: c(location),
        operator: operator.and_then(c),
        rule: Some(rule),
        decision,
    }
}

const FWD: Fate = Fate::Forwarded { grant: false };
const GRANTED: Fate = Fate::Forwarded { grant: true };

#[test]
fn network_rules_are_internal_whatever_the_country() {
    let area = eea();
    for location in ["US", "??", "FR"] {
        for fate in [FWD, GRANTED, Fate::Blocked, Fate::Refused] {
            let f = facts(location, Some("US"), Rule::AllowNetworks, Decision::Allowed);
            let flow = classify(&area, Side::Upstream, &f, fate);
            assert_eq!(flow, Flow::Internal, "{location} {fate:?}");
        }
    }
}

#[test]
fn inside_by_location_and_operator_is_not_in_the_cartography() {
    let area = eea();
    for op in [None, Some("FR"), Some("??")] {
        let f = facts("DE", op, Rule::AllowCountries, Decision::Allowed);
        assert_eq!(classify(&area, Side::Client, &f, FWD), Flow::Inside);
    }
}

#[test]
fn a_forwarded_side_outside_is_a_transfer_on_its_own_ground() {
    let area = eea();
    let side =
        |loc, op, rule, d, fate| classify(&area, Side::Client, &facts(loc, op, rule, d), fate);
    assert_eq!(
        side("CH", None, Rule::AllowCountries, Decision::Allowed, FWD),
        Flow::Transfer(Basis::Location, Ground::Override)
    );
    assert_eq!(
        side("??", None, Rule::UnknownCountry, Decision::Allowed, FWD),
        Flow::Transfer(Basis::Location, Ground::Override)
    );
    assert_eq!(
        side(
            "US",
            None,
            Rule::NotInAllowCountries,
            Decision::Allowed,
            GRANTED
        ),
        Flow::Transfer(Basis::Location, Ground::Grant)
    );
    assert_eq!(
        side(
            "US",
            None,
            Rule::NotInAllowCountries,
            Decision::Flagged,
            FWD
        ),
        Flow::Transfer(Basis::Location, Ground::Flagged)
    );
    assert_eq!(
        side(
            "FR",
            Some("US"),
            Rule::ForeignOperator,
            Decision::Flagged,
            FWD
        ),
        Flow::Transfer(Basis::Operator, Ground::Flagged)
    );
    // Grants open the client side only (SPEC §9).
    let up = facts("CH", None, Rule::AllowCountries, Decision::Allowed);
    assert_eq!(
        classify(&area, Side::Upstream, &up, GRANTED),
        Flow::Transfer(Basis::Location, Ground::Override)
    );
}

#[test]
fn blocked_and_refused_requests_are_attempts_on_every_side_outside() {
    let area = eea();
    // The client passed by an override, the upstream was blocked: nothing
    // was exchanged, so neither side is a transfer.
    let client = facts("CH", None, Rule::AllowCountries, Decision::Allowed);
    let upstream = facts("CN", None, Rule::NotInAllowCountries, Decision::Blocked);
    assert_eq!(
        classify(&area, Side::Client, &client, Fate::Blocked),
        Flow::Refused(Basis::Location, Refusal::Blocked)
    );
    assert_eq!(
        classify(&area, Side::Upstream, &upstream, Fate::Blocked),
        Flow::Refused(Basis::Location, Refusal::Blocked)
    );
    assert_eq!(
        classify(&area, Side::Client, &client, Fate::Refused),
        Flow::Refused(Basis::Location, Refusal::Refused)
    );
}

/// Issue 14, 5e: a monitor-mode request flagged for its client and for its
/// upstream was counted flagged on the upstream row live and allowed in
/// the report, the record naming only the client side.
#[test]
fn a_request_flagged_on_both_sides_is_flagged_on_both_from_its_record() {
    let client = facts("US", None, Rule::NotInAllowCountries, Decision::Flagged);
    let upstream = facts("CN", None, Rule::NotInAllowCountries, Decision::Flagged);
    let mut r = example(1);
    r.client_country = "US".into();
    r.upstream_country = Some("CN".into());
    r.decision = "flagged".into();
    r.side = Some("client".into());
    r.sides = side_fields(Some(&client), Some(&upstream));
    let area = eea();
    let fate = record_fate(&r).unwrap();
    for (side, live) in [(Side::Client, client), (Side::Upstream, upstream)] {
        let from_record = record_side(&r, side).unwrap();
        assert_eq!(from_record, live);
        assert_eq!(
            classify(&area, side, &from_record, fate),
            Flow::Transfer(Basis::Location, Ground::Flagged)
        );
    }
}

#[test]
fn records_without_side_fields_read_as_before() {
    let mut r = example(1);
    r.client_country = "US".into();
    r.upstream_country = Some("CH".into());
    r.decision = "flagged".into();
    r.side = Some("client".into());
    assert_eq!(r.sides, SideFields::default());
    assert_eq!(
        record_side(&r, Side::Client).unwrap().decision,
        Decision::Flagged
    );
    assert_eq!(
        record_side(&r, Side::Upstream).unwrap().decision,
        Decision::Allowed
    );
    assert_eq!(record_side(&r, Side::Upstream).unwrap().rule, None);
    r.decision = "teleported".into();
    assert_eq!(record_fate(&r), None);
    r.decision = REFUSED.into();
    assert_eq!(record_fate(&r), Some(Fate::Refused));
    r.upstream_country = None;
    assert_eq!(record_side(&r, Side::Upstream), None);
}

#[test]
fn every_rule_has_a_distinct_key_read_back() {
    let rules = [
        Rule::DenyNetworks,
        Rule::AllowNetworks,
        Rule::Untraceable,
        Rule::DenyCountries,
        Rule::AllowCountries,
        Rule::UnknownCountry,
        Rule::NotInAllowCountries,
        Rule::ForeignOperator,
    ];
    for r in rules {
        assert_eq!(rule_from_key(rule_key(r)), Some(r));
    }
    assert_eq!(rule_from_key("allow_countries (not listed)"), None);
}

fn country() -> impl Strategy<Value = Option<Country>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec!["FR", "DE", "NO", "US", "CH", "CN", "GB", "SJ"]).prop_map(c),
    ]
}

fn rule() -> impl Strategy<Value = Option<Rule>> {
    prop::option::of(prop::sample::select(vec![
        Rule::DenyNetworks,
        Rule::AllowNetworks,
        Rule::Untraceable,
        Rule::DenyCountries,
        Rule::AllowCountries,
        Rule::UnknownCountry,
        Rule::NotInAllowCountries,
        Rule::ForeignOperator,
    ]))
}

fn decision() -> impl Strategy<Value = Decision> {
    prop::sample::select(vec![
        Decision::Allowed,
        Decision::Blocked,
        Decision::Flagged,
    ])
}

fn side_facts() -> impl Strategy<Value = SideFacts> {
    (country(), country(), rule(), decision()).prop_map(|(location, operator, rule, decision)| {
        SideFacts {
            location,
            operator,
            rule,
            decision,
        }
    })
}

proptest! {
    /// The live cartography classifies the evidence, the report the record
    /// written from it: for any request, both see the same flows.
    #[test]
    fn the_record_classifies_as_the_evidence_it_was_written_from(
        client in side_facts(),
        upstream in prop::option::of(side_facts()),
        grant in any::<bool>(),
    ) {
        // The request's decision, as the evidence derives it.
        let sides = [Some(client.decision), upstream.map(|u| u.decision)];
        let (decision, fate) = if sides.contains(&Some(Decision::Blocked)) {
            (Decision::Blocked, Fate::Blocked)
        } else if sides.contains(&Some(Decision::Flagged)) {
            (Decision::Flagged, Fate::Forwarded { grant })
        } else {
            (Decision::Allowed, Fate::Forwarded { grant })
        };
        let mut r = example(1);
        r.client_country = crate::geo::label(client.location).to_owned();
        r.operators.client_operator = client.operator.map(|o| o.as_str().to_owned());
        r.upstream_country = upstream.map(|u| crate::geo::label(u.location).to_owned());
        r.operators.upstream_operator = upstream.and_then(|u| u.operator).map(|o| o.as_str().to_owned());
        r.decision = decision.as_str().to_owned();
        r.grant = (grant && fate != Fate::Blocked).then(|| "CHG-1".to_owned());
        r.sides = side_fields(Some(&client), upstream.as_ref());
        prop_assert_eq!(record_fate(&r), Some(fate));
        let area = eea();
        prop_assert_eq!(record_side(&r, Side::Client), Some(client));
        prop_assert_eq!(
            classify(&area, Side::Client, &record_side(&r, Side::Client).unwrap(), fate),
            classify(&area, Side::Client, &client, fate)
        );
        prop_assert_eq!(record_side(&r, Side::Upstream), upstream);
    }
}
