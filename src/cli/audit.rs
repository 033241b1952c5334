//! `residency-proxy audit verify [--from HASH] [--expect-last HASH] PATH...`:
//! checks the hash chain across the files, in the order given (oldest
//! first), from genesis (or `--from`) to its last record.
//!
//! Success prints one line to stdout and exits 0, with the full hashes
//! where the verified chain starts and ends:
//!
//! ```text
//! ok: 12 records in 2 files, from genesis to 5e1c0a9d27b4f3e8…(64 hex)
//! ok: 7 records in 1 file, from bc2cf4fe…(64 hex) to 8d36e523…(64 hex)
//! ```
//!
//! Keep the last hash elsewhere: `--expect-last` compares it later (records
//! removed from the end), and `--from` starts the verification of the next
//! segment from it. A failure prints one line to stderr and exits 1: the
//! first bad record as `PATH:LINE: what (request_id ID)` (a first record
//! that does not start at genesis or `--from` included), `no audit record
//! in PATH…` for a trail without records, or `PATH:LINE: the trail ends
//! with hash …` for a last hash other than `--expect-last`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{self, Expect, Failure, GENESIS, Summary};

/// Runs `audit verify`.
///
/// # Errors
/// A file that cannot be read (the error names it).
pub fn verify(paths: &[PathBuf], expect: &Expect) -> anyhow::Result<ExitCode> {
    match audit::verify(paths, expect) {
        Ok(summary) => {
            println!("{}", ok_line(&summary));
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => report(failure),
    }
}

/// Prints a failed verification as its one stderr line and exits 1; an
/// unreadable file becomes an error for `main` to print. Shared with
/// `transfers`.
pub(super) fn report(failure: Failure) -> anyhow::Result<ExitCode> {
    match failure {
        Failure::Record { .. } | Failure::Empty { .. } | Failure::LastMismatch { .. } => {
            eprintln!("{failure}");
            Ok(ExitCode::FAILURE)
        }
        Failure::Read { .. } => Err(failure.into()),
    }
}

fn ok_line(s: &Summary) -> String {
    let from = match s.first_prev.as_deref() {
        Some(GENESIS) | None => "genesis",
        Some(hash) => hash,
    };
    format!(
        "ok: {} {} in {} {}, from {from} to {}",
        s.records,
        if s.records == 1 { "record" } else { "records" },
        s.files,
        if s.files == 1 { "file" } else { "files" },
        s.last_hash.as_deref().unwrap_or_default(),
    )
}
