//! An [`AuditRecord`] as compact JSON, byte for byte what
//! `serde_json::to_writer` writes for it, without serde's generic path.
//!
//! Why by hand: the hash covers the bytes as written, so they must stay
//! exactly serde_json's; but on the anchor benchmark serde_json's string
//! escaping, which looks up every byte of every key and value in a table,
//! was the largest part of the proxy's own work per request (about 8,500 of
//! its instructions). Here keys are written as the constants they are, and a
//! value is copied as it is when no byte of it needs escaping (the criterion
//! is serde_json's: a control character below 0x20, `"` or `\`); any other
//! value, and a whole policy change record (once per reload), goes through
//! serde_json itself. A property test (`tests::writes_what_serde_json_writes`)
//! holds the two to the same bytes for arbitrary records, and the record is
//! taken apart field by field with no `..`, so a new field does not compile
//! until it is written here.

use super::{AuditRecord, OperatorFields, SideFields};

/// Appends `record` as compact JSON to `out`: the bytes of
/// `serde_json::to_writer(out, record)`.
pub fn write(out: &mut Vec<u8>, record: &AuditRecord) {
    let AuditRecord {
        time,
        request_id,
        route,
        method,
        object_key,
        client_ip,
        client_country,
        identity,
        purpose,
        upstream_ip,
        upstream_country,
        decision,
        side,
        reason,
        status,
        bytes_up,
        bytes_down,
        duration_ms,
        policy_version,
        client_ip_source,
        unrecorded,
        operators,
        policy_change,
        sides,
        grant,
        prev,
    } = record;
    if policy_change.is_some() {
        serde_json::to_writer(out, record)
            .expect("an AuditRecord holds only strings and integers, which always serialise");
        return;
    }
    let OperatorFields {
        client_operator,
        client_asn,
        upstream_operator,
        upstream_asn,
    } = operators;
    let SideFields {
        client_decision,
        client_rule,
        upstream_decision,
        upstream_rule,
    } = sides;
    out.extend_from_slice(b"{\"time\":");
    string(out, time);
    out.extend_from_slice(b",\"request_id\":");
    string(out, request_id);
    out.extend_from_slice(b",\"route\":");
    nullable(out, route.as_deref());
    out.extend_from_slice(b",\"method\":");
    string(out, method);
    out.extend_from_slice(b",\"object_key\":");
    nullable(out, object_key.as_deref());
    out.extend_from_slice(b",\"client_ip\":");
    nullable(out, client_ip.as_deref());
    out.extend_from_slice(b",\"client_country\":");
    string(out, client_country);
    out.extend_from_slice(b",\"identity\":");
    string(out, identity);
    out.extend_from_slice(b",\"purpose\":");
    nullable(out, purpose.as_deref());
    out.extend_from_slice(b",\"upstream_ip\":");
    nullable(out, upstream_ip.as_deref());
    out.extend_from_slice(b",\"upstream_country\":");
    nullable(out, upstream_country.as_deref());
    out.extend_from_slice(b",\"decision\":");
    string(out, decision);
    out.extend_from_slice(b",\"side\":");
    nullable(out, side.as_deref());
    out.extend_from_slice(b",\"reason\":");
    nullable(out, reason.as_deref());
    out.extend_from_slice(b",\"status\":");
    number(out, u64::from(*status));
    out.extend_from_slice(b",\"bytes_up\":");
    number(out, *bytes_up);
    out.extend_from_slice(b",\"bytes_down\":");
    number(out, *bytes_down);
    out.extend_from_slice(b",\"duration_ms\":");
    number(out, *duration_ms);
    out.extend_from_slice(b",\"policy_version\":");
    string(out, policy_version);
    // Absent, not null, when `None` (`skip_serializing_if`), as are the
    // flattened operator and side fields and `grant`.
    optional_string(out, b",\"client_ip_source\":", client_ip_source.as_deref());
    optional_number(out, b",\"unrecorded\":", *unrecorded);
    optional_string(out, b",\"client_operator\":", client_operator.as_deref());
    optional_number(out, b",\"client_asn\":", client_asn.map(u64::from));
    optional_string(
        out,
        b",\"upstream_operator\":",
        upstream_operator.as_deref(),
    );
    optional_number(out, b",\"upstream_asn\":", upstream_asn.map(u64::from));
    optional_string(out, b",\"client_decision\":", client_decision.as_deref());
    optional_string(out, b",\"client_rule\":", client_rule.as_deref());
    optional_string(
        out,
        b",\"upstream_decision\":",
        upstream_decision.as_deref(),
    );
    optional_string(out, b",\"upstream_rule\":", upstream_rule.as_deref());
    optional_string(out, b",\"grant\":", grant.as_deref());
    out.extend_from_slice(b",\"prev\":");
    string(out, prev);
    out.push(b'}');
}

