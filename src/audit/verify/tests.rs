use super::*;
use crate::audit::chain::{Chain, GENESIS, unseal};
use crate::audit::record::example;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Records `from..to`, sealed on `chain`, one line each (without `\n`).
fn lines(chain: &mut Chain, from: u64, to: u64) -> Vec<String> {
    (from..to).map(|i| chain.seal(&mut example(i))).collect()
}

fn file_text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Verifies from genesis, with no expected last hash.
fn check(paths: &[PathBuf]) -> Result<Summary, Failure> {
    verify(paths, &Expect::default())
}

fn bad(result: Result<Summary, Failure>) -> (PathBuf, u64, Option<String>, Problem) {
    match result.unwrap_err() {
        Failure::Record {
            path,
            line,
            request_id,
            problem,
        } => (path, line, request_id, problem),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_chain_across_two_files_verifies_and_is_summarised() {
    let files = Files::new();
    let mut chain = Chain::new();
    let a = files.write("a", file_text(&lines(&mut chain, 1, 4)));
    let b = files.write("b", file_text(&lines(&mut chain, 4, 6)));
    let summary = check(&[a, b]).unwrap();
    assert_eq!(
        summary,
        Summary {
            records: 5,
            files: 2,
            first_prev: Some(GENESIS.into()),
            last_hash: Some(chain.last().into()),
        }
    );
}

#[test]
fn a_later_file_alone_fails_at_its_first_record_unless_given_its_start() {
    let files = Files::new();
    let mut chain = Chain::new();
    lines(&mut chain, 1, 3);
    let start = chain.last().to_owned();
    let b = files.write("b", file_text(&lines(&mut chain, 3, 5)));
    let paths = [b.clone()];
    assert_eq!(
        bad(check(&paths)),
        (
            b.clone(),
            1,
            Some("0000000000000003".into()),
            Problem::NotGenesis
        )
    );
    let from = |from: &str| Expect {
        from: Some(from.to_owned()),
        last: None,
    };
    let summary = verify(&paths, &from(&start)).unwrap();
    assert_eq!(summary.first_prev, Some(start));
    assert_eq!(summary.records, 2);
    assert_eq!(
        bad(verify(&paths, &from(chain.last()))),
        (b, 1, Some("0000000000000003".into()), Problem::FromMismatch)
    );
}

#[test]
fn a_trail_whose_first_records_were_deleted_fails_at_its_new_first_record() {
    let files = Files::new();
    let l = lines(&mut Chain::new(), 1, 5);
    for cut in 1..4 {
        let path = files.write("a", file_text(&l[cut..]));
        let id = format!("{:016X}", cut + 1);
        assert_eq!(
            bad(check(std::slice::from_ref(&path))),
            (path, 1, Some(id), Problem::NotGenesis),
            "first {cut} deleted"
        );
    }
    // --from genesis is the default made explicit: it does not excuse a cut.
    let path = files.write("a", file_text(&l[1..]));
    let expect = Expect {
        from: Some(GENESIS.into()),
        last: None,
    };
    assert_eq!(
        bad(verify(std::slice::from_ref(&path), &expect)).3,
        Problem::FromMismatch
    );
}

#[test]
fn expect_last_accepts_the_last_hash_and_names_any_other() {
    let files = Files::new();
    let mut chain = Chain::new();
    let l = lines(&mut chain, 1, 5);
    let a = files.write("a", file_text(&l));
    let last = |last: &str| Expect {
        from: None,
        last: Some(last.to_owned()),
    };
    assert_eq!(verify(&[a], &last(chain.last())).unwrap().records, 4);
    // The tail cut: the file still verifies alone, not against the hash kept.
    let cut = files.write("cut", file_text(&l[..3]));
    let err = verify(std::slice::from_ref(&cut), &last(chain.last())).unwrap_err();
    let third = unseal(l[2].as_bytes()).unwrap().hash;
    match &err {
        Failure::LastMismatch {
            path,
            line,
            found,
            expected,
        } => assert_eq!(
            (path, *line, found, expected.as_str()),
            (&cut, 3, &third, chain.last())
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: the trail ends with hash {third}, not {} (--expect-last): records removed from the end, or added after it",
            cut.display(),
            chain.last()
        )
    );
}

#[test]
fn records_yields_the_trail_check_after_the_last_record() {
    let files = Files::new();
    let a = files.write("a", file_text(&lines(&mut Chain::new(), 1, 3)));
    let paths = [a];
    let expect = Expect {
        from: None,
        last: Some(GENESIS.into()),
    };
    let mut walk = records(&paths, &expect);
    assert!(walk.next().unwrap().is_ok());
    assert!(walk.next().unwrap().is_ok());
    assert!(matches!(
        walk.next(),
        Some(Err(Failure::LastMismatch { .. }))
    ));
    assert!(walk.next().is_none());
}

#[test]
fn empty_files_hold_no_records_and_do_not_break_the_chain() {
    let files = Files::new();
    let mut chain = Chain::new();
    let a = files.write("a", file_text(&lines(&mut chain, 1, 3)));
    let empty = files.write("empty", "");
    let c = files.write("c", file_text(&lines(&mut chain, 3, 4)));
    assert_eq!(check(&[a, empty, c]).unwrap().records, 3);
}

#[test]
fn a_trail_without_records_fails_naming_its_files() {
    let files = Files::new();
    let empty = files.write("empty", "");
    let other = files.write("other", "");
    let both = [empty.clone(), other.clone()];
    let err = check(&both).unwrap_err();
    assert!(matches!(&err, Failure::Empty { paths } if *paths == both));
    assert_eq!(
        err.to_string(),
        format!(
            "no audit record in {}, {}: an empty trail proves nothing",
            empty.display(),
            other.display()
        )
    );
    // Told where to start, an empty segment still proves nothing.
    let expect = Expect {
        from: Some("ab".repeat(32)),
        last: None,
    };
    assert!(matches!(
        verify(&[empty], &expect),
        Err(Failure::Empty { .. })
    ));
}

#[test]
fn a_final_line_without_newline_is_accepted_if_it_verifies() {
    let files = Files::new();
    let l = lines(&mut Chain::new(), 1, 3);
    let a = files.write("a", format!("{}\n{}", l[0], l[1]));
    assert_eq!(check(&[a]).unwrap().records, 2);
}

#[test]
fn an_edited_record_is_named_by_file_line_and_request_id() {
    let files = Files::new();
    let mut l = lines(&mut Chain::new(), 1, 4);
    l[1] = l[1].replace("\"status\":451", "\"status\":200");
    let a = files.write("a", file_text(&l));
    assert_eq!(
        bad(check(std::slice::from_ref(&a))),
        (a, 2, Some("0000000000000002".into()), Problem::HashMismatch)
    );
}

#[test]
fn an_edited_and_rehashed_record_breaks_the_next_link() {
    let files = Files::new();
    let mut chain = Chain::new();
    let mut l = lines(&mut chain, 1, 2);
    let mut forged = example(2);
    forged.status = 200;
    // The forger reseals record 2 on the right prev: its own hash is fine,
    // but record 3 still points at the original record 2.
    let mut forger = chain.clone();
    l.push(forger.seal(&mut forged));
    lines(&mut chain, 2, 3);
    l.extend(lines(&mut chain, 3, 4));
    let a = files.write("a", file_text(&l));
    let (_, line, id, problem) = bad(check(&[a]));
    assert_eq!(
        (line, id.as_deref(), problem),
        (3, Some("0000000000000003"), Problem::PrevMismatch)
    );
}

#[test]
fn deleted_inserted_and_swapped_records_break_the_chain() {
    let files = Files::new();
    let l = lines(&mut Chain::new(), 1, 5);
    let stranger = Chain::new().seal(&mut example(99));
    let cases: [(&str, Vec<&String>, u64, &str); 3] = [
        ("deleted", vec![&l[0], &l[2], &l[3]], 2, "0000000000000003"),
        (
            "inserted",
            vec![&l[0], &stranger, &l[1]],
            2,
            "0000000000000063",
        ),
        (
            "swapped",
            vec![&l[0], &l[2], &l[1], &l[3]],
            2,
            "0000000000000003",
        ),
    ];
    for (name, picked, line, id) in cases {
        let text: String = picked.iter().map(|l| format!("{l}\n")).collect();
        let path = files.write(name, text);
        assert_eq!(
            bad(check(std::slice::from_ref(&path))),
            (path, line, Some(id.into()), Problem::PrevMismatch),
            "{name}"
        );
    }
}

#[test]
fn files_in_the_wrong_order_fail_at_the_first_record_given() {
    let files = Files::new();
    let mut chain = Chain::new();
    let a = files.write("a", file_text(&lines(&mut chain, 1, 3)));
    let b = files.write("b", file_text(&lines(&mut chain, 3, 5)));
    let (path, line, id, problem) = bad(check(&[b.clone(), a]));
    assert_eq!(
        (path, line, id.as_deref(), problem),
        (b, 1, Some("0000000000000003"), Problem::NotGenesis)
    );
}

#[test]
fn truncated_blank_and_unhashed_lines_are_named() {
    let files = Files::new();
    let l = lines(&mut Chain::new(), 1, 4);
    let truncated = files.write("t", format!("{}\n{}\n{}", l[0], l[1], &l[2][..50]));
    assert_eq!(
        bad(check(std::slice::from_ref(&truncated))),
        (truncated, 3, None, Problem::Incomplete)
    );
    let blank = files.write("b", format!("{}\n\n{}\n", l[0], l[1]));
    assert_eq!(
        bad(check(std::slice::from_ref(&blank))),
        (blank, 2, None, Problem::Incomplete)
    );
    let json = &l[1][..l[1].len() - 75];
    let unhashed = files.write("u", format!("{}\n{json}}}\n", l[0]));
    assert_eq!(
        bad(check(std::slice::from_ref(&unhashed))),
        (
            unhashed,
            2,
            Some("0000000000000002".into()),
            Problem::MissingHash
        )
    );
}

#[test]
fn an_overlong_line_is_refused_without_being_buffered_whole() {
    let files = Files::new();
    let l = lines(&mut Chain::new(), 1, 2);
    let mut bytes = format!("{}\n", l[0]).into_bytes();
    bytes.extend(std::iter::repeat_n(b'{', 3 * MAX_LINE));
    let path = files.write("long", bytes);
    assert_eq!(
        bad(check(std::slice::from_ref(&path))),
        (path, 2, None, Problem::TooLong)
    );
}

#[test]
fn an_unreadable_file_is_a_read_failure_naming_it() {
    let files = Files::new();
    let missing = files.dir.path().join("missing");
    let err = check(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(err, Failure::Read { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read audit file {}", missing.display())
    );
}

#[test]
fn the_failure_line_escapes_a_hostile_request_id() {
    let failure = Failure::Record {
        path: "audit.jsonl".into(),
        line: 7,
        request_id: Some(format!("\u{1b}[31mred\n{}", "x".repeat(100))),
        problem: Problem::PrevMismatch,
    };
    let shown = failure.to_string();
    assert_eq!(
        shown,
        format!(
            "audit.jsonl:7: prev does not match the previous record (record deleted, inserted or reordered) (request_id \\u{{1b}}[31mred\\n{})",
            "x".repeat(64 - 9)
        )
    );
    let none = Failure::Record {
        path: "a".into(),
        line: 1,
        request_id: None,
        problem: Problem::Incomplete,
    };
    assert_eq!(
        none.to_string(),
        "a:1: not a complete record (truncated or not JSON)"
    );
}

#[test]
fn records_yields_verified_records_then_stops_at_the_first_failure() {
    let files = Files::new();
    let mut l = lines(&mut Chain::new(), 1, 5);
    l[2] = l[2].replace("\"status\":451", "\"status\":200");
    let a = files.write("a", file_text(&l));
    let paths = [a];
    let expect = Expect::default();
    let mut walk = records(&paths, &expect);
    assert_eq!(walk.next().unwrap().unwrap().request_id, "0000000000000001");
    assert_eq!(walk.next().unwrap().unwrap().request_id, "0000000000000002");
    assert!(walk.next().unwrap().is_err());
    assert!(walk.next().is_none());
    assert_eq!(walk.summary().records, 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any trail cut at its head or tail, in any split into two files:
    /// verified from genesis with the kept last hash it fails exactly when
    /// something was cut; told the right start (`--from`), a head cut alone
    /// verifies, and the failure for a head cut names the first file's
    /// first line.
    #[test]
    fn any_cut_at_either_end_is_caught(
        n in 1u64..10,
        head in 0usize..10,
        tail in 0usize..10,
        split in 0usize..10,
    ) {
        let files = Files::new();
        let mut chain = Chain::new();
        let l = lines(&mut chain, 1, n + 1);
        let head = head.min(l.len());
        let tail = tail.min(l.len() - head);
        let kept = &l[head..l.len() - tail];
        let split = split.min(kept.len());
        let paths = [
            files.write("a", file_text(&kept[..split])),
            files.write("b", file_text(&kept[split..])),
        ];
        let kept_last = Expect { from: None, last: Some(chain.last().to_owned()) };
        let result = verify(&paths, &kept_last);
        proptest::prop_assert_eq!(result.is_ok(), head == 0 && tail == 0, "{:?}", result);
        let from = (head > 0).then(|| unseal(l[head - 1].as_bytes()).unwrap().hash);
        let started = verify(&paths, &Expect { from, last: None });
        proptest::prop_assert_eq!(started.is_ok(), !kept.is_empty(), "{:?}", started);
        if head > 0 && !kept.is_empty() {
            let first = if split > 0 { &paths[0] } else { &paths[1] };
            proptest::prop_assert_eq!(
                bad(check(&paths)),
                (first.clone(), 1, Some(format!("{:016X}", head + 1)), Problem::NotGenesis)
            );
        }
    }
}
