//! The cartography of transfers outside the EEA (SPEC §1, HDS): from audit
//! records, one row per side and country outside the EEA where data was
//! exchanged (the transfers), and apart from them the attempts refused,
//! rendered by [`Cartography::to_markdown`], [`Cartography::to_json`] and
//! [`Cartography::to_html`].
//!
//! What each side of each record counts as is decided by
//! [`crate::transfer::classify`], the rule the live `/transfers` applies
//! too: sides admitted by a network rule are internal, never transfers;
//! a forwarded request counts once per side outside the area, allowed by
//! an override, by a grant, or flagged; a blocked or refused request is an
//! attempt refused, once per side outside the area. A side whose country
//! is not a valid ISO code is outside, its row labelled with the record's
//! value verbatim (escape it before display).
//!
//! A summary record (field `unrecorded`: refusals by the HTTP layer counted
//! but not recorded one by one) adds its count to `unrecorded_refusals`,
//! not to a row: their countries are not in the trail. A record with a
//! decision other than the four is counted in `records` only, so the
//! difference shows.

use std::collections::{BTreeMap, HashSet};

use serde::{Serialize, Serializer};

use super::record::AuditRecord;
use super::sides::{record_fate, record_side};
use crate::geo::eea;
use crate::policy::Side;
use crate::transfer::{Basis, Flow, classify};

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
    /// Sides admitted by a network rule (`allow_networks`): the host's own
    /// networks, never transfers.
    pub internal: u64,
    /// One row per side and country outside the EEA where data was
    /// exchanged: by side (client first), then requests (most first), then
    /// country.
    pub transfers: Vec<Transfer>,
    /// One row per side and country outside the EEA of requests blocked or
    /// refused: nothing was exchanged. Same order.
    pub attempts_refused: Vec<Attempt>,
    /// Inside the EEA by location, operated from outside it (SPEC §11):
    /// one row per side, operator country and AS. Absent from JSON when
    /// empty (no operator database, or nothing to report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operated_outside: Vec<super::operated::Operated>,
    /// The policy versions the records carry, in order of first use.
    pub policy_versions: Vec<PolicyVersion>,
}

/// One policy version over the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    /// The record's `policy_version`.
    pub version: String,
    /// Records carrying it.
    pub records: u64,
    /// The earliest record `time` carrying it.
    pub first_seen: String,
    /// The latest record `time` carrying it.
    pub last_seen: String,
}

/// The requests forwarded with `side` in `country`, outside the EEA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// `client` or `upstream`.
    #[serde(serialize_with = "side_str")]
    pub side: Side,
    /// ISO code (upper case), `unknown`, or the record's value verbatim if
    /// it is neither (escape it before display).
    pub country: String,
    /// Requests forwarded with this side in this country.
    pub requests: u64,
    /// Of which this side was allowed by an override of the EEA default
    /// (`allow_countries = ["EEA", "CH"]`, `unknown_country = "allow"`).
    pub allowed_by_override: u64,
    /// Of which a grant admitted this (client) side.
    pub allowed_by_grant: u64,
    /// Of which this side was flagged (monitor mode).
    pub flagged: u64,
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

/// The requests with `side` in `country`, outside the EEA, that exchanged
/// nothing with the storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// `client` or `upstream`.
    #[serde(serialize_with = "side_str")]
    pub side: Side,
    /// As in [`Transfer::country`].
    pub country: String,
    /// Blocked by the policy.
    pub blocked: u64,
    /// Refused before the policy judged them (CONNECT, a bad `Host`, no
    /// route, a refusal by the HTTP layer).
    pub refused: u64,
    /// Distinct `identity` values.
    pub identities: u64,
    /// The earliest record `time`.
    pub first_seen: String,
    /// The latest record `time`.
    pub last_seen: String,
}

fn side_str<S: Serializer>(side: &Side, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(side.as_str())
}

/// A row being aggregated: counts, bytes, identities, times.
struct Row {
    counts: [u64; 3],
    bytes: (u64, u64),
    identities: HashSet<String>,
    first: String,
    last: String,
}

impl Row {
    fn new(time: &str) -> Self {
        Self {
            counts: [0; 3],
            bytes: (0, 0),
            identities: HashSet::new(),
            first: time.to_owned(),
            last: time.to_owned(),
        }
    }

    fn add(&mut self, i: usize, record: &AuditRecord) {
        self.counts[i] += 1;
        self.bytes.0 = self.bytes.0.saturating_add(record.bytes_up);
        self.bytes.1 = self.bytes.1.saturating_add(record.bytes_down);
        widen_row(&mut self.first, &mut self.last, &record.time);
        if !self.identities.contains(&record.identity) {
            self.identities.insert(record.identity.clone());
        }
    }
}

type Rows = BTreeMap<(bool, String), Row>;

