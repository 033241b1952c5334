//! The annual access review pack (SPEC §9, `access-review`): for each
//! listed identity its owner, role, proof, last review and whether it is
//! overdue, and from a verified audit trail its first and last use,
//! requests by route, decision and client country, and the grants it used;
//! then identities seen but not listed, and listed ones unused for
//! [`UNUSED_DAYS`] days.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::canonical::{date, rfc3339};
use super::files::Identity;
use crate::audit::AuditRecord;
use crate::markup::escape;

/// A listed identity not seen for this many days is a removal candidate.
pub const UNUSED_DAYS: i64 = 90;

/// Use of one identity in the trail.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Usage {
    /// Time of the first use (see [`is_use`]).
    pub first_use: Option<String>,
    /// Time of the last use.
    pub last_use: Option<String>,
    /// Records in all.
    pub requests: u64,
    /// Records that were not uses ([`is_use`]): blocked, refused by the
    /// proxy or the storage, or failed.
    pub not_admitted: u64,
    /// `route decision country` → records.
    pub by_route_decision_country: BTreeMap<String, u64>,
    /// Grant id → records admitted by it.
    pub grants: BTreeMap<String, u64>,
}

impl Usage {
    fn add(&mut self, r: &AuditRecord) {
        if is_use(r) {
            if self.first_use.is_none() {
                self.first_use = Some(r.time.clone());
            }
            self.last_use = Some(r.time.clone());
        } else {
            self.not_admitted += 1;
        }
        self.requests += 1;
        let key = format!(
            "{} {} {}",
            r.route.as_deref().unwrap_or("(none)"),
            r.decision,
            r.client_country
        );
        *self.by_route_decision_country.entry(key).or_default() += 1;
        if let Some(g) = &r.grant {
            *self.grants.entry(g.clone()).or_default() += 1;
        }
    }
}

/// Whether a record shows the identity used: the request went on to the
/// storage (allowed or flagged) and the storage answered as it answers an
/// authenticated request (`2xx`, `3xx`, or `404`, `409`, `412`, `416`: a
/// key, state or range it knows of). Anyone can claim a key id, with a
/// forged signature the storage refuses (`400`, `401`, `403`), or send a
/// request the proxy blocks: such records are counted (`not_admitted`),
/// never a use, so they neither keep an unused identity off the removal
/// list nor date a use that never happened.
pub fn is_use(r: &AuditRecord) -> bool {
    matches!(r.decision.as_str(), "allowed" | "flagged")
        && ((200..400).contains(&r.status) || matches!(r.status, 404 | 409 | 412 | 416))
}

/// One listed identity in the pack.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The identity.
    pub id: String,
    /// Its owner.
    pub owner: String,
    /// Its role.
    pub role: String,
    /// `sigv4` (a claim the storage checks) or `mtls` (proven to the proxy).
    pub proof: &'static str,
    /// Routes, or `None` for all.
    pub routes: Option<Vec<String>>,
    /// Date granted.
    pub granted: String,
    /// Date of the last review.
    pub reviewed: String,
    /// Who reviewed it.
    pub reviewer: String,
    /// Whether the review is overdue.
    pub overdue: bool,
    /// Not seen for [`UNUSED_DAYS`] days (or never).
    pub unused: bool,
    /// Its use.
    pub usage: Usage,
}

/// The review pack.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// When it was produced.
    pub generated: String,
    /// Records read.
    pub records: u64,
    /// Listed identities, in file order.
    pub identities: Vec<Listed>,
    /// Identities in the trail but not listed, by identity.
    pub unlisted: BTreeMap<String, Usage>,
}

/// Builds the pack from the registry and a verified trail, at `now`.
pub fn review(
    identities: &[Identity],
    review_every: i64,
    records: impl Iterator<Item = AuditRecord>,
    now: i64,
) -> Review {
    let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
    let mut n = 0;
    for r in records {
        // A policy change record is no request of anyone's.
        if r.decision == crate::audit::POLICY {
            continue;
        }
        n += 1;
        usage.entry(r.identity.clone()).or_default().add(&r);
    }
    let cutoff = rfc3339(now - UNUSED_DAYS * 86_400);
    let identities = identities
        .iter()
        .map(|i| {
            let u = usage.remove(&i.id).unwrap_or_default();
            Listed {
                id: i.id.clone(),
                owner: i.owner.clone(),
                role: i.role.clone(),
                proof: i.proof.as_str(),
                routes: i.routes.clone(),
                granted: date(i.granted),
                reviewed: date(i.reviewed),
                reviewer: i.reviewer.clone(),
                overdue: now >= i.reviewed.saturating_add(review_every),
                unused: u.last_use.as_deref().is_none_or(|t| *t < *cutoff),
                usage: u,
            }
        })
        .collect();
    Review {
        generated: rfc3339(now),
        records: n,
        identities,
        unlisted: usage,
    }
}

