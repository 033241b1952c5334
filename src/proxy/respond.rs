//! Every response the proxy writes itself: the S3-style XML error shape of
//! SPEC §4, so S3 clients print a readable message, and the request id.
//! Clients get the public reason, never internal detail.

use std::sync::atomic::{AtomicU64, Ordering};

use super::body::Audited;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::geo::{Country, label};
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::refusal::Refusal;

/// The body of a response the proxy writes itself.
pub type Generated = Full<Bytes>;

/// The body of a response to the client: proxied (and audited) or generated.
pub type Body = Either<Audited, Generated>;

/// `x-residency-decision` (SPEC §4).
pub static DECISION_HEADER: HeaderName = HeaderName::from_static("x-residency-decision");
/// `x-residency-request-id`: the id of the request's audit record.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-residency-request-id");

/// A request id: 16 upper-case hex digits, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static ID_SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

impl RequestId {
    /// The next id. Ids are a counter passed through a bijective mix with a
    /// per-process seed, so they are unique and do not reveal request counts.
    pub fn next() -> Self {
        let seed = *ID_SEED.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        });
        Self(splitmix64(NEXT_ID.fetch_add(1, Ordering::Relaxed) ^ seed))
    }

    /// The id as the header value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_bytes(&self.digits()).expect("hex digits are a valid header value")
    }

    /// The id as text: 16 upper-case hex digits, as `Display` writes it.
    pub fn text(self) -> String {
        String::from_utf8(self.digits().to_vec()).expect("hex digits are ASCII")
    }

    /// The 16 upper-case hex digits, written digit by digit: this runs
    /// twice per request, and padded formatting costs more than the rest.
    fn digits(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [0u8; 16];
        for (i, d) in out.iter_mut().enumerate() {
            *d = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        out
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.digits()).expect("hex digits are ASCII"))
    }
}

const fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of `x-residency-decision` for a failed verdict, e.g.
/// `blocked; side=client; country=US; reason=country_not_allowed`.
pub fn decision_value(
    decision: Decision,
    side: Side,
    country: Option<Country>,
    reason: Reason,
) -> HeaderValue {
    let text = format!(
        "{}; side={}; country={}; reason={}",
        decision.as_str(),
        side.as_str(),
        label(country),
        reason.as_str()
    );
    HeaderValue::from_str(&text).expect("decision values are ASCII tokens")
}

/// `value` with `; operator=US` (and `; asn=16509` when known) appended when
/// the verdict's operator is outside `operator_countries` (SPEC §11).
pub fn with_operator(value: HeaderValue, v: &Verdict) -> HeaderValue {
    if !v.foreign_operator {
        return value;
    }
    let mut text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    text.push_str("; operator=");
    text.push_str(label(v.operator.country));
    if let Some(asn) = v.operator.asn {
        text.push_str(&format!("; asn={asn}"));
    }
    HeaderValue::from_str(&text).unwrap_or(value)
}

/// Why a request stops before a response of the storage reaches the
/// client: the proxy answers itself. Each has its status, S3 error code
/// and message; [`answer`] is the one place they become a response.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Turned away outside the verdict (decision `refused`).
    Refused(Refusal),
    /// A side's verdict blocks the request (`451`).
    Blocked {
        /// The side judged.
        side: Side,
        /// Its verdict, for the country and the operator.
        verdict: Verdict,
        /// The public reason.
        reason: Reason,
    },
    /// The storage failed once the request was sent, or answered with an
    /// uninvited `101` (`502`; `504` if it did not answer in time).
    UpstreamFailed {
        /// Whether it took too long.
        timed_out: bool,
    },
    /// No address of any upstream could be reached (`502`).
    UpstreamUnreachable,
}

