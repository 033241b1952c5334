//! `residency-proxy audit verify`, run as an auditor runs it, on files
//! sealed by the library's `Chain` and then tampered with.

use std::path::Path;
use std::process::{Command, Output};

use residency_proxy::audit::{AuditRecord, Chain, GENESIS};

use crate::support::proxy::BIN;

/// Record `n`: a US client blocked with 451.
pub fn record(n: u64) -> AuditRecord {
    AuditRecord {
        time: format!("2026-11-28T15:20:{:02}.123Z", n % 60),
        request_id: format!("{n:016X}"),
        route: Some("s3".into()),
        method: "GET".into(),
        object_key: Some(format!("bucket/scan-{n}.dcm")),
        client_ip: Some("203.0.113.9".into()),
        client_country: "US".into(),
        identity: "AKIAIOSFODNN7EXAMPLE".into(),
        purpose: Some("care".into()),
        upstream_ip: None,
        upstream_country: None,
        decision: "blocked".into(),
        side: Some("client".into()),
        reason: Some("country_not_allowed".into()),
        status: 451,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 2,
        policy_version: "3f2a9c1e".into(),
        client_ip_source: None,
        unrecorded: None,
        prev: String::new(),
    }
}

/// Records `from..to` sealed on `chain`, one line each (no `\n`).
fn seal(chain: &mut Chain, from: u64, to: u64) -> Vec<String> {
    (from..to).map(|n| chain.seal(&mut record(n))).collect()
}

fn write(dir: &Path, name: &str, lines: &[&str]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
}

/// Runs `audit verify` in `dir` on file names relative to it, so messages
/// read as they would for an operator.
fn verify(dir: &Path, files: &[&str]) -> Output {
    Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_fails(out: &Output, stderr: &str) {
    assert_eq!(text(&out.stderr), format!("{stderr}\n"));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(1));
}

const PREV_BROKEN: &str =
    "prev does not match the previous record (record deleted, inserted or reordered)";

/// Two files, 3 + 2 records, one chain; returns the lines of each.
fn two_files(dir: &Path) -> (Vec<String>, Vec<String>, Chain) {
    let mut chain = Chain::new();
    let a = seal(&mut chain, 1, 4);
    let b = seal(&mut chain, 4, 6);
    write(dir, "a.jsonl", &refs(&a));
    write(dir, "b.jsonl", &refs(&b));
    (a, b, chain)
}

fn refs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

#[test]
fn a_chain_across_two_files_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_, b, chain) = two_files(dir.path());
    // The second file continues the first: its first prev is a's last hash.
    assert!(!b[0].contains(GENESIS));
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        format!(
            "ok: 5 records in 2 files, chain 0000000000000000… → {}…\n",
            &chain.last()[..16]
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_later_file_alone_verifies_from_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, chain) = two_files(dir.path());
    let a_last = residency_proxy::audit::unseal(a[2].as_bytes())
        .unwrap()
        .hash;
    let out = verify(dir.path(), &["b.jsonl"]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "ok: 2 records in 1 file, chain {}… → {}…\n",
            &a_last[..16],
            &chain.last()[..16]
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_edited_status_is_a_hash_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    let edited = a[1].replace("\"status\":451", "\"status\":200");
    write(dir.path(), "a.jsonl", &[&a[0], &edited, &a[2]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        "a.jsonl:2: hash mismatch (record edited) (request_id 0000000000000002)",
    );
}

#[test]
fn a_deleted_line_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    write(dir.path(), "a.jsonl", &[&a[0], &a[2]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        &format!("a.jsonl:2: {PREV_BROKEN} (request_id 0000000000000003)"),
    );
}

#[test]
fn a_deleted_last_line_of_a_file_is_caught_in_the_next_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    write(dir.path(), "a.jsonl", &[&a[0], &a[1]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {PREV_BROKEN} (request_id 0000000000000004)"),
    );
}

#[test]
fn two_swapped_lines_break_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_, b, _) = two_files(dir.path());
    write(dir.path(), "b.jsonl", &[&b[1], &b[0]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {PREV_BROKEN} (request_id 0000000000000005)"),
    );
}

#[test]
fn an_inserted_forged_record_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    // Sealed on the right prev, so its own hash verifies: the record after
    // it still points at the original.
    let mut forger = Chain::new();
    seal(&mut forger, 1, 3);
    let forged = forger.seal(&mut record(77));
    write(dir.path(), "a.jsonl", &[&a[0], &a[1], &forged, &a[2]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        &format!("a.jsonl:4: {PREV_BROKEN} (request_id 0000000000000003)"),
    );
}

#[test]
fn a_truncated_last_line_is_not_a_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_, b, _) = two_files(dir.path());
    let cut = format!("{}\n{}", b[0], &b[1][..b[1].len() / 2]);
    std::fs::write(dir.path().join("b.jsonl"), cut).unwrap();
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        "b.jsonl:2: not a complete record (truncated or not JSON)",
    );
}

#[test]
fn a_line_without_hash_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    // What a forger would write without knowing the format: the record's
    // JSON, right prev included, but no hash.
    let unhashed = format!("{}}}", &a[1][..a[1].len() - 75]);
    write(dir.path(), "a.jsonl", &[&a[0], &unhashed, &a[2]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        "a.jsonl:2: missing hash (request_id 0000000000000002)",
    );
}

#[test]
fn files_in_the_wrong_order_fail_at_the_older_file() {
    let dir = tempfile::tempdir().unwrap();
    two_files(dir.path());
    let out = verify(dir.path(), &["b.jsonl", "a.jsonl"]);
    assert_fails(
        &out,
        &format!("a.jsonl:1: {PREV_BROKEN} (request_id 0000000000000001)"),
    );
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    two_files(dir.path());
    let out = verify(dir.path(), &["a.jsonl", "missing.jsonl"]);
    assert_eq!(
        text(&out.stderr),
        "cannot read audit file missing.jsonl: No such file or directory (os error 2)\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn verify_needs_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<PATH>"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn resume_continues_an_existing_file_and_the_whole_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut first = Chain::resume(&path).unwrap();
    assert_eq!(first.last(), GENESIS);
    write(dir.path(), "audit.jsonl", &refs(&seal(&mut first, 1, 4)));

    // A restarted writer picks the chain up from the file alone.
    let mut resumed = Chain::resume(&path).unwrap();
    assert_eq!(resumed.last(), first.last());
    let more = seal(&mut resumed, 4, 6);
    let mut text_now = std::fs::read_to_string(&path).unwrap();
    for l in &more {
        text_now.push_str(l);
        text_now.push('\n');
    }
    std::fs::write(&path, text_now).unwrap();

    let out = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "ok: 5 records in 1 file, chain 0000000000000000… → {}…\n",
            &resumed.last()[..16]
        )
    );
}

#[test]
fn resume_refuses_a_file_whose_last_write_was_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let lines = seal(&mut Chain::new(), 1, 3);
    std::fs::write(&path, format!("{}\n{}", lines[0], &lines[1][..30])).unwrap();
    let err = Chain::resume(&path).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "audit file {} ends with an unfinished line",
            path.display()
        )),
        "{err}"
    );
}
