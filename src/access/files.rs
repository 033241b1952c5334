//! The identities file (`[[identity]]`) and the grants file (`[[grant]]`):
//! parsed with every problem at `file:line:col`, all at once, like the main
//! config. A file with any problem is refused whole. Whether a well-formed
//! grant is *valid* (signatures, approvers, duration, time) is not decided
//! here but in [`super::grant`].

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::value::{Datetime, Offset};

use super::canonical::{Signed, days_from_civil};
use super::{Proof, plain};
use crate::config::{ConfigError, Problem, Problems, line_col, shown};
use crate::geo::{Country, known_codes};

type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityFile {
    #[serde(default)]
    identity: Vec<RawIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    id: Text,
    owner: Text,
    role: Text,
    #[serde(default)]
    routes: Option<Vec<Text>>,
    #[serde(default)]
    proof: Option<Text>,
    granted: Spanned<Datetime>,
    reviewed: Spanned<Datetime>,
    reviewer: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrantFile {
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    id: Text,
    identity: Text,
    #[serde(default)]
    proof: Option<Text>,
    owner: Text,
    purpose: Text,
    from_countries: Vec<Text>,
    #[serde(default)]
    routes: Option<Vec<Text>>,
    #[serde(default)]
    methods: Option<Vec<Text>>,
    #[serde(default)]
    path_prefix: Option<Text>,
    not_before: Spanned<Datetime>,
    not_after: Spanned<Datetime>,
    #[serde(default)]
    approvals: Option<Spanned<Vec<RawApproval>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    approver: Text,
    signature: Text,
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Access key id or mTLS subject.
    pub id: String,
    /// The person holding it.
    pub owner: String,
    /// What it is for.
    pub role: String,
    /// Route names it may use; `None`: all.
    pub routes: Option<Vec<String>>,
    /// `sigv4` (default: the identity as recorded, a claim the storage
    /// checks) or `mtls` (only when proven by the client certificate).
    pub proof: Proof,
    /// When it was granted (seconds since the epoch, UTC midnight).
    pub granted: i64,
    /// When it was last reviewed.
    pub reviewed: i64,
    /// Who reviewed it.
    pub reviewer: String,
}

/// One approval of a grant, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approver's name.
    pub approver: String,
    /// Base64 Ed25519 signature of the canonical bytes.
    pub signature: String,
}

/// One grant, well-formed (not yet judged valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    /// What is signed.
    pub signed: Signed,
    /// The approvals, in file order.
    pub approvals: Vec<Approval>,
    /// Byte span of the `approvals` array, if present, for `grants sign`.
    pub approvals_span: Option<std::ops::Range<usize>>,
    /// Byte offset just after the grant's last field, for `grants sign`.
    pub end: usize,
    /// Line of its `id`.
    pub line: usize,
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem {
            line,
            column,
            message: shown(e.message().trim().replace('`', "\"").replace('\n', " ")),
        }],
    }
}

/// Reads a file, as a config error naming it if it cannot be.
///
/// # Errors
/// [`ConfigError::Read`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    crate::config::read_file(path)
}

/// Parses an identities file; `routes` are the config's route names.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem.
/// `routes` `None` (a review without the config): route names are not checked.
pub fn identities(
    path: &Path,
    text: &str,
    routes: Option<&[&str]>,
) -> Result<Vec<Identity>, ConfigError> {
    let raw: RawIdentityFile = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
    let mut p = Problems::new(text);
    let mut out: Vec<Identity> = Vec::new();
    for r in &raw.identity {
        let id = field(&r.id, "id", &mut p);
        if out.iter().any(|o| o.id == id) {
            p.at(r.id.span(), format!("duplicate identity \"{id}\""));
        }
        let granted = date(&r.granted, &mut p);
        let reviewed = date(&r.reviewed, &mut p);
        if let (Some(g), Some(r2)) = (granted, reviewed)
            && r2 < g
        {
            p.at(r.reviewed.span(), "reviewed is before granted");
        }
        let (granted, reviewed) = (granted.unwrap_or(0), reviewed.unwrap_or(0));
        out.push(Identity {
            id,
            owner: field(&r.owner, "owner", &mut p),
            role: field(&r.role, "role", &mut p),
            routes: r
                .routes
                .as_ref()
                .map(|l| route_names(l, r.id.span(), routes, &mut p)),
            proof: match r.proof.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
                None | Some(("sigv4", _)) => Proof::Sigv4,
                Some(("mtls", _)) => Proof::Mtls,
                Some((other, span)) => {
                    p.at(
                        span,
                        format!("unknown proof \"{other}\" (expected \"sigv4\" or \"mtls\")"),
                    );
                    Proof::Sigv4
                }
            },
            granted,
            reviewed,
            reviewer: field(&r.reviewer, "reviewer", &mut p),
        });
    }
    p.finish(path)?;
    Ok(out)
}

