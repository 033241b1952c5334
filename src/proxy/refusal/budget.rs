//! The bound on records of refusals by the HTTP layer: a fixed window.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A fixed window of `max` records, opened by the first refusal after the
/// previous window closed. A refusal beyond `max` is dropped (counted);
/// the first drop of a window asks for a summary at the window's end.
/// Not on the verdict path: a plain mutex, held for a few instructions.
pub struct Budget(Mutex<Window>);

struct Window {
    start: Option<Instant>,
    used: u64,
    dropped: u64,
    /// When the oldest refusal not yet summarised was dropped.
    since: Option<SystemTime>,
    /// A summary is already due.
    summary_due: bool,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write its record.
    Record,
    /// Count it only; `summary_at`: schedule the summary then.
    Drop {
        /// When the window ends, if no summary is due yet.
        summary_at: Option<Instant>,
    },
}

impl Budget {
    /// A budget with no window open.
    pub const fn new() -> Self {
        Self(Mutex::new(Window {
            start: None,
            used: 0,
            dropped: 0,
            since: None,
            summary_due: false,
        }))
    }

    /// Admits one refusal at `now`.
    pub fn admit(&self, max: u64, window: Duration, now: Instant) -> Admit {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let start = match w.start {
            Some(s) if now.saturating_duration_since(s) < window => s,
            _ => {
                w.start = Some(now);
                w.used = 0;
                now
            }
        };
        if w.used < max {
            w.used += 1;
            return Admit::Record;
        }
        w.dropped += 1;
        if w.since.is_none() {
            w.since = Some(SystemTime::now());
        }
        if w.summary_due {
            return Admit::Drop { summary_at: None };
        }
        w.summary_due = true;
        Admit::Drop {
            summary_at: Some(start + window),
        }
    }

    /// The refusals dropped since the last summary and when the first of
    /// them was; `None` if there were none.
    pub fn take_dropped(&self) -> Option<(u64, SystemTime)> {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        w.summary_due = false;
        let n = std::mem::take(&mut w.dropped);
        let since = w.since.take()?;
        (n > 0).then_some((n, since))
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_records_max_per_window_and_asks_one_summary() {
        let b = Budget::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        assert_eq!(b.admit(2, w, t0), Admit::Record);
        assert_eq!(b.admit(2, w, t0), Admit::Record);
        assert_eq!(
            b.admit(2, w, t0 + Duration::from_secs(1)),
            Admit::Drop {
                summary_at: Some(t0 + w)
            }
        );
        assert_eq!(b.admit(2, w, t0), Admit::Drop { summary_at: None });
        assert_eq!(b.take_dropped().map(|(n, _)| n), Some(2));
        assert_eq!(b.take_dropped(), None);
        // A new window opens with the first refusal after the last one.
        let t1 = t0 + w;
        assert_eq!(b.admit(2, w, t1), Admit::Record);
        assert_eq!(b.admit(2, w, t1), Admit::Record);
        assert_eq!(
            b.admit(2, w, t1),
            Admit::Drop {
                summary_at: Some(t1 + w)
            }
        );
    }

    #[test]
    fn a_zero_budget_records_none_one_by_one() {
        let b = Budget::new();
        let t0 = Instant::now();
        assert!(matches!(
            b.admit(0, Duration::from_secs(1), t0),
            Admit::Drop { .. }
        ));
        assert_eq!(b.take_dropped().map(|(n, _)| n), Some(1));
    }
}
