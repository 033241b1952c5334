//! `[transparency]`, inline or in the file it names: generated,
//! mutated, read back.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::subsequence;

use super::*;
use crate::config::Config;

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
