//! The live cartography of flows outside the EEA (admin `/transfers`, SPEC
//! §7): per side and country outside the area, the transfers (requests
//! forwarded, allowed by an override or a grant, or flagged) with their
//! bytes, and apart from them the attempts refused (blocked, or refused
//! before the policy judged them), each with when it was first and last
//! seen. What counts as which is decided by [`crate::transfer::classify`],
//! as for the `transfers` report.
//!
//! A fixed table of atomic cells indexed by side and country slot: updating
//! it takes no lock and allocates nothing, and inside-EEA traffic never
//! touches it. Process-wide: it survives reloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::audit::operated::Operated;
use crate::audit::transfers::{Attempt, Cartography, Transfer};
use crate::geo::{COUNTRY_SLOTS, Country, CountrySet, eea, from_slot, label, slot};
use crate::live_operated::now_ms;
use crate::policy::{Decision, Rule, Side};
use crate::transfer::{Basis, Fate, Flow, SideFacts, classify};

#[derive(Default)]
struct Cell {
    /// Transfers: by override, by grant, flagged. Attempts: blocked,
    /// refused, unused.
    counts: [AtomicU64; 3],
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Unix milliseconds; 0 = never.
    first_seen: AtomicU64,
    last_seen: AtomicU64,
}

impl Cell {
    fn add(&self, i: usize, bytes_up: u64, bytes_down: u64) {
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_up.fetch_add(bytes_up, Ordering::Relaxed);
        self.bytes_down.fetch_add(bytes_down, Ordering::Relaxed);
        let now = now_ms();
        let _ = self
            .first_seen
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    fn count(&self, i: usize) -> u64 {
        self.counts[i].load(Ordering::Relaxed)
    }
}

/// The table.
pub struct LiveCartography {
    eea: CountrySet,
    /// Per side and country: the transfers.
    transfers: Box<[Cell]>,
    /// Per side and country: the attempts refused.
    attempts: Box<[Cell]>,
    /// Sides admitted by a network rule.
    internal: AtomicU64,
}

impl std::fmt::Debug for LiveCartography {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCartography").finish_non_exhaustive()
    }
}

impl Default for LiveCartography {
    fn default() -> Self {
        Self::new()
    }
}

/// One row of `/transfers` `transfers`: data exchanged with a side outside
/// the EEA. Field names are those of the `transfers` report.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// `client` or `upstream`.
    pub side: &'static str,
    /// ISO code or `unknown`.
    pub country: &'static str,
    /// Requests forwarded with this side there.
    pub requests: u64,
    /// Of which allowed by an override of the EEA default.
    pub allowed_by_override: u64,
    /// Of which allowed by a grant.
    pub allowed_by_grant: u64,
    /// Of which passed with a flag (monitor mode).
    pub flagged: u64,
    /// Body bytes from client to storage.
    pub bytes_up: u64,
    /// Body bytes from storage to client.
    pub bytes_down: u64,
    /// RFC 3339 time of the first request.
    pub first_seen: String,
    /// RFC 3339 time of the last request.
    pub last_seen: String,
}

/// One row of `/transfers` `attempts_refused`: requests with a side outside
/// the EEA that exchanged nothing with the storage.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AttemptRow {
    /// `client` or `upstream`.
    pub side: &'static str,
    /// ISO code or `unknown`.
    pub country: &'static str,
    /// Blocked by the policy.
    pub blocked: u64,
    /// Refused before the policy judged them (CONNECT, bad `Host`, no
    /// route, a refusal by the HTTP layer, …).
    pub refused: u64,
    /// RFC 3339 time of the first attempt.
    pub first_seen: String,
    /// RFC 3339 time of the last attempt.
    pub last_seen: String,
}

impl LiveCartography {
    /// An empty table.
    pub fn new() -> Self {
        let table = || (0..2 * COUNTRY_SLOTS).map(|_| Cell::default()).collect();
        Self {
            eea: eea(),
            transfers: table(),
            attempts: table(),
            internal: AtomicU64::new(0),
        }
    }

