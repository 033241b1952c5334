//! The tables under the map: the detail per side, the attempts refused,
//! the flows operated from outside, and the sources with the policy
//! versions in force.

use std::fmt::Write as _;

use super::{PageContext, Source, basis_name, esc, human_bytes, tr, when};
use crate::audit::transfers::Cartography;
use crate::audit::world::{self, Lang};
use crate::geo::Country;

impl Cartography {
    pub(super) fn detail(&self, out: &mut String, lang: Lang) {
        if self.transfers.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "<section id=\"transfers\">\n<h2>{}</h2>\n<table>\n<thead><tr><th>{}</th><th>{}</th>\
             <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             </tr></thead>\n<tbody>",
            tr(lang, "Détail par côté", "Detail by side"),
            tr(lang, "Côté", "Side"),
            tr(lang, "Pays", "Country"),
            tr(lang, "Transferts", "Transfers"),
            tr(lang, "par dérogation", "by override"),
            tr(lang, "par autorisation", "by grant"),
            tr(lang, "signalés", "flagged"),
            tr(lang, "vers le stockage", "to storage"),
            tr(lang, "depuis le stockage", "from storage"),
            tr(lang, "identités", "identities"),
            tr(lang, "premier – dernier", "first – last"),
        );
        for t in &self.transfers {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} – {}</td></tr>",
                side_name(t.side, lang),
                esc(&label_name(&t.country, lang)),
                t.requests,
                t.allowed_by_override,
                t.allowed_by_grant,
                t.flagged,
                human_bytes(t.bytes_up, lang),
                human_bytes(t.bytes_down, lang),
                identities(t.identities, self),
                esc(&when(&t.first_seen)),
                esc(&when(&t.last_seen)),
            );
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }

    pub(super) fn attempts(&self, out: &mut String, lang: Lang) {
        let _ = writeln!(
            out,
            "<section id=\"attempts\">\n<h2>{}</h2>\n<p>{}</p>",
            tr(lang, "Tentatives refusées", "Attempts refused"),
            tr(
                lang,
                "Requêtes dont un côté était hors de l’EEE, bloquées ou refusées : aucune donnée \
                 n’a été échangée avec le stockage. Ce ne sont pas des transferts.",
                "Requests with a side outside the EEA, blocked or refused: no data was exchanged \
                 with the storage. These are not transfers."
            )
        );
        if self.attempts_refused.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", tr(lang, "Aucune.", "None."));
        } else {
            let _ = writeln!(
                out,
                "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>",
                tr(lang, "Côté", "Side"),
                tr(lang, "Pays", "Country"),
                tr(lang, "bloquées", "blocked"),
                tr(lang, "refusées", "refused"),
                tr(lang, "premier – dernier", "first – last"),
            );
            for a in &self.attempts_refused {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} – {}</td></tr>",
                    side_name(a.side, lang),
                    esc(&label_name(&a.country, lang)),
                    a.blocked,
                    a.refused,
                    esc(&when(&a.first_seen)),
                    esc(&when(&a.last_seen)),
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        if self.unrecorded_refusals > 0 {
            let _ = writeln!(
                out,
                "<p>{} {}.</p>",
                tr(
                    lang,
                    "Requêtes mal formées refusées, comptées sans leur pays :",
                    "Malformed requests refused, counted without their country:"
                ),
                self.unrecorded_refusals
            );
        }
        out.push_str("</section>\n");
    }

    pub(super) fn operated(&self, out: &mut String, ctx: &PageContext<'_>) {
        let lang = ctx.lang;
        if self.operated_outside.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "<section id=\"operated\">\n<h2>{}</h2>\n<table>\n<thead><tr><th>{}</th><th>{}</th><th>AS</th>\
             <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>",
            tr(
                lang,
                "Dans l’EEE par la localisation, opéré depuis l’extérieur",
                "Inside the EEA by location, operated from outside it"
            ),
            tr(lang, "Côté", "Side"),
            tr(lang, "Pays de l’opérateur", "Operator country"),
            tr(lang, "localisé", "located"),
            tr(lang, "autorisées", "allowed"),
            tr(lang, "signalées", "flagged"),
            tr(lang, "bloquées", "blocked"),
            tr(lang, "premier – dernier", "first – last"),
            tr(lang, "Base légale", "Legal basis"),
        );
        for r in &self.operated_outside {
            let side = if r.side == "upstream" {
                crate::policy::Side::Upstream
            } else {
                crate::policy::Side::Client
            };
            // Data exposed to the operator's law is a transfer to its
            // country: its basis is declared like any other's.
            let transferred = r.allowed + r.flagged > 0;
            let basis = match Country::from_code(&r.operator)
                .and_then(|c| ctx.transparency.and_then(|t| t.declared(c)))
            {
                Some(d) => format!("<td>{}</td>", basis_name(d.basis, lang)),
                None if transferred => format!(
                    "<td class=\"missing\">{}</td>",
                    tr(
                        lang,
                        "⚠ AUCUNE BASE LÉGALE DÉCLARÉE",
                        "⚠ NO LEGAL BASIS DECLARED"
                    )
                ),
                None => "<td>–</td>".to_owned(),
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} – {}</td>{basis}</tr>",
                side_name(side, lang),
                esc(&label_name(&r.operator, lang)),
                r.asn.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                esc(&r.located.join(" ")),
                r.allowed,
                r.flagged,
                r.blocked,
                esc(&when(&r.first_seen)),
                esc(&when(&r.last_seen)),
            );
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }

    pub(super) fn sources(&self, out: &mut String, ctx: &PageContext<'_>) {
        let lang = ctx.lang;
        let _ = writeln!(
            out,
            "<section id=\"sources\">\n<h2>{}</h2>",
            tr(
                lang,
                "Sources et règles en vigueur",
                "Sources and rules in force"
            )
        );
        match &ctx.source {
            Source::Trails(trails) => {
                let _ = writeln!(
                    out,
                    "<p>{} {}</p>\n<ul>",
                    self.records,
                    tr(
                        lang,
                        "enregistrements d’audit sur la période, lus dans ces journaux, chacun \
                         vérifié en entier (chaîne de hachage) avant la production de ce rapport :",
                        "audit records over the period, read from these trails, each verified \
                         whole (hash chain) before this report was made:"
                    ),
                );
                for t in trails {
                    let _ = writeln!(out, "<li><code>{}</code></li>", esc(t));
                }
                out.push_str("</ul>\n");
            }
            Source::Live { policy_version } => {
                let _ = writeln!(
                    out,
                    "<p>{} <code>{}</code>.</p>",
                    tr(
                        lang,
                        "Compteurs en direct du proxy depuis son démarrage (le rapport \
                         « transfers » donne les mêmes chiffres depuis les journaux d’audit \
                         vérifiés). Version de la politique en vigueur :",
                        "Live counters of the proxy since it started (the \"transfers\" report \
                         gives the same figures from the verified audit trails). Policy version \
                         in force:"
                    ),
                    esc(policy_version)
                );
            }
        }
        let _ = writeln!(
            out,
            "<p>{} {}.</p>",
            tr(
                lang,
                "Côtés admis par une règle réseau (réseaux internes de l’hébergeur, non comptés comme transferts) :",
                "Sides admitted by a network rule (the host's internal networks, not counted as transfers):"
            ),
            self.internal
        );
        if !self.policy_versions.is_empty() {
            let _ = writeln!(
                out,
                "<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>",
                tr(lang, "Version de la politique", "Policy version"),
                tr(lang, "enregistrements", "records"),
                tr(lang, "en vigueur du – au", "in force from – to"),
            );
            for v in &self.policy_versions {
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{} – {}</td></tr>",
                    esc(&v.version),
                    v.records,
                    esc(&when(&v.first_seen)),
                    esc(&when(&v.last_seen)),
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str("</section>\n");
    }
}

fn identities(n: u64, c: &Cartography) -> String {
    // The live table does not keep identities.
    if c.records == 0 {
        "–".to_owned()
    } else {
        n.to_string()
    }
}

fn label_name(label: &str, lang: Lang) -> String {
    match Country::from_code(label) {
        Some(c) => format!("{} ({})", world::name(c, lang), c.as_str()),
        None if label == crate::geo::UNKNOWN_LABEL => tr(lang, "inconnu", "unknown").to_owned(),
        None => label.to_owned(),
    }
}

const fn side_name(side: crate::policy::Side, lang: Lang) -> &'static str {
    match side {
        crate::policy::Side::Client => tr(lang, "client", "client"),
        crate::policy::Side::Upstream => tr(lang, "stockage", "storage"),
    }
}
