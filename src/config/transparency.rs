//! `[transparency]`: what a host must publish beside the measured
//! transfers and the proxy cannot know (issue 19): who hosts the data, under
//! which HDS certificate, whom to contact, and per destination country the
//! legal basis of the transfers, their recipients, purposes and data
//! categories. Declared in the section itself or in the file it names
//! (`file`, same keys), read by the `transfers` report and the live
//! `/transfers?format=html` page.

use std::path::Path;

use serde::Deserialize;

use super::error::Problems;
use super::raw::Text;
use crate::geo::{Country, eea, known_codes};

/// `[transparency]` as written: either `file` or the keys.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTransparency {
    /// A TOML file holding the keys below instead.
    pub file: Option<Text>,
    /// The keys, when declared inline.
    #[serde(default)]
    pub entity: Option<Text>,
    /// The HDS certificate and its scope.
    #[serde(default)]
    pub certificate: Option<Text>,
    /// Whom to contact about the data.
    #[serde(default)]
    pub contact: Option<Text>,
    /// `[[transparency.country]]`
    #[serde(default, rename = "country")]
    pub countries: Vec<RawDeclared>,
}

/// The keys of a transparency file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    entity: Option<Text>,
    certificate: Option<Text>,
    contact: Option<Text>,
    #[serde(default, rename = "country")]
    countries: Vec<RawDeclared>,
}

/// One `[[transparency.country]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeclared {
    /// ISO 3166-1 alpha-2 code, outside the EEA.
    pub code: Text,
    /// `adequacy`, `scc`, `bcr`, `derogation` or `other`.
    pub basis: Text,
    /// The instrument: decision, clauses, derogation and its ground.
    #[serde(default)]
    pub basis_detail: Option<Text>,
    /// The recipients, or their category.
    pub recipients: Text,
    /// The purposes of the transfers.
    pub purposes: Text,
    /// The categories of data transferred.
    pub data: Text,
}

/// The validated declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transparency {
    /// The hosting entity (name, address, registration).
    pub entity: String,
    /// The HDS certificate and its scope (activities, validity).
    pub certificate: String,
    /// Whom to contact (DPO, address).
    pub contact: String,
    /// Per destination country, in file order.
    pub countries: Vec<Declared>,
}

impl Transparency {
    /// The declaration for `country`, if any.
    pub fn declared(&self, country: Country) -> Option<&Declared> {
        self.countries.iter().find(|d| d.country == country)
    }
}

/// What is declared for transfers to one country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The destination.
    pub country: Country,
    /// The legal basis (GDPR chapter V).
    pub basis: LegalBasis,
    /// The instrument, e.g. "Commission decision 2000/518/EC".
    pub basis_detail: String,
    /// The recipients, or their category.
    pub recipients: String,
    /// The purposes.
    pub purposes: String,
    /// The categories of data.
    pub data: String,
}

/// A legal basis for transfers outside the EEA (GDPR articles 45 to 49).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegalBasis {
    /// Art. 45: an adequacy decision of the Commission.
    Adequacy,
    /// Art. 46(2)(c): standard contractual clauses.
    Scc,
    /// Art. 47: binding corporate rules.
    Bcr,
    /// Art. 49: a derogation for a specific situation.
    Derogation,
    /// Another appropriate safeguard of Art. 46, named in `basis_detail`.
    Other,
}

impl LegalBasis {
    /// Public contract: the config value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Adequacy => "adequacy",
            Self::Scc => "scc",
            Self::Bcr => "bcr",
            Self::Derogation => "derogation",
            Self::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Adequacy,
            Self::Scc,
            Self::Bcr,
            Self::Derogation,
            Self::Other,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// Validates `[transparency]`, reading the file it names if any; problems
/// in that file are reported at its `file` key with their own position.
pub(super) fn transparency(
    spanned: Option<&toml::Spanned<RawTransparency>>,
    p: &mut Problems<'_>,
) -> Option<Transparency> {
    let spanned = spanned?;
    let raw = spanned.get_ref();
    let Some(file) = &raw.file else {
        return body(
            &raw.entity,
            &raw.certificate,
            &raw.contact,
            &raw.countries,
            p,
            spanned.span(),
        );
    };
    if raw.entity.is_some()
        || raw.certificate.is_some()
        || raw.contact.is_some()
        || !raw.countries.is_empty()
    {
        p.at(
            file.span(),
            "[transparency] names a file and declares keys too: keep one",
        );
        return None;
    }
    let path = Path::new(file.get_ref());
    let text = match read_small(path) {
        Ok(t) => t,
        Err(e) => {
            p.at(
                file.span(),
                format!("cannot read transparency file \"{}\": {e}", path.display()),
            );
            return None;
        }
    };
    let mut inner = Problems::new(&text);
    let parsed = match toml::from_str::<RawFile>(&text) {
        Ok(f) => body(
            &f.entity,
            &f.certificate,
            &f.contact,
            &f.countries,
            &mut inner,
            0..0,
        ),
        Err(e) => {
            let at = e.span().map_or(0..0, |s| s);
            inner.at(at, e.message().trim().replace('`', "\"").replace('\n', " "));
            None
        }
    };
    if let Err(e) = inner.finish(path) {
        for line in e.to_string().lines() {
            p.at(file.span(), format!("in transparency file: {line}"));
        }
        return None;
    }
    parsed
}

/// The most a transparency file may hold: it is a page of declarations.
const MAX_FILE: u64 = 1 << 20;

/// Reads a regular file of at most [`MAX_FILE`] bytes, so a path to a
/// device (`/dev/zero`) or a huge file is refused without reading it all.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    // Looked at before opening: opening a FIFO waits for a writer.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        )));
    }
    Ok(text)
}

