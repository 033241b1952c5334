//! `AuditRecord`: the fields of one audit line, in their serialisation order,
//! and the one timestamp format the trail uses.
//!
//! The field order of [`AuditRecord`] is the order of the keys on disk and so
//! part of the public format: the hash covers the bytes as written (see
//! [`super::chain`]). New fields go just before `prev`; existing ones are
//! never reordered or renamed (verifiers ignore fields they do not know). Hashed data holds no floats, so every implementation writes
//! the same bytes for the same values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub(crate) mod json;

/// One request, as the audit trail records it (SPEC §6).
///
/// Strings the proxy writes come from [`crate::policy`]'s `as_str`
/// (decision, side, reason) and [`crate::geo::label`] (countries), so each
/// wire value is spelled once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived: RFC 3339 UTC with milliseconds, from
    /// [`format_time`], e.g. `2026-11-28T15:20:13.123Z`.
    pub time: String,
    /// The request id: 16 upper-case hex digits, also sent to the client.
    pub request_id: String,
    /// The route's name; `None` when no route matched.
    pub route: Option<String>,
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The object key per `audit.object_key` (see
    /// [`super::fields::object_key`]); `None` for `none` or no key.
    pub object_key: Option<String>,
    /// The client address the policy judged; `None` when untraceable.
    pub client_ip: Option<String>,
    /// The client's ISO country code, or `unknown`.
    pub client_country: String,
    /// The access key id, else the mTLS subject, else `anonymous`. Claimed by
    /// the client, not verified by the proxy (the storage checks signatures).
    pub identity: String,
    /// The value of `audit.purpose_header`, if sent.
    pub purpose: Option<String>,
    /// The upstream address dialled, if any.
    pub upstream_ip: Option<String>,
    /// The upstream address's ISO country code or `unknown`, if one was judged.
    pub upstream_country: Option<String>,
    /// `allowed`, `blocked` or `flagged` (the policy's), or `refused`: turned
    /// away before the policy judged it (see `reason`).
    pub decision: String,
    /// `client` or `upstream`: the side that was blocked or flagged.
    pub side: Option<String>,
    /// A SPEC §4 reason string when blocked or flagged; the refusal's
    /// reason when refused.
    pub reason: Option<String>,
    /// The HTTP status sent to the client; `0` when none was (an HTTP/2
    /// stream or connection reset, a connection closed without response).
    pub status: u16,
    /// Request body bytes forwarded upstream.
    pub bytes_up: u64,
    /// Response body bytes sent to the client.
    pub bytes_down: u64,
    /// From request arrival to the record, in whole milliseconds.
    pub duration_ms: u64,
    /// Short hex hash of the compiled policy and the database build.
    pub policy_version: String,
    /// Where `client_ip` comes from when the request's headers were never
    /// parsed (a refusal by the HTTP layer): `peer` (the socket peer, even
    /// if it is a trusted proxy) or `proxy-protocol`. Absent otherwise:
    /// the address is then the client as `server.client_ip_source` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_source: Option<String>,
    /// On a summary record (reason `protocol_errors_unrecorded`): how many
    /// refusals by the HTTP layer were counted but not recorded one by one
    /// since the previous summary, the first of them at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<u64>,
    /// Operator country and AS number per side (SPEC §11), written as
    /// top-level fields and only when known, so records of a proxy without
    /// an operator database are unchanged.
    #[serde(flatten)]
    pub operators: OperatorFields,
    /// Only on a policy change record (decision [`POLICY`], reason
    /// [`POLICY_CHANGED`]): written once by each reload that changes the
    /// policy version, before any request decided under the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_change: Option<PolicyChange>,
    /// Each side's own decision and the rule that decided it, so the
    /// cartography can tell the host's own networks from transfers and
    /// count a request flagged on both sides on both (see
    /// [`crate::transfer`]). Absent on refusals and in older records.
    #[serde(flatten)]
    pub sides: SideFields,
    /// The id of the grant that admitted the client (SPEC §9), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Hex SHA-256 of the previous record's hashed bytes; 64 `0`s for the
    /// first record of a chain. Set by [`super::Chain::seal`].
    pub prev: String,
}

