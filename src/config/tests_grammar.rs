//! The identities and grants files, the `[identities]`, `[grants]` and
//! `[transparency]` sections, generated from their grammar (entries with
//! random valid values), and mutated (a field dropped, a value of the wrong
//! type, a control character or direction mark, a huge value, a key twice,
//! an unknown key, an entry twice). Whatever is written: the loader does
//! not panic; a valid file is accepted and reads back as generated; a
//! refusal names `path:line:col` inside the text; a value holding a control
//! character or a direction mark is never accepted.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::subsequence;

use super::access::{GrantsSpec, IdentitiesSpec, OnOverdue};
use super::{Config, ConfigError};
use crate::access::{self, Proof, canonical, files, keys};

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

/// Control characters and direction marks and overrides.
const HIDDEN: [char; 22] = [
    '\u{0}', '\u{1}', '\u{7}', '\u{8}', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}',
    '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}',
    '\u{2067}', '\u{2068}', '\u{2069}',
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
            let is_str = |f: &Field| matches!(f.val, Val::Str(_));
            pick(fields, &is_str, n).is_some_and(|i| {
                if let Val::Str(s) = &mut fields[i].val {
                    *s = s.repeat(5000 / s.chars().count().max(1) + 1);
                }
                huge_refused
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

// ---- identities file

#[derive(Debug, Clone)]
struct GenIdentity {
    id: String,
    owner: String,
    role: String,
    routes: Option<Vec<&'static str>>,
    proof: Option<&'static str>,
    granted: i64,
    reviewed: i64,
    reviewer: String,
}

fn gen_identity() -> impl Strategy<Value = GenIdentity> {
    (
        identity_id(),
        text(),
        text(),
        proptest::option::of(subsequence(ROUTE_NAMES.to_vec(), 1..=2)),
        proptest::option::of(proptest::sample::select(vec!["sigv4", "mtls"])),
        day(),
        0i64..3000,
        text(),
    )
        .prop_map(
            |(id, owner, role, routes, proof, granted, later, reviewer)| GenIdentity {
                id,
                owner,
                role,
                routes,
                proof,
                granted,
                reviewed: granted + later,
                reviewer,
            },
        )
}

fn identities() -> impl Strategy<Value = Vec<GenIdentity>> {
    proptest::collection::vec(gen_identity(), 1..5).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|i| {
            let fresh = !seen.contains(&i.id);
            seen.push(i.id.clone());
            fresh
        });
        v
    })
}

fn identity_entry(i: &GenIdentity) -> Entry {
    let mut fields = vec![
        req("id", Val::Str(i.id.clone())),
        req("owner", Val::Str(i.owner.clone())),
        req("role", Val::Str(i.role.clone())),
    ];
    if let Some(r) = &i.routes {
        fields.push(opt(
            "routes",
            Val::List(r.iter().map(|&s| s.into()).collect()),
        ));
    }
    if let Some(p) = i.proof {
        fields.push(opt("proof", Val::Str(p.into())));
    }
    fields.push(req(
        "granted",
        Val::Raw(canonical::date(i.granted * 86_400)),
    ));
    fields.push(req(
        "reviewed",
        Val::Raw(canonical::date(i.reviewed * 86_400)),
    ));
    fields.push(req("reviewer", Val::Str(i.reviewer.clone())));
    Entry {
        header: "[[identity]]",
        fields,
    }
}

fn read_back_identities(
    got: &[files::Identity],
    want: &[GenIdentity],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        prop_assert_eq!(&g.id, &w.id);
        prop_assert_eq!(&g.owner, &w.owner);
        prop_assert_eq!(&g.role, &w.role);
        prop_assert_eq!(&g.reviewer, &w.reviewer);
        prop_assert_eq!(
            g.routes.clone(),
            w.routes
                .as_ref()
                .map(|r| r.iter().map(|&s| s.to_owned()).collect::<Vec<_>>())
        );
        prop_assert_eq!(
            g.proof,
            if w.proof == Some("mtls") {
                Proof::Mtls
            } else {
                Proof::Sigv4
            }
        );
        prop_assert_eq!(
            (g.granted, g.reviewed),
            (w.granted * 86_400, w.reviewed * 86_400)
        );
    }
    Ok(())
}

