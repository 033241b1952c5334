//! `residency-proxy transfers --audit PATH... [--format md|json|html]
//! [--lang fr|en] [--since WHEN] [--until WHEN] [--from HASH]
//! [--expect-last HASH]`: the cartography of flows outside the EEA, from
//! audit files; the HTML page carries the `[transparency]` declarations of
//! `--config` when that file exists.
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
use crate::audit::page::{PageContext, Source};
use crate::audit::world::Lang;
use crate::audit::{self, Expect, Failure};
use crate::config::Config;

/// `transfers --since --until --lang`.
#[derive(Debug, clap::Args)]
pub struct PeriodArgs {
    /// Count only records from this date or time on (UTC, e.g.
    /// `2026-01-01` or `2026-01-01T00:00:00Z`); every record is verified.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Count only records up to this date (inclusive) or time.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// The language of the HTML page: `fr` (default) or `en`.
    #[arg(long, value_name = "LANG", default_value = "fr")]
    pub lang: String,
}

/// A date `YYYY-MM-DD`, optionally followed by `T` and a time in the
/// audit trail's own format, possibly cut short (`T12`, `T12:30`, …).
fn is_time(s: &str) -> bool {
    let shape = "0000-00-00T00:00:00.000Z";
    s.len() >= 10
        && s.len() <= shape.len()
        && (s.len() == 10 || s.len() >= 13)
        && s.bytes().zip(shape.bytes()).all(|(c, want)| match want {
            b'0' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// Runs `transfers`.
///
/// # Errors
/// A file that cannot be read (the error names it), or stdout closed.
pub fn transfers(
    paths: &[PathBuf],
    format: ReportFormat,
    expect: &Expect,
    config: &Path,
    period: &PeriodArgs,
) -> anyhow::Result<ExitCode> {
    let lang = Lang::parse(&period.lang)
        .with_context(|| format!("unknown --lang \"{}\" (expected fr or en)", period.lang))?;
    for (name, v) in [("--since", &period.since), ("--until", &period.until)] {
        if let Some(v) = v {
            anyhow::ensure!(
                is_time(v),
                "{name} \"{v}\" is not a date or time (expected 2026-01-31 or 2026-01-31T12:00:00Z)"
            );
        }
    }
    // Every record is verified; only those in the period are counted.
    let in_period = |r: &crate::audit::AuditRecord| {
        period.since.as_deref().is_none_or(|s| r.time.as_str() >= s)
            && period.until.as_deref().is_none_or(|u| {
                let n = u.len().min(r.time.len());
                r.time.get(..n).is_some_and(|head| head <= u)
            })
    };
    let mut failure: Option<Failure> = None;
    let progress = super::progress::Progress::show(paths);
    let s3 = super::audit::s3_chains(paths, expect, config)?;
    let groups = match &s3 {
        Some(s3) => Some(s3.chains.clone()),
        None => super::audit::chains(paths, expect)?,
    };
    let cartography = match groups {
        None => audit::aggregate(
            audit::records(paths, expect)
                .map_while(|r| r.map_err(|f| failure = Some(f)).ok())
                .filter(in_period),
        ),
        // A directory: each chain verified on its own, the flows of all
        // together; a failure names its chain.
        Some(groups) => {
            let failed = std::cell::RefCell::new(None::<(String, Failure)>);
            let cartography = audit::aggregate(groups.iter().flat_map(|(name, files)| {
                let failed = &failed;
                audit::records(files, expect)
                    .map_while(move |r| {
                        r.map_err(|f| {
                            failed.borrow_mut().get_or_insert((name.clone(), f));
                        })
                        .ok()
                    })
                    .filter(in_period)
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
    // The declarations of --config, when that file exists.
    let loaded = match format {
        ReportFormat::Json => None,
        _ if config.exists() => Some(Config::load(config)?),
        _ => None,
    };
    let declared = loaded.as_ref().and_then(|c| c.transparency.as_ref());
    let text = match format {
        ReportFormat::Md => cartography.to_markdown() + &cartography.legal_markdown(declared),
        ReportFormat::Json => cartography.to_json(),
        ReportFormat::Html => cartography.to_page(&PageContext {
            lang,
            transparency: declared,
            generated: crate::audit::format_time(std::time::SystemTime::now()),
            since: period.since.clone(),
            until: period.until.clone(),
            source: Source::Trails(paths.iter().map(|p| p.display().to_string()).collect()),
        }),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write the report to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `check`'s warnings about the transfer page (see
/// [`crate::config::transparency_warnings`]), one per line, with the
/// destinations measured in the current audit file when `[transparency]`
/// is configured and the file verifies (rotated segments are the
/// report's business).
pub fn check_transparency(config: &Config) -> String {
    let mut flows = Vec::new();
    // Only for a host that publishes: the trail of one that does not is
    // not read by `check`.
    if config.transparency.is_some() && config.audit.enabled && config.audit.path.exists() {
        let files = [config.audit.path.clone()];
        // The current file may follow rotated ones: its chain is checked
        // from its own first record on.
        let first_prev = std::fs::File::open(&config.audit.path)
            .ok()
            .and_then(|f| {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line).ok()?;
                serde_json::from_str::<crate::audit::AuditRecord>(&line).ok()
            })
            .map(|r| r.prev);
        let expect = Expect {
            from: first_prev,
            last: None,
        };
        let mut whole = true;
        let c = audit::aggregate(
            audit::records(&files, &expect).map_while(|r| r.map_err(|_| whole = false).ok()),
        );
        if whole {
            // Destinations by location, and operators outside the EEA
            // that data went through.
            flows = c
                .transfers
                .iter()
                .filter_map(|t| crate::geo::Country::from_code(&t.country))
                .chain(
                    c.operated_outside
                        .iter()
                        .filter(|o| o.allowed + o.flagged > 0)
                        .filter_map(|o| crate::geo::Country::from_code(&o.operator)),
                )
                .collect();
            flows.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            flows.dedup();
        }
    }
    let mut out = String::new();
    for w in crate::config::transparency_warnings(config, &flows) {
        out.push_str(&w);
        out.push('\n');
    }
    out
}
