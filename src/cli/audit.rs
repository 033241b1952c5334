//! `residency-proxy audit verify [--key PUBLIC] [--from HASH] [--expect-last
//! HASH] PATH...`: checks the hash chain across the files, in the order
//! given (oldest first), from genesis (or `--from`) to its last record.
//! With `--key`, each file is also checked against its signed checkpoints
//! (`FILE.checkpoints`, see [`crate::audit::checkpoint`]); the ok line then
//! ends with `; N signed checkpoints (origin O, key K), the last covers C
//! of the R records of FILE` (R − C records are not covered). A single
//! directory instead of files holds several chains (see
//! [`crate::audit::rotate::trail_files`]): each is verified on its own, its
//! line prefixed by its name (`paris-1: ok: …` on stdout, `paris-2: …` on
//! stderr), and the exit code is 1 if any failed. A single
//! `s3://bucket/prefix` is read through `[audit.export]` of `--config`
//! ([`crate::export::download`]), each origin's chains on their own.
//! `audit keygen` makes the key pair.
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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::checkpoint::{self, VerifierKey};
use crate::audit::{self, Expect, Failure, GENESIS, Summary};

/// Runs `audit verify`: on files, one chain; on a directory, each chain it
/// holds (see [`chains`]).
///
/// # Errors
/// A file that cannot be read (the error names it), a key that cannot be
/// read.
pub fn verify(
    paths: &[PathBuf],
    expect: &Expect,
    keys: &[PathBuf],
    config: &Path,
) -> anyhow::Result<ExitCode> {
    let keys = keys
        .iter()
        .map(|k| VerifierKey::load(k))
        .collect::<Result<Vec<_>, _>>()?;
    let key = (!keys.is_empty()).then_some(keys.as_slice());
    let progress = super::progress::Progress::show(paths);
    if let Some(s3) = s3_chains(paths, expect, config)? {
        let mut code = ExitCode::SUCCESS;
        for (name, files) in &s3.chains {
            match verify_chain(files, expect, key)? {
                Ok(line) => progress.suspend(|| println!("{name}: {}", s3.named(&line))),
                Err(line) => {
                    progress.suspend(|| eprintln!("{name}: {}", s3.named(&line)));
                    code = ExitCode::FAILURE;
                }
            }
        }
        return Ok(code);
    }
    let Some(groups) = chains(paths, expect)? else {
        let result = verify_chain(paths, expect, key)?;
        drop(progress);
        return Ok(match result {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(line) => {
                eprintln!("{line}");
                ExitCode::FAILURE
            }
        });
    };
    let mut code = ExitCode::SUCCESS;
    for (name, files) in &groups {
        match verify_chain(files, expect, key)? {
            Ok(line) => progress.suspend(|| println!("{name}: {line}")),
            Err(line) => {
                progress.suspend(|| eprintln!("{name}: {line}"));
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// The chains of a directory given alone: `None` for files (one chain, as
/// given); for a directory, each chain's name (its file stem, the writer's
/// origin by convention) and its files in chain order (closed segments by
/// sequence number, then the current file).
///
/// # Errors
/// A directory among several paths, or with `--from`/`--expect-last`
/// (they concern one chain), one that cannot be listed or holds no trail.
pub(super) fn chains(
    paths: &[PathBuf],
    expect: &Expect,
) -> anyhow::Result<Option<crate::audit::rotate::Chains>> {
    let [dir] = paths else {
        if let Some(dir) = paths.iter().find(|p| p.is_dir()) {
            anyhow::bail!(
                "{} is a directory: give one directory alone, or files",
                dir.display()
            );
        }
        return Ok(None);
    };
    if !dir.is_dir() {
        return Ok(None);
    }
    if *expect != Expect::default() {
        anyhow::bail!(
            "--from and --expect-last concern one chain: give the files of that chain, not the directory {}",
            dir.display()
        );
    }
    let groups = crate::audit::rotate::trail_files(dir)
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    if groups.is_empty() {
        anyhow::bail!("no audit trail (*.jsonl) in directory {}", dir.display());
    }
    Ok(Some(groups))
}

/// The chains of an `s3://bucket/prefix` source, downloaded into a
/// scratch directory removed when this drops.
pub(super) struct S3Chains {
    /// Each origin's chains (`origin`, or `origin/stem` for a stem other
    /// than the origin), in chain order.
    pub chains: crate::audit::rotate::Chains,
    scratch: PathBuf,
    base: String,
}

impl S3Chains {
    /// `text` with scratch paths given as `s3://` names.
    pub fn named(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.scratch.display()), &self.base)
    }
}

impl Drop for S3Chains {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A single `s3://bucket/prefix` path: every object under it downloaded
/// through `[audit.export]` of `config` (the endpoint judged as `run`
/// judges it), grouped by origin, then by stem within an origin; `None`
/// for other paths.
///
/// # Errors
/// `--from`/`--expect-last` given (they concern one chain), a config
/// without `[audit.export]`, a refused endpoint, a failed download, no
/// trail under the prefix.
pub(super) fn s3_chains(
    paths: &[PathBuf],
    expect: &Expect,
    config: &Path,
) -> anyhow::Result<Option<S3Chains>> {
    let [path] = paths else {
        return Ok(None);
    };
    let Some(source) = path.to_str().filter(|s| s.starts_with("s3://")) else {
        return Ok(None);
    };
    if *expect != Expect::default() {
        anyhow::bail!(
            "--from and --expect-last concern one chain: give the files of that chain, not {source}"
        );
    }
    let config = crate::config::Config::load(config)?;
    let Some(spec) = config.audit.export.clone() else {
        anyhow::bail!(
            "{source}: the config {} has no [audit.export] (its endpoint and credentials read s3:// sources)",
            config.path.display()
        );
    };
    let snap = crate::snapshot::Snapshot::build(config, &crate::snapshot::Evidence::detached())?;
    let scratch = std::env::temp_dir().join(format!(
        "residency-proxy-s3-{}-{}",
        std::process::id(),
        crate::audit::format_time(std::time::SystemTime::now())
    ));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let base = if source.trim_start_matches("s3://").contains('/') {
        source.to_owned()
    } else {
        format!("{source}/")
    };
    let mut s3 = S3Chains {
        chains: Vec::new(),
        scratch,
        base,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let origins = runtime
        .block_on(crate::export::download(&spec, &snap, source, &s3.scratch))
        .map_err(|e| anyhow::anyhow!("cannot read {source}: {e}"))?;
    for origin in origins {
        let dir = s3.scratch.join(&origin);
        for (stem, files) in crate::audit::rotate::trail_files(&dir)
            .with_context(|| format!("cannot list directory {}", dir.display()))?
        {
            let name = if stem == origin {
                origin.clone()
            } else {
                format!("{origin}/{stem}")
            };
            s3.chains.push((name, files));
        }
    }
    if s3.chains.is_empty() {
        anyhow::bail!("no audit trail (*.jsonl) under {source}");
    }
    Ok(Some(s3))
}

/// Verifies one chain, and with `key` its checkpoints: `Ok(ok line)` or
/// `Err(failure line)`.
fn verify_chain(
    paths: &[PathBuf],
    expect: &Expect,
    key: Option<&[VerifierKey]>,
) -> anyhow::Result<Result<String, String>> {
    let summary = match audit::verify(paths, expect) {
        Ok(summary) => summary,
        Err(failure @ Failure::Read { .. }) => return Err(failure.into()),
        Err(failure) => return Ok(Err(failure.to_string())),
    };
    let Some(key) = key else {
        return Ok(Ok(ok_line(&summary)));
    };
    let mut count = 0;
    let mut last: Option<(&PathBuf, checkpoint::FileCheckpoints)> = None;
    let mut start = summary.first_prev.clone();
    for path in paths {
        match checkpoint::check_file(path, key, start.as_deref()) {
            Ok(file) => {
                if let Some((before, b)) = &last
                    && b.origin != file.origin
                {
                    return Ok(Err(format!(
                        "{}: its checkpoints name origin {}, those of {} name {}: files of two writers",
                        path.display(),
                        file.origin,
                        before.display(),
                        b.origin
                    )));
                }
                count += file.count;
                start.clone_from(&file.end);
                last = Some((path, file));
            }
            Err(failure @ checkpoint::CheckpointFailure::Read { .. }) => {
                return Err(failure.into());
            }
            Err(failure) => return Ok(Err(failure.to_string())),
        }
    }
    let Some((path, file)) = last else {
        return Ok(Ok(ok_line(&summary)));
    };
    Ok(Ok(format!(
        "{}; {count} signed {} (origin {}, key {}), the last covers {} of the {} records of {}",
        ok_line(&summary),
        if count == 1 {
            "checkpoint"
        } else {
            "checkpoints"
        },
        file.origin,
        file.key,
        file.last_size,
        file.records,
        path.display()
    )))
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

/// Runs `audit keygen`: the private key in `path` (created, mode 0600),
/// the public key in `path.pub`; prints the public key.
///
/// # Errors
/// An invalid name, or a file that exists or cannot be written.
pub fn keygen(name: Option<String>, path: &Path) -> anyhow::Result<ExitCode> {
    let name = name.unwrap_or_else(checkpoint::host_name);
    let (private, public) = checkpoint::keygen(&name)?;
    let public_path = super::write_key_pair(path, &private, &public)?;
    println!("{public}");
    eprintln!(
        "private key in {} (keep it off the audit host if you can: whoever holds it can sign a forged trail); public key in {}",
        path.display(),
        public_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
