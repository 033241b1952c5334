//! The canonical bytes of a grant: what approvers sign and the proxy
//! verifies. Documented byte for byte in the README ("Governed access"), so
//! anyone can re-implement it; a change here is a change of format (`v1`).
//!
//! ```text
//! residency-proxy grant v1\n
//! id=<id>\n
//! identity=<identity>\n
//! proof=<mtls|sigv4>\n
//! owner=<owner>\n
//! purpose=<purpose>\n
//! from_countries=<codes, upper case, file order, joined by ",">\n
//! routes=<names joined by ","; empty when absent>\n
//! methods=<upper case, joined by ","; empty when absent>\n
//! path_prefix=<prefix; empty when absent>\n
//! not_before=<YYYY-MM-DDTHH:MM:SSZ, UTC>\n
//! not_after=<YYYY-MM-DDTHH:MM:SSZ, UTC>\n
//! ```
//!
//! Values are UTF-8 exactly as validated: no control character can occur
//! in them and no `,` in a list item (the files are refused otherwise), so
//! every line, and the whole text, is unambiguous.

use super::Proof;

/// The fields a signature covers (everything but the approvals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The grant's id.
    pub id: String,
    /// The grantee's identity.
    pub identity: String,
    /// How the identity is proven.
    pub proof: Proof,
    /// The person holding the identity.
    pub owner: String,
    /// Why.
    pub purpose: String,
    /// Client countries, upper case, file order.
    pub from_countries: Vec<String>,
    /// Route names; empty: any.
    pub routes: Vec<String>,
    /// Methods, upper case; empty: any.
    pub methods: Vec<String>,
    /// Path prefix; empty: any.
    pub path_prefix: String,
    /// Start, seconds since the epoch (UTC).
    pub not_before: i64,
    /// End, seconds since the epoch (UTC).
    pub not_after: i64,
}

/// The first line: names the format and its version.
pub const HEADER: &str = "residency-proxy grant v1";