fn identity_values(got: &[files::Identity]) -> Vec<String> {
    got.iter()
        .flat_map(|i| {
            [
                i.id.clone(),
                i.owner.clone(),
                i.role.clone(),
                i.reviewer.clone(),
            ]
            .into_iter()
            .chain(i.routes.iter().flatten().cloned())
        })
        .collect()
}

// ---- grants file

#[derive(Debug, Clone)]
struct GenGrant {
    id: String,
    identity: String,
    proof: Option<&'static str>,
    owner: String,
    purpose: String,
    from_countries: Vec<&'static str>,
    routes: Option<Vec<&'static str>>,
    methods: Option<Vec<&'static str>>,
    path_prefix: Option<String>,
    not_before: i64,
    /// Minutes east of UTC `not_before` is written in; `None`: `Z`.
    offset: Option<i64>,
    not_after: i64,
    approvals: Vec<(String, String)>,
}

fn gen_grant() -> impl Strategy<Value = GenGrant> {
    let signature = proptest::collection::vec(any::<u8>(), 64).prop_map(|b| b64(&b));
    (
        (
            "[A-Za-z0-9._:-]{1,64}",
            identity_id(),
            proptest::option::of(proptest::sample::select(vec!["sigv4", "mtls"])),
            text(),
            text(),
            subsequence(
                vec!["US", "CH", "GB", "CN", "JP", "FR", "DE", "BR", "IN"],
                1..4,
            ),
            proptest::option::of(subsequence(ROUTE_NAMES.to_vec(), 1..=2)),
        ),
        (
            proptest::option::of(subsequence(
                vec!["GET", "HEAD", "PUT", "POST", "DELETE"],
                1..4,
            )),
            proptest::option::of("/[a-z0-9_.-]{0,10}/?"),
            day(),
            0i64..86_400,
            proptest::option::of(proptest::sample::select(vec![
                -600i64, -300, 0, 60, 120, 330, 840,
            ])),
            1i64..14 * 86_400,
            proptest::collection::vec((text(), signature), 0..3),
        ),
    )
        .prop_map(
            |(
                (id, identity, proof, owner, purpose, from_countries, routes),
                (methods, path_prefix, day, second, offset, length, approvals),
            )| {
                let not_before = day * 86_400 + second;
                GenGrant {
                    id,
                    identity,
                    proof,
                    owner,
                    purpose,
                    from_countries,
                    routes,
                    methods,
                    path_prefix,
                    not_before,
                    offset,
                    not_after: not_before + length,
                    approvals,
                }
            },
        )
}

fn grants() -> impl Strategy<Value = Vec<GenGrant>> {
    proptest::collection::vec(gen_grant(), 1..4).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|g| {
            let fresh = !seen.contains(&g.id);
            seen.push(g.id.clone());
            fresh
        });
        v
    })
}

/// `t` written at `offset` minutes east of UTC (`Z` when `None`).
fn instant(t: i64, offset: Option<i64>) -> String {
    let Some(minutes) = offset else {
        return canonical::rfc3339(t);
    };
    let local = canonical::rfc3339(t + minutes * 60);
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.abs();
    format!(
        "{}{sign}{:02}:{:02}",
        local.trim_end_matches('Z'),
        m / 60,
        m % 60
    )
}

fn grant_entry(g: &GenGrant) -> Entry {
    let list = |l: &[&str]| Val::List(l.iter().map(|&s| s.to_owned()).collect());
    let mut fields = vec![
        req("id", Val::Str(g.id.clone())),
        req("identity", Val::Str(g.identity.clone())),
    ];
    if let Some(p) = g.proof {
        fields.push(opt("proof", Val::Str(p.into())));
    }
    fields.push(req("owner", Val::Str(g.owner.clone())));
    fields.push(req("purpose", Val::Str(g.purpose.clone())));
    fields.push(req("from_countries", list(&g.from_countries)));
    if let Some(r) = &g.routes {
        fields.push(opt("routes", list(r)));
    }
    if let Some(m) = &g.methods {
        fields.push(opt("methods", list(m)));
    }
    if let Some(p) = &g.path_prefix {
        fields.push(opt("path_prefix", Val::Str(p.clone())));
    }
    fields.push(req("not_before", Val::Raw(instant(g.not_before, g.offset))));
    fields.push(req("not_after", Val::Raw(instant(g.not_after, None))));
    if !g.approvals.is_empty() {
        fields.push(opt("approvals", Val::Approvals(g.approvals.clone())));
    }
    Entry {
        header: "[[grant]]",
        fields,
    }
}