/// Parses a grants file; `routes` are the config's route names.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem.
/// `routes` `None` (`grants sign`, without the config): route names are
/// not checked.
pub fn grants(
    path: &Path,
    text: &str,
    routes: Option<&[&str]>,
) -> Result<Vec<GrantEntry>, ConfigError> {
    let raw: RawGrantFile = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
    let mut p = Problems::new(text);
    let mut out: Vec<GrantEntry> = Vec::new();
    for r in &raw.grant {
        let id = field(&r.id, "id", &mut p);
        if id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            p.at(
                r.id.span(),
                format!("grant id \"{id}\" must be 1 to 64 letters, digits, \".\", \"_\", \":\" or \"-\" (it is a header and metric label value)"),
            );
        }
        if out.iter().any(|o| o.signed.id == id) {
            p.at(r.id.span(), format!("duplicate grant \"{id}\""));
        }
        let proof = match r.proof.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
            None | Some(("mtls", _)) => Proof::Mtls,
            Some(("sigv4", _)) => Proof::Sigv4,
            Some((other, span)) => {
                p.at(
                    span,
                    format!("unknown proof \"{other}\" (expected \"mtls\" or \"sigv4\")"),
                );
                Proof::Mtls
            }
        };
        let not_before = instant(&r.not_before, &mut p);
        let not_after = instant(&r.not_after, &mut p);
        if let (Some(b), Some(a)) = (not_before, not_after)
            && a <= b
        {
            p.at(r.not_after.span(), "not_after is not after not_before");
        }
        let (not_before, not_after) = (not_before.unwrap_or(0), not_after.unwrap_or(0));
        let from_countries = countries(&r.from_countries, r.id.span(), &mut p);
        let methods = r
            .methods
            .as_ref()
            .map(|l| methods(l, r.id.span(), &mut p))
            .unwrap_or_default();
        let path_prefix = r.path_prefix.as_ref().map_or_else(String::new, |t| {
            let s = field(t, "path_prefix", &mut p);
            if !s.starts_with('/') || s.contains(['%', '\\', ';', '?', '#']) {
                p.at(
                    t.span(),
                    "path_prefix must start with \"/\" and hold no \"%\", \"\\\", \";\", \"?\" or \"#\" (it is compared with the path as sent)",
                );
            }
            s
        });
        let mut approvals = Vec::new();
        for a in r.approvals.iter().flat_map(|a| a.get_ref()) {
            let approver = field(&a.approver, "approver", &mut p);
            let signature = a.signature.get_ref();
            if !plain(signature) || super::keys::verify(&[0; 32], b"", signature).is_none() {
                p.at(
                    a.signature.span(),
                    "signature must be the base64 of a 64-byte Ed25519 signature",
                );
            }
            approvals.push(Approval {
                approver,
                signature: a.signature.get_ref().trim().to_owned(),
            });
        }
        let end = [
            r.id.span().end,
            r.identity.span().end,
            r.owner.span().end,
            r.purpose.span().end,
            r.not_before.span().end,
            r.not_after.span().end,
        ]
        .into_iter()
        .chain(r.approvals.as_ref().map(|a| a.span().end))
        .chain(r.proof.as_ref().map(|t| t.span().end))
        .chain(r.path_prefix.as_ref().map(|t| t.span().end))
        .chain(r.from_countries.last().map(|t| t.span().end))
        .chain(r.routes.iter().flatten().map(|t| t.span().end))
        .chain(r.methods.iter().flatten().map(|t| t.span().end))
        .max()
        .unwrap_or(0);
        out.push(GrantEntry {
            signed: Signed {
                id,
                identity: field(&r.identity, "identity", &mut p),
                proof,
                owner: field(&r.owner, "owner", &mut p),
                purpose: field(&r.purpose, "purpose", &mut p),
                from_countries,
                routes: r
                    .routes
                    .as_ref()
                    .map(|l| route_names(l, r.id.span(), routes, &mut p))
                    .unwrap_or_default(),
                methods,
                path_prefix,
                not_before,
                not_after,
            },
            approvals,
            approvals_span: r.approvals.as_ref().map(Spanned::span),
            end,
            line: line_col(text, r.id.span().start).0,
        });
    }
    p.finish(path)?;
    Ok(out)
}

