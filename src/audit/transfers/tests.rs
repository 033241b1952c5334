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
            transfers: vec![],
            operated_outside: vec![],
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

#[test]
fn each_side_counts_what_the_record_says_about_it() {
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
            us.blocked,
            us.flagged,
            us.allowed,
            us.identities
        ),
        (3, 1, 1, 1, 2)
    );
    assert_eq!((us.bytes_up, us.bytes_down), (10, 100));
    assert_eq!(us.first_seen, "2026-11-28T15:20:02.123Z");
    assert_eq!(us.last_seen, "2026-11-28T15:20:05.123Z");
    // The CH client passed (override); the upstream was the one blocked.
    let ch = row(&c, Side::Client, "CH");
    assert_eq!((ch.requests, ch.blocked, ch.allowed), (1, 0, 1));
    let cn = row(&c, Side::Upstream, "CN");
    assert_eq!((cn.requests, cn.blocked, cn.allowed), (1, 1, 0));
    let up_us = row(&c, Side::Upstream, "US");
    assert_eq!((up_us.requests, up_us.allowed), (1, 1));
    let unknown = row(&c, Side::Upstream, "unknown");
    assert_eq!((unknown.requests, unknown.flagged), (1, 1));
    assert_eq!(c.records, 5);
    assert_eq!(c.from.as_deref(), Some("2026-11-28T15:20:01.123Z"));
    assert_eq!(c.to.as_deref(), Some("2026-11-28T15:20:05.123Z"));
}

#[test]
fn a_block_without_a_side_is_never_reported_as_allowed() {
    let c = aggregate(
        vec![
            rec(1, "US", Some("CN"), "blocked", None, "a"),
            rec(2, "US", Some("CN"), "flagged", Some("nowhere"), "a"),
        ]
        .into_iter(),
    );
    for side in [Side::Client, Side::Upstream] {
        let country = if side == Side::Client { "US" } else { "CN" };
        let t = row(&c, side, country);
        assert_eq!((t.blocked, t.flagged, t.allowed), (1, 1, 0), "{side:?}");
    }
}

#[test]
fn an_unknown_decision_counts_as_a_request_only() {
    let c = aggregate(std::iter::once(rec(1, "US", None, "maybe", None, "a")));
    let t = row(&c, Side::Client, "US");
    assert_eq!((t.requests, t.blocked, t.flagged, t.allowed), (1, 0, 0, 0));
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
    records.extend((0..2).map(|i| rec(i, "CN", None, "blocked", Some("client"), "a")));
    records.extend((0..2).map(|i| rec(i, "BR", None, "blocked", Some("client"), "a")));
    records.push(rec(1, "ZA", None, "blocked", Some("client"), "a"));
    records.extend((0..3).map(|i| rec(i, "US", None, "blocked", Some("client"), "a")));
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

/// A refused request is neither allowed nor blocked: its own column, and
/// never an upstream row.
#[test]
fn refused_requests_are_counted_as_refused_never_allowed() {
    let mut refused = rec(1, "US", None, "refused", None, "anonymous");
    refused.reason = Some("method_not_allowed".into());
    let blocked = rec(2, "US", None, "blocked", Some("client"), "a");
    let c = aggregate(vec![refused, blocked].into_iter());
    let us = row(&c, Side::Client, "US");
    assert_eq!(
        (us.requests, us.blocked, us.flagged, us.allowed, us.refused),
        (2, 1, 0, 0, 1)
    );
    assert_eq!(c.transfers.len(), 1);
}

/// A summary record counts refusals without countries: not a row.
#[test]
fn summary_records_add_to_unrecorded_refusals_not_to_rows() {
    let mut summary = rec(1, "unknown", None, "refused", None, "anonymous");
    summary.unrecorded = Some(7);
    let c = aggregate(vec![summary.clone(), summary].into_iter());
    assert_eq!(c.unrecorded_refusals, 14);
    assert!(c.transfers.is_empty(), "{c:#?}");
    assert!(c.to_markdown().contains(": 14."), "{}", c.to_markdown());
}
