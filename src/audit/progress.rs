//! How far the readers of a trail have got, for a progress display: every
//! walk over a chain ([`super::records`], so `audit verify`, `transfers`
//! and the other reports) tells the one [`Watcher`] the process installed
//! with [`watch`] (the command line's progress bar, on a terminal) how many
//! bytes it read and records it verified, and when it ended. With no
//! watcher, nobody is told; reading and verifying are the same either way.

use std::sync::OnceLock;

/// Told how far reading has got. Called from the reading thread, every few
/// thousand records: keep it cheap.
pub trait Watcher: Send + Sync + std::fmt::Debug {
    /// `bytes` more of audit files were read and `records` more verified.
    fn advance(&self, bytes: u64, records: u64);
    /// A walk over one chain ended: after its last record, or at its first
    /// failure (`failed`), which its reader is about to print.
    fn ended(&self, failed: bool);
}

static WATCHER: OnceLock<Box<dyn Watcher>> = OnceLock::new();

/// Installs `watcher` for the rest of the process; `false` (and `watcher`
/// dropped) if one was installed already.
pub fn watch(watcher: Box<dyn Watcher>) -> bool {
    WATCHER.set(watcher).is_ok()
}

/// The installed watcher, if any.
pub(super) fn watcher() -> Option<&'static dyn Watcher> {
    WATCHER.get().map(|w| &**w)
}

/// Records verified between two reports to the watcher.
pub(super) const EVERY: u64 = 4096;
