//! The live section "inside the area by location, operated from outside
//! it" of admin `/transfers` (SPEC §11): per side, operator country and AS
//! number, the requests whose side was located in the EEA and operated by a
//! network registered outside it.
//!
//! AS numbers are not a bounded set, so the rows live in a fixed table of
//! [`SLOTS`] atomic cells claimed by compare-and-swap on a packed key (open
//! addressing, linear probing): updating it takes no lock and allocates
//! nothing; when every cell is taken by another key, the request is counted
//! in `dropped` instead of a row. Process-wide: it survives reloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::geo::{Country, CountrySet, Operator, eea, from_slot, label};
use crate::policy::{Decision, Side};
use crate::transfer::{Basis, Fate, Flow, Ground, SideFacts, classify};

/// Rows kept: distinct (side, operator country, AS) triples.
pub const SLOTS: usize = 1024;

#[derive(Default)]
struct Cell {
    key: AtomicU64,
    blocked: AtomicU64,
    flagged: AtomicU64,
    allowed: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    first_seen: AtomicU64,
    last_seen: AtomicU64,
}

/// The live table.
pub struct LiveOperated {
    eea: CountrySet,
    cells: Box<[Cell]>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for LiveOperated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOperated").finish_non_exhaustive()
    }
}

impl Default for LiveOperated {
    fn default() -> Self {
        Self::new()
    }
}

/// One row of `/transfers` `operated_outside`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// `client` or `upstream`.
    pub side: &'static str,
    /// The operator's ISO country code.
    pub operator: &'static str,
    /// The AS number, when the operator database has one.
    pub asn: Option<u32>,
    /// Requests blocked on this side.
    pub blocked: u64,
    /// Requests flagged on this side.
    pub flagged: u64,
    /// Requests served without a flag on this side.
    pub allowed: u64,
    /// Request body bytes forwarded upstream.
    pub bytes_up: u64,
    /// Response body bytes sent to the client.
    pub bytes_down: u64,
    /// First request, RFC 3339 UTC.
    pub first_seen: String,
    /// Last request, RFC 3339 UTC.
    pub last_seen: String,
}

const USED: u64 = 1 << 63;
const UPSTREAM: u64 = 1 << 62;
const HAS_ASN: u64 = 1 << 61;

fn key(side: Side, operator: Country, asn: Option<u32>) -> u64 {
    let mut k = USED | ((operator.index() as u64) << 32) | u64::from(asn.unwrap_or(0));
    if side == Side::Upstream {
        k |= UPSTREAM;
    }
    if asn.is_some() {
        k |= HAS_ASN;
    }
    k
}

