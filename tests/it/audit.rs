//! `residency-proxy audit verify`, run as an auditor runs it, on files
//! sealed by the library's `Chain` and then tampered with; and the running
//! proxy's trail across reloads that touch `[audit]`.

use std::path::Path;
use std::process::{Command, Output};

use residency_proxy::audit::{AuditRecord, Chain, GENESIS};

use crate::support::proxy::{BIN, assert_audit_verifies};
use crate::support::{Client, Layout, Origin, Proxy, config, ips, standard_geo};

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
        operators: Default::default(),
        policy_change: None,
        sides: Default::default(),
        grant: None,
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
    run(dir, &[&["audit", "verify"], files].concat())
}

/// Runs the binary in `dir` with `args`.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn assert_ok(out: &Output, stdout: &str) {
    assert_eq!(text(&out.stderr), "");
    assert_eq!(text(&out.stdout), format!("{stdout}\n"));
    assert_eq!(out.status.code(), Some(0));
}

/// The hash of a sealed line.
fn hash(line: &str) -> String {
    residency_proxy::audit::unseal(line.as_bytes())
        .unwrap()
        .hash
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

const NOT_GENESIS: &str = "the trail does not start at genesis (prev is not 64 zeros): the records before this one are missing \
     (if this file continues an earlier one, give that file first, or --from its last hash)";

const FROM_BROKEN: &str = "prev does not match --from (the records before this one are missing, or --from names another point)";

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
    assert_ok(
        &out,
        &format!("ok: 5 records in 2 files, from genesis to {}", chain.last()),
    );
}

#[test]
fn a_later_file_alone_fails_unless_told_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, chain) = two_files(dir.path());
    let a_last = hash(&a[2]);
    let out = verify(dir.path(), &["b.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {NOT_GENESIS} (request_id 0000000000000004)"),
    );
    // The last hash printed by the verification of a.jsonl, in full.
    let out = verify(dir.path(), &["a.jsonl"]);
    assert_ok(
        &out,
        &format!("ok: 3 records in 1 file, from genesis to {a_last}"),
    );
    let out = verify(dir.path(), &["--from", &a_last, "b.jsonl"]);
    assert_ok(
        &out,
        &format!("ok: 2 records in 1 file, from {a_last} to {}", chain.last()),
    );
    // Upper case, as some tools print hashes, is the same hash.
    let out = verify(dir.path(), &["b.jsonl", "--from", &a_last.to_uppercase()]);
    assert_eq!(out.status.code(), Some(0));
    let out = verify(dir.path(), &["--from", &hash(&a[1]), "b.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {FROM_BROKEN} (request_id 0000000000000004)"),
    );
}

#[test]
fn a_trail_whose_first_record_was_deleted_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _) = two_files(dir.path());
    write(dir.path(), "a.jsonl", &[&a[1], &a[2]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_fails(
        &out,
        &format!("a.jsonl:1: {NOT_GENESIS} (request_id 0000000000000002)"),
    );
    // So does the first file deleted whole.
    std::fs::remove_file(dir.path().join("a.jsonl")).unwrap();
    let out = verify(dir.path(), &["b.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {NOT_GENESIS} (request_id 0000000000000004)"),
    );
}

#[test]
fn an_empty_trail_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("also.jsonl"), "").unwrap();
    assert_fails(
        &verify(dir.path(), &["empty.jsonl"]),
        "no audit record in empty.jsonl: an empty trail proves nothing",
    );
    assert_fails(
        &verify(dir.path(), &["empty.jsonl", "also.jsonl"]),
        "no audit record in empty.jsonl, also.jsonl: an empty trail proves nothing",
    );
}

