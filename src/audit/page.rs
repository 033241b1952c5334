//! The transfer map an HDS host can publish (issue 19): one self-contained
//! HTML page (inline CSS and SVG, no script, no external reference) in
//! French or English, from a [`Cartography`] (the `transfers` report, or
//! the live `/transfers?format=html`) and the `[transparency]`
//! declarations.
//!
//! Top to bottom: who publishes it and for which period; a world map with
//! the EEA outlined and each destination shaded by its transfers (a
//! `<title>` per country: name, counts, first and last seen); per
//! destination, the measured flows beside the declared legal basis,
//! recipients, purposes and data categories (a destination with no
//! declared basis is shown as such, loudly); the detail per side; the
//! attempts refused; the flows operated from outside; and where the figures
//! come from (verified trails or live counters, policy versions).
//!
//! Every string from an audit file or the config is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::transfers::Cartography;
use super::world::{self, Lang, VIEW};
use crate::config::{LegalBasis, Transparency};
use crate::geo::{Country, eea};

mod tables;

/// Where the figures of a page come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Audit trails, each verified whole before the report was made.
    Trails(Vec<String>),
    /// The counters of a running proxy since it started, under this
    /// policy version.
    Live {
        /// The policy version in force now.
        policy_version: String,
    },
}

/// What a page shows besides the cartography.
#[derive(Debug, Clone)]
pub struct PageContext<'a> {
    /// The language.
    pub lang: Lang,
    /// The declarations, if `[transparency]` is configured.
    pub transparency: Option<&'a Transparency>,
    /// When the page was generated, RFC 3339.
    pub generated: String,
    /// `--since`, as given.
    pub since: Option<String>,
    /// `--until`, as given.
    pub until: Option<String>,
    /// Where the figures come from.
    pub source: Source,
}

/// Picks the French or the English text.
const fn tr(lang: Lang, fr: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Fr => fr,
        Lang::En => en,
    }
}

/// One destination: a country (or an unknown location) with transfers.
struct Destination {
    /// ISO code, `unknown`, or a record's value verbatim.
    label: String,
    country: Option<Country>,
    requests: u64,
    by_override: u64,
    by_grant: u64,
    flagged: u64,
    bytes: u64,
    first: String,
    last: String,
}

impl Destination {
    fn name(&self, lang: Lang) -> String {
        match self.country {
            Some(c) => world::name(c, lang).to_owned(),
            None if self.label == crate::geo::UNKNOWN_LABEL => {
                tr(lang, "Localisation inconnue", "Unknown location").to_owned()
            }
            None => self.label.clone(),
        }
    }
}

fn destinations(c: &Cartography) -> Vec<Destination> {
    let mut by: BTreeMap<String, Destination> = BTreeMap::new();
    for t in &c.transfers {
        let d = by.entry(t.country.clone()).or_insert_with(|| Destination {
            label: t.country.clone(),
            country: Country::from_code(&t.country),
            requests: 0,
            by_override: 0,
            by_grant: 0,
            flagged: 0,
            bytes: 0,
            first: t.first_seen.clone(),
            last: t.last_seen.clone(),
        });
        d.requests += t.requests;
        d.by_override += t.allowed_by_override;
        d.by_grant += t.allowed_by_grant;
        d.flagged += t.flagged;
        d.bytes = d
            .bytes
            .saturating_add(t.bytes_up)
            .saturating_add(t.bytes_down);
        if t.first_seen < d.first {
            d.first.clone_from(&t.first_seen);
        }
        if t.last_seen > d.last {
            d.last.clone_from(&t.last_seen);
        }
    }
    let mut out: Vec<Destination> = by.into_values().collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.label.cmp(&b.label)));
    out
}

/// `n` bytes in decimal units, one decimal: `1.5 MB`, `1,5 Mo`.
pub fn human_bytes(n: u64, lang: Lang) -> String {
    let units = match lang {
        Lang::Fr => ["o", "ko", "Mo", "Go", "To", "Po"],
        Lang::En => ["B", "kB", "MB", "GB", "TB", "PB"],
    };
    if n < 1000 {
        return format!("{n}\u{a0}{}", units[0]);
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= 999.95 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.1}");
    let s = match lang {
        Lang::Fr => s.replace('.', ","),
        Lang::En => s,
    };
    format!("{s}\u{a0}{}", units[i])
}

