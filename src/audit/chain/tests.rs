use std::io::Write as _;

use sha2::{Digest, Sha256};

use super::*;
use crate::audit::record::example;

/// What an auditor would do, following the module doc, independently of
/// `unseal`: returns (hash written, hash computed).
fn auditor(line: &str) -> (String, String) {
    let body = &line[..line.len() - 75];
    let written = &line[line.len() - 75..];
    assert!(written.starts_with(",\"hash\":\"") && written.ends_with("\"}"));
    let hashed = format!("{body}}}");
    (
        written[9..73].to_owned(),
        hex(&Sha256::digest(hashed.as_bytes())),
    )
}

/// A line sealed by hand over arbitrary JSON object text `body`.
fn seal_raw(body: &str) -> String {
    let hash = hex(&Sha256::digest(body.as_bytes()));
    format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1])
}

fn rejected(line: &str) -> Rejected {
    unseal(line.as_bytes()).unwrap_err()
}

#[test]
fn seal_links_records_and_the_hash_covers_the_written_bytes() {
    let mut chain = Chain::new();
    assert_eq!(chain.last(), GENESIS);
    let mut first = example(1);
    let line1 = chain.seal(&mut first);
    assert_eq!(first.prev, GENESIS);
    let (written, computed) = auditor(&line1);
    assert_eq!(written, computed);
    assert_eq!(chain.last(), written);

    let mut second = example(2);
    let line2 = chain.seal(&mut second);
    assert_eq!(second.prev, written);
    assert!(line2.contains(&format!("\"prev\":\"{written}\",\"hash\":\"")));
    assert!(!line2.contains('\n'));
    let (written2, computed2) = auditor(&line2);
    assert_eq!(written2, computed2);
    assert_eq!(chain.last(), written2);
}

#[test]
fn seal_then_unseal_gives_the_record_back() {
    let mut chain = Chain::new();
    let mut record = example(7);
    record.object_key = Some("bücket/ключ/\"quoted\"\\/\u{1}".into());
    record.purpose = Some("care\tteam".into());
    let line = chain.seal(&mut record);
    let sealed = unseal(line.as_bytes()).unwrap();
    assert_eq!(sealed.record, record);
    assert_eq!(sealed.hash, chain.last());
}

#[test]
fn hex_is_lower_case() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    assert_eq!(hex(&[]), "");
}

#[test]
fn lines_that_are_not_json_objects_are_incomplete() {
    let line = Chain::new().seal(&mut example(1));
    for bad in [
        "",
        " ",
        "not json",
        "[1,2]",
        "\"string\"",
        "null",
        &line[..line.len() - 1],
        &line[..40],
        &format!("{line}{line}"),
    ] {
        assert_eq!(rejected(bad).problem, Problem::Incomplete, "{bad:?}");
        assert_eq!(rejected(bad).request_id, None);
    }
    let mut invalid_utf8 = line.clone().into_bytes();
    invalid_utf8[20] = 0xff;
    assert_eq!(
        unseal(&invalid_utf8).unwrap_err().problem,
        Problem::Incomplete
    );
}

#[test]
fn a_record_without_a_string_hash_is_missing_its_hash() {
    let mut record = example(3);
    record.prev = GENESIS.into();
    let plain = serde_json::to_string(&record).unwrap();
    let r = rejected(&plain);
    assert_eq!(r.problem, Problem::MissingHash);
    assert_eq!(r.request_id.as_deref(), Some("0000000000000003"));
    let numeric = format!("{},\"hash\":12}}", &plain[..plain.len() - 1]);
    assert_eq!(rejected(&numeric).problem, Problem::MissingHash);
}

#[test]
fn an_edited_field_is_a_hash_mismatch_naming_the_request() {
    let line = Chain::new().seal(&mut example(4));
    let edited = line.replace("\"status\":451", "\"status\":200");
    assert_ne!(edited, line);
    let r = rejected(&edited);
    assert_eq!(r.problem, Problem::HashMismatch);
    assert_eq!(r.request_id.as_deref(), Some("0000000000000004"));
}

#[test]
fn a_hash_that_is_not_written_where_and_as_the_format_says_is_a_mismatch() {
    let line = Chain::new().seal(&mut example(5));
    let (hash, _) = auditor(&line);
    let body = &line[..line.len() - 75];
    let cases = [
        // upper-case hex
        format!("{body},\"hash\":\"{}\"}}", hash.to_uppercase()),
        // whitespace, as `jq .` or an editor would write it
        format!("{body}, \"hash\": \"{hash}\" }}"),
        // CRLF line ending left by an editor
        format!("{line}\r"),
        // the hash moved to the front
        format!("{{\"hash\":\"{hash}\",{}}}", &body[1..]),
        // a short hash
        format!("{body},\"hash\":\"{}\"}}", &hash[..63]),
        // a second, forged hash member after the real one
        format!(
            "{},\"hash\":\"{}\"}}",
            &line[..line.len() - 1],
            "0".repeat(64)
        ),
    ];
    for bad in &cases {
        assert_eq!(rejected(bad).problem, Problem::HashMismatch, "{bad}");
    }
}

#[test]
fn a_correctly_hashed_line_must_still_be_an_audit_record() {
    let missing_fields = seal_raw("{\"time\":\"x\",\"request_id\":\"AB\"}");
    let r = rejected(&missing_fields);
    assert_eq!(r.problem, Problem::NotARecord);
    assert_eq!(r.request_id.as_deref(), Some("AB"));

    let mut record = example(6);
    record.prev = "abc".into();
    let bad_prev = seal_raw(&serde_json::to_string(&record).unwrap());
    assert_eq!(rejected(&bad_prev).problem, Problem::NotARecord);

    let wrong_type = seal_raw(
        &serde_json::to_string(&example(6))
            .unwrap()
            .replace("\"status\":451", "\"status\":\"451\""),
    );
    assert_eq!(rejected(&wrong_type).problem, Problem::NotARecord);
}

