//! `[identities]` and `[grants]` of the main config: their serde mirror
//! (part of `config::raw`) and their validation into [`AccessSpec`]. The
//! files they name are read when the snapshot is built (see
//! `crate::access::load`). Here, with the rest of the config, so that the
//! access module uses the config and not the other way round.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Problems;

type Text = Spanned<String>;

/// `[identities]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentities {
    /// The registry file.
    pub file: Text,
    /// Refuse identities not in the registry (`anonymous` too).
    #[serde(default)]
    pub require_known: bool,
    /// An entry not reviewed within this is overdue.
    #[serde(default = "default_review_every")]
    pub review_every: Text,
    /// `flag` or `refuse`.
    #[serde(default = "default_on_overdue")]
    pub on_overdue: Text,
    /// Reload when the file is replaced or edited.
    #[serde(default)]
    pub watch: bool,
    /// How often the file is checked when `watch = true`.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: Text,
}

fn default_watch_interval() -> Text {
    Spanned::new(0..0, "5s".to_owned())
}

fn default_review_every() -> Text {
    Spanned::new(0..0, "365d".to_owned())
}

fn default_on_overdue() -> Text {
    Spanned::new(0..0, "flag".to_owned())
}

/// `[grants]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    /// The grants file.
    pub file: Text,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Vec<RawApprover>,
    /// Distinct approvers a grant needs.
    #[serde(default = "default_min_approvals")]
    pub min_approvals: Spanned<u64>,
    /// The longest a grant may last.
    #[serde(default = "default_max_duration")]
    pub max_duration: Text,
    /// Reload when the file is replaced or edited.
    #[serde(default)]
    pub watch: bool,
    /// How often the file is checked when `watch = true`.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: Text,
}

fn default_min_approvals() -> Spanned<u64> {
    Spanned::new(0..0, 1)
}

fn default_max_duration() -> Text {
    Spanned::new(0..0, "14d".to_owned())
}

/// One `approvers` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprover {
    /// The name approvals carry.
    pub name: Text,
    /// `ed25519:<base64 of 32 bytes>`
    pub public_key: Text,
    /// The person holding the key, spelled as in the registry's `owner`:
    /// their approval of a grant to themselves is a self-approval.
    #[serde(default)]
    pub owner: Option<Text>,
}

/// What an overdue registry entry gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOverdue {
    /// Served, counted, logged once, shown by `check`.
    Flag,
    /// Refused with 403, reason `review_overdue`.
    Refuse,
}

/// `[identities]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitiesSpec {
    /// The registry file.
    pub file: PathBuf,
    /// Refuse unlisted identities.
    pub require_known: bool,
    /// Review period.
    pub review_every: Duration,
    /// What an overdue entry gets.
    pub on_overdue: OnOverdue,
    /// `watch`: poll interval when the file is watched.
    pub watch: Option<Duration>,
}

/// A configured approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// Its name.
    pub name: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// The person holding the key, if configured.
    pub owner: Option<String>,
}

/// `[grants]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsSpec {
    /// The grants file.
    pub file: PathBuf,
    /// Approvers, in config order.
    pub approvers: Vec<Approver>,
    /// Distinct approvers a grant needs (at least 1).
    pub min_approvals: usize,
    /// The longest a grant may last.
    pub max_duration: Duration,
    /// `watch`: poll interval when the file is watched.
    pub watch: Option<Duration>,
}

/// Both sections, typed; each `None` when absent (the feature is off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSpec {
    /// `[identities]`
    pub identities: Option<IdentitiesSpec>,
    /// `[grants]`
    pub grants: Option<GrantsSpec>,
}

/// Validates both sections, recording every problem in `p`.
pub fn validate(
    identities: Option<&RawIdentities>,
    grants: Option<&RawGrants>,
    p: &mut Problems<'_>,
) -> AccessSpec {
    AccessSpec {
        identities: identities.map(|r| IdentitiesSpec {
            file: file(&r.file, "identities", p),
            require_known: r.require_known,
            review_every: age(&r.review_every, p),
            on_overdue: match r.on_overdue.get_ref().as_str() {
                "flag" => OnOverdue::Flag,
                "refuse" => OnOverdue::Refuse,
                other => {
                    p.at(
                        r.on_overdue.span(),
                        format!("unknown on_overdue \"{other}\" (expected \"flag\" or \"refuse\")"),
                    );
                    OnOverdue::Flag
                }
            },
            watch: watch(r.watch, &r.watch_interval, p),
        }),
        grants: grants.map(|r| GrantsSpec {
            file: file(&r.file, "grants", p),
            approvers: approvers(&r.approvers, p),
            min_approvals: {
                let n = *r.min_approvals.get_ref();
                if n == 0 || n > 64 {
                    p.at(
                        r.min_approvals.span(),
                        format!("min_approvals {n} is out of range (expected 1 to 64)"),
                    );
                }
                usize::try_from(n.clamp(1, 64)).unwrap_or(1)
            },
            max_duration: age(&r.max_duration, p),
            watch: watch(r.watch, &r.watch_interval, p),
        }),
    }
}

/// `watch` and `watch_interval`: the interval when watched. The interval
/// is checked even when `watch = false`, so turning it on later cannot
/// reveal a value `check` accepted.
fn watch(on: bool, interval: &Text, p: &mut Problems<'_>) -> Option<Duration> {
    let d = match super::duration::parse(interval.get_ref()) {
        Ok(d) if d.is_zero() => {
            p.at(
                interval.span(),
                format!(
                    "duration \"{}\" must be greater than zero",
                    interval.get_ref()
                ),
            );
            Duration::from_secs(1)
        }
        Ok(d) => d,
        Err(msg) => {
            p.at(interval.span(), msg);
            Duration::from_secs(1)
        }
    };
    on.then_some(d)
}

