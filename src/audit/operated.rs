//! The section of the cartography "inside the area by location, operated
//! from outside it" (SPEC §11): from audit records, one row per side,
//! operator country and AS number, for the sides whose location country is
//! in the EEA and whose operator country (`client_operator`,
//! `upstream_operator`, written when `[geoip] operator_database` is set) is
//! a valid ISO code outside it. `unknown` operators are not listed: the
//! section reports what the data says, not what it does not know.
//!
//! Like the rest of the cartography, the area is the EEA, not the configured
//! `operator_countries`: the report says where the operators are, whatever
//! the policy allowed. Each request counts once per row, as
//! [`crate::transfer::classify`] says: `blocked` for an attempt refused,
//! `flagged`, or `allowed` (by the policy or a grant); a side admitted by a
//! network rule is not listed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::record::AuditRecord;
use super::sides::{record_fate, record_side};
use crate::geo::{CountrySet, eea};
use crate::policy::{Decision, Side};
use crate::transfer::{Basis, Flow, Ground, classify};

/// Requests whose `side` was located inside the EEA and operated from
/// `operator` (and `asn`, when known), outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operated {
    /// `client` or `upstream`.
    pub side: &'static str,
    /// The operator's ISO country code.
    pub operator: String,
    /// The operator's AS number, when the database had one.
    pub asn: Option<u32>,
    /// The location countries seen, ISO codes in code order.
    pub located: Vec<String>,
    /// Requests with this side operated from there.
    pub requests: u64,
    /// Of which blocked on this side.
    pub blocked: u64,
    /// Of which flagged on this side.
    pub flagged: u64,
    /// Of which served without a flag on this side (`on_foreign_operator =
    /// "ignore"`, or only the other side failed).
    pub allowed: u64,
    /// Request body bytes forwarded upstream, summed.
    pub bytes_up: u64,
    /// Response body bytes sent to the client, summed.
    pub bytes_down: u64,
    /// The earliest record `time`.
    pub first_seen: String,
    /// The latest record `time`.
    pub last_seen: String,
}

/// Rows being aggregated, keyed by side, operator country and AS.
#[derive(Debug, Default)]
pub(super) struct OperatedRows {
    rows: BTreeMap<(bool, String, Option<u32>), Operated>,
}

impl OperatedRows {
    /// Adds `record` to the rows of each side [`classify`] says is inside
    /// the EEA by location and outside it by operator.
    pub(super) fn add(&mut self, area: &CountrySet, record: &AuditRecord) {
        let Some(fate) = record_fate(record) else {
            return;
        };
        for side in [Side::Client, Side::Upstream] {
            let Some(facts) = record_side(record, side) else {
                continue;
            };
            let outcome = match classify(area, side, &facts, fate) {
                Flow::Transfer(Basis::Operator, Ground::Flagged) => Decision::Flagged,
                Flow::Transfer(Basis::Operator, _) => Decision::Allowed,
                Flow::Refused(Basis::Operator, _) => Decision::Blocked,
                _ => continue,
            };
            let (Some(located), Some(operator)) = (facts.location, facts.operator) else {
                continue;
            };
            let asn = match side {
                Side::Client => record.operators.client_asn,
                Side::Upstream => record.operators.upstream_asn,
            };
            let key = (side == Side::Upstream, operator.as_str().to_owned(), asn);
            let row = self.rows.entry(key).or_insert_with(|| Operated {
                side: side.as_str(),
                operator: operator.as_str().to_owned(),
                asn,
                located: Vec::new(),
                requests: 0,
                blocked: 0,
                flagged: 0,
                allowed: 0,
                bytes_up: 0,
                bytes_down: 0,
                first_seen: record.time.clone(),
                last_seen: record.time.clone(),
            });
            row.requests += 1;
            match outcome {
                Decision::Blocked => row.blocked += 1,
                Decision::Flagged => row.flagged += 1,
                Decision::Allowed => row.allowed += 1,
            }
            let located = located.as_str().to_owned();
            if let Err(at) = row.located.binary_search(&located) {
                row.located.insert(at, located);
            }
            row.bytes_up = row.bytes_up.saturating_add(record.bytes_up);
            row.bytes_down = row.bytes_down.saturating_add(record.bytes_down);
            if record.time < row.first_seen {
                row.first_seen.clone_from(&record.time);
            }
            if record.time > row.last_seen {
                row.last_seen.clone_from(&record.time);
            }
        }
    }

