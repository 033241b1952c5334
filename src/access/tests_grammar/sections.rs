//! `[identities]` and `[grants]` of the main config: generated,
//! mutated, read back.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::access::keys;
use crate::config::Config;
use crate::config::access::{GrantsSpec, IdentitiesSpec, OnOverdue};

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
}
