use super::*;
use crate::audit::AuditRecord;
use crate::audit::record::example;
use crate::audit::transfers::aggregate;
use crate::config::Declared;

fn rec(s: u64, client: &str, decision: &str) -> AuditRecord {
    let mut r = example(s);
    r.client_country = client.into();
    r.decision = decision.into();
    r.bytes_down = 1_500_000 * s;
    r
}

/// CH allowed by override (twice), US flagged, CN blocked, an internal
/// client of unknown country.
fn sample() -> Cartography {
    let mut internal = rec(5, "unknown", "allowed");
    internal.sides.client_rule = Some("allow_networks".into());
    aggregate(
        vec![
            rec(1, "CH", "allowed"),
            rec(2, "CH", "allowed"),
            rec(3, "US", "flagged"),
            rec(4, "CN", "blocked"),
            internal,
        ]
        .into_iter(),
    )
}

fn declared() -> Transparency {
    Transparency {
        entity: "Hôpital <Exemple>".into(),
        certificate: "HDS n° 42, activités 1 à 6".into(),
        contact: "dpo@hopital.example".into(),
        countries: vec![Declared {
            country: Country::from_code("CH").unwrap(),
            basis: LegalBasis::Adequacy,
            basis_detail: "décision 2000/518/CE".into(),
            recipients: "Prestataire de support".into(),
            purposes: "maintenance".into(),
            data: "journaux techniques".into(),
        }],
    }
}

fn ctx(lang: Lang, t: Option<&Transparency>) -> PageContext<'_> {
    PageContext {
        lang,
        transparency: t,
        generated: "2026-12-06T05:00:00.000Z".into(),
        since: Some("2026-11-01".into()),
        until: None,
        source: Source::Trails(vec!["audit.jsonl".into()]),
    }
}

