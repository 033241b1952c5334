use super::*;
use crate::audit::record::example;

/// A record at second `s`, client in `client`, optionally an upstream.
fn rec(
    s: u64,
    client: &str,
    upstream: Option<&str>,
    decision: &str,
    side: Option<&str>,
    identity: &str,
) -> AuditRecord {
    let mut r = example(s);
    r.client_country = client.into();
    r.upstream_country = upstream.map(Into::into);
    r.upstream_ip = upstream.map(|_| "192.0.2.1".into());
    r.decision = decision.into();
    r.side = side.map(Into::into);
    r.identity = identity.into();
    r.bytes_up = s;
    r.bytes_down = 10 * s;
    r
}

fn row<'a>(c: &'a Cartography, side: Side, country: &str) -> &'a Transfer {
    c.transfers
        .iter()
        .find(|t| t.side == side && t.country == country)
        .unwrap_or_else(|| panic!("no {side:?} {country} in {c:#?}"))
}

fn attempt<'a>(c: &'a Cartography, side: Side, country: &str) -> &'a Attempt {
    c.attempts_refused
        .iter()
        .find(|t| t.side == side && t.country == country)
        .unwrap_or_else(|| panic!("no {side:?} {country} attempt in {c:#?}"))
}

#[test]
fn no_records_no_rows() {
    let c = aggregate(std::iter::empty());
    assert_eq!(
        c,
        Cartography {
            records: 0,
            from: None,
            to: None,
            unrecorded_refusals: 0,
            internal: 0,
            transfers: vec![],
            attempts_refused: vec![],
            operated_outside: vec![],
            policy_versions: vec![],
        }
    );
}

#[test]
fn flows_inside_the_eea_are_not_transfers() {
    let records = ["FR", "DE", "NO", "IS", "LI", "GP", "RE", "AX", "fr"]
        .map(|c| rec(1, c, Some("DE"), "allowed", None, "a"));
    let c = aggregate(records.into_iter());
    assert_eq!(c.records, 9);
    assert!(c.transfers.is_empty(), "{c:#?}");
}

#[test]
fn territories_outside_the_eea_unknown_and_invalid_codes_are_outside() {
    let records = ["SJ", "GL", "GB", "CH", "unknown", "<script>", "", "FRA"]
        .map(|c| rec(1, c, None, "allowed", None, "a"));
    let c = aggregate(records.into_iter());
    let mut countries: Vec<&str> = c.transfers.iter().map(|t| t.country.as_str()).collect();
    countries.sort_unstable();
    assert_eq!(
        countries,
        ["", "<script>", "CH", "FRA", "GB", "GL", "SJ", "unknown"]
    );
}

/// Issue 19: the host's own networks (admitted by `allow_networks`) were
/// published as transfers to an unknown country.
#[test]
fn sides_admitted_by_a_network_rule_are_internal_not_transfers() {
    let mut r = rec(1, "unknown", Some("unknown"), "allowed", None, "a");
    r.sides.client_rule = Some("allow_networks".into());
    r.sides.upstream_rule = Some("allow_networks".into());
    let mut blocked = rec(2, "US", Some("unknown"), "blocked", Some("client"), "a");
    blocked.sides.upstream_rule = Some("allow_networks".into());
    let c = aggregate(vec![r, blocked].into_iter());
    assert!(c.transfers.is_empty(), "{c:#?}");
    assert_eq!(c.internal, 3);
    assert_eq!(c.attempts_refused.len(), 1, "{c:#?}");
    assert_eq!(attempt(&c, Side::Client, "US").blocked, 1);
}

#[test]
fn forwarded_sides_are_transfers_blocked_ones_attempts() {
    let c = aggregate(
        vec![
            rec(2, "US", None, "blocked", Some("client"), "alice"),
            rec(3, "US", Some("FR"), "flagged", Some("client"), "bob"),
            rec(4, "CH", Some("CN"), "blocked", Some("upstream"), "alice"),
            rec(5, "US", Some("US"), "allowed", None, "alice"),
            rec(
                1,
                "DE",
                Some("unknown"),
                "flagged",
                Some("upstream"),
                "carol",
            ),
        ]
        .into_iter(),
    );
    let us = row(&c, Side::Client, "US");
    assert_eq!(
        (
            us.requests,
            us.allowed_by_override,
            us.flagged,
            us.identities
        ),
        (2, 1, 1, 2)
    );
    assert_eq!((us.bytes_up, us.bytes_down), (8, 80));
    assert_eq!(us.first_seen, "2026-11-28T15:20:03.123Z");
    assert_eq!(us.last_seen, "2026-11-28T15:20:05.123Z");
    assert_eq!(attempt(&c, Side::Client, "US").blocked, 1);
    // The CH client passed, the upstream was blocked: nothing exchanged.
    assert_eq!(attempt(&c, Side::Client, "CH").blocked, 1);
    assert_eq!(attempt(&c, Side::Upstream, "CN").blocked, 1);
    assert!(
        c.transfers
            .iter()
            .all(|t| t.country != "CH" && t.country != "CN")
    );
    assert_eq!(row(&c, Side::Upstream, "US").allowed_by_override, 1);
    assert_eq!(row(&c, Side::Upstream, "unknown").flagged, 1);
    assert_eq!(c.records, 5);
    assert_eq!(c.from.as_deref(), Some("2026-11-28T15:20:01.123Z"));
    assert_eq!(c.to.as_deref(), Some("2026-11-28T15:20:05.123Z"));
}

