//! The cartography of transfers outside the EEA (SPEC §1, HDS): from audit
//! records, one row per side and country outside the EEA, with what
//! happened to those requests, rendered by [`Cartography::to_markdown`],
//! [`Cartography::to_json`] and [`Cartography::to_html`].
//!
//! A side is *outside* when its country is `unknown`, is not a valid ISO
//! code, or is not in [`crate::geo::eea`]. This is the EEA, not the
//! configured allowed area: the report says where data went, whatever the
//! policy allowed. Per row, each request counts once, as
//!
//! - `blocked` / `flagged`: the record's decision, when the record names
//!   this side (or names no side, which a well-formed record never does);
//! - `allowed`: this side passed the policy although outside the EEA (an
//!   override such as `allow_countries = ["EEA", "CH"]`, `allow_networks`,
//!   or `unknown_country = "allow"`), including when the *other* side was
//!   blocked or flagged. A record names one side: in monitor mode, a request
//!   flagged for its client and sent to an upstream outside the EEA counts as
//!   `allowed` on the upstream row;
//! - `refused`: decision `refused`, turned away before the policy judged it
//!   (CONNECT, a bad `Host`, no route, a refusal by the HTTP layer): never
//!   allowed, and never on an upstream row (nothing was forwarded).
//!
//! A summary record (field `unrecorded`: refusals by the HTTP layer counted
//! but not recorded one by one) adds its count to `unrecorded_refusals`,
//! not to a row: their countries are not in the trail. A record with a
//! decision other than the four is counted in `requests` only, so the
//! difference shows.

use std::collections::{BTreeMap, HashSet};

use serde::{Serialize, Serializer};

use super::record::AuditRecord;
use crate::geo::{Country, CountrySet, eea};
use crate::policy::{Decision, Side};
use crate::refusal::REFUSED;

/// Transfers outside the EEA, aggregated from audit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cartography {
    /// Records read (inside the EEA or not).
    pub records: u64,
    /// The earliest record `time`, if any record was read.
    pub from: Option<String>,
    /// The latest record `time`, if any record was read.
    pub to: Option<String>,
    /// Refusals by the HTTP layer that summary records count without a
    /// record each (over `audit.protocol_error_records`).
    pub unrecorded_refusals: u64,
    /// One row per side and country outside the EEA: by side (client
    /// first), then requests (most first), then country.
    pub transfers: Vec<Transfer>,
    /// Inside the EEA by location, operated from outside it (SPEC §11):
    /// one row per side, operator country and AS. Absent from JSON when
    /// empty (no operator database, or nothing to report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operated_outside: Vec<super::operated::Operated>,
}

/// The requests whose `side` was in `country`, outside the EEA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// `client` or `upstream`.
    #[serde(serialize_with = "side_str")]
    pub side: Side,
    /// ISO code (upper case), `unknown`, or the record's value verbatim if
    /// it is neither (escape it before display).
    pub country: String,
    /// Requests with this side in this country.
    pub requests: u64,
    /// Of which blocked on this side.
    pub blocked: u64,
    /// Of which flagged on this side (monitor mode).
    pub flagged: u64,
    /// Of which this side passed the policy (see the module doc); named
    /// `allowed_by_override` in JSON, as in the live `/transfers`.
    #[serde(rename = "allowed_by_override")]
    pub allowed: u64,
    /// Of which refused before the policy judged them.
    pub refused: u64,
    /// Request body bytes forwarded upstream, summed.
    pub bytes_up: u64,
    /// Response body bytes sent to the client, summed.
    pub bytes_down: u64,
    /// Distinct `identity` values (`anonymous` counts as one).
    pub identities: u64,
    /// The earliest record `time`.
    pub first_seen: String,
    /// The latest record `time`.
    pub last_seen: String,
}

fn side_str<S: Serializer>(side: &Side, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(side.as_str())
}

