//! `grants sign`: adds one approval to one grant of a grants file, as text,
//! leaving the rest of the file (comments, layout) as it was.

use std::path::Path;

use super::files::{self, GrantEntry};
use super::keys::SigningKey;

/// Why a grant could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The file is not a valid grants file.
    #[error(transparent)]
    File(#[from] crate::config::ConfigError),
    /// No grant with this id.
    #[error("{path}: no grant with id \"{id}\"")]
    NoGrant {
        /// The file.
        path: String,
        /// The id asked for.
        id: String,
    },
    /// The approver already approved this grant.
    #[error(
        "grant \"{id}\" already carries an approval by \"{approver}\" (remove it first to sign again)"
    )]
    Already {
        /// The grant.
        id: String,
        /// The approver.
        approver: String,
    },
    /// The file's layout could not take the approval as a text edit.
    #[error(
        "cannot add the approval to this file's layout; add it to the grant's approvals by hand: {0}"
    )]
    Layout(String),
    /// A name a TOML string and the canonical text cannot carry.
    #[error("approver name {0:?} must be non-empty, without control characters")]
    Name(String),
}

/// `text` with an approval of grant `id` by `approver` signed with `key`,
/// and the grant as signed.
///
/// # Errors
/// [`SignError`].
pub fn sign(
    path: &Path,
    text: &str,
    id: &str,
    approver: &str,
    key: &SigningKey,
) -> Result<(String, GrantEntry), SignError> {
    if approver.trim().is_empty() || !super::plain(approver) {
        return Err(SignError::Name(approver.to_owned()));
    }
    let grants = files::grants(path, text, None)?;
    let g = grants
        .into_iter()
        .find(|g| g.signed.id == id)
        .ok_or_else(|| SignError::NoGrant {
            path: path.display().to_string(),
            id: id.to_owned(),
        })?;
    if g.approvals.iter().any(|a| a.approver == approver) {
        return Err(SignError::Already {
            id: id.to_owned(),
            approver: approver.to_owned(),
        });
    }
    let signature = key.sign(&g.signed.canonical());
    let name = approver.replace('\\', "\\\\").replace('"', "\\\"");
    let approval = format!("{{ approver = \"{name}\", signature = \"{signature}\" }}");
    let out = match &g.approvals_span {
        Some(span) => {
            // The span is the array, `[` to `]`.
            let close = text[..span.end].rfind(']').unwrap_or(span.end);
            let trailing_comma = text[..close].trim_end().ends_with(',');
            let sep = if g.approvals.is_empty() || trailing_comma {
                ""
            } else {
                ", "
            };
            format!("{}{sep}{approval}{}", &text[..close], &text[close..])
        }
        None => {
            let at = text[g.end..]
                .find('\n')
                .map_or(text.len(), |i| g.end + i + 1);
            let nl = if at == text.len() && !text.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            format!(
                "{}{nl}approvals = [{approval}]\n{}",
                &text[..at],
                &text[at..]
            )
        }
    };
    // The file may lay its approvals out in a way this text edit does not
    // foresee (`[[grant.approvals]]`): never write a file that does not
    // read back with exactly one more approval.
    let back = files::grants(path, &out, None)
        .ok()
        .and_then(|all| all.into_iter().find(|x| x.signed.id == id));
    if back.is_none_or(|b| b.approvals.len() != g.approvals.len() + 1 || b.signed != g.signed) {
        return Err(SignError::Layout(approval));
    }
    Ok((out, g))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRANTS: &str = "# comment kept\n[[grant]]\nid = \"A\"\nidentity = \"x\"\nowner = \"o\"\npurpose = \"p\"\n\
        from_countries = [\"US\"]\nnot_before = 2026-12-07T08:00:00Z\nnot_after = 2026-12-07T18:00:00Z\n\
        \n[[grant]]\nid = \"B\"\nidentity = \"y\"\nowner = \"o\"\npurpose = \"p\"\nfrom_countries = [\"US\"]\n\
        not_before = 2026-12-07T08:00:00Z\nnot_after = 2026-12-07T18:00:00Z\n";

    #[test]
    fn signing_adds_one_approval_to_the_named_grant_only() {
        let (k1, _) = super::super::keys::keygen().unwrap();
        let (k2, _) = super::super::keys::keygen().unwrap();
        let k1 = SigningKey::parse(&k1).unwrap();
        let k2 = SigningKey::parse(&k2).unwrap();
        let p = Path::new("g.toml");
        let (once, _) = sign(p, GRANTS, "A", "dpo", &k1).unwrap();
        let (twice, _) = sign(p, &once, "A", "ciso", &k2).unwrap();
        assert!(twice.starts_with("# comment kept\n"));
        let grants = files::grants(p, &twice, None).unwrap();
        let a = &grants[0];
        assert_eq!(
            a.approvals
                .iter()
                .map(|x| x.approver.as_str())
                .collect::<Vec<_>>(),
            ["dpo", "ciso"]
        );
        let public = super::super::keys::parse_public(&k2.public()).unwrap();
        assert_eq!(
            super::super::keys::verify(&public, &a.signed.canonical(), &a.approvals[1].signature),
            Some(true)
        );
        assert!(grants[1].approvals.is_empty());
        let (last, _) = sign(p, &twice, "B", "dpo", &k1).unwrap();
        assert_eq!(files::grants(p, &last, None).unwrap()[1].approvals.len(), 1);
        assert!(matches!(
            sign(p, &twice, "A", "dpo", &k1),
            Err(SignError::Already { .. })
        ));
        assert!(matches!(
            sign(p, GRANTS, "C", "dpo", &k1),
            Err(SignError::NoGrant { .. })
        ));
    }
}