/// The `decision` of a policy change record: not a request.
pub const POLICY: &str = "policy";
/// The `reason` of a policy change record.
pub const POLICY_CHANGED: &str = "policy_changed";

/// What a policy change record adds: the version it replaces, what changed,
/// and the rules now in force, so that the trail alone says which rules
/// decided each later record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The policy version in force before (`policy_version` is the new one).
    pub previous: String,
    /// Each changed line of the rules, `key: old -> new` (`(none)` for a
    /// line that was not or is no longer there).
    pub changes: Vec<String>,
    /// The canonical text of the new rules, one line each (docs/reference.md,
    /// "Policy version"): SHA-256 of the lines each followed by `\n` starts
    /// with the 12 hex digits of `policy_version`.
    pub rules: Vec<String>,
}

impl AuditRecord {
    /// The record marking a reload that changed the policy version from
    /// `change.previous` to `policy_version`. Its request fields say it
    /// is no request: no route, method `-`, decision [`POLICY`], status 0.
    pub fn policy_changed(
        request_id: String,
        policy_version: String,
        change: PolicyChange,
    ) -> Self {
        Self {
            time: format_time(SystemTime::now()),
            request_id,
            route: None,
            method: "-".to_owned(),
            object_key: None,
            client_ip: None,
            client_country: crate::geo::label(None).to_owned(),
            identity: "anonymous".to_owned(),
            purpose: None,
            upstream_ip: None,
            upstream_country: None,
            decision: POLICY.to_owned(),
            side: None,
            reason: Some(POLICY_CHANGED.to_owned()),
            status: 0,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            policy_version,
            client_ip_source: None,
            unrecorded: None,
            operators: OperatorFields::default(),
            policy_change: Some(change),
            sides: SideFields::default(),
            grant: None,
            prev: String::new(),
        }
    }
}

/// The operator fields of an [`AuditRecord`], each absent when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorFields {
    /// The client's operator country (ISO code or `unknown`): the country
    /// of the network announcing its address, from `[geoip]
    /// operator_database`. Absent without an operator database or a client
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_operator: Option<String>,
    /// The client's operator AS number, when the operator database has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_asn: Option<u32>,
    /// The upstream address's operator country (the address dialled, or the
    /// one refused when the upstream side failed); absent likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_operator: Option<String>,
    /// The upstream's operator AS number, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_asn: Option<u32>,
}

/// The per-side fields of an [`AuditRecord`], each absent when that side
/// was not judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideFields {
    /// The client side's decision: `allowed`, `blocked` or `flagged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_decision: Option<String>,
    /// The rule that decided the client side, by
    /// [`crate::transfer::rule_key`] (e.g. `allow_networks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rule: Option<String>,
    /// The upstream side's decision, when an upstream address was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_decision: Option<String>,
    /// The rule that decided the upstream side, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_rule: Option<String>,
}

/// The latest time [`format_time`] writes: 9999-12-31T23:59:59.999Z.
const MAX_SECS: u64 = 253_402_300_799;

/// Formats `t` as RFC 3339 UTC with milliseconds: `2026-11-28T15:20:13.123Z`.
///
/// Sub-millisecond digits are truncated, not rounded, so a record never
/// claims a later time than it had. Times before 1970 are written as the
/// epoch and times after year 9999 as its last millisecond: the format has
/// exactly four year digits, and neither bound is reachable by a clock that
/// is not broken.
pub fn format_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (secs, millis) = if since.as_secs() > MAX_SECS {
        (MAX_SECS, 999)
    } else {
        (since.as_secs(), since.subsec_millis())
    };
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    // Written digit by digit: this runs for every request, and the
    // formatting machinery cost more than the rest of the record.
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3600);
    put(14, 2, in_day % 3600 / 60);
    put(17, 2, in_day % 60);
    put(20, 3, u64::from(millis));
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[i] = c;
    }
    String::from_utf8(out.to_vec()).expect("ASCII digits and separators")
}