/// The most characters a published value may hold.
const MAX_VALUE: usize = 4096;

/// A value published on the page: of at most [`MAX_VALUE`] characters,
/// without control characters (a line break or tab aside) nor the
/// direction marks and overrides that can make the page read otherwise
/// than it is written.
fn publishable(t: &Text, key: &str, p: &mut Problems<'_>) {
    let v = t.get_ref();
    if v.chars().count() > MAX_VALUE {
        p.at(
            t.span(),
            format!("transparency {key} is longer than {MAX_VALUE} characters"),
        );
    }
    // Line breaks and tabs are text on the page; every other hidden
    // character is refused.
    let hidden = |c: char| super::error::hidden(c) && c != '\n' && c != '\t';
    if let Some(c) = v.chars().find(|&c| hidden(c)) {
        p.at(
            t.span(),
            format!(
                "transparency {key} holds the control character U+{:04X}",
                u32::from(c)
            ),
        );
    }
}

fn body(
    entity: &Option<Text>,
    certificate: &Option<Text>,
    contact: &Option<Text>,
    countries: &[RawDeclared],
    p: &mut Problems<'_>,
    section: std::ops::Range<usize>,
) -> Option<Transparency> {
    let mut required = |t: &Option<Text>, key: &str| -> String {
        match t {
            Some(t) if !t.get_ref().trim().is_empty() => {
                publishable(t, key, p);
                t.get_ref().trim().to_owned()
            }
            Some(t) => {
                p.at(t.span(), format!("transparency {key} is empty"));
                String::new()
            }
            None => {
                p.at(
                    section.clone(),
                    format!("transparency {key} is missing (it is published with the report)"),
                );
                String::new()
            }
        }
    };
    let entity = required(entity, "entity");
    let certificate = required(certificate, "certificate");
    let contact = required(contact, "contact");
    let known = known_codes();
    let area = eea();
    let mut out: Vec<Declared> = Vec::new();
    for d in countries {
        let code = d.code.get_ref();
        let country = match Country::from_code(code) {
            Some(c) if known.contains(c) && area.contains(c) => {
                p.at(
                    d.code.span(),
                    format!(
                        "transparency country \"{code}\" is inside the EEA: no transfer to declare"
                    ),
                );
                continue;
            }
            Some(c) if known.contains(c) => c,
            _ => {
                p.at(
                    d.code.span(),
                    format!("unknown country code \"{code}\" (expected an ISO 3166-1 alpha-2 code such as \"CH\")"),
                );
                continue;
            }
        };
        if out.iter().any(|o| o.country == country) {
            p.at(
                d.code.span(),
                format!("transparency country \"{code}\" is declared twice"),
            );
            continue;
        }
        let Some(basis) = LegalBasis::parse(d.basis.get_ref()) else {
            p.at(
                d.basis.span(),
                format!(
                    "unknown legal basis \"{}\" (expected adequacy, scc, bcr, derogation or other)",
                    d.basis.get_ref()
                ),
            );
            continue;
        };
        if let Some(t) = &d.basis_detail {
            publishable(t, "country basis_detail", p);
        }
        let detail = d
            .basis_detail
            .as_ref()
            .map(|t| t.get_ref().trim().to_owned());
        if matches!(basis, LegalBasis::Derogation | LegalBasis::Other)
            && detail.as_deref().is_none_or(str::is_empty)
        {
            p.at(
                d.basis.span(),
                format!(
                    "legal basis \"{}\" needs basis_detail (which derogation or safeguard)",
                    basis.as_str()
                ),
            );
        }
        let mut text = |t: &Text, key: &str| {
            let v = t.get_ref().trim();
            if v.is_empty() {
                p.at(t.span(), format!("transparency country {key} is empty"));
            }
            publishable(t, &format!("country {key}"), p);
            v.to_owned()
        };
        out.push(Declared {
            country,
            basis,
            basis_detail: detail.unwrap_or_default(),
            recipients: text(&d.recipients, "recipients"),
            purposes: text(&d.purposes, "purposes"),
            data: text(&d.data, "data"),
        });
    }
    Some(Transparency {
        entity,
        certificate,
        contact,
        countries: out,
    })
}