impl LiveOperated {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            eea: eea(),
            cells: (0..SLOTS).map(|_| Cell::default()).collect(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts one request's `side` if [`classify`] says it is located
    /// inside the EEA and operated from outside it (by `operator`, whose AS
    /// number keys the row); anything else is not touched.
    pub fn record(
        &self,
        side: Side,
        facts: &SideFacts,
        operator: Option<Operator>,
        fate: Fate,
        bytes_up: u64,
        bytes_down: u64,
    ) {
        let decision = match classify(&self.eea, side, facts, fate) {
            Flow::Transfer(Basis::Operator, Ground::Flagged) => Decision::Flagged,
            Flow::Transfer(Basis::Operator, _) => Decision::Allowed,
            Flow::Refused(Basis::Operator, _) => Decision::Blocked,
            _ => return,
        };
        let (Some(op_country), Some(op)) = (facts.operator, operator) else {
            return;
        };
        let k = key(side, op_country, op.asn);
        let Some(cell) = self.claim(k) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let counter = match decision {
            Decision::Blocked => &cell.blocked,
            Decision::Flagged => &cell.flagged,
            Decision::Allowed => &cell.allowed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        cell.bytes_up.fetch_add(bytes_up, Ordering::Relaxed);
        cell.bytes_down.fetch_add(bytes_down, Ordering::Relaxed);
        let now = now_ms();
        let _ = cell
            .first_seen
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        cell.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    /// The cell of `k`, claiming a free one if needed.
    fn claim(&self, k: u64) -> Option<&Cell> {
        let start = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SLOTS;
        for i in 0..SLOTS {
            let cell = &self.cells[(start + i) % SLOTS];
            match cell
                .key
                .compare_exchange(0, k, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(cell),
                Err(existing) if existing == k => return Some(cell),
                Err(_) => {}
            }
        }
        None
    }

    /// Requests not kept because the table was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The rows: client side first, then most requests, operator, AS.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for cell in &self.cells {
            let k = cell.key.load(Ordering::Acquire);
            let first = cell.first_seen.load(Ordering::Relaxed);
            if k == 0 || first == 0 {
                continue;
            }
            let time = |ms: u64| crate::audit::format_time(UNIX_EPOCH + Duration::from_millis(ms));
            rows.push(Row {
                side: if k & UPSTREAM == 0 {
                    Side::Client.as_str()
                } else {
                    Side::Upstream.as_str()
                },
                operator: label(from_slot(((k >> 32) & 0x3ff) as usize)),
                asn: (k & HAS_ASN != 0).then_some((k & 0xffff_ffff) as u32),
                blocked: cell.blocked.load(Ordering::Relaxed),
                flagged: cell.flagged.load(Ordering::Relaxed),
                allowed: cell.allowed.load(Ordering::Relaxed),
                bytes_up: cell.bytes_up.load(Ordering::Relaxed),
                bytes_down: cell.bytes_down.load(Ordering::Relaxed),
                first_seen: time(first),
                last_seen: time(cell.last_seen.load(Ordering::Relaxed)),
            });
        }
        rows.sort_by(|a, b| {
            let total = |r: &Row| r.blocked + r.flagged + r.allowed;
            a.side
                .cmp(b.side)
                .then(total(b).cmp(&total(a)))
                .then(a.operator.cmp(b.operator))
                .then(a.asn.cmp(&b.asn))
        });
        rows
    }
}

/// Unix milliseconds now, at least 1 (0 means "never" in the live tables).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records like the old signature: a side passed by country, in a
    /// request whose fate follows `decision`.
    fn rec(
        t: &LiveOperated,
        side: Side,
        located: Option<Country>,
        operator: Option<Operator>,
        decision: Decision,
        up: u64,
        down: u64,
    ) {
        let facts = SideFacts {
            location: located,
            operator: operator.and_then(|o| o.country),
            rule: Some(crate::policy::Rule::AllowCountries),
            decision,
        };
        let fate = match decision {
            Decision::Blocked => Fate::Blocked,
            _ => Fate::Forwarded { grant: false },
        };
        t.record(side, &facts, operator, fate, up, down);
    }

    fn op(c: &str, asn: Option<u32>) -> Option<Operator> {
        Some(Operator {
            country: Country::from_code(c),
            asn,
        })
    }

    #[test]
    fn only_inside_by_location_outside_by_operator_is_kept() {
        let t = LiveOperated::new();
        let fr = Country::from_code("FR");
        let us = Country::from_code("US");
        rec(
            &t,
            Side::Upstream,
            fr,
            op("US", Some(16509)),
            Decision::Flagged,
            1,
            2,
        );
        rec(
            &t,
            Side::Upstream,
            fr,
            op("US", Some(16509)),
            Decision::Flagged,
            1,
            2,
        );
        rec(
            &t,
            Side::Upstream,
            fr,
            op("US", None),
            Decision::Allowed,
            0,
            0,
        );
        rec(
            &t,
            Side::Client,
            fr,
            op("US", Some(4_294_967_295)),
            Decision::Blocked,
            0,
            0,
        );
        // Not kept: located outside, operated inside, unknown operator, no database.
        rec(
            &t,
            Side::Client,
            us,
            op("US", Some(1)),
            Decision::Blocked,
            0,
            0,
        );
        rec(
            &t,
            Side::Client,
            fr,
            op("DE", Some(3320)),
            Decision::Allowed,
            0,
            0,
        );
        rec(
            &t,
            Side::Client,
            fr,
            Some(Operator::default()),
            Decision::Allowed,
            0,
            0,
        );
        rec(&t, Side::Client, fr, None, Decision::Allowed, 0, 0);
        let rows: Vec<_> = t
            .rows()
            .into_iter()
            .map(|r| {
                (
                    r.side,
                    r.operator,
                    r.asn,
                    r.blocked,
                    r.flagged,
                    r.allowed,
                    r.bytes_down,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("client", "US", Some(4_294_967_295), 1, 0, 0, 0),
                ("upstream", "US", Some(16509), 0, 2, 0, 4),
                ("upstream", "US", None, 0, 0, 1, 0),
            ]
        );
    }

    #[test]
    fn a_full_table_counts_what_it_cannot_keep() {
        let t = LiveOperated::new();
        let fr = Country::from_code("FR");
        for asn in 0..(SLOTS as u32 + 5) {
            rec(
                &t,
                Side::Upstream,
                fr,
                op("US", Some(asn)),
                Decision::Allowed,
                0,
                0,
            );
        }
        assert_eq!(t.rows().len(), SLOTS);
        assert_eq!(t.dropped(), 5);
    }
}
