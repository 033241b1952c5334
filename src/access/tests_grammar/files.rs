//! The identities and grants files, and their semantic checks
//! (`access::load`): generated, mutated, read back.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::subsequence;

use super::*;
use crate::access::{self, Proof, canonical, files, keys};
use crate::config::Config;
use crate::config::access::{GrantsSpec, IdentitiesSpec, OnOverdue};

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
                approvers: vec![crate::config::access::Approver {
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
