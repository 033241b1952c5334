//! Every response the proxy writes itself: the S3-style XML error shape of
//! SPEC §4, so S3 clients print a readable message, and the request id.
//! Clients get the public reason, never internal detail.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::body::Audited;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::geo::{Country, label};
use crate::policy::{Decision, Reason, Side, Verdict};

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
        HeaderValue::from_str(&self.to_string()).expect("hex digits are a valid header value")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", self.0)
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

/// Adds the operator to the decision header of a refusal built by
/// [`blocked`].
pub fn note_operator(rsp: &mut Response<Generated>, v: &Verdict) {
    if let Some(value) = rsp.headers_mut().remove(&DECISION_HEADER) {
        rsp.headers_mut()
            .insert(DECISION_HEADER.clone(), with_operator(value, v));
    }
}

/// A request the policy blocks: `451` with the XML body (none for HEAD).
pub fn blocked(
    side: Side,
    country: Option<Country>,
    reason: Reason,
    resource: &str,
    id: RequestId,
    head: bool,
) -> Response<Generated> {
    let message = match (side, reason) {
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
    };
    let mut rsp = xml_error(
        StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        "AccessDenied",
        &format!("blocked by data-residency policy: {message}"),
        resource,
        id,
        head,
    );
    rsp.headers_mut().insert(
        DECISION_HEADER.clone(),
        decision_value(Decision::Blocked, side, country, reason),
    );
    // Clients that show only the status line (a HEAD has no body to carry
    // the XML message; s3cmd prints the reason phrase) still learn why.
    rsp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            b"Blocked By Data-Residency Policy",
        ));
    rsp
}

/// The answer when the upstream failed after the request was sent: 504 if
/// it took too long, 502 otherwise.
pub fn upstream_failed(
    timed_out: bool,
    resource: &str,
    id: RequestId,
    head: bool,
) -> Response<Generated> {
    let (status, code, msg) = if timed_out {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "GatewayTimeout",
            "the storage upstream did not answer in time",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            "the storage upstream failed",
        )
    };
    xml_error(status, code, msg, resource, id, head)
}

/// An S3-style error response. `resource` is the request path.
pub fn xml_error(
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
}
