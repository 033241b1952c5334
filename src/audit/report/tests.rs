use crate::audit::record::example;
use crate::audit::transfers::{Cartography, aggregate};

/// A record at `n` whose US client was flagged (a transfer).
fn flagged(n: u64) -> crate::audit::AuditRecord {
    let mut r = example(n);
    r.decision = "flagged".into();
    r.status = 200;
    r
}

fn sample() -> Cartography {
    let mut blocked = example(1);
    blocked.identity = "alice".into();
    let mut hostile = flagged(2);
    hostile.client_country = "<img src=x onerror=alert(1)>|x\n".into();
    hostile.time = "2026-11-28T15:20:02.123Z<b>".into();
    aggregate(vec![blocked, hostile].into_iter())
}

#[test]
fn markdown_tables_of_transfers_and_attempts() {
    let md = aggregate(vec![example(1), flagged(2)].into_iter()).to_markdown();
    assert!(md.starts_with("# Transfers outside the EEA\n\n"), "{md}");
    assert!(
        md.contains(
            "| side | country | requests | by override | by grant | flagged | bytes up | bytes down | identities | first seen | last seen |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n\
             | client | US | 1 | 0 | 0 | 1 | 0 | 0 | 1 | 2026-11-28T15:20:02.123Z | 2026-11-28T15:20:02.123Z |\n"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "## Attempts refused\n\n\
             Requests with a side outside the EEA that exchanged nothing with the storage.\n\n\
             | side | country | blocked | refused | identities | first seen | last seen |\n\
             |---|---|--:|--:|--:|---|---|\n\
             | client | US | 1 | 0 | 1 | 2026-11-28T15:20:01.123Z | 2026-11-28T15:20:01.123Z |\n"
        ),
        "{md}"
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
    let none = aggregate(std::iter::empty());
    assert_eq!(
        none.to_markdown(),
        "# Transfers outside the EEA\n\nNo audit record was read.\n\nNo transfer outside the EEA was recorded.\n"
    );
}

#[test]
fn json_field_names() {
    let json: serde_json::Value =
        serde_json::from_str(&aggregate(vec![example(1), flagged(2)].into_iter()).to_json())
            .unwrap();
    let t = |s: u64| format!("2026-11-28T15:20:{s:02}.123Z");
    assert_eq!(
        json,
        serde_json::json!({
            "records": 2,
            "from": t(1),
            "to": t(2),
            "unrecorded_refusals": 0,
            "internal": 0,
            "transfers": [{
                "side": "client", "country": "US", "requests": 1, "allowed_by_override": 0,
                "allowed_by_grant": 0, "flagged": 1, "bytes_up": 0, "bytes_down": 0,
                "identities": 1, "first_seen": t(2), "last_seen": t(2)
            }],
            "attempts_refused": [{
                "side": "client", "country": "US", "blocked": 1, "refused": 0,
                "identities": 1, "first_seen": t(1), "last_seen": t(1)
            }],
            "policy_versions": [{
                "version": example(1).policy_version, "records": 2,
                "first_seen": t(1), "last_seen": t(2)
            }]
        })
    );
}