#[test]
fn expect_last_accepts_the_kept_hash_and_catches_a_cut_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, b, chain) = two_files(dir.path());
    let kept = chain.last().to_owned();
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl", "--expect-last", &kept]);
    assert_ok(
        &out,
        &format!("ok: 5 records in 2 files, from genesis to {kept}"),
    );
    // The last record removed: the rest still chains, the kept hash does not match.
    write(dir.path(), "b.jsonl", &[&b[0]]);
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl"]);
    assert_eq!(out.status.code(), Some(0));
    let out = verify(dir.path(), &["a.jsonl", "b.jsonl", "--expect-last", &kept]);
    assert_fails(
        &out,
        &format!(
            "b.jsonl:1: the trail ends with hash {}, not {kept} (--expect-last): records removed from the end, or added after it",
            hash(&b[0])
        ),
    );
    // The whole last file removed.
    let out = verify(dir.path(), &["a.jsonl", "--expect-last", &kept]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_hash_argument_must_be_a_full_hash() {
    let dir = tempfile::tempdir().unwrap();
    two_files(dir.path());
    for bad in ["5e1c0a9d27b4f3e8", &"g".repeat(64), &"0".repeat(65)] {
        for flag in ["--from", "--expect-last"] {
            let out = verify(dir.path(), &[flag, bad, "a.jsonl"]);
            assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
            assert!(
                text(&out.stderr).contains(
                    "expected 64 hex characters (a full hash as `audit verify` prints it)"
                ),
                "{}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn transfers_checks_the_trail_as_verify_does() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, chain) = two_files(dir.path());
    let transfers = |args: &[&str]| {
        run(
            dir.path(),
            &[
                &["transfers", "--format", "json", "--audit", "b.jsonl"],
                args,
            ]
            .concat(),
        )
    };
    assert_fails(
        &transfers(&[]),
        &format!("b.jsonl:1: {NOT_GENESIS} (request_id 0000000000000004)"),
    );
    let out = transfers(&["--from", &hash(&a[2]), "--expect-last", chain.last()]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["records"], 2);
    assert_fails(
        &transfers(&["--from", &hash(&a[2]), "--expect-last", &hash(&a[2])]),
        &format!(
            "b.jsonl:2: the trail ends with hash {}, not {} (--expect-last): records removed from the end, or added after it",
            chain.last(),
            hash(&a[2])
        ),
    );
    std::fs::write(dir.path().join("b.jsonl"), "").unwrap();
    assert_fails(
        &transfers(&[]),
        "no audit record in b.jsonl: an empty trail proves nothing",
    );
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
fn files_in_the_wrong_order_fail_at_the_first_record_given() {
    let dir = tempfile::tempdir().unwrap();
    two_files(dir.path());
    let out = verify(dir.path(), &["b.jsonl", "a.jsonl"]);
    assert_fails(
        &out,
        &format!("b.jsonl:1: {NOT_GENESIS} (request_id 0000000000000004)"),
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
    assert_ok(
        &out,
        &format!(
            "ok: 5 records in 1 file, from genesis to {}",
            resumed.last()
        ),
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

/// Metric value of `series` in a scrape.
fn series(metrics: &str, name: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(str::to_owned)
}

/// Waits until `path` holds `n` lines.
async fn wait_lines(path: &Path, n: usize) {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} does not hold {n} lines", path.display());
}

/// Rewrites the proxy's config with `edit`, sends SIGHUP, and waits for
/// the `count`th log line containing `outcome`.
async fn reload_with(proxy: &Proxy, edit: impl Fn(&str) -> String, outcome: &str, count: usize) {
    let text = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(proxy.config_path(), edit(&text)).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log(outcome, count).await;
}

async fn get(proxy: &Proxy, n: usize) {
    for _ in 0..n {
        Client::bound_to(ips::FR)
            .get(proxy.addr(), "/b/k", &[])
            .await;
    }
}

/// A reload pointing `[audit] path` at a file that holds its own chain
/// appends to that chain, not to the one in memory: each file verifies on
/// its own, from genesis. (Before, the new file got the old file's chain
/// and verified neither alone nor after the old file.)
#[tokio::test]
async fn a_reload_to_an_existing_audit_file_continues_that_files_chain() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    get(&proxy, 2).await;
    wait_lines(&proxy.audit_path(), 2).await;

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.jsonl");
    let lines = seal(&mut Chain::new(), 100, 103);
    write(dir.path(), "other.jsonl", &refs(&lines));
    let old = proxy.audit_path().display().to_string();
    let new = other.display().to_string();
    reload_with(&proxy, |t| t.replace(&old, &new), "reloaded", 1).await;
    assert!(
        proxy.logs().contains(
            "audit file reopened; it holds records, their chain continues from its last record"
        ),
        "{}",
        proxy.logs()
    );
    get(&proxy, 2).await;
    wait_lines(&other, 5).await;

    let out = verify(dir.path(), &["other.jsonl"]);
    assert_eq!(text(&out.stderr), "");
    assert!(text(&out.stdout).starts_with("ok: 5 records in 1 file, from genesis to "));
    let stdout = assert_audit_verifies(&[&proxy.audit_path()]);
    assert!(
        stdout.starts_with("ok: 2 records in 1 file, from genesis to "),
        "{stdout}"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        series(&m, "residency_config_reloads_total{result=\"success\"}").as_deref(),
        Some("1")
    );
}

/// A reload pointing `[audit] path` at a file whose last line is not a
/// sealed record is refused whole: records keep going to the old file,
/// the other file is left as it was, and the reload counts as a failure.
#[tokio::test]
async fn a_reload_to_an_audit_file_with_a_broken_tail_is_refused() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    get(&proxy, 1).await;
    wait_lines(&proxy.audit_path(), 1).await;

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.jsonl");
    let lines = seal(&mut Chain::new(), 100, 102);
    let cut = format!("{}\n{}", lines[0], &lines[1][..40]);
    std::fs::write(&other, &cut).unwrap();
    let old = proxy.audit_path().display().to_string();
    let new = other.display().to_string();
    reload_with(&proxy, |t| t.replace(&old, &new), "reload refused", 1).await;
    assert!(
        proxy.logs().contains(&format!(
            "cannot reopen the audit trail; records keep going to the current file: audit file {new} ends with an unfinished line"
        )),
        "{}",
        proxy.logs()
    );
    get(&proxy, 2).await;
    wait_lines(&proxy.audit_path(), 3).await;
    assert_eq!(std::fs::read_to_string(&other).unwrap(), cut);
    let stdout = assert_audit_verifies(&[&proxy.audit_path()]);
    assert!(
        stdout.starts_with("ok: 3 records in 1 file, from genesis to "),
        "{stdout}"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        series(&m, "residency_config_reloads_total{result=\"failure\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        series(&m, "residency_config_reloads_total{result=\"success\"}").as_deref(),
        Some("0")
    );
}

/// `[audit] enabled` and `queue` are read at start: a reload changing
/// either is refused whole, naming the key, never logged as "reloaded"
/// while ignored. Both directions of `enabled`.
#[tokio::test]
async fn a_reload_changing_audit_enabled_or_queue_is_refused_naming_the_key() {
    let geo = standard_geo(Layout::IpLocationDb).build();
    let origin = Origin::start(ips::ORIGIN).await;
    let proxy = Proxy::start(&config(&geo, &origin, "", "", ""));
    let refusals = [
        (
            "enabled = false\n",
            "[audit] enabled (running with true, file has false) cannot change on reload (read only at start); restart to apply",
        ),
        (
            "queue = 8\n",
            "[audit] queue (running with 4096, file has 8) cannot change on reload (read only at start); restart to apply",
        ),
    ];
    let original = std::fs::read_to_string(proxy.config_path()).unwrap();
    for (n, (line, message)) in refusals.iter().enumerate() {
        reload_with(
            &proxy,
            |_| format!("{original}{line}"),
            "reload refused",
            n + 1,
        )
        .await;
        assert!(proxy.logs().contains(message), "{}", proxy.logs());
    }
    assert!(!proxy.logs().contains("reloaded"), "{}", proxy.logs());
    // Still tracing, on the chain it started.
    get(&proxy, 1).await;
    wait_lines(&proxy.audit_path(), 1).await;
    assert_audit_verifies(&[&proxy.audit_path()]);
    let m = proxy.metrics().await;
    assert_eq!(
        series(&m, "residency_config_reloads_total{result=\"failure\"}").as_deref(),
        Some("2")
    );
    // A refused file on disk does not stop rotation: SIGHUP still reopens
    // the audit file (at the path in force), and the chain continues.
    let rotated = proxy.audit_path().with_extension("jsonl.1");
    std::fs::rename(proxy.audit_path(), &rotated).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("audit file reopened", 1).await;
    proxy.wait_for_log("reload refused", 3).await;
    get(&proxy, 1).await;
    wait_lines(&proxy.audit_path(), 1).await;
    let stdout = assert_audit_verifies(&[&rotated, &proxy.audit_path()]);
    assert!(
        stdout.starts_with("ok: 2 records in 2 files, from genesis to "),
        "{stdout}"
    );

    let off = format!(
        "{}\n[audit]\nenabled = false\n",
        config(&geo, &origin, "", "", "")
    );
    let proxy = Proxy::start(&off);
    reload_with(
        &proxy,
        |t| t.replace("enabled = false", "enabled = true"),
        "reload refused",
        1,
    )
    .await;
    assert!(
        proxy.logs().contains(
            "[audit] enabled (running with false, file has true) cannot change on reload"
        ),
        "{}",
        proxy.logs()
    );
    let m = proxy.metrics().await;
    assert_eq!(
        series(&m, "residency_config_reloads_total{result=\"failure\"}").as_deref(),
        Some("1")
    );
}