/// A non-empty single-line value.
fn field(t: &Text, name: &str, p: &mut Problems<'_>) -> String {
    let s = t.get_ref();
    if s.trim().is_empty() {
        p.at(t.span(), format!("{name} is empty"));
    } else if !plain(s) {
        p.at(
            t.span(),
            format!(
                "{name} holds a hidden character: a control or format character or a direction mark"
            ),
        );
    }
    s.clone()
}

/// A list item: a field without `,`.
fn item(t: &Text, name: &str, p: &mut Problems<'_>) -> String {
    let s = field(t, name, p);
    if s.contains(',') {
        p.at(t.span(), format!("{name} \"{s}\" holds a \",\""));
    }
    s
}

fn non_empty(list: &[Text], at: std::ops::Range<usize>, name: &str, p: &mut Problems<'_>) {
    if list.is_empty() {
        p.at(
            at,
            format!("{name} is an empty list (leave it out to mean any)"),
        );
    }
}

fn route_names(
    list: &[Text],
    at: std::ops::Range<usize>,
    routes: Option<&[&str]>,
    p: &mut Problems<'_>,
) -> Vec<String> {
    non_empty(list, at, "routes", p);
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let s = item(t, "route", p);
        if let Some(routes) = routes
            && !routes.contains(&s.as_str())
        {
            p.at(
                t.span(),
                format!(
                    "unknown route \"{s}\" (the config's routes: {})",
                    routes.join(", ")
                ),
            );
        } else if out.contains(&s) {
            p.at(t.span(), format!("route \"{s}\" is listed twice"));
        }
        out.push(s);
    }
    out
}

fn countries(list: &[Text], at: std::ops::Range<usize>, p: &mut Problems<'_>) -> Vec<String> {
    if list.is_empty() {
        p.at(at, "from_countries is empty: the grant would open nothing");
    }
    let known = known_codes();
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let s = t.get_ref();
        match Country::from_code(s) {
            Some(c) if known.contains(c) && s.bytes().all(|b| b.is_ascii_uppercase()) => {
                if out.iter().any(|o| o == s) {
                    p.at(t.span(), format!("country \"{s}\" is listed twice"));
                }
                out.push(s.clone());
            }
            _ => p.at(
                t.span(),
                format!("unknown country code \"{s}\" (expected an upper-case ISO 3166-1 alpha-2 code such as \"US\"; aliases such as \"EEA\" are not accepted in a grant)"),
            ),
        }
    }
    out
}

fn methods(list: &[Text], at: std::ops::Range<usize>, p: &mut Problems<'_>) -> Vec<String> {
    non_empty(list, at, "methods", p);
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let s = t.get_ref();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            p.at(
                t.span(),
                format!("method \"{s}\" must be an upper-case HTTP method such as \"GET\""),
            );
        } else if out.contains(s) {
            p.at(t.span(), format!("method \"{s}\" is listed twice"));
        }
        out.push(s.clone());
    }
    out
}

/// A local date (`2026-01-10`): its UTC midnight.
fn date(t: &Spanned<Datetime>, p: &mut Problems<'_>) -> Option<i64> {
    let d = t.get_ref();
    if let (Some(date), None, None) = (d.date, d.time, d.offset) {
        return Some(
            days_from_civil(
                i64::from(date.year),
                i64::from(date.month),
                i64::from(date.day),
            ) * 86_400,
        );
    }
    p.at(
        t.span(),
        format!("expected a date such as 2026-01-10, found {d}"),
    );
    None
}

/// An instant with its offset (`2026-12-07T08:00:00Z`), whole seconds.
fn instant(t: &Spanned<Datetime>, p: &mut Problems<'_>) -> Option<i64> {
    let d = t.get_ref();
    let bad = |p: &mut Problems<'_>| {
        p.at(
            t.span(),
            format!("expected a time with its offset in whole seconds, such as 2026-12-07T08:00:00Z, found {d}"),
        );
        None
    };
    let (Some(date), Some(time), Some(offset)) = (d.date, d.time, d.offset) else {
        return bad(p);
    };
    if time.nanosecond != 0 {
        return bad(p);
    }
    let minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    Some(
        days_from_civil(
            i64::from(date.year),
            i64::from(date.month),
            i64::from(date.day),
        ) * 86_400
            + i64::from(time.hour) * 3600
            + i64::from(time.minute) * 60
            + i64::from(time.second)
            - minutes * 60,
    )
}