/// `check`'s warnings about what the transfer page would publish without
/// a declared legal basis: each country outside the EEA that a policy
/// admits (`allow_countries`); when `[transparency]` is configured,
/// `unknown_country = "allow"` and monitor mode (which let transfers
/// happen to places no basis can be declared for in advance); and, from
/// `flows` (read only when it is configured), each country with measured
/// transfers and no declared basis.
pub fn warnings(config: &super::Config, flows: &[Country]) -> Vec<String> {
    let area = eea();
    let declared = |c: Country| {
        config
            .transparency
            .as_ref()
            .is_some_and(|t| t.declared(c).is_some())
    };
    let mut out = Vec::new();
    let policies = std::iter::once(("[policy]".to_owned(), &config.policy)).chain(
        config
            .routes
            .iter()
            .map(|r| (format!("route \"{}\"", r.name), &r.policy)),
    );
    let mut admitted: Vec<Country> = Vec::new();
    let mut open = Vec::new();
    for (name, p) in policies {
        for c in p.policy.allow_countries.iter() {
            if !area.contains(c) && !declared(c) && !admitted.contains(&c) {
                admitted.push(c);
                out.push(format!(
                    "WARNING: {name} allow_countries admits {c}, outside the EEA, and \
                     [transparency] declares no legal basis for transfers there",
                    c = c.as_str()
                ));
            }
        }
        if p.policy.unknown_allowed {
            open.push(format!("{name} unknown_country = \"allow\""));
        }
        if p.policy.mode == crate::policy::Mode::Monitor {
            open.push(format!("{name} mode = \"monitor\""));
        }
    }
    // Only for a host that publishes: monitor mode is also how a policy is
    // tried out before it is enforced.
    if !open.is_empty() && config.transparency.is_some() {
        out.push(format!(
            "WARNING: {} let requests through from or to any country: the transfer page lists \
             each as undeclared until [transparency] declares its legal basis",
            open.join(", ")
        ));
    }
    for c in flows {
        if !declared(*c) {
            out.push(format!(
                "WARNING: the audit trail shows transfers to {} and [transparency] declares no \
                 legal basis for them",
                c.as_str()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const ROUTE: &str = "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9000\"]\n";
    const HEAD: &str = "[transparency]\nentity = \"E\"\ncertificate = \"C\"\ncontact = \"c@x\"\n";

    fn errors(toml: &str) -> String {
        match Config::parse(Path::new("t.toml"), &format!("{ROUTE}{toml}")) {
            Err(e @ ConfigError::Invalid { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn published_values_are_bounded_and_hold_no_control_characters() {
        let long = "E".repeat(super::MAX_VALUE + 1);
        let e = errors(&format!(
            "[transparency]\nentity = \"{long}\"\ncertificate = \"C\\u0000\"\n\
             contact = \"\\u202eliame\"\n"
        ));
        assert!(
            e.contains("transparency entity is longer than 4096 characters"),
            "{e}"
        );
        assert!(
            e.contains(":15: transparency certificate holds the control character U+0000"),
            "{e}"
        );
        assert!(
            e.contains("transparency contact holds the control character U+202E"),
            "{e}"
        );
        let e = errors(&format!(
            "{HEAD}[[transparency.country]]\ncode = \"US\"\nbasis = \"scc\"\n\
             recipients = \"R\\u001b[31m\"\npurposes = \"P\"\ndata = \"D\"\n"
        ));
        assert!(
            e.contains("transparency country recipients holds the control character U+001B"),
            "{e}"
        );
        // A line break or a tab, as an address has, is fine.
        let ok = Config::parse(
            Path::new("t.toml"),
            &format!(
                "{ROUTE}[transparency]\nentity = \"\"\"E\n\t1 rue\"\"\"\n\
                 certificate = \"C\"\ncontact = \"c\"\n"
            ),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    fn country(body: &str) -> String {
        format!("{HEAD}[[transparency.country]]\n{body}")
    }

    #[test]
    fn a_declaration_parses_to_its_values() {
        let c = Config::parse(
            Path::new("t.toml"),
            &format!(
                "{ROUTE}{}",
                country(
                    "code = \"us\"\nbasis = \"scc\"\nrecipients = \"R\"\npurposes = \"P\"\ndata = \"D\"\n"
                )
            ),
        )
        .unwrap();
        let t = c.transparency.unwrap();
        assert_eq!((t.entity.as_str(), t.contact.as_str()), ("E", "c@x"));
        let d = &t.countries[0];
        assert_eq!(d.country.as_str(), "US");
        assert_eq!(d.basis, super::LegalBasis::Scc);
        assert_eq!(d.basis_detail, "");
        let none = Config::parse(Path::new("t.toml"), ROUTE).unwrap();
        assert_eq!(none.transparency, None);
    }

    #[test]
    fn every_problem_is_reported_where_it_is() {
        assert_eq!(
            errors("[transparency]\nentity = \" \"\n"),
            "t.toml:4:1: transparency certificate is missing (it is published with the report)\n\
             t.toml:4:1: transparency contact is missing (it is published with the report)\n\
             t.toml:5:10: transparency entity is empty"
        );
        let e = errors(&country(
            "code = \"FR\"\nbasis = \"adequacy\"\nrecipients = \"R\"\npurposes = \"P\"\ndata = \"D\"\n",
        ));
        assert_eq!(
            e,
            "t.toml:9:8: transparency country \"FR\" is inside the EEA: no transfer to declare"
        );
        let e = errors(&country(
            "code = \"CH\"\nbasis = \"treaty\"\nrecipients = \"R\"\npurposes = \"P\"\ndata = \"\"\n",
        ));
        assert_eq!(
            e,
            "t.toml:10:9: unknown legal basis \"treaty\" (expected adequacy, scc, bcr, derogation or other)"
        );
        let e = errors(&country(
            "code = \"CH\"\nbasis = \"derogation\"\nrecipients = \"R\"\npurposes = \"P\"\ndata = \" \"\n",
        ));
        assert_eq!(
            e,
            "t.toml:10:9: legal basis \"derogation\" needs basis_detail (which derogation or safeguard)\n\
             t.toml:13:8: transparency country data is empty"
        );
        assert!(errors(&country("code = \"UK\"\nbasis = \"scc\"\n")).contains("missing field"));
    }

    #[test]
    fn a_named_file_is_read_and_its_problems_are_reported_at_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("transparency.toml");
        std::fs::write(
            &file,
            "entity = \"E\"\ncertificate = \"C\"\ncontact = \"c\"\n",
        )
        .unwrap();
        let toml = format!("{ROUTE}[transparency]\nfile = \"{}\"\n", file.display());
        let c = Config::parse(Path::new("t.toml"), &toml).unwrap();
        assert_eq!(c.transparency.unwrap().certificate, "C");
        std::fs::write(
            &file,
            "entity = \"E\"\ncertificate = \"C\"\ncontakt = \"c\"\n",
        )
        .unwrap();
        let e = errors(&format!("[transparency]\nfile = \"{}\"\n", file.display()));
        assert!(
            e.starts_with(&format!(
                "t.toml:5:8: in transparency file: {}:3:1: unknown field \"contakt\"",
                file.display()
            )),
            "{e}"
        );
        let e = errors(&format!(
            "[transparency]\nfile = \"{}\"\nentity = \"E\"\n",
            file.display()
        ));
        assert_eq!(
            e,
            "t.toml:5:8: [transparency] names a file and declares keys too: keep one"
        );
        let e = errors("[transparency]\nfile = \"/dev/zero\"\n");
        assert_eq!(
            e,
            "t.toml:5:8: cannot read transparency file \"/dev/zero\": not a regular file"
        );
        // A FIFO: refused before opening it (the open would wait for a
        // writer forever).
        let fifo = file.with_file_name("fifo.toml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = errors(&format!("[transparency]\nfile = \"{}\"\n", fifo.display()));
        assert!(e.ends_with(": not a regular file"), "{e}");
        std::fs::write(&file, vec![b'#'; (super::MAX_FILE + 1) as usize]).unwrap();
        let e = errors(&format!("[transparency]\nfile = \"{}\"\n", file.display()));
        assert!(e.ends_with(": larger than 1048576 bytes"), "{e}");
        let e = errors("[transparency]\nfile = \"/nonexistent/t.toml\"\n");
        assert!(
            e.starts_with("t.toml:5:8: cannot read transparency file \"/nonexistent/t.toml\": "),
            "{e}"
        );
    }
}