impl Stop {
    /// The status of the answer.
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::Refused(r) => r.status(),
            Self::Blocked { .. } => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            Self::UpstreamFailed { timed_out: true } => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamFailed { timed_out: false } | Self::UpstreamUnreachable => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The S3 error code of the answer.
    pub const fn s3_code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.s3_code(),
            Self::Blocked { .. } => "AccessDenied",
            Self::UpstreamFailed { timed_out: true } => "GatewayTimeout",
            Self::UpstreamFailed { timed_out: false } | Self::UpstreamUnreachable => "BadGateway",
        }
    }

    /// The message of the answer; `purpose_header` names the header a
    /// missing purpose goes in.
    pub fn message(&self, purpose_header: &str) -> String {
        match self {
            Self::Refused(Refusal::PurposeRequired) => {
                format!("a purpose of access is required in the {purpose_header} header")
            }
            Self::Refused(r) => r.message().to_owned(),
            Self::Blocked {
                side,
                verdict,
                reason,
            } => format!(
                "blocked by data-residency policy: {}",
                blocked_message(*side, verdict.country, *reason)
            ),
            Self::UpstreamFailed { timed_out: true } => {
                "the storage upstream did not answer in time".to_owned()
            }
            Self::UpstreamFailed { timed_out: false } => "the storage upstream failed".to_owned(),
            Self::UpstreamUnreachable => "the storage upstream cannot be reached".to_owned(),
        }
    }
}

/// The response to `stop`: the S3 XML error (no body for HEAD) and, when
/// blocked, the decision header (with the operator when it is foreign) and
/// a reason phrase saying so.
pub fn answer(
    stop: &Stop,
    purpose_header: &str,
    resource: &str,
    id: RequestId,
    head: bool,
) -> Response<Generated> {
    let mut rsp = xml_error(
        stop.status(),
        stop.s3_code(),
        &stop.message(purpose_header),
        resource,
        id,
        head,
    );
    if let Stop::Refused(refusal) = stop
        && let Some(value) = refusal.decision()
    {
        // Governed access names its reason, as a block does (SPEC §9).
        rsp.headers_mut()
            .insert(DECISION_HEADER.clone(), HeaderValue::from_static(value));
    }
    if let Stop::Blocked {
        side,
        verdict,
        reason,
    } = stop
    {
        let value = decision_value(Decision::Blocked, *side, verdict.country, *reason);
        rsp.headers_mut()
            .insert(DECISION_HEADER.clone(), with_operator(value, verdict));
        // Clients that show only the status line (a HEAD has no body to
        // carry the XML message; s3cmd prints the reason phrase) still
        // learn why.
        rsp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(
                b"Blocked By Data-Residency Policy",
            ));
    }
    rsp
}

/// Why a side is blocked, in the client's words.
fn blocked_message(side: Side, country: Option<Country>, reason: Reason) -> String {
    match (side, reason) {
        (Side::Client, Reason::UntraceableAddress) => {
            "client address cannot be established".to_owned()
        }
        (Side::Client, Reason::NetworkDenied) => "client network is denied".to_owned(),
        (Side::Client, Reason::ForeignOperator) => {
            "client network is operated from outside the allowed area".to_owned()
        }
        (Side::Upstream, Reason::ForeignOperator) => {
            "the storage upstream is operated from outside the allowed area".to_owned()
        }
        (Side::Client, _) => format!(
            "client country {} is outside the allowed area",
            label(country)
        ),
        (Side::Upstream, _) => {
            "no address of the storage upstream is inside the allowed area".to_owned()
        }
    }
}

/// An S3-style error response. `resource` is the request path.
fn xml_error(
    status: StatusCode,
    code: &str,
    message: &str,
    resource: &str,
    id: RequestId,
    head: bool,
) -> Response<Generated> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>\n",
        escape(code),
        escape(message),
        escape(resource),
        id
    );
    let len = xml.len();
    let body = if head { Bytes::new() } else { Bytes::from(xml) };
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(REQUEST_ID_HEADER.clone(), id.header_value());
    h.insert(
        HeaderName::from_static("x-amz-request-id"),
        id.header_value(),
    );
    rsp
}