impl Signed {
    /// The canonical bytes (see the module documentation).
    pub fn canonical(&self) -> Vec<u8> {
        let lines = [
            ("id", self.id.clone()),
            ("identity", self.identity.clone()),
            ("proof", self.proof.as_str().to_owned()),
            ("owner", self.owner.clone()),
            ("purpose", self.purpose.clone()),
            ("from_countries", self.from_countries.join(",")),
            ("routes", self.routes.join(",")),
            ("methods", self.methods.join(",")),
            ("path_prefix", self.path_prefix.clone()),
            ("not_before", rfc3339(self.not_before)),
            ("not_after", rfc3339(self.not_after)),
        ];
        let mut out = String::with_capacity(256);
        out.push_str(HEADER);
        out.push('\n');
        for (k, v) in lines {
            out.push_str(k);
            out.push('=');
            out.push_str(&v);
            out.push('\n');
        }
        out.into_bytes()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `YYYY-MM-DD` for seconds since the epoch.
pub fn date(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Signed {
        Signed {
            id: "CHG-1".into(),
            identity: "lab.example".into(),
            proof: Proof::Mtls,
            owner: "Jane Doe <jane@vendor.example>".into(),
            purpose: "support case 4711".into(),
            from_countries: vec!["US".into(), "CA".into()],
            routes: vec![],
            methods: vec!["GET".into(), "HEAD".into()],
            path_prefix: "/radiology/".into(),
            not_before: days_from_civil(2026, 12, 7) * 86_400 + 8 * 3600,
            not_after: days_from_civil(2026, 12, 7) * 86_400 + 18 * 3600,
        }
    }

    #[test]
    fn canonical_bytes_are_the_documented_text() {
        assert_eq!(
            String::from_utf8(grant().canonical()).unwrap(),
            "residency-proxy grant v1\nid=CHG-1\nidentity=lab.example\nproof=mtls\n\
             owner=Jane Doe <jane@vendor.example>\npurpose=support case 4711\n\
             from_countries=US,CA\nroutes=\nmethods=GET,HEAD\npath_prefix=/radiology/\n\
             not_before=2026-12-07T08:00:00Z\nnot_after=2026-12-07T18:00:00Z\n"
        );
    }

    #[test]
    fn every_field_changes_the_bytes() {
        let base = grant().canonical();
        let edits: [fn(&mut Signed); 11] = [
            |g| g.id.push('x'),
            |g| g.identity.push('x'),
            |g| g.proof = Proof::Sigv4,
            |g| g.owner.push('x'),
            |g| g.purpose.push('x'),
            |g| g.from_countries.push("MX".into()),
            |g| g.routes.push("s3".into()),
            |g| g.methods.pop().map(drop).unwrap_or(()),
            |g| g.path_prefix.push('x'),
            |g| g.not_before += 1,
            |g| g.not_after += 1,
        ];
        for edit in edits {
            let mut g = grant();
            edit(&mut g);
            assert_ne!(g.canonical(), base);
        }
    }

    #[test]
    fn dates_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2026, 12, 31), (2100, 3, 1)] {
            let t = days_from_civil(y, m, d) * 86_400;
            assert_eq!(civil_from_days(t / 86_400), (y, m, d));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(86_400 * 365), "1971-01-01");
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    /// A value the files accept: non-empty, no control character.
    fn value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 =,:;/<>@.\\-\u{e9}\u{2028}\u{202e}]{1,8}"
    }

    /// A list item the files accept: a value without `,`.
    fn item() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 =:;/.\\-\u{e9}]{1,4}"
    }

    fn signed() -> impl Strategy<Value = Signed> {
        (
            (value(), value(), any::<bool>(), value(), value()),
            (
                proptest::collection::vec(item(), 1..3),
                proptest::collection::vec(item(), 0..3),
                proptest::collection::vec(item(), 0..3),
                proptest::option::of(value()),
            ),
            (0..4_102_444_800i64, 1..1_000_000i64),
        )
            .prop_map(
                |(
                    (id, identity, mtls, owner, purpose),
                    (from, routes, methods, prefix),
                    (t, d),
                )| {
                    Signed {
                        id,
                        identity,
                        proof: if mtls { Proof::Mtls } else { Proof::Sigv4 },
                        owner,
                        purpose,
                        from_countries: from,
                        routes,
                        methods,
                        path_prefix: prefix.unwrap_or_default(),
                        not_before: t,
                        not_after: t + d,
                    }
                },
            )
    }

    /// Reads canonical bytes back: one line per field, in order, each
    /// `key=value` split at its first `=`.
    fn decode(bytes: &[u8]) -> Option<Signed> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body = text.strip_prefix(HEADER)?.strip_prefix('\n')?;
        let lines: Vec<&str> = body.strip_suffix('\n')?.split('\n').collect();
        let keys = [
            "id",
            "identity",
            "proof",
            "owner",
            "purpose",
            "from_countries",
            "routes",
            "methods",
            "path_prefix",
            "not_before",
            "not_after",
        ];
        if lines.len() != keys.len() {
            return None;
        }
        let mut v = Vec::new();
        for (line, key) in lines.iter().zip(keys) {
            v.push(line.strip_prefix(key)?.strip_prefix('=')?);
        }
        let list = |s: &str| {
            if s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(str::to_owned).collect()
            }
        };
        let time = |s: &str| -> Option<i64> {
            let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
            Some(
                days_from_civil(n(0..4)?, n(5..7)?, n(8..10)?) * 86_400
                    + n(11..13)? * 3600
                    + n(14..16)? * 60
                    + n(17..19)?,
            )
        };
        Some(Signed {
            id: v[0].to_owned(),
            identity: v[1].to_owned(),
            proof: match v[2] {
                "mtls" => Proof::Mtls,
                "sigv4" => Proof::Sigv4,
                _ => return None,
            },
            owner: v[3].to_owned(),
            purpose: v[4].to_owned(),
            from_countries: list(v[5]),
            routes: list(v[6]),
            methods: list(v[7]),
            path_prefix: v[8].to_owned(),
            not_before: time(v[9])?,
            not_after: time(v[10])?,
        })
    }

    proptest! {
        /// Attacked: no two grants the files accept sign the same bytes,
        /// whatever separators (`=`, `,`, `:`, spaces, Unicode line or
        /// direction marks) their values hold: the bytes read back to the
        /// grant they came from, so a signature covers one grant only.
        #[test]
        fn the_canonical_bytes_read_back_to_the_grant(g in signed()) {
            prop_assert_eq!(decode(&g.canonical()), Some(g));
        }
    }
}
