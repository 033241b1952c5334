//! `residency-proxy grants keygen|sign|check` and `access-review` (SPEC §9).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::ReportFormat;
use crate::access::{self, Proof, keys, now};
use crate::config::Config;

/// `grants keygen PATH`: the private key in PATH (0600), the public key in
/// PATH.pub and on stdout.
///
/// # Errors
/// A file that exists or cannot be written.
pub fn keygen(path: &Path) -> anyhow::Result<ExitCode> {
    let (private, public) = keys::keygen().map_err(anyhow::Error::msg)?;
    let public_path = super::write_key_pair(path, &private, &public)?;
    println!("{public}");
    eprintln!(
        "private key in {} (only its approver may read it); public key in {}: add it to [grants] approvers as public_key = \"{public}\"",
        path.display(),
        public_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `grants sign --key FILE --approver NAME GRANTS_FILE ID`.
///
/// # Errors
/// Unreadable key or file, unknown grant, or an unwritable file.
pub fn sign(key: &Path, approver: &str, file: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let key_text = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read key file {}", key.display()))?;
    let key = keys::SigningKey::parse(&key_text)
        .map_err(|e| anyhow::anyhow!("key file {}: {e}", key.display()))?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read grants file {}", file.display()))?;
    let (out, grant) = access::sign::sign(file, &text, id, approver, &key)?;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".signing");
    let tmp = PathBuf::from(tmp);
    // Written beside it and renamed over it, with its permissions: a
    // reader never sees half a file.
    std::fs::write(&tmp, out)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::metadata(file)?.permissions()))
        .and_then(|()| std::fs::rename(&tmp, file))
        .with_context(|| format!("cannot write grants file {}", file.display()))?;
    let s = &grant.signed;
    println!(
        "signed grant {} for {} ({}) from {} to {} as {approver}",
        s.id,
        s.identity,
        s.proof.as_str(),
        access::canonical::rfc3339(s.not_before),
        access::canonical::rfc3339(s.not_after)
    );
    Ok(ExitCode::SUCCESS)
}

/// `grants check [--config PATH]`: each grant valid, or why not; exit 1
/// when any opens nothing now.
///
/// # Errors
/// An invalid config, identities or grants file.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    if config.access.grants.is_none() {
        anyhow::bail!(
            "{}: no [grants] section: no grant can open anything",
            config.path.display()
        );
    }
    let access = access::load(
        &config.access,
        &config.routes,
        &config.server.s3_domains,
        &crate::metrics::Metrics::new(),
    )?;
    let text = grants_text(&access, now());
    print!("{text}");
    let all_valid = access.reports.iter().all(|r| r.status(now()) == "valid");
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per grant, then a warning per `sigv4` grant; also printed by
/// `check`.
pub fn grants_text(access: &access::Access, now: i64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for r in &access.reports {
        let s = &r.entry.signed;
        let _ = writeln!(
            o,
            "grant {} (line {}, identity {}, proof {}): {}",
            s.id,
            r.entry.line,
            s.identity,
            s.proof.as_str(),
            r.status(now)
        );
    }
    for r in &access.reports {
        let s = &r.entry.signed;
        if s.proof == Proof::Sigv4 {
            let _ = writeln!(
                o,
                "WARNING: grant {} is proven by sigv4: the proxy believes the key id {} as claimed; a forged claim from {} reaches the storage, which refuses a bad signature",
                s.id,
                s.identity,
                s.from_countries.join(",")
            );
        }
    }
    for w in access.scope_warnings() {
        let _ = writeln!(o, "WARNING: {w}");
    }
    o
}

/// The registry lines of `check`: each identity, its proof, whether overdue.
pub fn identities_text(access: &access::Access, now: i64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for i in &access.identities {
        let overdue = now >= i.reviewed.saturating_add(access.review_every);
        let _ = writeln!(
            o,
            "identity {} ({}, {}; proof {}{}): reviewed {} by {}{}",
            i.id,
            i.owner,
            i.role,
            i.proof.as_str(),
            if i.proof == Proof::Sigv4 {
                ", a claim the storage checks"
            } else {
                ", proven by client certificate"
            },
            access::canonical::date(i.reviewed),
            i.reviewer,
            if overdue { " — REVIEW OVERDUE" } else { "" }
        );
    }
    o
}

/// `access-review --identities FILE --audit PATH... [--format]`.
///
/// # Errors
/// Unreadable files; a trail that does not verify exits 1 with the
/// failure on stderr, and no report.
pub fn access_review(
    identities: &Path,
    review_every: &str,
    paths: &[PathBuf],
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let text = access::files::read(identities)?;
    let list = access::files::identities(identities, &text, None)?;
    let every = crate::config::parse_age(review_every)
        .map_err(|e| anyhow::anyhow!("--review-every: {e}"))?;
    let expect = crate::audit::Expect::default();
    let mut failure = None;
    let progress = super::progress::Progress::show(paths);
    let records =
        crate::audit::records(paths, &expect).map_while(|r| r.map_err(|f| failure = Some(f)).ok());
    let review = access::review::review(
        &list,
        i64::try_from(every.as_secs()).unwrap_or(i64::MAX),
        records,
        now(),
    );
    drop(progress);
    if let Some(f) = failure {
        return super::audit::report(f);
    }
    let out = match format {
        ReportFormat::Md => review.to_markdown(),
        ReportFormat::Json => review.to_json(),
        ReportFormat::Html => review.to_html(),
    };
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("cannot write the review to stdout")?;
    Ok(ExitCode::SUCCESS)
}