/// The `data-country` attributes of shaded shapes, with their
/// `data-transfers`.
fn shaded(html: &str) -> Vec<(String, u64)> {
    html.match_indices("class=\"t c")
        .map(|(i, _)| {
            let tail = &html[i..];
            let attr = |name: &str| {
                let at = tail.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tail[at..at + tail[at..].find('"').unwrap()].to_owned()
            };
            (
                attr("data-country"),
                attr("data-transfers").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn only_transfer_destinations_are_shaded_with_their_counts() {
    let t = declared();
    let html = sample().to_page(&ctx(Lang::En, Some(&t)));
    let mut got = shaded(&html);
    got.sort();
    // CN was blocked (an attempt), the unknown client internal: neither
    // is a destination.
    assert_eq!(got, [("CH".to_owned(), 2), ("US".to_owned(), 1)]);
    assert!(
        html.contains(
            "<title>Switzerland : 2 transfers (2 by override, 0 by grant, 0 flagged), 4.5\u{a0}MB, \
             first 2026-11-28 15:20 UTC, last 2026-11-28 15:20 UTC</title>"
        ),
        "{html}"
    );
    assert!(html.contains("<h2>Attempts refused</h2>"));
    assert!(html.contains("<td>client</td><td>China (CN)</td><td class=\"n\">1</td>"));
}

#[test]
fn declared_content_appears_and_a_missing_basis_is_loud() {
    let t = declared();
    let html = sample().to_page(&ctx(Lang::Fr, Some(&t)));
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"));
    assert!(html.contains("Hôpital &lt;Exemple&gt;"), "escaped: {html}");
    assert!(html.contains("HDS n° 42, activités 1 à 6"));
    assert!(html.contains("dpo@hopital.example"));
    assert!(html.contains(
        "<td>Décision d’adéquation (art. 45 RGPD) : décision 2000/518/CE</td>\
         <td>Prestataire de support</td><td>maintenance</td><td>journaux techniques</td>"
    ));
    // US has flows and no declared basis.
    assert!(html.contains(
        "<tr data-country=\"US\"><td>États-Unis <small>(US)</small></td><td class=\"n\">1</td>"
    ));
    assert!(html.contains("<td class=\"missing\" colspan=\"4\">⚠ AUCUNE BASE LÉGALE DÉCLARÉE"));
    assert!(html.contains("<p class=\"warn\" id=\"undeclared\">"));
    assert!(html.contains("Période : du 2026-11-01 au 2026-11-28 15:20 UTC"));
    assert!(html.contains("Généré le 2026-12-06 05:00 UTC"));
    assert!(html.contains("<li><code>audit.jsonl</code></li>"));
    assert!(html.contains(&format!("<code>{}</code>", example(1).policy_version)));
    let none = sample().to_page(&ctx(Lang::En, None));
    assert!(none.contains("<p class=\"warn\" id=\"no-transparency\">"));
}

#[test]
fn the_page_is_self_contained_in_both_languages() {
    let t = declared();
    for (lang, title) in [
        (
            Lang::Fr,
            "Cartographie des transferts de données hors de l’EEE",
        ),
        (Lang::En, "Map of data transfers outside the EEA"),
    ] {
        let html = sample().to_page(&ctx(lang, Some(&t)));
        assert!(html.contains(&format!("<title>{title}</title>\n{NO_ICON}\n")));
        let html = html.replace(NO_ICON, "");
        assert!(html.ends_with("</body>\n</html>\n"));
        for external in [
            "http:", "https:", "href=", "src=", "<script", "<link", "url(", "@import", "<img",
            "<iframe", "<object",
        ] {
            assert!(!html.contains(external), "{external}");
        }
    }
}

#[test]
fn hostile_values_from_the_trail_are_escaped() {
    let mut r = rec(1, "<script>alert(1)</script>", "allowed");
    r.time = "\"><b>".into();
    let html = aggregate(std::iter::once(r)).to_page(&ctx(Lang::En, None));
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    assert!(html.contains("data-country=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
}

#[test]
fn bytes_in_human_units() {
    assert_eq!(human_bytes(0, Lang::En), "0\u{a0}B");
    assert_eq!(human_bytes(999, Lang::Fr), "999\u{a0}o");
    assert_eq!(human_bytes(1_500, Lang::En), "1.5\u{a0}kB");
    assert_eq!(human_bytes(1_500_000, Lang::Fr), "1,5\u{a0}Mo");
    assert_eq!(human_bytes(999_960, Lang::En), "1.0\u{a0}MB");
    assert_eq!(human_bytes(2_000_000_000_000, Lang::En), "2.0\u{a0}TB");
    assert_eq!(human_bytes(u64::MAX, Lang::En), "18446.7\u{a0}PB");
}

#[test]
fn shades_grow_with_transfers() {
    assert_eq!(
        [1, 25, 26, 50, 51, 75, 76, 100].map(|n| shade(n, 100)),
        [1, 1, 2, 2, 3, 3, 4, 4]
    );
    assert_eq!(shade(0, 0), 1);
}

/// A year of a busy host: every country on both sides, transfers and
/// attempts, with long-lived policy versions: still under 500 KB.
#[test]
fn a_year_of_every_country_stays_under_500_kb() {
    let mut records = Vec::new();
    let codes: Vec<&str> = world::outlines().map(|(c, _)| c).collect();
    for (i, code) in codes.iter().enumerate() {
        for decision in ["allowed", "flagged", "blocked"] {
            let mut r = rec(i as u64, code, decision);
            r.upstream_country = Some((*code).into());
            r.policy_version = format!("{:012x}", i % 12);
            records.push(r);
        }
    }
    let html = aggregate(records.into_iter()).to_page(&ctx(Lang::Fr, Some(&declared())));
    assert!(html.len() < 500_000, "{} bytes", html.len());
}

/// The tag names of `html`, in order of first appearance.
fn tags(html: &str) -> std::collections::BTreeSet<String> {
    html.match_indices('<')
        .map(|(i, _)| {
            html[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                .collect()
        })
        .collect()
}

/// The attribute names of every tag of `html`, read as a browser would
/// (quoted values hold no quote: the renderer escapes them).
fn attribute_names(html: &str) -> std::collections::BTreeSet<&str> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let tag = &rest[open + 1..];
        let end = tag.find('>').unwrap_or(tag.len());
        let mut inner = &tag[..end];
        // Skip the tag name.
        inner = inner.trim_start_matches(|c: char| !c.is_whitespace());
        loop {
            inner = inner.trim_start();
            if inner.is_empty() || inner == "/" {
                break;
            }
            let name_end = inner
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(inner.len());
            names.insert(&inner[..name_end]);
            inner = &inner[name_end..];
            if let Some(v) = inner.strip_prefix("=\"") {
                let close = v.find('"').unwrap_or(v.len());
                inner = v.get(close + 1..).unwrap_or("");
            }
        }
        rest = &tag[end..];
    }
    names
}

proptest::proptest! {
    /// Whatever the trail holds, the page has no tag, attribute or entity
    /// the renderer did not write: every string from a record is text.
    #[test]
    fn any_record_strings_stay_text(
        country in ".{0,12}",
        time in ".{0,30}",
        identity in ".{0,20}",
        version in ".{0,20}",
        upstream in ".{0,12}",
    ) {
        let mut r = rec(1, &country, "allowed");
        r.time = time;
        r.identity = identity;
        r.policy_version = version;
        r.upstream_country = Some(upstream);
        let mut blocked = rec(2, "US", "blocked");
        blocked.client_country = r.client_country.clone();
        let html = aggregate(vec![r, blocked].into_iter()).to_page(&ctx(Lang::En, None));
        // The tags the renderer writes, and nothing else.
        let known: std::collections::BTreeSet<String> = [
            "!DOCTYPE", "html", "head", "meta", "title", "link", "style", "body", "header",
            "h1", "h2", "p", "strong", "section", "svg", "path", "g", "rect", "text", "span",
            "table", "thead", "tbody", "tr", "th", "td", "small", "ul", "li", "code", "footer",
        ]
        .iter()
        .flat_map(|t| [(*t).to_owned(), format!("/{t}")])
        .collect();
        let seen = tags(&html);
        proptest::prop_assert!(seen.is_subset(&known), "{:?}", seen.difference(&known).collect::<Vec<_>>());
        // No attribute the renderer did not write (a quote from a record
        // would end the value it is in).
        let attributes = attribute_names(&html);
        let written: std::collections::BTreeSet<&str> = [
            "lang", "charset", "name", "content", "rel", "href", "id", "class", "viewBox",
            "role", "aria-label", "d", "data-country", "data-transfers", "x", "y", "width",
            "height", "style", "colspan", "html", "http-equiv",
        ]
        .into_iter()
        .collect();
        proptest::prop_assert!(attributes.is_subset(&written), "{:?}", attributes.difference(&written).collect::<Vec<_>>());
    }
}

/// Storage in the EEA operated from the US exposes the data to US law: the
/// operated section asks for its basis like any destination.
#[test]
fn flows_operated_from_outside_show_their_legal_basis() {
    let mut r = rec(1, "FR", "flagged");
    r.upstream_country = Some("DE".into());
    r.operators.upstream_operator = Some("US".into());
    r.operators.upstream_asn = Some(16509);
    r.side = Some("upstream".into());
    let c = aggregate(std::iter::once(r));
    assert_eq!(c.operated_outside.len(), 1, "{c:#?}");
    let html = c.to_page(&ctx(Lang::En, Some(&declared())));
    assert!(
        html.contains("<td>United States (US)</td><td class=\"n\">16509</td><td>DE</td>"),
        "{html}"
    );
    assert!(html.contains("<td class=\"missing\">⚠ NO LEGAL BASIS DECLARED</td></tr>"));
}

/// Escaping keeps the page's text text; the page's own content security
/// policy keeps a browser from running a script or fetching anything even
/// if something slipped through, wherever the file is published.
#[test]
fn the_page_forbids_scripts_and_requests_by_its_own_policy() {
    assert_eq!(
        CSP_META,
        format!("<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">")
    );
    for directive in [
        "default-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(CSP.contains(directive), "{directive}");
    }
    assert!(!CSP.contains("script-src") && !CSP.contains("http"));
    let html = sample().to_page(&ctx(Lang::Fr, Some(&declared())));
    let head = &html[..html.find("</head>").unwrap()];
    let meta = head.find(CSP_META).expect("the policy is in the head");
    assert!(
        meta < head.find("<style>").unwrap() && meta < head.find("<link").unwrap(),
        "before anything it governs"
    );
}