fn read_back_grants(got: &[files::GrantEntry], want: &[GenGrant]) -> Result<(), TestCaseError> {
    let owned = |l: &[&str]| l.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let s = &g.signed;
        prop_assert_eq!(&s.id, &w.id);
        prop_assert_eq!(&s.identity, &w.identity);
        prop_assert_eq!(
            s.proof,
            if w.proof == Some("sigv4") {
                Proof::Sigv4
            } else {
                Proof::Mtls
            }
        );
        prop_assert_eq!(&s.owner, &w.owner);
        prop_assert_eq!(&s.purpose, &w.purpose);
        prop_assert_eq!(&s.from_countries, &owned(&w.from_countries));
        prop_assert_eq!(
            &s.routes,
            &w.routes.as_deref().map(owned).unwrap_or_default()
        );
        prop_assert_eq!(
            &s.methods,
            &w.methods.as_deref().map(owned).unwrap_or_default()
        );
        prop_assert_eq!(&s.path_prefix, &w.path_prefix.clone().unwrap_or_default());
        prop_assert_eq!((s.not_before, s.not_after), (w.not_before, w.not_after));
        let approvals: Vec<(String, String)> = g
            .approvals
            .iter()
            .map(|a| (a.approver.clone(), a.signature.clone()))
            .collect();
        prop_assert_eq!(&approvals, &w.approvals);
    }
    Ok(())
}

fn grant_values(got: &[files::GrantEntry]) -> Vec<String> {
    got.iter()
        .flat_map(|g| {
            let s = &g.signed;
            [
                s.id.clone(),
                s.identity.clone(),
                s.owner.clone(),
                s.purpose.clone(),
                s.path_prefix.clone(),
            ]
            .into_iter()
            .chain(
                s.from_countries
                    .iter()
                    .chain(&s.routes)
                    .chain(&s.methods)
                    .cloned(),
            )
            .chain(
                g.approvals
                    .iter()
                    .flat_map(|a| [a.approver.clone(), a.signature.clone()]),
            )
        })
        .collect()
}

// ---- [identities] and [grants]

/// A duration as written and as read.
fn duration(list: &'static [(&'static str, u64)]) -> impl Strategy<Value = (&'static str, u64)> {
    proptest::sample::select(list)
}

