//! Progress of long reads of the audit trail (`audit verify`, `transfers`,
//! `access-review`): a bar on stderr with the bytes read of the total, the
//! records verified, the rate and the time left. Shown only when stderr is
//! a terminal (and neither `CI` is set nor `TERM=dumb`), so pipes, files,
//! log collectors and CI get nothing; cleared before the command prints
//! its result or a failure. The readers report to it through [`crate::audit::progress`].

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::audit::progress::{self, Watcher};

/// The bar of this command, if it shows one; cleared when dropped.
#[must_use = "the bar is cleared when this drops"]
pub(super) struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar over the audit files `paths` names (the files, or a
    /// directory's trail files; an `s3://` source has no known size: a
    /// spinner), if stderr is a terminal; otherwise nothing at all.
    pub fn show(paths: &[PathBuf]) -> Self {
        if !wanted() {
            return Self(None);
        }
        let total = total_bytes(paths);
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "{spinner} reading the audit trail {bytes}/{total_bytes} ({percent}%), {msg}, {binary_bytes_per_sec}, {eta} left"
        } else {
            "{spinner} reading the audit trail {bytes}, {msg}, {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message("0 records");
        if !progress::watch(Box::new(Bar {
            bar: bar.clone(),
            records: AtomicU64::new(0),
        })) {
            // A second bar in one process: the first one reports.
            return Self(None);
        }
        Self(Some(bar))
    }

    /// Runs `print` (a result line) with the bar out of its way.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Whether a bar may be drawn: a person is watching stderr.
fn wanted() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The size of the audit files `paths` names, or `None` if unknown (an
/// `s3://` source; a file that cannot be read is left to the reader to
/// report).
fn total_bytes(paths: &[PathBuf]) -> Option<u64> {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    match paths {
        [one] if one.to_str().is_some_and(|s| s.starts_with("s3://")) => None,
        [dir] if dir.is_dir() => Some(
            crate::audit::rotate::trail_files(dir)
                .unwrap_or_default()
                .iter()
                .flat_map(|(_, files)| files)
                .map(|f| size(f))
                .sum(),
        ),
        files => Some(files.iter().map(|f| size(f)).sum()),
    }
}

/// What the readers report to.
#[derive(Debug)]
struct Bar {
    bar: ProgressBar,
    records: AtomicU64,
}

impl Watcher for Bar {
    fn advance(&self, bytes: u64, records: u64) {
        let n = self.records.fetch_add(records, Ordering::Relaxed) + records;
        self.bar.set_message(format!("{n} records"));
        self.bar.inc(bytes);
    }

    fn ended(&self, failed: bool) {
        // A failure is printed next; the last chain's end is the result.
        let all_read = self
            .bar
            .length()
            .is_some_and(|len| self.bar.position() >= len);
        if failed || all_read {
            self.bar.finish_and_clear();
        }
    }
}
