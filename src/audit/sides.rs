//! An audit record's sides, written and read back: the per-side fields of
//! a record ([`side_fields`]) and what a record says of each side and of
//! the request ([`record_side`], [`record_fate`]), in the terms of
//! [`crate::transfer`]'s one rule. Here, beside the record, so that the
//! rule itself knows nothing of the audit trail.

use super::AuditRecord;
use super::record::SideFields;
use crate::geo::Country;
use crate::policy::{Decision, Side};
use crate::refusal::REFUSED;
use crate::transfer::{Fate, SideFacts, rule_from_key, rule_key};

/// The per-side fields of the audit record of a request judged with
/// `client` and `upstream`: what [`record_side`] reads back.
pub fn side_fields(client: Option<&SideFacts>, upstream: Option<&SideFacts>) -> SideFields {
    let decision = |f: Option<&SideFacts>| f.map(|f| f.decision.as_str().to_owned());
    let rule = |f: Option<&SideFacts>| f.and_then(|f| f.rule).map(|r| rule_key(r).to_owned());
    SideFields {
        client_decision: decision(client),
        client_rule: rule(client),
        upstream_decision: decision(upstream),
        upstream_rule: rule(upstream),
    }
}

fn decision_from(s: &str) -> Option<Decision> {
    [Decision::Allowed, Decision::Blocked, Decision::Flagged]
        .into_iter()
        .find(|d| d.as_str() == s)
}

/// The fate of the request `record` describes; `None` for a decision this
/// version does not know (counted in `records` only, so the difference
/// shows).
pub fn record_fate(record: &AuditRecord) -> Option<Fate> {
    if record.decision == REFUSED {
        return Some(Fate::Refused);
    }
    match decision_from(&record.decision)? {
        Decision::Blocked => Some(Fate::Blocked),
        Decision::Allowed | Decision::Flagged => Some(Fate::Forwarded {
            grant: record.grant.is_some(),
        }),
    }
}

/// What `record` says of `side`; `None` when the side was never judged (no
/// upstream), or for a decision this version does not know.
///
/// Records that carry `client_decision`/`upstream_decision` and the rules
/// say everything; older ones name only the first failing side, so the
/// other side is taken as allowed and no network rule is known.
pub fn record_side(record: &AuditRecord, side: Side) -> Option<SideFacts> {
    let (location, operator, rule, decision) = match side {
        Side::Client => (
            Some(record.client_country.as_str()),
            record.operators.client_operator.as_deref(),
            record.sides.client_rule.as_deref(),
            record.sides.client_decision.as_deref(),
        ),
        Side::Upstream => (
            record.upstream_country.as_deref(),
            record.operators.upstream_operator.as_deref(),
            record.sides.upstream_rule.as_deref(),
            record.sides.upstream_decision.as_deref(),
        ),
    };
    let location = location?;
    let decision = match decision {
        Some(d) => decision_from(d)?,
        None if record.decision == REFUSED => Decision::Blocked,
        None => {
            let whole = decision_from(&record.decision)?;
            match record.side.as_deref() {
                Some(s) if s != side.as_str() => Decision::Allowed,
                _ => whole,
            }
        }
    };
    Some(SideFacts {
        location: Country::from_code(location),
        operator: operator.and_then(Country::from_code),
        rule: rule.and_then(rule_from_key),
        decision,
    })
}