fn file(t: &Text, what: &str, p: &mut Problems<'_>) -> PathBuf {
    if t.get_ref().is_empty() {
        p.at(t.span(), format!("{what} file path is empty"));
    }
    PathBuf::from(t.get_ref())
}

fn age(t: &Text, p: &mut Problems<'_>) -> Duration {
    match crate::config::parse_age(t.get_ref()) {
        Ok(d) if d.is_zero() => {
            p.at(
                t.span(),
                format!("duration \"{}\" must be greater than zero", t.get_ref()),
            );
            Duration::from_secs(1)
        }
        Ok(d) => d,
        Err(msg) => {
            p.at(t.span(), msg);
            Duration::from_secs(1)
        }
    }
}

fn approvers(list: &[RawApprover], p: &mut Problems<'_>) -> Vec<Approver> {
    let mut out: Vec<Approver> = Vec::new();
    for a in list {
        let name = a.name.get_ref();
        if !plain(name) || name.is_empty() {
            p.at(
                a.name.span(),
                format!("approver name \"{name}\" must be non-empty, without control characters"),
            );
        }
        if out.iter().any(|o| o.name == *name) {
            p.at(a.name.span(), format!("duplicate approver \"{name}\""));
        }
        if let Some(owner) = a.owner.as_ref().filter(|o| !plain(o.get_ref())) {
            p.at(
                owner.span(),
                format!(
                    "approver owner \"{}\" holds a hidden character: a control or format character or a direction mark (it is compared with the registry's owners)",
                    owner.get_ref()
                ),
            );
        }
        if let Some(owner) = a.owner.as_ref().filter(|o| o.get_ref().trim().is_empty()) {
            // An empty owner names nobody: it could not be told from
            // another approver's, nor matched against the grantee's.
            p.at(
                owner.span(),
                "approver owner must name a person (leave it out if the approver's name is the person)",
            );
        }
        let key = a.public_key.get_ref();
        let Some(public_key) = parse_public(key).filter(|_| plain(key)) else {
            p.at(
                a.public_key.span(),
                "public_key must be \"ed25519:\" followed by the base64 of 32 bytes (as `grants keygen` prints it)",
            );
            continue;
        };
        if out.iter().any(|o| o.public_key == public_key) {
            p.at(
                a.public_key.span(),
                "this public key is already another approver's: approvals must come from distinct keys",
            );
        }
        out.push(Approver {
            name: name.clone(),
            public_key,
            owner: a.owner.as_ref().map(|o| o.get_ref().trim().to_owned()),
        });
    }
    out
}

/// No control character (so every value is one line of the canonical
/// text), nor a direction mark or override (U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069), which would make a name read otherwise than written in
/// a review or a grant shown to its approver.
pub fn plain(s: &str) -> bool {
    !s.chars().any(super::error::hidden)
}

/// Prefix of a public key's text.
pub const PUBLIC_PREFIX: &str = "ed25519:";

/// The 32 bytes of `ed25519:<base64>`, if that is what `text` is.
pub fn parse_public(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .decode(text.trim().strip_prefix(PUBLIC_PREFIX)?)
        .ok()?;
    data.try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn an_approver_owner_or_key_with_a_hidden_character_is_refused() {
        let config = |owner: &str, key: &str| {
            format!(
                "[[route]]\nname = \"s3\"\nupstreams = [\"http://127.0.0.1:9\"]\n\
                 [grants]\nfile = \"g.toml\"\n[[grants.approvers]]\nname = \"dpo\"\n\
                 public_key = \"ed25519:{}{key}\"\nowner = \"{owner}\"\n",
                "A".repeat(43) + "="
            )
        };
        let ok = crate::config::Config::parse(Path::new("c.toml"), &config("Jane Doe", ""));
        assert_eq!(
            ok.unwrap().access.grants.unwrap().approvers[0]
                .owner
                .as_deref(),
            Some("Jane Doe")
        );
        // An owner with a direction override never matched the registry's
        // owner it reads as: the self-approval check did not see it.
        // Nor did one with a zero-width or other format character: it
        // reads as "Jane Doe" and compared unequal (the self-approval
        // bypass an attack found).
        for owner in [
            "Jane\\u202e Doe",
            "Jane Doe\\u2066",
            "Jane\\u0007Doe",
            "Jane\\u200b Doe",
            "Jane Doe\\u00ad",
            "Jane\\ufeffDoe",
            "Jane\\u2060Doe",
            "Jane\\u2028Doe",
        ] {
            let e = crate::config::Config::parse(Path::new("c.toml"), &config(owner, ""))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.toml:9:9: approver owner \"Jane"),
                "{owner}: {e}"
            );
            assert!(e.contains("holds a hidden character"), "{e}");
        }
        // An empty or blank owner names nobody.
        for blank in ["", "   "] {
            let e = crate::config::Config::parse(Path::new("c.toml"), &config(blank, ""))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.toml:9:9: approver owner must name a person"),
                "{blank:?}: {e}"
            );
        }
        for hidden in ["\\t", "\\n", "\\u0085"] {
            let e = crate::config::Config::parse(Path::new("c.toml"), &config("J", hidden))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("c.toml:8:14: public_key must be"),
                "{hidden}: {e}"
            );
        }
    }

    #[test]
    fn a_direction_override_is_no_plain_value() {
        assert!(super::plain("Dr Émile Dupont, 1 rue"));
        for bad in [
            "a\u{202e}b",
            "a\u{2066}b",
            "a\u{200f}",
            "a\u{1b}[2J",
            "a\nb",
        ] {
            assert!(!super::plain(bad), "{bad:?}");
        }
    }
}