pub use crate::markup::escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_and_distinct() {
        let a = RequestId::next().to_string();
        let b = RequestId::next().to_string();
        assert_eq!(a.len(), 16);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn request_id_text_is_the_padded_upper_hex_of_the_id() {
        for n in [0, 1, 0xABC, 0x0123_4567_89AB_CDEF, u64::MAX] {
            let id = RequestId(n);
            let want = format!("{n:016X}");
            assert_eq!(id.text(), want);
            assert_eq!(id.to_string(), want);
            assert_eq!(id.header_value().to_str().ok(), Some(want.as_str()));
        }
    }

    #[test]
    fn xml_escapes_resource() {
        assert_eq!(escape("/b/<a&'\">"), "/b/&lt;a&amp;&#39;&quot;&gt;");
    }

    #[test]
    fn decision_header_shape() {
        let v = decision_value(
            Decision::Blocked,
            Side::Client,
            Country::from_code("US"),
            Reason::CountryNotAllowed,
        );
        assert_eq!(
            v,
            "blocked; side=client; country=US; reason=country_not_allowed"
        );
        let v = decision_value(
            Decision::Flagged,
            Side::Upstream,
            None,
            Reason::UnknownCountry,
        );
        assert_eq!(
            v,
            "flagged; side=upstream; country=unknown; reason=unknown_country"
        );
    }

    fn body(rsp: Response<Generated>) -> String {
        use http_body_util::BodyExt;
        let bytes = block_on(rsp.into_body().collect());
        String::from_utf8(bytes.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Every stop is answered by [`answer`] alone, with its own status,
    /// S3 code and message: no call site picks a triple of its own.
    #[test]
    fn every_stop_is_answered_with_its_status_code_and_message() {
        let id = RequestId::next();
        let mut stops: Vec<Stop> = Refusal::ALL.iter().map(|r| Stop::Refused(*r)).collect();
        stops.push(Stop::UpstreamFailed { timed_out: true });
        stops.push(Stop::UpstreamFailed { timed_out: false });
        stops.push(Stop::UpstreamUnreachable);
        for stop in stops {
            let rsp = answer(&stop, "x-purpose", "/b/k", id, false);
            assert_eq!(rsp.status(), stop.status(), "{stop:?}");
            match stop {
                // Governed access names its reason (SPEC §9); no other
                // refusal carries a decision.
                Stop::Refused(Refusal::Access(why)) => assert_eq!(
                    rsp.headers()[&DECISION_HEADER],
                    format!("refused; reason={}", why.as_str()).as_str(),
                ),
                _ => assert!(!rsp.headers().contains_key(&DECISION_HEADER), "{stop:?}"),
            }
            let xml = body(rsp);
            assert!(
                xml.contains(&format!("<Code>{}</Code>", stop.s3_code())),
                "{stop:?}: {xml}"
            );
            assert!(
                xml.contains(&format!(
                    "<Message>{}</Message>",
                    escape(&stop.message("x-purpose"))
                )),
                "{stop:?}: {xml}"
            );
        }
        let purpose = Stop::Refused(Refusal::PurposeRequired).message("x-purpose");
        assert_eq!(
            purpose,
            "a purpose of access is required in the x-purpose header"
        );
    }

    #[test]
    fn a_blocked_stop_is_451_with_the_decision_header() {
        let verdict = Verdict::untraceable();
        let stop = Stop::Blocked {
            side: Side::Client,
            verdict,
            reason: Reason::UntraceableAddress,
        };
        let rsp = answer(&stop, "x-purpose", "/b/k", RequestId::next(), true);
        assert_eq!(rsp.status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
        assert_eq!(
            rsp.headers()[&DECISION_HEADER],
            "blocked; side=client; country=unknown; reason=untraceable_address"
        );
        assert!(body(rsp).is_empty(), "HEAD: no body");
    }
}