#[test]
fn unknown_fields_are_accepted_when_hashed() {
    let mut record = example(8);
    record.prev = GENESIS.into();
    let json = serde_json::to_string(&record).unwrap();
    let newer = seal_raw(&format!("{},\"tenant\":\"t1\"}}", &json[..json.len() - 1]));
    assert_eq!(unseal(newer.as_bytes()).unwrap().record, record);
}

#[test]
fn overlong_lines_are_refused_before_parsing() {
    let long = vec![b' '; MAX_LINE + 1];
    assert_eq!(unseal(&long).unwrap_err().problem, Problem::TooLong);
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `n` sealed lines, each with its `\n`, and the chain after them.
fn sealed_lines(n: u64, chain: &mut Chain) -> String {
    (0..n)
        .map(|i| chain.seal(&mut example(i)) + "\n")
        .collect::<String>()
}

#[test]
fn resume_a_missing_or_empty_file_starts_a_new_chain() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.jsonl");
    assert_eq!(Chain::resume(&missing).unwrap().last(), GENESIS);
    let empty = write(&dir, "empty.jsonl", b"");
    assert_eq!(Chain::resume(&empty).unwrap().last(), GENESIS);
}

#[test]
fn resume_continues_from_the_last_line_of_a_long_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    // Thousands of lines: the last one straddles 8 KiB read steps.
    let text = sealed_lines(3000, &mut chain);
    let path = write(&dir, "a.jsonl", text.as_bytes());
    assert_eq!(Chain::resume(&path).unwrap(), chain);
}

#[test]
fn resume_reads_a_single_line_longer_than_a_read_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let mut record = example(1);
    record.purpose = Some("p".repeat(50_000));
    let text = sealed_lines(2, &mut chain) + &chain.seal(&mut record) + "\n";
    let path = write(&dir, "a.jsonl", text.as_bytes());
    assert_eq!(Chain::resume(&path).unwrap(), chain);
    let only = write(&dir, "b.jsonl", text.lines().last().unwrap().as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&only)
        .unwrap();
    f.write_all(b"\n").unwrap();
    assert_eq!(Chain::resume(&only).unwrap(), chain);
}

#[test]
fn resume_refuses_a_file_ending_mid_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = sealed_lines(3, &mut Chain::new());
    let path = write(&dir, "cut.jsonl", &text.as_bytes()[..text.len() - 30]);
    let err = Chain::resume(&path).unwrap_err();
    assert!(matches!(err, AuditError::UnfinishedLine { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.jsonl"), "{err}");
}

#[test]
fn resume_refuses_a_last_line_that_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let text = sealed_lines(3, &mut Chain::new()).replace("\"status\":451", "\"status\":200");
    let path = write(&dir, "edited.jsonl", text.as_bytes());
    let err = Chain::resume(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the last line of audit file {} is not a sealed record: hash mismatch (record edited)",
            path.display()
        )
    );
    for (name, bytes) in [
        ("newline.jsonl", &b"\n"[..]),
        ("blank-last.jsonl", b"x\n\n"),
    ] {
        let path = write(&dir, name, bytes);
        let err = Chain::resume(&path).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::LastRecord {
                    problem: Problem::Incomplete,
                    ..
                }
            ),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn resume_refuses_an_overlong_last_line_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sealed_lines(1, &mut Chain::new()).into_bytes();
    bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    bytes.push(b'\n');
    let path = write(&dir, "long.jsonl", &bytes);
    let err = Chain::resume(&path).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::LastRecord {
                problem: Problem::TooLong,
                ..
            }
        ),
        "{err:?}"
    );
}

#[cfg(unix)]
#[test]
fn resume_names_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    // A directory opens on Unix but cannot be read as a file.
    let err = Chain::resume(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Read { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read audit file {}", dir.path().display())
    );
}

/// The example line of the module doc is exactly what `seal` writes.
#[test]
fn the_documented_example_line_is_real() {
    let doc = include_str!("../chain.rs");
    let example_line = doc
        .lines()
        .find_map(|l| l.strip_prefix("//! {\"time\""))
        .map(|rest| format!("{{\"time\"{rest}"))
        .unwrap();
    let mut record = example(1);
    record.time = "2026-11-28T15:20:13.123Z".into();
    record.request_id = "17C0E2A49B3D5F01".into();
    record.object_key = Some("bucket/key".into());
    record.duration_ms = 0;
    assert_eq!(Chain::new().seal(&mut record), example_line);
    assert_eq!(unseal(example_line.as_bytes()).unwrap().record, record);
}

#[test]
fn seal_into_a_batch_buffer_writes_what_seal_returns() {
    // The writer seals a whole batch into one buffer: each line must be the
    // one `seal` alone would write, hashed from its own first byte.
    let (mut alone, mut batched) = (Chain::new(), Chain::new());
    let mut buf = b"earlier line\n".to_vec();
    let mut want = buf.clone();
    for i in 0..3 {
        want.extend_from_slice(alone.seal(&mut example(i)).as_bytes());
        want.push(b'\n');
        batched.seal_into(&mut example(i), &mut buf);
        buf.push(b'\n');
    }
    assert_eq!(buf, want);
    assert_eq!(batched.last(), alone.last());
}