/// An RFC 3339 record time as `2026-11-28 15:20 UTC`; anything else
/// verbatim (escaped by the caller).
fn when(t: &str) -> String {
    let b = t.as_bytes();
    if t.len() >= 16 && t.is_ascii() && b[10] == b'T' {
        format!("{} {} UTC", &t[..10], &t[11..16])
    } else {
        t.to_owned()
    }
}

fn esc(s: &str) -> String {
    crate::markup::escape(s)
}

/// The shade class of `n` transfers when the most is `max`: 1 (few) to 4.
fn shade(n: u64, max: u64) -> u8 {
    if max == 0 {
        return 1;
    }
    match n.saturating_mul(4).div_ceil(max) {
        0 | 1 => 1,
        2 => 2,
        3 => 3,
        _ => 4,
    }
}

/// The content security policy of the page: no script, no request of any
/// kind (fonts, images, frames, forms, connections), inline styles and a
/// `data:` icon only. Escaping keeps the page's text text; this keeps a
/// browser from running or fetching anything even if it did not.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// [`CSP`] in the page itself, so it holds wherever the file is published.
pub const CSP_META: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">";

/// An empty icon, inline: without it a browser asks the server for
/// `/favicon.ico`, a request the page does not need. The one link of the
/// page, to nothing outside it.
pub const NO_ICON: &str = "<link rel=\"icon\" href=\"data:,\">";

