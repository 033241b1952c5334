use crate::audit::record::example;
use crate::audit::transfers::{Cartography, aggregate};

fn sample() -> Cartography {
    let mut blocked = example(1);
    blocked.identity = "alice".into();
    let mut hostile = example(2);
    hostile.client_country = "<img src=x onerror=alert(1)>|x\n".into();
    hostile.time = "2026-11-28T15:20:02.123Z<b>".into();
    aggregate(vec![blocked, hostile].into_iter())
}

#[test]
fn markdown_table() {
    let md = aggregate(std::iter::once(example(1))).to_markdown();
    assert_eq!(
        md,
        "# Transfers outside the EEA\n\n\
         Requests whose client or upstream was outside the EEA (or of unknown country), per side \
         and country, from 1 audit record dated 2026-11-28T15:20:01.123Z to 2026-11-28T15:20:01.123Z.\n\n\
         | side | country | requests | blocked | flagged | allowed | refused | bytes up | bytes down | identities | first seen | last seen |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n\
         | client | US | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 1 | 2026-11-28T15:20:01.123Z | 2026-11-28T15:20:01.123Z |\n\n\
         A request counts as *allowed* when that side passed the policy although outside the EEA: \
         an override such as `allow_countries = [\"EEA\", \"CH\"]`, `allow_networks` or \
         `unknown_country = \"allow\"`, or only the other side was blocked or flagged.\n"
    );
}

#[test]
fn markdown_escapes_what_would_be_markup_or_a_new_cell() {
    let md = sample().to_markdown();
    assert!(
        md.contains("| client | \\<img src=x onerror=alert(1)\\>\\|x\u{FFFD} | 1 |"),
        "{md}"
    );
    assert!(md.contains("2026-11-28T15:20:02.123Z\\<b\\>"), "{md}");
    // Every `<` that reaches the document is escaped.
    assert!(
        md.match_indices('<').all(|(i, _)| md[..i].ends_with('\\')),
        "{md}"
    );
}

#[test]
fn nothing_outside_says_so() {
    let mut inside = example(1);
    inside.client_country = "FR".into();
    let c = aggregate(std::iter::once(inside));
    assert!(
        c.to_markdown()
            .ends_with("\n\nNo transfer outside the EEA was recorded.\n")
    );
    let html = c.to_html();
    assert!(html.contains("<p>No transfer outside the EEA was recorded.</p>"));
    assert!(!html.contains("<svg") && !html.contains("<table"));
    let none = aggregate(std::iter::empty());
    assert_eq!(
        none.to_markdown(),
        "# Transfers outside the EEA\n\nNo audit record was read.\n\nNo transfer outside the EEA was recorded.\n"
    );
    assert_eq!(
        none.to_json(),
        "{\n  \"records\": 0,\n  \"from\": null,\n  \"to\": null,\n  \"unrecorded_refusals\": 0,\n  \"transfers\": []\n}\n"
    );
}

#[test]
fn json_field_names() {
    let json: serde_json::Value =
        serde_json::from_str(&aggregate(std::iter::once(example(1))).to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "records": 1,
            "from": "2026-11-28T15:20:01.123Z",
            "to": "2026-11-28T15:20:01.123Z",
            "unrecorded_refusals": 0,
            "transfers": [{
                "side": "client", "country": "US", "requests": 1, "blocked": 1,
                "flagged": 0, "allowed_by_override": 0, "refused": 0, "bytes_up": 0, "bytes_down": 0,
                "identities": 1,
                "first_seen": "2026-11-28T15:20:01.123Z",
                "last_seen": "2026-11-28T15:20:01.123Z"
            }]
        })
    );
}

#[test]
fn html_is_one_self_contained_page_with_everything_escaped() {
    let html = sample().to_html();
    assert!(html.starts_with("<!DOCTYPE html>\n"));
    assert!(html.ends_with("</body>\n</html>\n"));
    assert!(html.contains("<title>Transfers outside the EEA</title>"));
    assert!(html.contains("<svg "));
    assert!(
        html.contains("<tr><td>client</td><td>&lt;img src=x onerror=alert(1)&gt;|x\u{FFFD}</td>")
    );
    assert!(html.contains("2026-11-28T15:20:02.123Z&lt;b&gt;"));
    for forbidden in [
        "<img", "<b>", "<script", "http:", "https:", "href=", "src=\"", "url(",
    ] {
        assert!(!html.contains(forbidden), "{forbidden} in {html}");
    }
}

#[test]
fn chart_bars_stack_in_proportion() {
    let mut records = vec![example(1), example(2)];
    let mut flagged = example(3);
    flagged.decision = "flagged".into();
    records.push(flagged);
    let mut allowed = example(4);
    allowed.client_country = "CH".into();
    allowed.decision = "allowed".into();
    allowed.side = None;
    records.push(allowed);
    let html = aggregate(records.into_iter()).to_html();
    // US: 2 blocked + 1 flagged = 3 = the widest bar (480 px).
    assert!(html.contains("<rect x=\"150.0\" y=\"30\" width=\"320.0\" height=\"16\" fill=\"#c0392b\"><title>client US: 2 blocked</title></rect>"), "{html}");
    assert!(html.contains("<rect x=\"470.0\" y=\"30\" width=\"160.0\" height=\"16\" fill=\"#e08e0b\"><title>client US: 1 flagged</title></rect>"), "{html}");
    assert!(html.contains("<rect x=\"150.0\" y=\"52\" width=\"160.0\" height=\"16\" fill=\"#2e86c1\"><title>client CH: 1 allowed</title></rect>"), "{html}");
    for legend in [">blocked</text>", ">flagged</text>", ">allowed</text>"] {
        assert!(html.contains(legend), "{legend}");
    }
}