#[derive(Debug, Clone)]
struct GenSections {
    require_known: bool,
    review_every: (&'static str, u64),
    on_overdue: &'static str,
    identities_watch: Option<(&'static str, u64)>,
    min_approvals: u64,
    max_duration: (&'static str, u64),
    grants_watch: Option<(&'static str, u64)>,
    /// Name, public key, owner.
    approvers: Vec<(String, [u8; 32], Option<String>)>,
}

const AGES: &[(&str, u64)] = &[
    ("365d", 365 * 86_400),
    ("30d", 30 * 86_400),
    ("12h", 43_200),
    ("3650d", 3650 * 86_400),
];
const INTERVALS: &[(&str, u64)] = &[("5s", 5), ("1m", 60), ("1h", 3600), ("250ms", 0)];

fn gen_sections() -> impl Strategy<Value = GenSections> {
    let approver = (
        "[a-z][a-z0-9 ._-]{0,10}",
        any::<[u8; 32]>(),
        proptest::option::of(text()),
    );
    (
        any::<bool>(),
        duration(AGES),
        proptest::sample::select(vec!["flag", "refuse"]),
        proptest::option::of(duration(INTERVALS)),
        1u64..=3,
        duration(AGES),
        proptest::option::of(duration(INTERVALS)),
        proptest::collection::vec(approver, 1..4),
    )
        .prop_map(
            |(
                require_known,
                review_every,
                on_overdue,
                identities_watch,
                min_approvals,
                max_duration,
                grants_watch,
                mut approvers,
            )| {
                let mut names = Vec::new();
                let mut keys = Vec::new();
                approvers.retain(|(n, k, _)| {
                    let fresh = !names.contains(n) && !keys.contains(k);
                    names.push(n.clone());
                    keys.push(*k);
                    fresh
                });
                GenSections {
                    require_known,
                    review_every,
                    on_overdue,
                    identities_watch,
                    min_approvals,
                    max_duration,
                    grants_watch,
                    approvers,
                }
            },
        )
}

fn section_entries(s: &GenSections) -> Vec<Entry> {
    let raw = |v: String| Val::Raw(v);
    let unchecked = |f: Field| Field {
        checked: false,
        ..f
    };
    let watch = |w: Option<(&str, u64)>| {
        [
            opt("watch", raw(w.is_some().to_string())),
            opt("watch_interval", Val::Str(w.map_or("5s", |w| w.0).into())),
        ]
    };
    let mut out = vec![
        Entry {
            header: "[identities]",
            fields: [
                unchecked(req("file", Val::Str("ids.toml".into()))),
                opt("require_known", raw(s.require_known.to_string())),
                opt("review_every", Val::Str(s.review_every.0.into())),
                opt("on_overdue", Val::Str(s.on_overdue.into())),
            ]
            .into_iter()
            .chain(watch(s.identities_watch))
            .collect(),
        },
        Entry {
            header: "[grants]",
            fields: [
                unchecked(req("file", Val::Str("grants.toml".into()))),
                opt("min_approvals", raw(s.min_approvals.to_string())),
                opt("max_duration", Val::Str(s.max_duration.0.into())),
            ]
            .into_iter()
            .chain(watch(s.grants_watch))
            .collect(),
        },
    ];
    for (name, key, owner) in &s.approvers {
        let mut fields = vec![
            req("name", Val::Str(name.clone())),
            req(
                "public_key",
                Val::Str(format!("{}{}", keys::PUBLIC_PREFIX, b64(key))),
            ),
        ];
        if let Some(o) = owner {
            fields.push(opt("owner", Val::Str(o.clone())));
        }
        out.push(Entry {
            header: "[[grants.approvers]]",
            fields,
        });
    }
    out
}

fn read_back_sections(c: &Config, s: &GenSections) -> Result<(), TestCaseError> {
    let watched = |w: Option<(&str, u64)>| {
        w.map(|(t, secs)| {
            if t == "250ms" {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(secs)
            }
        })
    };
    prop_assert_eq!(
        c.access.identities.as_ref(),
        Some(&IdentitiesSpec {
            file: "ids.toml".into(),
            require_known: s.require_known,
            review_every: Duration::from_secs(s.review_every.1),
            on_overdue: if s.on_overdue == "flag" {
                OnOverdue::Flag
            } else {
                OnOverdue::Refuse
            },
            watch: watched(s.identities_watch),
        })
    );
    let g: &GrantsSpec = c
        .access
        .grants
        .as_ref()
        .ok_or_else(|| TestCaseError::fail("no [grants]"))?;
    prop_assert_eq!(&g.file, Path::new("grants.toml"));
    prop_assert_eq!(g.min_approvals as u64, s.min_approvals);
    prop_assert_eq!(g.max_duration, Duration::from_secs(s.max_duration.1));
    prop_assert_eq!(g.watch, watched(s.grants_watch));
    let approvers: Vec<(String, [u8; 32], Option<String>)> = g
        .approvers
        .iter()
        .map(|a| (a.name.clone(), a.public_key, a.owner.clone()))
        .collect();
    let want: Vec<(String, [u8; 32], Option<String>)> = s
        .approvers
        .iter()
        .map(|(n, k, o)| (n.clone(), *k, o.as_ref().map(|o| o.trim().to_owned())))
        .collect();
    prop_assert_eq!(approvers, want);
    Ok(())
}

// ---- [transparency]

#[derive(Debug, Clone)]
struct GenDeclared {
    code: &'static str,
    basis: &'static str,
    detail: Option<String>,
    recipients: String,
    purposes: String,
    data: String,
}

#[derive(Debug, Clone)]
struct GenTransparency {
    entity: String,
    certificate: String,
    contact: String,
    countries: Vec<GenDeclared>,
}

/// A published value: text, possibly over several lines (a line break or
/// tab is allowed on the page).
fn published() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => (text(), proptest::sample::select(vec!["\n", "\t", "\n\n"]), text()).prop_map(|(a, s, b)| format!("{a}{s}{b}")),
    ]
}

fn gen_transparency() -> impl Strategy<Value = GenTransparency> {
    let declared = (
        proptest::sample::select(vec!["adequacy", "scc", "bcr", "derogation", "other"]),
        proptest::option::of(published()),
        published(),
        published(),
        published(),
    );
    (
        published(),
        published(),
        published(),
        subsequence(vec!["CH", "US", "GB", "JP", "CN", "IN", "BR", "CA"], 0..4),
        proptest::collection::vec(declared, 4),
    )
        .prop_map(
            |(entity, certificate, contact, codes, declared)| GenTransparency {
                entity,
                certificate,
                contact,
                countries: codes
                    .into_iter()
                    .zip(declared)
                    .map(
                        |(code, (basis, detail, recipients, purposes, data))| GenDeclared {
                            code,
                            basis,
                            // Derogation and other need one.
                            detail: detail.or_else(|| {
                                matches!(basis, "derogation" | "other")
                                    .then(|| "Art. 49(1)(a)".to_owned())
                            }),
                            recipients,
                            purposes,
                            data,
                        },
                    )
                    .collect(),
            },
        )
}

fn transparency_entries(t: &GenTransparency, in_file: bool) -> Vec<Entry> {
    let mut out = vec![Entry {
        header: if in_file { "" } else { "[transparency]" },
        fields: vec![
            req("entity", Val::Str(t.entity.clone())),
            req("certificate", Val::Str(t.certificate.clone())),
            req("contact", Val::Str(t.contact.clone())),
        ],
    }];
    for d in &t.countries {
        let mut fields = vec![
            req("code", Val::Str(d.code.into())),
            req("basis", Val::Str(d.basis.into())),
        ];
        if let Some(detail) = &d.detail {
            let needed = matches!(d.basis, "derogation" | "other");
            fields.push(Field {
                required: needed,
                ..opt("basis_detail", Val::Str(detail.clone()))
            });
        }
        fields.push(req("recipients", Val::Str(d.recipients.clone())));
        fields.push(req("purposes", Val::Str(d.purposes.clone())));
        fields.push(req("data", Val::Str(d.data.clone())));
        out.push(Entry {
            header: if in_file {
                "[[country]]"
            } else {
                "[[transparency.country]]"
            },
            fields,
        });
    }
    out
}

fn read_back_transparency(c: &Config, t: &GenTransparency) -> Result<(), TestCaseError> {
    let got = c
        .transparency
        .as_ref()
        .ok_or_else(|| TestCaseError::fail("no [transparency]"))?;
    prop_assert_eq!(got.entity.as_str(), t.entity.trim());
    prop_assert_eq!(got.certificate.as_str(), t.certificate.trim());
    prop_assert_eq!(got.contact.as_str(), t.contact.trim());
    prop_assert_eq!(got.countries.len(), t.countries.len());
    for (g, w) in got.countries.iter().zip(&t.countries) {
        prop_assert_eq!(g.country.as_str(), w.code);
        prop_assert_eq!(g.basis.as_str(), w.basis);
        prop_assert_eq!(
            g.basis_detail.as_str(),
            w.detail.as_deref().unwrap_or("").trim()
        );
        prop_assert_eq!(g.recipients.as_str(), w.recipients.trim());
        prop_assert_eq!(g.purposes.as_str(), w.purposes.trim());
        prop_assert_eq!(g.data.as_str(), w.data.trim());
    }
    Ok(())
}

fn transparency_values(c: &Config) -> Vec<String> {
    c.transparency
        .iter()
        .flat_map(|t| {
            [t.entity.clone(), t.certificate.clone(), t.contact.clone()]
                .into_iter()
                .chain(t.countries.iter().flat_map(|d| {
                    [
                        d.basis_detail.clone(),
                        d.recipients.clone(),
                        d.purposes.clone(),
                        d.data.clone(),
                    ]
                }))
        })
        .collect()
}

/// The transparency config (the section inline, or naming a file in `dir`
/// holding it) and the file's text.
fn transparency_config(entries: &[Entry], in_file: bool, dir: &Path) -> (String, Option<String>) {
    if !in_file {
        return (render(ROUTES, entries), None);
    }
    let inner = render("", entries);
    let path = dir.join("transparency.toml");
    std::fs::write(&path, &inner).unwrap();
    (
        render(
            ROUTES,
            &[Entry {
                header: "[transparency]",
                fields: vec![req("file", Val::Str(path.display().to_string()))],
            }],
        ),
        Some(inner),
    )
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_generated_identities_file_reads_back_as_written(want in identities()) {
        let text = render("", &want.iter().map(identity_entry).collect::<Vec<_>>());
        let got = files::identities(Path::new("ids.toml"), &text, Some(&ROUTE_NAMES));
        match got {
            Ok(got) => read_back_identities(&got, &want)?,
            Err(e) => prop_assert!(false, "refused: {e}\n{text}"),
        }
    }

    #[test]
    fn a_mutated_identities_file_is_refused_at_a_place_in_it(
        want in identities(),
        (at, m) in mutation(HIDDEN.to_vec()),
    ) {
        let mut entries: Vec<Entry> = want.iter().map(identity_entry).collect();
        let must = mutate(&mut entries, 0, at, &m, false);
        let text = render("", &entries);
        let got = files::identities(Path::new("ids.toml"), &text, Some(&ROUTE_NAMES));
        refusal(&got, must, &format!("{m:?}\n{text}"))?;
        match got {
            Ok(got) => no_hidden(&identity_values(&got), &[])?,
            Err(e) => located(&e, "ids.toml", &text, None)?,
        }
    }

    #[test]
    fn a_generated_grants_file_reads_back_as_written(want in grants()) {
        let text = render("", &want.iter().map(grant_entry).collect::<Vec<_>>());
        match files::grants(Path::new("grants.toml"), &text, Some(&ROUTE_NAMES)) {
            Ok(got) => read_back_grants(&got, &want)?,
            Err(e) => prop_assert!(false, "refused: {e}\n{text}"),
        }
    }

    #[test]
    fn a_mutated_grants_file_is_refused_at_a_place_in_it(
        want in grants(),
        (at, m) in mutation(HIDDEN.to_vec()),
    ) {
        let mut entries: Vec<Entry> = want.iter().map(grant_entry).collect();
        let must = mutate(&mut entries, 0, at, &m, false);
        let text = render("", &entries);
        let got = files::grants(Path::new("grants.toml"), &text, Some(&ROUTE_NAMES));
        refusal(&got, must, &format!("{m:?}\n{text}"))?;
        match got {
            Ok(got) => no_hidden(&grant_values(&got), &[])?,
            Err(e) => located(&e, "grants.toml", &text, None)?,
        }
    }

    #[test]
    fn generated_access_sections_read_back_as_written(want in gen_sections()) {
        let text = render(ROUTES, &section_entries(&want));
        match Config::parse(Path::new("c.toml"), &text) {
            Ok(c) => read_back_sections(&c, &want)?,
            Err(e) => prop_assert!(false, "refused: {e}\n{text}"),
        }
    }

    #[test]
    fn mutated_access_sections_are_refused_at_a_place_in_them(
        want in gen_sections(),
        (at, m) in mutation(HIDDEN.to_vec()),
    ) {
        let mut entries = section_entries(&want);
        let must = mutate(&mut entries, 0, at, &m, false);
        let text = render(ROUTES, &entries);
        let got = Config::parse(Path::new("c.toml"), &text);
        refusal(&got, must, &format!("{m:?}\n{text}"))?;
        match got {
            Ok(c) => no_hidden(
                &c.access.grants.iter().flat_map(|g| &g.approvers).flat_map(|a| [a.name.clone()].into_iter().chain(a.owner.clone())).collect::<Vec<_>>(),
                &[],
            )?,
            Err(e) => located(&e, "c.toml", &text, None)?,
        }
    }

    #[test]
    fn a_generated_transparency_section_reads_back_as_written(want in gen_transparency(), in_file in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = transparency_config(&transparency_entries(&want, in_file), in_file, dir.path());
        match Config::parse(Path::new("c.toml"), &text) {
            Ok(c) => read_back_transparency(&c, &want)?,
            Err(e) => prop_assert!(false, "refused: {e}\n{text}"),
        }
    }

    #[test]
    fn a_mutated_transparency_section_is_refused_at_a_place_in_it(
        want in gen_transparency(),
        in_file in any::<bool>(),
        // A line break or a tab is allowed on the page.
        (at, m) in mutation(HIDDEN.into_iter().filter(|c| !matches!(c, '\n' | '\t')).collect()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = transparency_entries(&want, in_file);
        let must = mutate(&mut entries, 0, at, &m, true);
        let (text, inner) = transparency_config(&entries, in_file, dir.path());
        let got = Config::parse(Path::new("c.toml"), &text);
        refusal(&got, must, &format!("{m:?}\n{}", inner.as_deref().unwrap_or(&text)))?;
        match got {
            Ok(c) => no_hidden(&transparency_values(&c), &['\n', '\t'])?,
            Err(e) => {
                let name = dir.path().join("transparency.toml").display().to_string();
                located(&e, "c.toml", &text, inner.as_deref().map(|i| (name.as_str(), i)))?;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The semantic layer: generated grants, signed by a configured
    /// approver over what was generated, for identities of a generated
    /// registry, all load valid.
    #[test]
    fn generated_signed_grants_load_valid(ids in identities(), mut want in grants(), pick in any::<usize>()) {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys::keygen().unwrap();
        let key = keys::SigningKey::parse(&private).unwrap();
        for (n, g) in want.iter_mut().enumerate() {
            // Some grants are for listed identities, named as listed.
            if (pick + n) % 2 == 0 {
                g.identity = ids[(pick + n) % ids.len()].id.clone();
            }
            g.approvals.clear();
        }
        let unsigned = render("", &want.iter().map(grant_entry).collect::<Vec<_>>());
        let parsed = files::grants(Path::new("g"), &unsigned, None).unwrap();
        for (g, p) in want.iter_mut().zip(&parsed) {
            // `#` is in no generated value: the approver is nobody's grantee.
            g.approvals = vec![("approver#1".into(), key.sign(&p.signed.canonical()))];
        }
        let ids_path = dir.path().join("ids.toml");
        std::fs::write(&ids_path, render("", &ids.iter().map(identity_entry).collect::<Vec<_>>())).unwrap();
        let grants_path = dir.path().join("grants.toml");
        std::fs::write(&grants_path, render("", &want.iter().map(grant_entry).collect::<Vec<_>>())).unwrap();
        let spec = access::AccessSpec {
            identities: Some(IdentitiesSpec {
                file: ids_path,
                require_known: true,
                review_every: Duration::from_secs(365 * 86_400),
                on_overdue: OnOverdue::Flag,
                watch: None,
            }),
            grants: Some(GrantsSpec {
                file: grants_path,
                approvers: vec![super::access::Approver {
                    name: "approver#1".into(),
                    public_key: keys::parse_public(&public).unwrap(),
                    owner: None,
                }],
                min_approvals: 1,
                max_duration: Duration::from_secs(14 * 86_400),
                watch: None,
            }),
        };
        let routes = Config::parse(Path::new("c.toml"), ROUTES).unwrap().routes;
        let loaded = access::load(&spec, &routes, &[], &crate::metrics::Metrics::new()).unwrap();
        read_back_identities(&loaded.identities, &ids)?;
        read_back_grants(&loaded.reports.iter().map(|r| r.entry.clone()).collect::<Vec<_>>(), &want)?;
        for r in &loaded.reports {
            prop_assert!(r.problems.is_empty(), "{}: {:?}", r.entry.signed.id, r.problems);
        }
        prop_assert!(loaded.is_active());
    }
}
