//! Whether a well-formed grant is valid: enough distinct, known, non-self
//! approvers whose Ed25519 signatures verify over its canonical bytes, and
//! no longer than `max_duration`. Time (not yet valid, expired) is judged
//! per request, so a grant stops working at its end without a reload.

use std::fmt;

use super::files::GrantEntry;
use super::spec::GrantsSpec;

/// Why a grant opens nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// No approvals at all.
    Unsigned,
    /// An approval by a name not in `[grants] approvers`.
    UnknownApprover(String),
    /// An approval whose signature does not verify (tampered or wrong key).
    BadSignature(String),
    /// An approval by the grantee (its name is the grant's identity or
    /// owner, or the key's configured owner is the grant's owner or the
    /// registry's owner of its identity).
    SelfApproval(String),
    /// An approver listed twice.
    RepeatedApprover(String),
    /// Fewer distinct valid approvals than `min_approvals`.
    TooFewApprovals {
        /// Valid ones.
        have: usize,
        /// Required.
        need: usize,
    },
    /// Longer than `max_duration`.
    TooLong {
        /// Its length, seconds.
        secs: i64,
        /// The maximum, seconds.
        max: u64,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsigned => f.write_str("unsigned: it carries no approval"),
            Self::UnknownApprover(a) => write!(f, "unknown approver \"{a}\""),
            Self::BadSignature(a) => write!(
                f,
                "bad signature by \"{a}\": it does not verify over this grant's canonical bytes (edited after signing, or signed with another key)"
            ),
            Self::SelfApproval(a) => write!(f, "self-approval: \"{a}\" is the grantee"),
            Self::RepeatedApprover(a) => write!(f, "approver \"{a}\" is listed twice"),
            Self::TooFewApprovals { have, need } => write!(
                f,
                "too few approvals: {have} valid of {need} required (distinct approvers)"
            ),
            Self::TooLong { secs, max } => write!(
                f,
                "too long: lasts {}, more than max_duration {}",
                human(u64::try_from(*secs).unwrap_or(0)),
                human(*max)
            ),
        }
    }
}

fn human(secs: u64) -> String {
    if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// Whether two ways of writing a person name the same one: the names
/// (before any `<address>`) equal once case (Unicode) and runs of white
/// space are folded, or the addresses in `<…>` equal in any case.
/// `"Jane  DOE"`, `"jane doe <jd@x.example>"` and `"J. D. <JD@X.example>"`
/// are all one person with `"Jane Doe <jd@x.example>"`.
fn same_person(a: &str, b: &str) -> bool {
    let (name_a, mail_a) = person(a);
    let (name_b, mail_b) = person(b);
    (!name_a.is_empty() && name_a == name_b) || mail_a.is_some_and(|m| Some(m) == mail_b)
}

/// A person's folded name and folded address (`Name <address>`).
fn person(s: &str) -> (String, Option<String>) {
    let (name, mail) = match s.split_once('<') {
        Some((name, rest)) => (name, rest.split_once('>').map(|(m, _)| m.trim())),
        None => (s, None),
    };
    let fold = |t: &str| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    (
        fold(name),
        mail.filter(|m| !m.is_empty()).map(str::to_lowercase),
    )
}

/// Every reason `g` is invalid; empty when it is valid (in its window).
/// `registry_owner` is the registry's owner of the grant's identity, if any.
pub fn problems(g: &GrantEntry, spec: &GrantsSpec, registry_owner: Option<&str>) -> Vec<Invalid> {
    let mut out = Vec::new();
    let s = &g.signed;
    if g.approvals.is_empty() {
        out.push(Invalid::Unsigned);
    }
    let message = s.canonical();
    // Each valid approval counts once per key and once per person: two
    // keys held by one person (the approver's `owner`, else its name) are
    // one approval, or four eyes would be two.
    let mut valid_keys: Vec<&[u8; 32]> = Vec::new();
    let mut people: Vec<&str> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for a in &g.approvals {
        if seen.contains(&a.approver.as_str()) {
            out.push(Invalid::RepeatedApprover(a.approver.clone()));
            continue;
        }
        seen.push(&a.approver);
        let Some(approver) = spec.approvers.iter().find(|x| x.name == a.approver) else {
            out.push(Invalid::UnknownApprover(a.approver.clone()));
            continue;
        };
        let is_self = same_person(&approver.name, &s.identity)
            || same_person(&approver.name, &s.owner)
            || approver.owner.as_deref().is_some_and(|o| {
                same_person(o, &s.owner) || registry_owner.is_some_and(|r| same_person(o, r))
            });
        if is_self {
            out.push(Invalid::SelfApproval(a.approver.clone()));
            continue;
        }
        if super::keys::verify(&approver.public_key, &message, &a.signature) != Some(true) {
            out.push(Invalid::BadSignature(a.approver.clone()));
            continue;
        }
        let who = approver.owner.as_deref().unwrap_or(&approver.name);
        if !valid_keys.contains(&&approver.public_key)
            && !people.iter().any(|p| same_person(p, who))
        {
            valid_keys.push(&approver.public_key);
            people.push(who);
        }
    }
    if !g.approvals.is_empty() && valid_keys.len() < spec.min_approvals {
        out.push(Invalid::TooFewApprovals {
            have: valid_keys.len(),
            need: spec.min_approvals,
        });
    }
    let secs = s.not_after - s.not_before;
    let max = spec.max_duration.as_secs();
    if u64::try_from(secs).unwrap_or(0) > max {
        out.push(Invalid::TooLong { secs, max });
    }
    out
}
