//! The identities and grants files, the `[identities]`, `[grants]` and
//! `[transparency]` sections, generated from their grammar (entries with
//! random valid values), and mutated (a field dropped, a value of the wrong
//! type, a control character or direction mark, a huge value, a key twice,
//! an unknown key, an entry twice). Whatever is written: the loader does
//! not panic; a valid file is accepted and reads back as generated; a
//! refusal names `path:line:col` inside the text; a value holding a control
//! character or a direction mark is never accepted.
//!
//! The grammar and its mutations are here; the generators and the
//! properties of each file or section in the submodule named for it.

use std::fmt::Write as _;

use proptest::prelude::*;

use crate::config::ConfigError;

mod files;
mod sections;
mod transparency;

const ROUTES: &str = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\n\n\
    [[route]]\nname = \"other\"\npath_prefix = \"/other/\"\nupstreams = [\"http://127.0.0.1:9\"]\n\n";
const ROUTE_NAMES: [&str; 2] = ["s3", "other"];

/// A value as written.
#[derive(Debug, Clone)]
enum Val {
    /// A TOML string.
    Str(String),
    /// An array of strings.
    List(Vec<String>),
    /// `[{ approver = …, signature = … }, …]`
    Approvals(Vec<(String, String)>),
    /// TOML as is (dates, booleans, integers, wrong types).
    Raw(String),
}

#[derive(Debug, Clone)]
struct Field {
    key: &'static str,
    val: Val,
    required: bool,
    /// A control character or direction mark in it must be refused.
    checked: bool,
}

fn req(key: &'static str, val: Val) -> Field {
    Field {
        key,
        val,
        required: true,
        checked: true,
    }
}

fn opt(key: &'static str, val: Val) -> Field {
    Field {
        required: false,
        ..req(key, val)
    }
}

