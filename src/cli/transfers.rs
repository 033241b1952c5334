//! `residency-proxy transfers --audit PATH... [--format md|json|html]
//! [--from HASH] [--expect-last HASH]`: the cartography of flows outside
//! the EEA, from audit files.
//!
//! The files are verified while they are read (one pass), with the checks
//! of `audit verify` (start at genesis or `--from`, at least one record,
//! last hash `--expect-last`): a report is only printed from a chain that
//! verifies whole. Otherwise the failure is printed to stderr as by `audit
//! verify`, and the exit code is 1. A single directory is read as several
//! chains (one per replica, as `audit verify DIR`), each verified on its
//! own; the report covers them all; a failure names its chain. So is a
//! single `s3://bucket/prefix`, read as `audit verify` reads it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::ReportFormat;
use super::audit::report;
use crate::audit::{self, Expect, Failure};

/// Runs `transfers`.
///
/// # Errors
/// A file that cannot be read (the error names it), or stdout closed.
pub fn transfers(
    paths: &[PathBuf],
    format: ReportFormat,
    expect: &Expect,
    config: &Path,
) -> anyhow::Result<ExitCode> {
    let mut failure: Option<Failure> = None;
    let progress = super::progress::Progress::show(paths);
    let s3 = super::audit::s3_chains(paths, expect, config)?;
    let groups = match &s3 {
        Some(s3) => Some(s3.chains.clone()),
        None => super::audit::chains(paths, expect)?,
    };
    let cartography = match groups {
        None => audit::aggregate(
            audit::records(paths, expect).map_while(|r| r.map_err(|f| failure = Some(f)).ok()),
        ),
        // A directory: each chain verified on its own, the flows of all
        // together; a failure names its chain.
        Some(groups) => {
            let failed = std::cell::RefCell::new(None::<(String, Failure)>);
            let cartography = audit::aggregate(groups.iter().flat_map(|(name, files)| {
                let failed = &failed;
                audit::records(files, expect).map_while(move |r| {
                    r.map_err(|f| {
                        failed.borrow_mut().get_or_insert((name.clone(), f));
                    })
                    .ok()
                })
            }));
            match failed.into_inner() {
                Some((_, f @ Failure::Read { .. })) => return report(f),
                Some((name, f)) => {
                    let line = f.to_string();
                    let line = s3.as_ref().map_or_else(|| line.clone(), |s| s.named(&line));
                    eprintln!("{name}: {line}");
                    return Ok(ExitCode::FAILURE);
                }
                None => cartography,
            }
        }
    };
    drop(progress);
    if let Some(failure) = failure {
        return report(failure);
    }
    let text = match format {
        ReportFormat::Md => cartography.to_markdown(),
        ReportFormat::Json => cartography.to_json(),
        ReportFormat::Html => cartography.to_html(),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write the report to stdout")?;
    Ok(ExitCode::SUCCESS)
}