#[test]
fn a_grant_admits_the_client_side_only() {
    let mut r = rec(1, "US", Some("CH"), "allowed", None, "jane");
    r.grant = Some("CHG-2026-0142".into());
    let c = aggregate(std::iter::once(r));
    assert_eq!(row(&c, Side::Client, "US").allowed_by_grant, 1);
    assert_eq!(row(&c, Side::Upstream, "CH").allowed_by_override, 1);
}

#[test]
fn an_unknown_decision_counts_as_a_record_only() {
    let c = aggregate(std::iter::once(rec(1, "US", None, "maybe", None, "a")));
    assert_eq!(c.records, 1);
    assert!(
        c.transfers.is_empty() && c.attempts_refused.is_empty(),
        "{c:#?}"
    );
}

#[test]
fn country_case_is_folded_and_identities_are_distinct() {
    let c = aggregate(
        vec![
            rec(1, "us", None, "allowed", None, "a"),
            rec(2, "US", None, "allowed", None, "a"),
            rec(3, "Us", None, "allowed", None, "anonymous"),
        ]
        .into_iter(),
    );
    assert_eq!(c.transfers.len(), 1);
    assert_eq!((c.transfers[0].requests, c.transfers[0].identities), (3, 2));
}

#[test]
fn rows_sort_by_side_then_requests_then_country() {
    let mut records = vec![rec(1, "FR", Some("US"), "allowed", None, "a")];
    records.extend((0..2).map(|i| rec(i, "CN", None, "flagged", Some("client"), "a")));
    records.extend((0..2).map(|i| rec(i, "BR", None, "flagged", Some("client"), "a")));
    records.push(rec(1, "ZA", None, "flagged", Some("client"), "a"));
    records.extend((0..3).map(|i| rec(i, "US", None, "flagged", Some("client"), "a")));
    let c = aggregate(records.into_iter());
    let order: Vec<(&str, &str)> = c
        .transfers
        .iter()
        .map(|t| (t.side.as_str(), t.country.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("client", "US"),
            ("client", "BR"),
            ("client", "CN"),
            ("client", "ZA"),
            ("upstream", "US")
        ]
    );
}

#[test]
fn records_out_of_time_order_still_give_the_period() {
    let c = aggregate(
        vec![
            rec(9, "US", None, "allowed", None, "a"),
            rec(3, "US", None, "allowed", None, "a"),
            rec(5, "US", None, "allowed", None, "a"),
        ]
        .into_iter(),
    );
    assert_eq!(c.from.as_deref(), Some("2026-11-28T15:20:03.123Z"));
    assert_eq!(c.to.as_deref(), Some("2026-11-28T15:20:09.123Z"));
    assert_eq!(c.transfers[0].first_seen, "2026-11-28T15:20:03.123Z");
    assert_eq!(c.transfers[0].last_seen, "2026-11-28T15:20:09.123Z");
}

/// A refused request is an attempt, never a transfer, never an upstream row.
#[test]
fn refused_requests_are_attempts_never_transfers() {
    let mut refused = rec(1, "US", None, "refused", None, "anonymous");
    refused.reason = Some("method_not_allowed".into());
    let blocked = rec(2, "US", None, "blocked", Some("client"), "a");
    let c = aggregate(vec![refused, blocked].into_iter());
    let us = attempt(&c, Side::Client, "US");
    assert_eq!((us.blocked, us.refused, us.identities), (1, 1, 2));
    assert!(c.transfers.is_empty());
}

/// A summary record counts refusals without countries: not a row.
#[test]
fn summary_records_add_to_unrecorded_refusals_not_to_rows() {
    let mut summary = rec(1, "unknown", None, "refused", None, "anonymous");
    summary.unrecorded = Some(7);
    let c = aggregate(vec![summary.clone(), summary].into_iter());
    assert_eq!(c.unrecorded_refusals, 14);
    assert!(
        c.transfers.is_empty() && c.attempts_refused.is_empty(),
        "{c:#?}"
    );
    assert!(c.to_markdown().contains(": 14."), "{}", c.to_markdown());
}

#[test]
fn policy_versions_in_force_are_listed_with_their_period() {
    let mut a = rec(1, "FR", None, "allowed", None, "a");
    a.policy_version = "aaaa".into();
    let mut b = rec(5, "FR", None, "allowed", None, "a");
    b.policy_version = "bbbb".into();
    let mut a2 = rec(3, "FR", None, "allowed", None, "a");
    a2.policy_version = "aaaa".into();
    let c = aggregate(vec![a, b, a2].into_iter());
    let v: Vec<_> = c
        .policy_versions
        .iter()
        .map(|v| {
            (
                v.version.as_str(),
                v.records,
                &v.first_seen[17..19],
                &v.last_seen[17..19],
            )
        })
        .collect();
    assert_eq!(v, [("aaaa", 2, "01", "03"), ("bbbb", 1, "05", "05")]);
}