/// Aggregates `records` (in any order) into the cartography.
pub fn aggregate(records: impl Iterator<Item = AuditRecord>) -> Cartography {
    let area = eea();
    let mut rows: BTreeMap<(bool, String), Row> = BTreeMap::new();
    let mut cartography = Cartography {
        records: 0,
        from: None,
        to: None,
        unrecorded_refusals: 0,
        transfers: Vec::new(),
        operated_outside: Vec::new(),
    };
    let (operator_area, mut operated) = super::operated::rows();
    for record in records {
        if record.policy_change.is_some() {
            // A policy change record marks a reload: no traffic.
            continue;
        }
        cartography.records += 1;
        operated.add(&operator_area, &record);
        widen(&mut cartography.from, &mut cartography.to, &record.time);
        if let Some(n) = record.unrecorded {
            cartography.unrecorded_refusals = cartography.unrecorded_refusals.saturating_add(n);
            continue;
        }
        for side in [Side::Client, Side::Upstream] {
            let country = match side {
                Side::Client => Some(record.client_country.as_str()),
                Side::Upstream => record.upstream_country.as_deref(),
            };
            let Some(country) = country.and_then(|c| outside(&area, c)) else {
                continue;
            };
            let key = (side == Side::Upstream, country);
            let row = rows.entry(key).or_insert_with_key(|(_, country)| Row {
                transfer: Transfer {
                    side,
                    country: country.clone(),
                    requests: 0,
                    blocked: 0,
                    flagged: 0,
                    allowed: 0,
                    refused: 0,
                    bytes_up: 0,
                    bytes_down: 0,
                    identities: 0,
                    first_seen: record.time.clone(),
                    last_seen: record.time.clone(),
                },
                identities: HashSet::new(),
            });
            row.add(&record, side);
        }
    }
    let mut transfers: Vec<Transfer> = rows.into_values().map(Row::finish).collect();
    transfers.sort_by(|a, b| {
        (a.side == Side::Upstream)
            .cmp(&(b.side == Side::Upstream))
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.country.cmp(&b.country))
    });
    cartography.transfers = transfers;
    cartography.operated_outside = operated.finish();
    cartography
}

/// The row label of `country` if it is outside `area`, else `None`.
fn outside(area: &CountrySet, country: &str) -> Option<String> {
    match Country::from_code(country) {
        Some(c) if area.contains(c) => None,
        // Upper-case, so `us` and `US` are one row.
        Some(c) => Some(c.as_str().to_owned()),
        None => Some(country.to_owned()),
    }
}

fn widen(from: &mut Option<String>, to: &mut Option<String>, time: &str) {
    if from.as_deref().is_none_or(|f| time < f) {
        *from = Some(time.to_owned());
    }
    if to.as_deref().is_none_or(|t| time > t) {
        *to = Some(time.to_owned());
    }
}

/// A row being aggregated.
struct Row {
    transfer: Transfer,
    identities: HashSet<String>,
}

impl Row {
    fn add(&mut self, record: &AuditRecord, side: Side) {
        let t = &mut self.transfer;
        t.requests += 1;
        match outcome(record, side) {
            Some(Outcome::Decided(Decision::Blocked)) => t.blocked += 1,
            Some(Outcome::Decided(Decision::Flagged)) => t.flagged += 1,
            Some(Outcome::Decided(Decision::Allowed)) => t.allowed += 1,
            Some(Outcome::Refused) => t.refused += 1,
            None => {}
        }
        t.bytes_up = t.bytes_up.saturating_add(record.bytes_up);
        t.bytes_down = t.bytes_down.saturating_add(record.bytes_down);
        if record.time < t.first_seen {
            t.first_seen.clone_from(&record.time);
        }
        if record.time > t.last_seen {
            t.last_seen.clone_from(&record.time);
        }
        if !self.identities.contains(&record.identity) {
            self.identities.insert(record.identity.clone());
        }
    }

    fn finish(mut self) -> Transfer {
        self.transfer.identities = self.identities.len() as u64;
        self.transfer
    }
}

/// What happened to one side of a request.
enum Outcome {
    /// The policy's decision.
    Decided(Decision),
    /// Refused before the policy judged it.
    Refused,
}

/// What `record` says happened to `side` (see the module doc); `None` for
/// an unknown decision.
fn outcome(record: &AuditRecord, side: Side) -> Option<Outcome> {
    if record.decision == REFUSED {
        return Some(Outcome::Refused);
    }
    let decision = [Decision::Allowed, Decision::Blocked, Decision::Flagged]
        .into_iter()
        .find(|d| d.as_str() == record.decision)?;
    let names_this_side = match record.side.as_deref() {
        Some(s) if s == Side::Client.as_str() || s == Side::Upstream.as_str() => s == side.as_str(),
        // No side (or a side we do not know): never report it as allowed.
        _ => true,
    };
    Some(Outcome::Decided(if names_this_side {
        decision
    } else {
        Decision::Allowed
    }))
}

#[cfg(test)]
mod tests;