    /// Counts one side of a request by [`classify`]: located outside the
    /// EEA, a transfer or an attempt refused; admitted by a network rule,
    /// internal; anything else (operated from outside, see
    /// [`crate::live_operated`]) is not touched.
    pub fn record(
        &self,
        side: Side,
        facts: &SideFacts,
        fate: Fate,
        bytes_up: u64,
        bytes_down: u64,
    ) {
        let i = usize::from(side == Side::Upstream) * COUNTRY_SLOTS + slot(facts.location);
        let (table, counter) = match classify(&self.eea, side, facts, fate) {
            Flow::Internal => {
                self.internal.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Flow::Inside
            | Flow::Transfer(Basis::Operator, _)
            | Flow::Refused(Basis::Operator, _) => {
                return;
            }
            Flow::Transfer(Basis::Location, g) => (&self.transfers, g.index()),
            Flow::Refused(Basis::Location, r) => (&self.attempts, r.index()),
        };
        if let Some(cell) = table.get(i) {
            cell.add(counter, bytes_up, bytes_down);
        }
    }

    /// Counts one request refused before the policy judged it, for `side`
    /// in `country`, with the client's `rule` of
    /// [`crate::transfer::refused_rule`].
    pub fn record_refused(&self, side: Side, country: Option<Country>, rule: Option<Rule>) {
        let facts = SideFacts {
            location: country,
            operator: None,
            rule,
            decision: Decision::Blocked,
        };
        self.record(side, &facts, Fate::Refused, 0, 0);
    }

    /// Sides admitted by a network rule since start.
    pub fn internal(&self) -> u64 {
        self.internal.load(Ordering::Relaxed)
    }

    /// Every transfer row, client side first, then by request count
    /// descending, then country.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = cells(&self.transfers)
            .map(|(side, country, cell, first, last)| {
                let [o, g, f] = [0, 1, 2].map(|i| cell.count(i));
                Row {
                    side,
                    country,
                    requests: o + g + f,
                    allowed_by_override: o,
                    allowed_by_grant: g,
                    flagged: f,
                    bytes_up: cell.bytes_up.load(Ordering::Relaxed),
                    bytes_down: cell.bytes_down.load(Ordering::Relaxed),
                    first_seen: first,
                    last_seen: last,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            a.side
                .cmp(b.side)
                .then(b.requests.cmp(&a.requests))
                .then(a.country.cmp(b.country))
        });
        rows
    }

    /// Every attempt row, client side first, then by count descending,
    /// then country.
    pub fn attempts(&self) -> Vec<AttemptRow> {
        let mut rows: Vec<AttemptRow> = cells(&self.attempts)
            .map(|(side, country, cell, first, last)| AttemptRow {
                side,
                country,
                blocked: cell.count(0),
                refused: cell.count(1),
                first_seen: first,
                last_seen: last,
            })
            .collect();
        rows.sort_by(|a, b| {
            a.side
                .cmp(b.side)
                .then((b.blocked + b.refused).cmp(&(a.blocked + a.refused)))
                .then(a.country.cmp(b.country))
        });
        rows
    }
}

impl LiveCartography {
    /// The live table as a [`Cartography`], the shape the report and the
    /// page use: no records (identities and policy versions are the
    /// trail's), the period from the first to the last count.
    pub fn to_cartography(&self, operated: &crate::live_operated::LiveOperated) -> Cartography {
        let transfers: Vec<Transfer> = self
            .rows()
            .into_iter()
            .map(|r| Transfer {
                side: side_of(r.side),
                country: r.country.to_owned(),
                requests: r.requests,
                allowed_by_override: r.allowed_by_override,
                allowed_by_grant: r.allowed_by_grant,
                flagged: r.flagged,
                bytes_up: r.bytes_up,
                bytes_down: r.bytes_down,
                identities: 0,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            })
            .collect();
        let attempts: Vec<Attempt> = self
            .attempts()
            .into_iter()
            .map(|r| Attempt {
                side: side_of(r.side),
                country: r.country.to_owned(),
                blocked: r.blocked,
                refused: r.refused,
                identities: 0,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            })
            .collect();
        let operated_outside: Vec<Operated> = operated
            .rows()
            .into_iter()
            .map(|r| Operated {
                side: r.side,
                operator: r.operator.to_owned(),
                asn: r.asn,
                located: Vec::new(),
                requests: r.allowed + r.flagged + r.blocked,
                blocked: r.blocked,
                flagged: r.flagged,
                allowed: r.allowed,
                bytes_up: r.bytes_up,
                bytes_down: r.bytes_down,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            })
            .collect();
        let times = transfers
            .iter()
            .map(|t| (&t.first_seen, &t.last_seen))
            .chain(attempts.iter().map(|a| (&a.first_seen, &a.last_seen)));
        let from = times.clone().map(|(f, _)| f).min().cloned();
        let to = times.map(|(_, l)| l).max().cloned();
        Cartography {
            records: 0,
            from,
            to,
            unrecorded_refusals: 0,
            internal: self.internal(),
            transfers,
            attempts_refused: attempts,
            operated_outside,
            policy_versions: Vec::new(),
        }
    }
}

fn side_of(s: &str) -> Side {
    if s == Side::Upstream.as_str() {
        Side::Upstream
    } else {
        Side::Client
    }
}

/// The used cells of `table`: side, country, cell, first and last seen.
fn cells(
    table: &[Cell],
) -> impl Iterator<Item = (&'static str, &'static str, &Cell, String, String)> {
    let time = |ms: u64| crate::audit::format_time(UNIX_EPOCH + Duration::from_millis(ms));
    table.iter().enumerate().filter_map(move |(i, cell)| {
        let first = cell.first_seen.load(Ordering::Relaxed);
        if first == 0 {
            return None;
        }
        let side = if i < COUNTRY_SLOTS {
            Side::Client
        } else {
            Side::Upstream
        };
        Some((
            side.as_str(),
            label(from_slot(i % COUNTRY_SLOTS)),
            cell,
            time(first),
            time(cell.last_seen.load(Ordering::Relaxed)),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rule;

    fn facts(c: &str, rule: Rule, decision: Decision) -> SideFacts {
        SideFacts {
            location: Country::from_code(c),
            operator: None,
            rule: Some(rule),
            decision,
        }
    }

    const FWD: Fate = Fate::Forwarded { grant: false };

    #[test]
    fn transfers_internal_and_attempts_are_apart() {
        let c = LiveCartography::new();
        let allowed = Decision::Allowed;
        c.record(
            Side::Client,
            &facts("FR", Rule::AllowCountries, allowed),
            FWD,
            10,
            20,
        );
        c.record(
            Side::Client,
            &facts("US", Rule::NotInAllowCountries, Decision::Blocked),
            Fate::Blocked,
            0,
            0,
        );
        c.record(
            Side::Client,
            &facts("US", Rule::NotInAllowCountries, Decision::Blocked),
            Fate::Blocked,
            0,
            0,
        );
        c.record(
            Side::Client,
            &facts("CH", Rule::AllowCountries, allowed),
            FWD,
            5,
            7,
        );
        c.record(
            Side::Client,
            &facts("CH", Rule::AllowCountries, allowed),
            Fate::Forwarded { grant: true },
            1,
            1,
        );
        c.record(
            Side::Upstream,
            &facts("??", Rule::UnknownCountry, Decision::Flagged),
            FWD,
            1,
            2,
        );
        // The host's own network, whatever its country: never a transfer.
        c.record(
            Side::Upstream,
            &facts("??", Rule::AllowNetworks, allowed),
            FWD,
            1,
            2,
        );
        c.record(
            Side::Client,
            &facts("US", Rule::AllowNetworks, allowed),
            FWD,
            1,
            2,
        );
        let rows: Vec<_> = c
            .rows()
            .iter()
            .map(|r| {
                (
                    r.side,
                    r.country,
                    r.requests,
                    r.allowed_by_override,
                    r.allowed_by_grant,
                    r.flagged,
                    r.bytes_up,
                    r.bytes_down,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("client", "CH", 2, 1, 1, 0, 6, 8),
                ("upstream", "unknown", 1, 0, 0, 1, 1, 2),
            ]
        );
        let attempts: Vec<_> = c
            .attempts()
            .iter()
            .map(|r| (r.side, r.country, r.blocked, r.refused))
            .collect();
        assert_eq!(attempts, [("client", "US", 2, 0)]);
        assert_eq!(c.internal(), 2);
        let first = &c.rows()[0];
        assert!(first.first_seen <= first.last_seen);
        assert!(first.first_seen.ends_with('Z'));
    }

    #[test]
    fn refused_requests_are_attempts_never_transfers() {
        let c = LiveCartography::new();
        c.record_refused(Side::Client, Country::from_code("US"), None);
        c.record_refused(Side::Client, Country::from_code("FR"), None);
        c.record_refused(Side::Client, None, None);
        // The host's own client, refused: internal, not an attempt.
        c.record_refused(Side::Client, None, Some(Rule::AllowNetworks));
        c.record(
            Side::Client,
            &facts("US", Rule::NotInAllowCountries, Decision::Blocked),
            Fate::Blocked,
            0,
            0,
        );
        assert_eq!(c.rows(), []);
        let summary: Vec<_> = c
            .attempts()
            .iter()
            .map(|r| (r.country, r.blocked, r.refused))
            .collect();
        assert_eq!(summary, [("US", 1, 1), ("unknown", 0, 1)]);
        assert_eq!(c.internal(), 1);
    }
}
