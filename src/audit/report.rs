//! The renderings of a [`Cartography`] for tools and reviewers: a Markdown
//! document and a JSON one. The page to publish is [`super::page`].
//!
//! Every string in a cartography comes from audit files, which whoever
//! could write them may have crafted: the Markdown and HTML renderings
//! escape all of them.

use std::fmt::Write as _;

use super::operated;
use super::transfers::Cartography;

const TITLE: &str = "Transfers outside the EEA";
const NOTHING: &str = "No transfer outside the EEA was recorded.";
const ALLOWED_NOTE_MD: &str = "A transfer is a request forwarded to the storage with a side outside \
     the EEA: allowed by an override such as `allow_countries = [\"EEA\", \"CH\"]` or \
     `unknown_country = \"allow\"`, by a grant, or flagged in monitor mode. Addresses admitted by \
     `allow_networks` (the host's own networks) are never transfers; blocked and refused requests \
     exchanged nothing and are listed apart.";
const ATTEMPTS_TITLE: &str = "Attempts refused";

impl Cartography {
    /// A Markdown document: title, period, table (or a sentence saying no
    /// transfer was recorded).
    pub fn to_markdown(&self) -> String {
        let mut out = format!("# {TITLE}\n\n{}\n\n", md(&self.period()));
        if self.transfers.is_empty() {
            out.push_str(NOTHING);
            out.push('\n');
            if let Some(s) = self.unrecorded_sentence() {
                let _ = writeln!(out, "\n{s}");
            }
            self.attempts_markdown(&mut out);
            out.push_str(&operated::to_markdown(&self.operated_outside, md));
            return out;
        }
        out.push_str(
            "| side | country | requests | by override | by grant | flagged | bytes up | bytes down | identities | first seen | last seen |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n",
        );
        for t in &self.transfers {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.side.as_str(),
                md(&t.country),
                t.requests,
                t.allowed_by_override,
                t.allowed_by_grant,
                t.flagged,
                t.bytes_up,
                t.bytes_down,
                t.identities,
                md(&t.first_seen),
                md(&t.last_seen),
            );
        }
        let _ = writeln!(out, "\n{ALLOWED_NOTE_MD}");
        if let Some(s) = self.unrecorded_sentence() {
            let _ = writeln!(out, "\n{s}");
        }
        self.attempts_markdown(&mut out);
        out.push_str(&operated::to_markdown(&self.operated_outside, md));
        out
    }

    fn attempts_markdown(&self, out: &mut String) {
        if self.attempts_refused.is_empty() {
            return;
        }
        let _ = write!(
            out,
            "\n## {ATTEMPTS_TITLE}\n\nRequests with a side outside the EEA that exchanged nothing \
             with the storage.\n\n\
             | side | country | blocked | refused | identities | first seen | last seen |\n\
             |---|---|--:|--:|--:|---|---|\n"
        );
        for a in &self.attempts_refused {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                a.side.as_str(),
                md(&a.country),
                a.blocked,
                a.refused,
                a.identities,
                md(&a.first_seen),
                md(&a.last_seen),
            );
        }
    }

    /// The cartography as pretty-printed JSON, ending with a newline. Field
    /// names are those of [`Cartography`] and [`Transfer`].
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self)
            .expect("a cartography holds only strings and integers, which always serialise");
        out.push('\n');
        out
    }

    /// The Markdown section of the `[transparency]` declarations beside
    /// the transfers, per destination country: the declared legal basis,
    /// or a loud line when none is; empty when there is neither a
    /// declaration nor a transfer.
    pub fn legal_markdown(&self, t: Option<&crate::config::Transparency>) -> String {
        use crate::audit::page::basis_name;
        use crate::audit::world::Lang;
        if t.is_none() && self.transfers.is_empty() {
            return String::new();
        }
        let mut out = String::from("\n## Legal bases of the transfers\n\n");
        match t {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "Published by {}; HDS certificate: {}; contact: {}.\n",
                    md(&t.entity),
                    md(&t.certificate),
                    md(&t.contact)
                );
            }
            None => out.push_str("**No [transparency] declaration**: the hosting entity, its HDS certificate, the contact and the legal bases are not given.\n\n"),
        }
        let mut countries: Vec<&str> = self.transfers.iter().map(|x| x.country.as_str()).collect();
        countries.sort_unstable();
        countries.dedup();
        if countries.is_empty() {
            return out;
        }
        out.push_str("| country | transfers | legal basis | recipients | purposes | data categories |\n|---|--:|---|---|---|---|\n");
        for c in countries {
            let n: u64 = self
                .transfers
                .iter()
                .filter(|x| x.country == c)
                .map(|x| x.requests)
                .sum();
            let declared =
                crate::geo::Country::from_code(c).and_then(|code| t.and_then(|t| t.declared(code)));
            match declared {
                Some(d) => {
                    let basis = if d.basis_detail.is_empty() {
                        basis_name(d.basis, Lang::En).to_owned()
                    } else {
                        format!("{}: {}", basis_name(d.basis, Lang::En), d.basis_detail)
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {n} | {} | {} | {} | {} |",
                        md(c),
                        md(&basis),
                        md(&d.recipients),
                        md(&d.purposes),
                        md(&d.data)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "| {} | {n} | **NO LEGAL BASIS DECLARED** | | | |",
                        md(c)
                    );
                }
            }
        }
        out
    }

    /// How many refusals by the HTTP layer summary records count without a
    /// record each, if any.
    fn unrecorded_sentence(&self) -> Option<String> {
        (self.unrecorded_refusals > 0).then(|| {
            format!(
                "Requests refused by the HTTP layer (malformed or oversized) over the \
                 per-window record budget, counted by summary records without their \
                 countries: {}.",
                self.unrecorded_refusals,
            )
        })
    }

    /// One sentence: how many records, over which period.
    fn period(&self) -> String {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) if self.records > 0 => format!(
                "Requests whose client or upstream was outside the EEA (or of unknown \
                 country), per side and country, from {} audit record{} dated {from} to {to}.",
                self.records,
                if self.records == 1 { "" } else { "s" },
            ),
            _ => "No audit record was read.".to_owned(),
        }
    }
}

/// Escapes text for a Markdown table cell: the characters that would start
/// markup, inline HTML or a new cell are backslash-escaped (CommonMark
/// §2.4), and control characters, which would end the row, are replaced.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