impl Review {
    /// JSON document.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Markdown.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Access review\n");
        let _ = writeln!(
            o,
            "Generated {} from {} audit records (chain verified).\n",
            self.generated, self.records
        );
        let _ = writeln!(o, "## Listed identities\n");
        let _ = writeln!(
            o,
            "| identity | owner | role | proof | reviewed | reviewer | overdue | first use | last use | requests | not admitted | grants used |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for i in &self.identities {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&i.id),
                cell(&i.owner),
                cell(&i.role),
                i.proof,
                i.reviewed,
                cell(&i.reviewer),
                if i.overdue { "**yes**" } else { "no" },
                cell(i.usage.first_use.as_deref().unwrap_or("never")),
                cell(i.usage.last_use.as_deref().unwrap_or("never")),
                i.usage.requests,
                i.usage.not_admitted,
                grants_text(&i.usage),
            );
        }
        let _ = writeln!(o, "\n## Requests by route, decision and client country\n");
        let _ = writeln!(o, "| identity | route | decision | country | requests |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        let all = self
            .identities
            .iter()
            .map(|i| (&i.id, &i.usage))
            .chain(self.unlisted.iter());
        for (id, u) in all {
            for (k, n) in &u.by_route_decision_country {
                let mut parts = k.splitn(3, ' ');
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {n} |",
                    cell(id),
                    cell(parts.next().unwrap_or("")),
                    cell(parts.next().unwrap_or("")),
                    cell(parts.next().unwrap_or(""))
                );
            }
        }
        let _ = writeln!(o, "\n## Seen in the trail but not listed\n");
        if self.unlisted.is_empty() {
            let _ = writeln!(o, "None.");
        } else {
            let _ = writeln!(o, "| identity | first use | last use | requests |");
            let _ = writeln!(o, "|---|---|---|---|");
            for (id, u) in &self.unlisted {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    cell(id),
                    cell(u.first_use.as_deref().unwrap_or("")),
                    cell(u.last_use.as_deref().unwrap_or("")),
                    u.requests
                );
            }
        }
        let _ = writeln!(
            o,
            "\n## Listed but unused for {UNUSED_DAYS} days (candidates for removal)\n"
        );
        let unused: Vec<_> = self.identities.iter().filter(|i| i.unused).collect();
        if unused.is_empty() {
            let _ = writeln!(o, "None.");
        }
        for i in unused {
            let _ = writeln!(
                o,
                "- {} ({}), last use {}",
                cell(&i.id),
                cell(&i.owner),
                cell(i.usage.last_use.as_deref().unwrap_or("never"))
            );
        }
        o
    }

    /// One self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut o = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Access review</title>\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em}.overdue{color:#b00;font-weight:bold}</style></head><body>\n",
        );
        let _ = writeln!(
            o,
            "<h1>Access review</h1><p>Generated {} from {} audit records (chain verified).</p>",
            self.generated, self.records
        );
        o.push_str("<h2>Listed identities</h2><table><tr><th>identity</th><th>owner</th><th>role</th><th>proof</th><th>reviewed</th><th>reviewer</th><th>overdue</th><th>first use</th><th>last use</th><th>requests</th><th>not admitted</th><th>grants used</th></tr>\n");
        for i in &self.identities {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&i.id),
                escape(&i.owner),
                escape(&i.role),
                i.proof,
                i.reviewed,
                escape(&i.reviewer),
                if i.overdue { " class=\"overdue\"" } else { "" },
                if i.overdue { "yes" } else { "no" },
                escape(i.usage.first_use.as_deref().unwrap_or("never")),
                escape(i.usage.last_use.as_deref().unwrap_or("never")),
                i.usage.requests,
                i.usage.not_admitted,
                escape(&grants_text(&i.usage)),
            );
        }
        o.push_str("</table>\n<h2>Seen in the trail but not listed</h2><table><tr><th>identity</th><th>first use</th><th>last use</th><th>requests</th></tr>\n");
        for (id, u) in &self.unlisted {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(id),
                escape(u.first_use.as_deref().unwrap_or("")),
                escape(u.last_use.as_deref().unwrap_or("")),
                u.requests
            );
        }
        let _ = writeln!(
            o,
            "</table>\n<h2>Listed but unused for {UNUSED_DAYS} days</h2><ul>"
        );
        for i in self.identities.iter().filter(|i| i.unused) {
            let _ = writeln!(o, "<li>{} ({})</li>", escape(&i.id), escape(&i.owner));
        }
        o.push_str("</ul></body></html>\n");
        o
    }
}

fn grants_text(u: &Usage) -> String {
    if u.grants.is_empty() {
        return "none".to_owned();
    }
    u.grants
        .iter()
        .map(|(g, n)| format!("{g} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Markdown table cell: plain text, whatever it holds (an mTLS subject
/// or a crafted trail may hold markup): every character Markdown or its
/// inline HTML gives a meaning to is escaped, no line breaks, no control
/// characters, so a viewer shows the text and loads nothing (no link, no
/// image, no tag).
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '[' | ']' | '(' | ')' | '!' | '`' | '*' | '_' | '~' | '#' | '&' | '<'
            | '>' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
