//! `residency-proxy audit verify PATH...`: checks the hash chain across the
//! files, in the order given (oldest first).
//!
//! Success prints one line to stdout and exits 0:
//! `ok: 12 records in 2 files, chain 0000000000000000… → 5e1c0a9d27b4f3e8…`
//! (where the verified chain starts, and its last hash: keep it elsewhere to
//! detect records later removed from the end). The first bad record prints
//! one line to stderr, `PATH:LINE: what (request_id ID)`, and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{self, Failure, Summary};

/// Runs `audit verify`.
///
/// # Errors
/// A file that cannot be read (the error names it).
pub fn verify(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    match audit::verify(paths) {
        Ok(summary) => {
            println!("{}", ok_line(&summary));
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => report(failure),
    }
}

/// Prints a bad record as its one stderr line and exits 1; an unreadable
/// file becomes an error for `main` to print. Shared with `transfers`.
pub(super) fn report(failure: Failure) -> anyhow::Result<ExitCode> {
    match failure {
        Failure::Record { .. } => {
            eprintln!("{failure}");
            Ok(ExitCode::FAILURE)
        }
        Failure::Read { .. } => Err(failure.into()),
    }
}

fn ok_line(s: &Summary) -> String {
    let chain = match (&s.first_prev, &s.last_hash) {
        (Some(first), Some(last)) => format!("chain {}… → {}…", short(first), short(last)),
        _ => "chain empty".to_owned(),
    };
    format!(
        "ok: {} {} in {} {}, {chain}",
        s.records,
        if s.records == 1 { "record" } else { "records" },
        s.files,
        if s.files == 1 { "file" } else { "files" },
    )
}

/// The first 16 characters of a hash (verified hashes are ASCII hex).
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}
