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
//!
//! An argument it cannot use (an unknown `--lang`, a `--since` or
//! `--until` that is no date, a `--since` after `--until`) is a usage
//! error: one line on stderr, exit 2, as clap's own.

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
    /// Count only records up to this date (inclusive) or time; one
    /// before `--since` is refused (an empty period, exit 2).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// The language of the HTML page: `fr` (default) or `en`.
    #[arg(long, value_name = "LANG", default_value = "fr")]
    pub lang: String,
}

/// A date `YYYY-MM-DD`, optionally followed by `T` and a time in the
/// audit trail's own format, possibly cut short (`T12`, `T12:30`, …).
/// Every field written must be in range: month 01–12, a day the month
/// has, hour 00–23, minute and second 00–59 (the trail never writes a
/// leap second).
fn is_time(s: &str) -> bool {
    let shape = "0000-00-00T00:00:00.000Z";
    // `…T12:00:00Z`, the form the help shows, has no milliseconds.
    let s = match s.strip_suffix('Z') {
        Some(whole) if whole.len() == 19 => whole,
        _ => s,
    };
    let shaped = s.len() >= 10
        && s.len() <= shape.len()
        && (s.len() == 10 || s.len() >= 13)
        && s.bytes().zip(shape.bytes()).all(|(c, want)| match want {
            b'0' => c.is_ascii_digit(),
            other => c == other,
        });
    if !shaped {
        return false;
    }
    let field = |at: usize, len: usize| {
        s.get(at..at + len)
            .filter(|f| f.len() == len)
            .and_then(|f| f.parse::<u32>().ok())
    };
    let (Some(year), Some(month), Some(day)) = (field(0, 4), field(5, 2), field(8, 2)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    // A field cut short (`T12:3`) is checked as far as it is written.
    let partial = |at: usize, max: u32| match s.get(at..).map(str::len) {
        None | Some(0) => true,
        Some(1) => field(at, 1).is_some_and(|v| v <= max / 10),
        Some(_) => field(at, 2).is_some_and(|v| v <= max),
    };
    (1..=days).contains(&day) && partial(11, 23) && partial(14, 59) && partial(17, 59)
}

/// The bound as compared with a record's time: a written `Z` (or a
/// trailing `.`) adds nothing but would sort after the record's
/// milliseconds, so `--since …T12:00:00Z` would miss 12:00:00.500.
fn bound(s: &str) -> &str {
    s.trim_end_matches('Z').trim_end_matches('.')
}

/// Whether `time` lies up to the bound `until` (inclusive): compared
/// on the bound's length, so `2026-01-31` covers that whole day.
fn up_to(time: &str, until: &str) -> bool {
    let n = until.len().min(time.len());
    time.get(..n).is_some_and(|head| head <= until)
}

impl PeriodArgs {
    /// The language, or the usage error of an argument: an unknown
    /// `--lang`, a `--since` or `--until` that is no date or time, or a
    /// `--since` after `--until` (a period no record can fall in, whose
    /// empty report would read as "no transfers").
    fn check(&self) -> Result<Lang, String> {
        let lang = Lang::parse(&self.lang)
            .ok_or_else(|| format!("unknown --lang \"{}\" (expected fr or en)", self.lang))?;
        for (name, v) in [("--since", &self.since), ("--until", &self.until)] {
            if let Some(v) = v.as_deref().filter(|v| !is_time(v)) {
                return Err(format!(
                    "{name} \"{v}\" is not a date or time (expected 2026-01-31 or 2026-01-31T12:00:00Z)"
                ));
            }
        }
        if let (Some(since), Some(until)) = (&self.since, &self.until) {
            // The earliest time the period holds is `since` itself.
            if !up_to(bound(since), bound(until)) {
                return Err(format!(
                    "--since \"{since}\" is after --until \"{until}\": the period is empty"
                ));
            }
        }
        Ok(lang)
    }
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
    let lang = match period.check() {
        Ok(lang) => lang,
        Err(usage) => {
            // A usage error, as clap's own: one line, exit 2, no report;
            // a value it quotes cannot break that line.
            eprintln!("{}", crate::config::shown(usage));
            return Ok(ExitCode::from(2));
        }
    };
    // Every record is verified; only those in the period are counted.
    let in_period = |r: &crate::audit::AuditRecord| {
        period
            .since
            .as_deref()
            .map(bound)
            .is_none_or(|s| r.time.as_str() >= s)
            && period
                .until
                .as_deref()
                .map(bound)
                .is_none_or(|u| up_to(&r.time, u))
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

#[cfg(test)]
mod tests {
    use super::{PeriodArgs, bound, is_time};

    fn period(since: &str, until: &str) -> PeriodArgs {
        PeriodArgs {
            since: Some(since.into()),
            until: Some(until.into()),
            lang: "fr".into(),
        }
    }

    #[test]
    fn a_since_after_until_is_refused_naming_both() {
        for (since, until) in [
            ("2026-12-01", "2026-11-30"),
            ("2026-11-30T00:00:00Z", "2026-11-29"),
            ("2026-11-28T15", "2026-11-28T14:59"),
            ("2026-11-28T15:20:05Z", "2026-11-28T15:20:04Z"),
            ("2026-11-28T15:20:04.001Z", "2026-11-28T15:20:03.999Z"),
            ("2027-01-01", "2026-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(
                period(since, until).check().err().as_deref(),
                Some(
                    format!(
                        "--since \"{since}\" is after --until \"{until}\": the period is empty"
                    )
                    .as_str()
                ),
                "{since} {until}"
            );
        }
    }

    #[test]
    fn a_period_that_holds_a_time_is_accepted() {
        // `--until` is inclusive on its own precision: a day covers the
        // whole day, a second its milliseconds.
        for (since, until) in [
            ("2026-11-28", "2026-11-28"),
            ("2026-11-28T23:59:59.999Z", "2026-11-28"),
            ("2026-11-28T15", "2026-11-28T15"),
            ("2026-11-28T15:20:04.500Z", "2026-11-28T15:20:04Z"),
            ("2026-11-28T15:20:04Z", "2026-11-28T15:20:04Z"),
            ("2026-11-28", "2026-11-28T00:00"),
            ("2026-11-28T15:3", "2026-11-28T15:30"),
            ("2026-11-01", "2026-11-30"),
        ] {
            assert!(period(since, until).check().is_ok(), "{since} {until}");
        }
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        for bad in [
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-01-32",
            "2026-04-31",
            "2026-02-29",
            "2100-02-29",
            "2026-01-01T24",
            "2026-01-01T99:00:00Z",
            "2026-01-01T12:60",
            "2026-01-01T12:7",
            "2026-01-01T12:00:61Z",
            "2026-12-31T23:59:60Z",
            "2026-01-01T12:00:00+02:00",
            "2026-01-01 12:00:00",
            "+2026-01-01",
            "２０２６-01-01",
            "",
        ] {
            assert!(!is_time(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn in_range_times_are_accepted() {
        for good in [
            "2026-01-01",
            "2024-02-29",
            "2000-02-29",
            "2026-12-31T23",
            "2026-12-31T23:5",
            "2026-12-31T23:59",
            "2026-12-31T23:59:59Z",
            "2026-12-31T23:59:59.999Z",
        ] {
            assert!(is_time(good), "{good:?} refused");
        }
    }

    #[test]
    fn a_bound_with_z_covers_its_whole_second() {
        let record = "2026-01-01T12:00:00.500Z";
        assert!(record >= bound("2026-01-01T12:00:00Z"));
        assert!(record >= bound("2026-01-01T12:00:00."));
    }
}