const STYLE: &str = "\
:root{--ink:#1d1d1d;--line:#c8c8c8;--area:#1f5fa0}
body{font-family:system-ui,sans-serif;color:var(--ink);margin:1.5rem auto;max-width:60rem;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.4rem 0 .4rem;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;margin:.5rem 0;width:100%;font-size:.9rem}
th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.meta{color:#444;margin:.2rem 0}
.missing{background:#fde2e1;color:#8a1410;font-weight:700}
.warn{border:2px solid #b3261e;background:#fde2e1;color:#8a1410;padding:.5rem .7rem;font-weight:700}
svg.map{width:100%;height:auto;border:1px solid var(--line);background:#f4f8fb}
svg.map path{stroke:#fff;stroke-width:.4}
svg.map .l{fill:#d9d9d9}svg.map .e{fill:#e8eef6;stroke:var(--area);stroke-width:.9}
svg.map .c1{fill:#fcbba1}svg.map .c2{fill:#fb6a4a}svg.map .c3{fill:#de2d26}svg.map .c4{fill:#a50f15}
svg.map text{font:11px system-ui,sans-serif;fill:var(--ink)}
.legend{font-size:.85rem;color:#444}
.sw{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;border:1px solid #888;margin:0 .2em 0 .6em}
footer{margin-top:1.5rem;font-size:.8rem;color:#555}
@page{size:A4;margin:12mm}
@media print{body{margin:0;max-width:none;font-size:9pt}h1{font-size:14pt}h2{font-size:11pt;break-after:avoid}
table{font-size:8pt}tr{break-inside:avoid}svg.map{max-height:95mm}section{break-inside:auto}}
";

impl Cartography {
    /// The publishable page (see the module doc).
    pub fn to_page(&self, ctx: &PageContext<'_>) -> String {
        let lang = ctx.lang;
        let title = tr(
            lang,
            "Cartographie des transferts de données hors de l’EEE",
            "Map of data transfers outside the EEA",
        );
        let mut out = String::with_capacity(64 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n{CSP_META}\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n{NO_ICON}\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
             <header>\n<h1>{title}</h1>\n",
            lang.as_str()
        );
        self.publisher(&mut out, ctx);
        out.push_str("</header>\n");
        let dests = destinations(self);
        self.map(&mut out, ctx, &dests);
        self.legal(&mut out, ctx, &dests);
        self.detail(&mut out, lang);
        self.attempts(&mut out, lang);
        self.operated(&mut out, ctx);
        self.sources(&mut out, ctx);
        let _ = write!(
            out,
            "<footer>{}</footer>\n</body>\n</html>\n",
            tr(
                lang,
                "Fond de carte : Natural Earth 1:110m (domaine public), via world-atlas. \
                 Noms de pays : ISO 3166-1 (i18n-iso-countries). Volumes en unités décimales (1 Mo = 10⁶ octets).",
                "Base map: Natural Earth 1:110m (public domain), via world-atlas. \
                 Country names: ISO 3166-1 (i18n-iso-countries). Volumes in decimal units (1 MB = 10⁶ bytes).",
            )
        );
        out
    }

    fn publisher(&self, out: &mut String, ctx: &PageContext<'_>) {
        let lang = ctx.lang;
        match ctx.transparency {
            Some(t) => {
                let _ = write!(
                    out,
                    "<p class=\"meta\" id=\"entity\">{} <strong>{}</strong></p>\n\
                     <p class=\"meta\" id=\"certificate\">{} {}</p>\n\
                     <p class=\"meta\" id=\"contact\">{} {}</p>\n",
                    tr(lang, "Hébergeur :", "Hosting entity:"),
                    esc(&t.entity),
                    tr(lang, "Certificat HDS :", "HDS certificate:"),
                    esc(&t.certificate),
                    tr(lang, "Contact :", "Contact:"),
                    esc(&t.contact),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "<p class=\"warn\" id=\"no-transparency\">{}</p>",
                    tr(
                        lang,
                        "Aucune déclaration [transparency] : l’hébergeur, son certificat HDS, \
                         le contact et les bases légales ne sont pas renseignés.",
                        "No [transparency] declaration: the hosting entity, its HDS certificate, \
                         the contact and the legal bases are not given.",
                    )
                );
            }
        }
        let from = ctx.since.as_deref().or(self.from.as_deref());
        let to = ctx.until.as_deref().or(self.to.as_deref());
        let period = match (from, to) {
            (Some(f), Some(t)) => format!(
                "{} {} {} {}",
                tr(lang, "Période : du", "Period: from"),
                esc(&when(f)),
                tr(lang, "au", "to"),
                esc(&when(t))
            ),
            (Some(f), None) => format!(
                "{} {}",
                tr(lang, "Période : depuis le", "Period: since"),
                esc(&when(f))
            ),
            (None, Some(t)) => format!(
                "{} {}",
                tr(lang, "Période : jusqu’au", "Period: until"),
                esc(&when(t))
            ),
            (None, None) => {
                tr(lang, "Période : aucun enregistrement", "Period: no record").to_owned()
            }
        };
        let _ = writeln!(
            out,
            "<p class=\"meta\" id=\"period\">{period}. {} {}.</p>",
            tr(lang, "Généré le", "Generated on"),
            esc(&when(&ctx.generated))
        );
    }

    fn map(&self, out: &mut String, ctx: &PageContext<'_>, dests: &[Destination]) {
        let lang = ctx.lang;
        let area = eea();
        let max = dests.iter().map(|d| d.requests).max().unwrap_or(0);
        let (w, h) = VIEW;
        // Destinations that have no outline (unknown, or too small for
        // 1:110m) get a labelled box under the map.
        let boxed: Vec<&Destination> = dests
            .iter()
            .filter(|d| d.country.and_then(|c| world::outline(c.as_str())).is_none())
            .collect();
        let rows = boxed.len().div_ceil(4);
        let height = h as usize + 22 * rows;
        let label = tr(
            lang,
            "Carte du monde : l’EEE est entourée en bleu, chaque pays destinataire de transferts est coloré selon leur nombre",
            "World map: the EEA is outlined in blue, each destination country of transfers is shaded by their number",
        );
        let _ = write!(
            out,
            "<section id=\"map\">\n<h2>{}</h2>\n\
             <svg class=\"map\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"{label}\">\n",
            tr(lang, "Carte des transferts", "Map of transfers"),
        );
        let by_code: BTreeMap<&str, &Destination> = dests
            .iter()
            .filter(|d| d.country.is_some())
            .map(|d| (d.label.as_str(), d))
            .collect();
        for (code, d) in world::outlines() {
            if by_code.contains_key(code) {
                continue;
            }
            let country = Country::from_code(code);
            let class = if country.is_some_and(|c| area.contains(c)) {
                "e"
            } else {
                "l"
            };
            let name = country.map_or(code, |c| world::name(c, lang));
            let _ = writeln!(
                out,
                "<path class=\"{class}\" d=\"{d}\"><title>{}</title></path>",
                esc(name)
            );
        }
        for d in dests {
            let Some(path) = d.country.and_then(|c| world::outline(c.as_str())) else {
                continue;
            };
            let _ = writeln!(
                out,
                "<path class=\"t c{}\" data-country=\"{}\" data-transfers=\"{}\" d=\"{path}\"><title>{}</title></path>",
                shade(d.requests, max),
                esc(&d.label),
                d.requests,
                esc(&country_title(d, lang)),
            );
        }
        for (i, d) in boxed.iter().enumerate() {
            let x = 10 + (i % 4) * 245;
            let y = h as usize + 4 + 22 * (i / 4);
            let _ = writeln!(
                out,
                "<g><rect class=\"t c{}\" data-country=\"{}\" data-transfers=\"{}\" x=\"{x}\" y=\"{y}\" \
                 width=\"14\" height=\"14\"><title>{}</title></rect><text x=\"{}\" y=\"{}\">{}</text></g>",
                shade(d.requests, max),
                esc(&d.label),
                d.requests,
                esc(&country_title(d, lang)),
                x + 20,
                y + 12,
                esc(&d.name(lang)),
            );
        }
        out.push_str("</svg>\n");
        let _ = writeln!(
            out,
            "<p class=\"legend\"><span class=\"sw\" style=\"background:#e8eef6;border-color:#1f5fa0\"></span>{}\
             <span class=\"sw\" style=\"background:#fcbba1\"></span><span class=\"sw\" style=\"background:#fb6a4a\"></span>\
             <span class=\"sw\" style=\"background:#de2d26\"></span><span class=\"sw\" style=\"background:#a50f15\"></span>{}</p>\n</section>",
            tr(lang, "EEE (zone autorisée)", "EEA (allowed area)"),
            tr(
                lang,
                "transferts, du moins au plus nombreux (les tableaux ci-dessous donnent les chiffres)",
                "transfers, fewest to most (the tables below give the figures)"
            ),
        );
    }

    fn legal(&self, out: &mut String, ctx: &PageContext<'_>, dests: &[Destination]) {
        let lang = ctx.lang;
        let _ = writeln!(
            out,
            "<section id=\"destinations\">\n<h2>{}</h2>",
            tr(
                lang,
                "Transferts par pays destinataire et base légale",
                "Transfers by destination country and legal basis"
            )
        );
        if dests.is_empty() {
            let _ = writeln!(
                out,
                "<p id=\"nothing\">{}</p>",
                tr(
                    lang,
                    "Aucun transfert hors de l’EEE n’a été enregistré sur la période.",
                    "No transfer outside the EEA was recorded over the period."
                )
            );
        } else {
            let _ = writeln!(
                out,
                "<p>{}</p>",
                tr(
                    lang,
                    "Un transfert est une requête transmise au stockage dont le client ou le stockage \
                     est hors de l’EEE (par sa localisation) : autorisée par une dérogation de la \
                     politique, par une autorisation signée, ou signalée en mode surveillance. Les \
                     réseaux internes de l’hébergeur ne sont jamais des transferts ; les tentatives \
                     refusées sont listées à part.",
                    "A transfer is a request forwarded to the storage whose client or storage is \
                     outside the EEA (by location): allowed by an override of the policy, by a \
                     signed grant, or flagged in monitor mode. The host's internal networks are \
                     never transfers; refused attempts are listed apart."
                )
            );
            let _ = writeln!(
                out,
                "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
                 <th>{}</th><th>{}</th></tr></thead>\n<tbody>",
                tr(lang, "Pays", "Country"),
                tr(lang, "Transferts", "Transfers"),
                tr(lang, "Volume", "Volume"),
                tr(lang, "Période", "Period"),
                tr(lang, "Base légale", "Legal basis"),
                tr(lang, "Destinataires", "Recipients"),
                tr(lang, "Finalités", "Purposes"),
                tr(lang, "Catégories de données", "Data categories"),
            );
            for d in dests {
                let _ = write!(
                    out,
                    "<tr data-country=\"{}\"><td>{} <small>({})</small></td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td>{} – {}</td>",
                    esc(&d.label),
                    esc(&d.name(lang)),
                    esc(&d.label),
                    d.requests,
                    human_bytes(d.bytes, lang),
                    esc(&when(&d.first)),
                    esc(&when(&d.last)),
                );
                let declared = d
                    .country
                    .and_then(|c| ctx.transparency.and_then(|t| t.declared(c)));
                match declared {
                    Some(decl) => {
                        let _ = writeln!(
                            out,
                            "<td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            basis_name(decl.basis, lang),
                            if decl.basis_detail.is_empty() {
                                String::new()
                            } else {
                                format!(" : {}", esc(&decl.basis_detail))
                            },
                            esc(&decl.recipients),
                            esc(&decl.purposes),
                            esc(&decl.data),
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "<td class=\"missing\" colspan=\"4\">{}</td></tr>",
                            tr(
                                lang,
                                "⚠ AUCUNE BASE LÉGALE DÉCLARÉE pour ces transferts",
                                "⚠ NO LEGAL BASIS DECLARED for these transfers"
                            )
                        );
                    }
                }
            }
            out.push_str("</tbody>\n</table>\n");
            let undeclared = dests
                .iter()
                .filter(|d| {
                    d.country
                        .and_then(|c| ctx.transparency.and_then(|t| t.declared(c)))
                        .is_none()
                })
                .count();
            if undeclared > 0 {
                let _ = writeln!(
                    out,
                    "<p class=\"warn\" id=\"undeclared\">{} {undeclared}</p>",
                    tr(
                        lang,
                        "Pays destinataires de transferts sans base légale déclarée :",
                        "Destination countries of transfers with no declared legal basis:"
                    )
                );
            }
        }
        // Declared destinations with no transfer over the period: the
        // declaration still stands, said so.
        if let Some(t) = ctx.transparency {
            let quiet: Vec<String> = t
                .countries
                .iter()
                .filter(|decl| !dests.iter().any(|d| d.country == Some(decl.country)))
                .map(|decl| {
                    format!(
                        "{} ({})",
                        esc(world::name(decl.country, lang)),
                        basis_name(decl.basis, lang)
                    )
                })
                .collect();
            if !quiet.is_empty() {
                let _ = writeln!(
                    out,
                    "<p>{} {}.</p>",
                    tr(
                        lang,
                        "Destinations déclarées sans transfert mesuré sur la période :",
                        "Declared destinations with no measured transfer over the period:"
                    ),
                    quiet.join(", ")
                );
            }
        }
        out.push_str("</section>\n");
    }
}

fn country_title(d: &Destination, lang: Lang) -> String {
    format!(
        "{} : {} {} ({} {}, {} {}, {} {}), {}, {} {}, {} {}",
        d.name(lang),
        d.requests,
        tr(lang, "transferts", "transfers"),
        d.by_override,
        tr(lang, "par dérogation", "by override"),
        d.by_grant,
        tr(lang, "par autorisation", "by grant"),
        d.flagged,
        tr(lang, "signalés", "flagged"),
        human_bytes(d.bytes, lang),
        tr(lang, "premier", "first"),
        when(&d.first),
        tr(lang, "dernier", "last"),
        when(&d.last),
    )
}

/// The legal basis, named for readers.
pub const fn basis_name(b: LegalBasis, lang: Lang) -> &'static str {
    match b {
        LegalBasis::Adequacy => tr(
            lang,
            "Décision d’adéquation (art. 45 RGPD)",
            "Adequacy decision (GDPR Art. 45)",
        ),
        LegalBasis::Scc => tr(
            lang,
            "Clauses contractuelles types (art. 46 RGPD)",
            "Standard contractual clauses (GDPR Art. 46)",
        ),
        LegalBasis::Bcr => tr(
            lang,
            "Règles d’entreprise contraignantes (art. 47 RGPD)",
            "Binding corporate rules (GDPR Art. 47)",
        ),
        LegalBasis::Derogation => tr(
            lang,
            "Dérogation (art. 49 RGPD)",
            "Derogation (GDPR Art. 49)",
        ),
        LegalBasis::Other => tr(
            lang,
            "Autre garantie appropriée (art. 46 RGPD)",
            "Other appropriate safeguard (GDPR Art. 46)",
        ),
    }
}

#[cfg(test)]
mod tests;