/// Aggregates `records` (in any order) into the cartography.
pub fn aggregate(records: impl Iterator<Item = AuditRecord>) -> Cartography {
    let area = eea();
    let mut transfers = Rows::new();
    let mut attempts = Rows::new();
    let mut versions: Vec<PolicyVersion> = Vec::new();
    let mut cartography = Cartography {
        records: 0,
        from: None,
        to: None,
        unrecorded_refusals: 0,
        internal: 0,
        transfers: Vec::new(),
        attempts_refused: Vec::new(),
        operated_outside: Vec::new(),
        policy_versions: Vec::new(),
    };
    let (operator_area, mut operated) = super::operated::rows();
    for record in records {
        if record.policy_change.is_some() {
            // A policy change record marks a reload: no traffic.
            continue;
        }
        cartography.records += 1;
        widen(&mut cartography.from, &mut cartography.to, &record.time);
        note_version(&mut versions, &record);
        if let Some(n) = record.unrecorded {
            cartography.unrecorded_refusals = cartography.unrecorded_refusals.saturating_add(n);
            continue;
        }
        operated.add(&operator_area, &record);
        let Some(fate) = record_fate(&record) else {
            continue;
        };
        for side in [Side::Client, Side::Upstream] {
            let Some(facts) = record_side(&record, side) else {
                continue;
            };
            let (rows, i) = match classify(&area, side, &facts, fate) {
                Flow::Internal => {
                    cartography.internal += 1;
                    continue;
                }
                Flow::Inside
                | Flow::Transfer(Basis::Operator, _)
                | Flow::Refused(Basis::Operator, _) => {
                    continue;
                }
                Flow::Transfer(Basis::Location, g) => (&mut transfers, g.index()),
                Flow::Refused(Basis::Location, r) => (&mut attempts, r.index()),
            };
            let label = row_label(&record, side, facts.location);
            rows.entry((side == Side::Upstream, label))
                .or_insert_with(|| Row::new(&record.time))
                .add(i, &record);
        }
    }
    cartography.transfers = transfers
        .into_iter()
        .map(|((upstream, country), r)| Transfer {
            side: side_of(upstream),
            country,
            requests: r.counts.iter().sum(),
            allowed_by_override: r.counts[0],
            allowed_by_grant: r.counts[1],
            flagged: r.counts[2],
            bytes_up: r.bytes.0,
            bytes_down: r.bytes.1,
            identities: r.identities.len() as u64,
            first_seen: r.first,
            last_seen: r.last,
        })
        .collect();
    cartography.transfers.sort_by(|a, b| {
        (a.side == Side::Upstream)
            .cmp(&(b.side == Side::Upstream))
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.country.cmp(&b.country))
    });
    cartography.attempts_refused = attempts
        .into_iter()
        .map(|((upstream, country), r)| Attempt {
            side: side_of(upstream),
            country,
            blocked: r.counts[0],
            refused: r.counts[1],
            identities: r.identities.len() as u64,
            first_seen: r.first,
            last_seen: r.last,
        })
        .collect();
    cartography.attempts_refused.sort_by(|a, b| {
        (a.side == Side::Upstream)
            .cmp(&(b.side == Side::Upstream))
            .then((b.blocked + b.refused).cmp(&(a.blocked + a.refused)))
            .then_with(|| a.country.cmp(&b.country))
    });
    cartography.operated_outside = operated.finish();
    cartography.policy_versions = versions;
    cartography
}

const fn side_of(upstream: bool) -> Side {
    if upstream {
        Side::Upstream
    } else {
        Side::Client
    }
}

/// The row label of `side`: its ISO code upper-cased (so `us` and `US` are
/// one row), else the record's value verbatim.
fn row_label(record: &AuditRecord, side: Side, location: Option<crate::geo::Country>) -> String {
    if let Some(c) = location {
        return c.as_str().to_owned();
    }
    match side {
        Side::Client => record.client_country.clone(),
        Side::Upstream => record.upstream_country.clone().unwrap_or_default(),
    }
}

fn note_version(versions: &mut Vec<PolicyVersion>, record: &AuditRecord) {
    match versions
        .iter_mut()
        .find(|v| v.version == record.policy_version)
    {
        Some(v) => {
            v.records += 1;
            widen_row(&mut v.first_seen, &mut v.last_seen, &record.time);
        }
        None => versions.push(PolicyVersion {
            version: record.policy_version.clone(),
            records: 1,
            first_seen: record.time.clone(),
            last_seen: record.time.clone(),
        }),
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

fn widen_row(first: &mut String, last: &mut String, time: &str) {
    if time < first.as_str() {
        time.clone_into(first);
    }
    if time > last.as_str() {
        time.clone_into(last);
    }
}

#[cfg(test)]
mod tests;
