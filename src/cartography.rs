//! The live cartography of flows outside the EEA (admin `/transfers`, SPEC
//! §7): per side and country outside the area, how many requests were
//! blocked, flagged, or allowed by an override (e.g. `allow_countries =
//! ["EEA", "CH"]`), or refused before the policy judged them (client side
//! only), their bytes, and when they were first and last seen.
//!
//! A fixed table of atomic cells indexed by side and country slot: updating
//! it takes no lock and allocates nothing, and inside-EEA traffic never
//! touches it. Process-wide: it survives reloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::geo::{COUNTRY_SLOTS, Country, CountrySet, eea, from_slot, label, slot};
use crate::policy::{Decision, Side};

#[derive(Default)]
struct Cell {
    blocked: AtomicU64,
    flagged: AtomicU64,
    allowed: AtomicU64,
    refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Unix milliseconds; 0 = never.
    first_seen: AtomicU64,
    last_seen: AtomicU64,
}

impl Cell {
    fn seen(&self) {
        let now = now_ms();
        let _ = self
            .first_seen
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }
}

/// The table.
pub struct LiveCartography {
    eea: CountrySet,
    cells: Box<[Cell]>,
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

/// One row of `/transfers`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// `client` or `upstream`.
    pub side: &'static str,
    /// ISO code or `unknown`.
    pub country: &'static str,
    /// Requests refused.
    pub blocked: u64,
    /// Requests passed and flagged (monitor mode).
    pub flagged: u64,
    /// Requests allowed by an override of the EEA default.
    pub allowed_by_override: u64,
    /// Requests refused before the policy judged them (CONNECT, bad
    /// `Host`, no route, a refusal by the HTTP layer, …): never allowed.
    pub refused: u64,
    /// Body bytes from client to storage.
    pub bytes_up: u64,
    /// Body bytes from storage to client.
    pub bytes_down: u64,
    /// RFC 3339 time of the first request.
    pub first_seen: String,
    /// RFC 3339 time of the last request.
    pub last_seen: String,
}

impl LiveCartography {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            eea: eea(),
            cells: (0..2 * COUNTRY_SLOTS).map(|_| Cell::default()).collect(),
        }
    }

    /// True when `country` is outside the EEA (unknown counts as outside).
    #[inline]
    pub fn is_outside(&self, country: Option<Country>) -> bool {
        country.is_none_or(|c| !self.eea.contains(c))
    }

    /// Records one request for `side` if its country is outside the EEA.
    pub fn record(
        &self,
        side: Side,
        country: Option<Country>,
        decision: Decision,
        bytes_up: u64,
        bytes_down: u64,
    ) {
        if !self.is_outside(country) {
            return;
        }
        let i = usize::from(side == Side::Upstream) * COUNTRY_SLOTS + slot(country);
        let Some(cell) = self.cells.get(i) else {
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
        cell.seen();
    }

    /// Records one request refused before the policy judged it, for `side`
    /// if its country is outside the EEA.
    pub fn record_refused(&self, side: Side, country: Option<Country>) {
        if !self.is_outside(country) {
            return;
        }
        let i = usize::from(side == Side::Upstream) * COUNTRY_SLOTS + slot(country);
        if let Some(cell) = self.cells.get(i) {
            cell.refused.fetch_add(1, Ordering::Relaxed);
            cell.seen();
        }
    }

    /// Every row with at least one request, client side first, then by
    /// request count descending.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (i, cell) in self.cells.iter().enumerate() {
            let first = cell.first_seen.load(Ordering::Relaxed);
            if first == 0 {
                continue;
            }
            let side = if i < COUNTRY_SLOTS {
                Side::Client
            } else {
                Side::Upstream
            };
            rows.push(Row {
                side: side.as_str(),
                country: label(from_slot(i % COUNTRY_SLOTS)),
                blocked: cell.blocked.load(Ordering::Relaxed),
                flagged: cell.flagged.load(Ordering::Relaxed),
                allowed_by_override: cell.allowed.load(Ordering::Relaxed),
                refused: cell.refused.load(Ordering::Relaxed),
                bytes_up: cell.bytes_up.load(Ordering::Relaxed),
                bytes_down: cell.bytes_down.load(Ordering::Relaxed),
                first_seen: crate::audit::format_time(
                    UNIX_EPOCH + std::time::Duration::from_millis(first),
                ),
                last_seen: crate::audit::format_time(
                    UNIX_EPOCH
                        + std::time::Duration::from_millis(cell.last_seen.load(Ordering::Relaxed)),
                ),
            });
        }
        rows.sort_by(|a, b| {
            let total = |r: &Row| r.blocked + r.flagged + r.allowed_by_override + r.refused;
            a.side
                .cmp(b.side)
                .then(total(b).cmp(&total(a)))
                .then(a.country.cmp(b.country))
        });
        rows
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outside_countries_are_recorded() {
        let c = LiveCartography::new();
        c.record(
            Side::Client,
            Country::from_code("FR"),
            Decision::Allowed,
            10,
            20,
        );
        c.record(
            Side::Client,
            Country::from_code("US"),
            Decision::Blocked,
            0,
            0,
        );
        c.record(
            Side::Client,
            Country::from_code("US"),
            Decision::Blocked,
            0,
            0,
        );
        c.record(
            Side::Client,
            Country::from_code("CH"),
            Decision::Allowed,
            5,
            7,
        );
        c.record(Side::Upstream, None, Decision::Flagged, 1, 2);
        let rows = c.rows();
        let summary: Vec<(&str, &str, u64, u64, u64, u64, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r.side,
                    r.country,
                    r.blocked,
                    r.flagged,
                    r.allowed_by_override,
                    r.bytes_up,
                    r.bytes_down,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("client", "US", 2, 0, 0, 0, 0),
                ("client", "CH", 0, 0, 1, 5, 7),
                ("upstream", "unknown", 0, 1, 0, 1, 2),
            ]
        );
        assert!(rows[0].first_seen <= rows[0].last_seen);
        assert!(rows[0].first_seen.ends_with('Z'));
    }

    #[test]
    fn refused_requests_have_their_own_count_and_are_never_allowed() {
        let c = LiveCartography::new();
        c.record_refused(Side::Client, Country::from_code("US"));
        c.record_refused(Side::Client, Country::from_code("FR"));
        c.record_refused(Side::Client, None);
        c.record(
            Side::Client,
            Country::from_code("US"),
            Decision::Blocked,
            0,
            0,
        );
        let summary: Vec<_> = c
            .rows()
            .iter()
            .map(|r| (r.country, r.blocked, r.allowed_by_override, r.refused))
            .collect();
        assert_eq!(summary, [("US", 1, 0, 1), ("unknown", 0, 0, 1)]);
    }
}