/// A JSON string: copied between quotes when serde_json would not escape
/// any of its bytes, else written by serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    // No early exit, so the compiler checks many bytes per instruction.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escapes {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("a str always serialises");
    }
}

fn nullable(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn optional_string(out: &mut Vec<u8>, key: &[u8], s: Option<&str>) {
    if let Some(s) = s {
        out.extend_from_slice(key);
        string(out, s);
    }
}

fn optional_number(out: &mut Vec<u8>, key: &[u8], n: Option<u64>) {
    if let Some(n) = n {
        out.extend_from_slice(key);
        number(out, n);
    }
}

/// `n` in decimal, as serde_json writes integers.
fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{AuditRecord, OperatorFields, PolicyChange, SideFields, example};
    use super::write;

    fn json(r: &AuditRecord) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, r);
        out
    }

    /// Any string, weighted towards the bytes that need escaping.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._/-]{0,12}",
            "[\\x00-\\x1f\"\\\\\\x7f]{0,4}",
            any::<String>(),
            "[a-z]{0,3}[\"\\\\\\n\\u{7f}\\u{80}\\u{202e}é€😀][a-z]{0,3}",
        ]
    }

    fn record() -> impl Strategy<Value = AuditRecord> {
        let strings = prop::collection::vec(text(), 26);
        let options = prop::collection::vec(any::<bool>(), 26);
        let numbers = (any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>());
        let more = (
            any::<Option<u64>>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
        );
        (strings, options, numbers, more, any::<bool>()).prop_map(
            |(s, o, (status, up, down, ms), (unrecorded, casn, uasn), change)| {
                let opt = |i: usize| o[i].then(|| s[i].clone());
                AuditRecord {
                    time: s[0].clone(),
                    request_id: s[1].clone(),
                    route: opt(2),
                    method: s[3].clone(),
                    object_key: opt(4),
                    client_ip: opt(5),
                    client_country: s[6].clone(),
                    identity: s[7].clone(),
                    purpose: opt(8),
                    upstream_ip: opt(9),
                    upstream_country: opt(10),
                    decision: s[11].clone(),
                    side: opt(12),
                    reason: opt(13),
                    status,
                    bytes_up: up,
                    bytes_down: down,
                    duration_ms: ms,
                    policy_version: s[14].clone(),
                    client_ip_source: opt(15),
                    unrecorded,
                    operators: OperatorFields {
                        client_operator: opt(16),
                        client_asn: casn,
                        upstream_operator: opt(17),
                        upstream_asn: uasn,
                    },
                    policy_change: change.then(|| PolicyChange {
                        previous: s[18].clone(),
                        changes: vec![s[19].clone()],
                        rules: vec![s[20].clone(), s[21].clone()],
                    }),
                    sides: SideFields {
                        client_decision: opt(22),
                        client_rule: opt(23),
                        upstream_decision: opt(24),
                        upstream_rule: opt(25),
                    },
                    grant: opt(18),
                    prev: s[19].clone(),
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn writes_what_serde_json_writes(r in record()) {
            prop_assert_eq!(json(&r), serde_json::to_vec(&r).unwrap());
        }
    }

    #[test]
    fn writes_what_serde_json_writes_for_the_usual_records() {
        let mut full = example(7);
        full.operators.client_asn = Some(0);
        full.operators.upstream_asn = Some(u32::MAX);
        full.unrecorded = Some(u64::MAX);
        full.bytes_up = 10;
        full.sides.client_rule = Some("allow_countries".into());
        full.grant = Some("CHG-1".into());
        for r in [example(1), example(123_456), full] {
            assert_eq!(
                String::from_utf8(json(&r)).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
    }
}
