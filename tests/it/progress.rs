//! Progress on long reads of the trail (`audit verify`, `transfers`,
//! `access-review`): a bar on stderr while a person watches a terminal,
//! cleared before the result; nothing at all in pipes and files, nor on a
//! terminal under CI. The terminal is a real pseudo-terminal, from util-linux's `script`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use residency_proxy::audit::Chain;

use crate::audit::record;
use crate::support::proxy::BIN;

/// More than two reports' worth of records (one every 4096).
const RECORDS: u64 = 10_000;

/// A trail of [`RECORDS`] records in `dir/a.jsonl`; returns its path and
/// last hash.
fn trail(dir: &Path) -> (PathBuf, String) {
    let mut chain = Chain::new();
    let text: String = (0..RECORDS)
        .map(|n| format!("{}\n", chain.seal(&mut record(n))))
        .collect();
    let path = dir.join("a.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, chain.last().to_owned())
}

/// Runs the binary with stdout and stderr piped, `CI` unset (only the pipe
/// keeps it silent).
fn piped(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CI")
        .env("TERM", "xterm")
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

/// Runs the binary on a pseudo-terminal (stdout and stderr both); returns
/// what the terminal received.
fn on_a_terminal(args: &[&str], ci: bool) -> String {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env_remove("CI")
        .env("TERM", "xterm")
        .env("RUST_LOG", "off");
    if ci {
        script.env("CI", "true");
    }
    let out = script.output().expect("script (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn reading_a_trail_into_a_pipe_shows_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (path, last) = trail(dir.path());
    let path = path.to_str().unwrap();
    let out = piped(&["audit", "verify", path]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("ok: {RECORDS} records in 1 file, from genesis to {last}\n")
    );
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    assert_eq!(out.status.code(), Some(0));
    // A directory of chains, and the transfers report: the same.
    let out = piped(&["audit", "verify", dir.path().to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("a: ok: {RECORDS} records in 1 file, from genesis to {last}\n")
    );
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    let out = piped(&["transfers", "--audit", path, "--format", "json"]);
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.starts_with(b"{"));
}

#[test]
fn reading_a_trail_on_a_terminal_shows_progress_then_clears_it_for_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (path, last) = trail(dir.path());
    let ok = format!("ok: {RECORDS} records in 1 file, from genesis to {last}\r\n");
    let seen = on_a_terminal(&["audit", "verify", path.to_str().unwrap()], false);
    assert!(seen.contains("reading the audit trail "), "{seen:?}");
    assert!(seen.contains(" records, "), "{seen:?}");
    // After the last line was erased, only the result.
    let after = seen.rsplit("\x1b[2K").next().unwrap();
    assert!(after.ends_with(&ok), "{seen:?}");
    assert!(!after.contains("reading"), "{seen:?}");
    let seen = on_a_terminal(
        &[
            "transfers",
            "--audit",
            path.to_str().unwrap(),
            "--format",
            "json",
        ],
        false,
    );
    assert!(seen.contains("reading the audit trail "), "{seen:?}");
    let after = seen.rsplit("\x1b[2K").next().unwrap();
    assert!(!after.contains("reading"), "{seen:?}");
}

#[test]
fn reading_a_trail_on_a_terminal_under_ci_shows_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (path, last) = trail(dir.path());
    let seen = on_a_terminal(&["audit", "verify", path.to_str().unwrap()], true);
    assert_eq!(
        seen,
        format!("ok: {RECORDS} records in 1 file, from genesis to {last}\r\n")
    );
}

/// `access-review` reads whole trails too: the same bar on a terminal,
/// cleared before the review; nothing in a pipe.
#[test]
fn access_review_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = trail(dir.path());
    let ids = dir.path().join("identities.toml");
    std::fs::write(
        &ids,
        "[[identity]]\nid = \"AKIACHU01\"\nowner = \"Dr A. Martin\"\nrole = \"archive\"\n\
         granted = 2026-01-10\nreviewed = 2026-01-10\nreviewer = \"DPO\"\n",
    )
    .unwrap();
    let args = [
        "access-review",
        "--identities",
        ids.to_str().unwrap(),
        "--audit",
        path.to_str().unwrap(),
        "--format",
        "json",
    ];
    let out = piped(&args);
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    assert_eq!(out.status.code(), Some(0));
    let review: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["records"], RECORDS);
    let seen = on_a_terminal(&args, false);
    assert!(seen.contains("reading the audit trail "), "{seen:?}");
    assert!(seen.contains(" records, "), "{seen:?}");
    let after = seen.rsplit("\x1b[2K").next().unwrap();
    assert!(!after.contains("reading"), "{seen:?}");
    assert!(
        after.contains(&format!("\"records\": {RECORDS}")),
        "{seen:?}"
    );
}