/// A table (`header`, or the top level when empty) and its fields.
#[derive(Debug, Clone)]
struct Entry {
    header: &'static str,
    fields: Vec<Field>,
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render(prefix: &str, entries: &[Entry]) -> String {
    let mut out = prefix.to_owned();
    for e in entries {
        if !e.header.is_empty() {
            out.push_str(e.header);
            out.push('\n');
        }
        for f in &e.fields {
            let v = match &f.val {
                Val::Str(s) => quote(s),
                Val::List(l) => format!(
                    "[{}]",
                    l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
                ),
                Val::Approvals(l) => format!(
                    "[{}]",
                    l.iter()
                        .map(|(a, s)| format!(
                            "{{ approver = {}, signature = {} }}",
                            quote(a),
                            quote(s)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Val::Raw(r) => r.clone(),
            };
            let _ = writeln!(out, "{} = {v}", f.key);
        }
        out.push('\n');
    }
    out
}

/// Control characters, direction marks and overrides, and the other
/// format characters and separators that make two values that read alike
/// differ (zero-width space, joiners, word joiner, soft hyphen, byte order
/// mark, line and paragraph separators, tags…).
const HIDDEN: [char; 37] = [
    '\u{0}',
    '\u{1}',
    '\u{7}',
    '\u{8}',
    '\t',
    '\n',
    '\r',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{9f}',
    '\u{200e}',
    '\u{200f}',
    '\u{202a}',
    '\u{202b}',
    '\u{202c}',
    '\u{202d}',
    '\u{202e}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{ad}',
    '\u{61c}',
    '\u{180e}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{2028}',
    '\u{2029}',
    '\u{2060}',
    '\u{2064}',
    '\u{feff}',
    '\u{fff9}',
    '\u{e0001}',
    '\u{e0041}',
    '\u{1d173}',
];

fn hidden(c: char) -> bool {
    HIDDEN.contains(&c) || c.is_control()
}

#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    WrongType(usize, usize),
    Inject(usize, char, usize),
    Huge(usize),
    DuplicateKey(usize),
    UnknownKey,
    DuplicateEntry,
}

fn mutation(chars: Vec<char>) -> impl Strategy<Value = (usize, Mutation)> {
    let m = prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(f, k)| Mutation::WrongType(f, k)),
        (
            any::<usize>(),
            proptest::sample::select(chars),
            any::<usize>()
        )
            .prop_map(|(f, c, at)| Mutation::Inject(f, c, at)),
        any::<usize>().prop_map(Mutation::Huge),
        any::<usize>().prop_map(Mutation::DuplicateKey),
        Just(Mutation::UnknownKey),
        Just(Mutation::DuplicateEntry),
    ];
    (any::<usize>(), m)
}

/// Applies `m` to one of `entries` (those from `first` on); whether the
/// result must be refused (`huge_refused`: a huge value must be).
fn mutate(
    entries: &mut Vec<Entry>,
    first: usize,
    at: usize,
    m: &Mutation,
    huge_refused: bool,
) -> bool {
    if entries.len() <= first {
        return false;
    }
    let e = first + at % (entries.len() - first);
    let fields = &mut entries[e].fields;
    let pick = |fields: &[Field], ok: &dyn Fn(&Field) -> bool, n: usize| {
        let idx: Vec<usize> = (0..fields.len()).filter(|&i| ok(&fields[i])).collect();
        (!idx.is_empty()).then(|| idx[n % idx.len()])
    };
    match *m {
        Mutation::Drop(n) => pick(fields, &|f| f.required, n).is_some_and(|i| {
            fields.remove(i);
            true
        }),
        Mutation::WrongType(n, k) => pick(fields, &|_| true, n).is_some_and(|i| {
            let wrong: &[&str] = match &fields[i].val {
                Val::Str(_) => &["7", "true", "[]", "{ a = \"x\" }", "2026-01-10"],
                Val::List(_) => &["7", "\"s3\"", "{ a = \"x\" }"],
                Val::Approvals(_) => &["7", "\"x\"", "[1]", "[\"x\"]"],
                Val::Raw(_) => &["\"2026-01-10\"", "[]", "{ a = 1 }"],
            };
            fields[i].val = Val::Raw(wrong[k % wrong.len()].to_owned());
            true
        }),
        Mutation::Inject(n, c, pos) => {
            let injectable = |f: &Field| {
                f.checked
                    && match &f.val {
                        Val::Str(_) => true,
                        Val::List(l) => !l.is_empty(),
                        Val::Approvals(l) => !l.is_empty(),
                        Val::Raw(_) => false,
                    }
            };
            let insert = |s: &mut String| {
                let at = s
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([s.len()])
                    .nth(pos % (s.chars().count() + 1))
                    .unwrap_or(0);
                s.insert(at, c);
            };
            pick(fields, &injectable, n).is_some_and(|i| {
                match &mut fields[i].val {
                    Val::Str(s) => insert(s),
                    Val::List(l) => insert(&mut l[0]),
                    Val::Approvals(l) if pos % 2 == 0 => insert(&mut l[0].0),
                    Val::Approvals(l) => insert(&mut l[0].1),
                    Val::Raw(_) => {}
                }
                true
            })
        }
        Mutation::Huge(n) => {
            let huge = |f: &Field| match &f.val {
                Val::Str(_) => true,
                Val::Raw(r) => r.starts_with(|c: char| c.is_ascii_digit()),
                _ => false,
            };
            pick(fields, &huge, n).is_some_and(|i| match &mut fields[i].val {
                Val::Str(s) => {
                    *s = s.repeat(5000 / s.chars().count().max(1) + 1);
                    huge_refused
                }
                // An integer past u64 (refused by TOML), a date in 9999.
                Val::Raw(r) if r.parse::<u64>().is_ok() => {
                    *r = "18446744073709551616".into();
                    true
                }
                Val::Raw(r) => {
                    r.replace_range(..4, "9999");
                    false
                }
                _ => false,
            })
        }
        Mutation::DuplicateKey(n) => pick(fields, &|_| true, n).is_some_and(|i| {
            let again = fields[i].clone();
            fields.push(again);
            true
        }),
        Mutation::UnknownKey => {
            fields.push(opt("colour", Val::Str("red".into())));
            true
        }
        Mutation::DuplicateEntry => {
            let again = entries[e].clone();
            entries.insert(e + 1, again);
            true
        }
    }
}

/// Every problem of `e` at a line and column inside `text`, each line of
/// the message `path:line:col: …`; in a transparency file, the inner
/// position inside `inner` too.
fn located(
    e: &ConfigError,
    path: &str,
    text: &str,
    inner: Option<(&str, &str)>,
) -> Result<(), TestCaseError> {
    let ConfigError::Invalid { problems, .. } = e else {
        return Err(TestCaseError::fail(format!("not a located refusal: {e:?}")));
    };
    prop_assert!(!problems.is_empty());
    let inside = |text: &str, line: usize, column: usize| {
        text.split('\n')
            .nth(line.wrapping_sub(1))
            .is_some_and(|l| (1..=l.chars().count() + 1).contains(&column))
    };
    for p in problems {
        prop_assert!(inside(text, p.line, p.column), "{p:?} outside\n{text}");
        if let (Some((name, inner)), Some(rest)) =
            (inner, p.message.strip_prefix("in transparency file: "))
        {
            let mut parts = rest
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or("")
                .splitn(3, ':');
            let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            let column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            prop_assert!(inside(inner, line, column), "{p:?} outside\n{inner}");
        }
    }
    for line in e.to_string().lines() {
        let mut parts = line
            .strip_prefix(path)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or("")
            .splitn(3, ':');
        let numbers = parts
            .by_ref()
            .take(2)
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(
            numbers && parts.next().is_some_and(|m| m.starts_with(' ')),
            "{line}"
        );
    }
    Ok(())
}

// ---- values

/// A plain value: letters (accented too), digits, spaces and punctuation a
/// TOML string escapes.
fn text() -> impl Strategy<Value = String> {
    r#"[A-Za-zéÉüß0-9][A-Za-zéÉüß0-9 .,'"\\<>@()-]{0,16}"#
}

fn identity_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "AKIA[A-Z0-9]{8,16}",
        "CN=[a-z0-9.-]{1,12},O=[A-Za-z ]{1,8}",
        text()
    ]
}

/// Days since the epoch, 2000 to 2089.
fn day() -> impl Strategy<Value = i64> {
    10_957i64..43_100
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn no_hidden(values: &[String], allowed: &[char]) -> Result<(), TestCaseError> {
    for v in values {
        prop_assert!(
            !v.chars().any(|c| hidden(c) && !allowed.contains(&c)),
            "accepted {v:?}"
        );
    }
    Ok(())
}

fn refusal<T>(r: &Result<T, ConfigError>, must: bool, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(!must || r.is_err(), "{what}: accepted");
    Ok(())
}