    /// The rows: client side first, then most requests, then operator, AS.
    pub(super) fn finish(self) -> Vec<Operated> {
        let mut rows: Vec<Operated> = self.rows.into_values().collect();
        rows.sort_by(|a, b| {
            (a.side == "upstream")
                .cmp(&(b.side == "upstream"))
                .then(b.requests.cmp(&a.requests))
                .then_with(|| a.operator.cmp(&b.operator))
                .then(a.asn.cmp(&b.asn))
        });
        rows
    }
}

/// A fresh aggregation over the EEA.
pub(super) fn rows() -> (CountrySet, OperatedRows) {
    (eea(), OperatedRows::default())
}

/// The section title, in every rendering.
pub const TITLE: &str = "Inside the area by location, operated from outside it";

/// The Markdown section, empty when there is no row.
pub fn to_markdown(rows: &[Operated], escape: impl Fn(&str) -> String) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n## {TITLE}\n\nRequests whose side was located in the EEA and whose network operator \
         (the registrant of the announcing autonomous system) is outside it, by operator \
         country and AS.\n\n\
         | side | operator | AS | located | requests | blocked | flagged | allowed | bytes up | bytes down | first seen | last seen |\n\
         |---|---|--:|---|--:|--:|--:|--:|--:|--:|---|---|\n"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.side,
            escape(&r.operator),
            r.asn
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            escape(&r.located.join(" ")),
            r.requests,
            r.blocked,
            r.flagged,
            r.allowed,
            r.bytes_up,
            r.bytes_down,
            escape(&r.first_seen),
            escape(&r.last_seen),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::example;

    fn rec(
        s: u64,
        client: (&str, Option<&str>),
        upstream: (&str, Option<&str>, Option<u32>),
        decision: &str,
        side: Option<&str>,
    ) -> AuditRecord {
        let mut r = example(s);
        r.client_country = client.0.into();
        r.operators.client_operator = client.1.map(Into::into);
        r.upstream_country = Some(upstream.0.into());
        r.operators.upstream_operator = upstream.1.map(Into::into);
        r.operators.upstream_asn = upstream.2;
        r.decision = decision.into();
        r.side = side.map(Into::into);
        r
    }

    #[test]
    fn only_sides_inside_by_location_and_outside_by_operator_are_listed() {
        let (area, mut rows) = rows();
        // Upstream in DE operated from the US (AS 16509), flagged, twice.
        rows.add(
            &area,
            &rec(
                1,
                ("FR", Some("FR")),
                ("DE", Some("US"), Some(16509)),
                "flagged",
                Some("upstream"),
            ),
        );
        rows.add(
            &area,
            &rec(
                2,
                ("FR", Some("FR")),
                ("FR", Some("us"), Some(16509)),
                "flagged",
                Some("upstream"),
            ),
        );
        // Client in FR operated from the US, blocked; the upstream row untouched.
        rows.add(
            &area,
            &rec(
                3,
                ("FR", Some("US")),
                ("DE", Some("DE"), None),
                "blocked",
                Some("client"),
            ),
        );
        // Located outside: the country cartography's business, not this one.
        rows.add(
            &area,
            &rec(
                4,
                ("US", Some("US")),
                ("CH", Some("US"), Some(1)),
                "blocked",
                Some("client"),
            ),
        );
        // Unknown or invalid operator, or no operator database: not listed.
        rows.add(
            &area,
            &rec(
                5,
                ("FR", Some("unknown")),
                ("DE", None, None),
                "allowed",
                None,
            ),
        );
        rows.add(
            &area,
            &rec(
                6,
                ("FR", Some("<b>")),
                ("DE", Some("ZZZ"), None),
                "allowed",
                None,
            ),
        );
        let out = rows.finish();
        let summary: Vec<_> = out
            .iter()
            .map(|r| {
                (
                    r.side,
                    r.operator.as_str(),
                    r.asn,
                    r.located.join(" "),
                    r.requests,
                    r.blocked,
                    r.flagged,
                    r.allowed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("client", "US", None, "FR".to_owned(), 1, 1, 0, 0),
                (
                    "upstream",
                    "US",
                    Some(16509),
                    "DE FR".to_owned(),
                    2,
                    0,
                    2,
                    0
                ),
            ]
        );
        let md = to_markdown(&out, str::to_owned);
        assert!(
            md.contains("## Inside the area by location, operated from outside it"),
            "{md}"
        );
        assert!(
            md.contains("| upstream | US | 16509 | DE FR | 2 | 0 | 2 | 0 |"),
            "{md}"
        );
        assert_eq!(to_markdown(&[], str::to_owned), "");
    }
}