/// The proleptic Gregorian date of `days` after 1970-01-01, by Howard
/// Hinnant's `civil_from_days` (eras of 400 years = 146 097 days, years
/// counted from March so the leap day is last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// A plausible record for tests: request `n`, a US client blocked.
#[cfg(test)]
pub(crate) fn example(n: u64) -> AuditRecord {
    AuditRecord {
        time: format!("2026-11-28T15:20:{:02}.123Z", n % 60),
        request_id: format!("{n:016X}"),
        route: Some("s3".into()),
        method: "GET".into(),
        object_key: Some(format!("bucket/key-{n}")),
        client_ip: Some("203.0.113.9".into()),
        client_country: "US".into(),
        identity: "AKIAEXAMPLE".into(),
        purpose: None,
        upstream_ip: None,
        upstream_country: None,
        decision: "blocked".into(),
        side: Some("client".into()),
        reason: Some("country_not_allowed".into()),
        status: 451,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 1,
        policy_version: "3f2a9c1e".into(),
        client_ip_source: None,
        unrecorded: None,
        operators: Default::default(),
        policy_change: None,
        sides: Default::default(),
        grant: None,
        prev: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> String {
        format_time(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn formats_the_example_of_the_record_doc() {
        // date -u -d 2026-11-28T15:20:13Z +%s
        assert_eq!(at(1_795_879_213, 123_000_000), "2026-11-28T15:20:13.123Z");
    }

    #[test]
    fn epoch_and_before() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format_time(before), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn milliseconds_are_truncated_not_rounded() {
        assert_eq!(at(59, 999_999_999), "1970-01-01T00:00:59.999Z");
        assert_eq!(at(0, 999_999), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(0, 1_000_000), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn leap_years_and_century_rules() {
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z"); // 400-year rule
        assert_eq!(at(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_251_199, 0), "2024-02-29T23:59:59.000Z");
        assert_eq!(at(4_107_456_000, 0), "2100-02-28T00:00:00.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z"); // 2100 is not leap
        assert_eq!(at(946_684_799, 0), "1999-12-31T23:59:59.000Z");
    }

    #[test]
    fn far_future_is_clamped_to_four_digit_years() {
        assert_eq!(at(MAX_SECS, 5_000_000), "9999-12-31T23:59:59.005Z");
        assert_eq!(at(MAX_SECS + 1, 0), "9999-12-31T23:59:59.999Z");
        assert_eq!(at(u64::MAX / 2, 0), "9999-12-31T23:59:59.999Z");
    }

    /// Every day from 1970 to 2400 against a naive month-by-month count.
    #[test]
    fn every_day_matches_a_naive_calendar() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(430 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn serialises_fields_in_declaration_order() {
        let r = AuditRecord {
            time: "t".into(),
            request_id: "R".into(),
            route: None,
            method: "GET".into(),
            object_key: None,
            client_ip: None,
            client_country: "unknown".into(),
            identity: "anonymous".into(),
            purpose: None,
            upstream_ip: None,
            upstream_country: None,
            decision: "allowed".into(),
            side: None,
            reason: None,
            status: 200,
            bytes_up: 1,
            bytes_down: 2,
            duration_ms: 3,
            policy_version: "ab".into(),
            client_ip_source: None,
            unrecorded: None,
            operators: Default::default(),
            policy_change: None,
            sides: Default::default(),
            grant: None,
            prev: "p".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"time":"t","request_id":"R","route":null,"method":"GET","object_key":null,"client_ip":null,"client_country":"unknown","identity":"anonymous","purpose":null,"upstream_ip":null,"upstream_country":null,"decision":"allowed","side":null,"reason":null,"status":200,"bytes_up":1,"bytes_down":2,"duration_ms":3,"policy_version":"ab","prev":"p"}"#
        );
    }
}
