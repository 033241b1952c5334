//! What a refusal is: the ways a request is turned away other than by the
//! policy's verdict, by the proxy (CONNECT, a bad `Host`, no route, …) or
//! by the HTTP layer underneath it, with their names on the wire. A leaf:
//! the proxy refuses and records ([`crate::proxy::refusal`]), the metrics
//! and the audit reports count by these names.

use std::net::IpAddr;

use http::StatusCode;

use crate::geo::{Canonical, Country, GeoDb, Nat64Prefixes, canonicalize};

/// The decision of a refused request, in the audit record and the
/// `decision` label of `residency_requests_total`: the request was turned
/// away before the policy judged it (it is neither `allowed` nor a policy
/// `blocked`).
pub const REFUSED: &str = "refused";

/// The `route` label of requests refused before a route was chosen (not a
/// valid route name, so it cannot collide with one).
pub const NO_ROUTE: &str = "(none)";

/// Why a request was refused. The wire values ([`Refusal::as_str`]) are
/// the `reason` of the audit record and of
/// `residency_refused_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fail-closed: the audit trail cannot be written (`503`).
    AuditUnavailable,
    /// `CONNECT` (`405`).
    MethodNotAllowed,
    /// More header fields than `max_headers` over HTTP/2 (`431`).
    TooManyHeaders,
    /// A `Transfer-Encoding` other than a single `chunked` (`400`).
    BadTransferEncoding,
    /// Missing, repeated or invalid `Host`, or an absolute-form target
    /// disagreeing with it (`400`).
    BadHost,
    /// No route matches (`404`), `OPTIONS *` included.
    NoRoute,
    /// A `%` in the path not followed by two hex digits (`400`).
    BadPathEncoding,
    /// The path or host reads as addressing routes that judge differently,
    /// none of them the strictest (`400`).
    AmbiguousTarget,
    /// `require_purpose` and no purpose (`428`).
    PurposeRequired,
    /// HTTP/1.1 head over `max_header_bytes` or `max_headers` (`431`).
    HttpHeadTooLarge,
    /// HTTP/1.1 request target too long (`414`).
    HttpUriTooLong,
    /// HTTP/1.1 unparsable method (`400`).
    HttpBadMethod,
    /// HTTP/1.1 unparsable request target, e.g. bytes not allowed in it (`400`).
    HttpBadUri,
    /// HTTP/1.1 unparsable version (`400`).
    HttpBadVersion,
    /// HTTP/1.1 bytes out of the grammar in the request line or a header
    /// field: a character not allowed in the method, target or a field,
    /// obs-fold, whitespace before the colon (`400`; hyper does not say
    /// which part).
    HttpMalformed,
    /// HTTP/1.1 invalid or differing `Content-Length`s (`400`).
    HttpBadContentLength,
    /// HTTP/1.1 invalid or unexpected `Transfer-Encoding` (`400`).
    HttpBadTransferEncoding,
    /// The HTTP/2 preface on an HTTP/1.1 listener (closed, no response).
    HttpH2Preface,
    /// Any other HTTP/1.1 parse error (`400`).
    HttpBadMessage,
    /// HTTP/2 header block over `max_header_bytes` (h2's `431`).
    H2HeaderListTooLarge,
    /// HTTP/2 stream reset `PROTOCOL_ERROR` (malformed request).
    H2ProtocolError,
    /// HTTP/2 stream reset `REFUSED_STREAM` (over the concurrent streams).
    H2RefusedStream,
    /// HTTP/2 stream reset `FLOW_CONTROL_ERROR`.
    H2FlowControlError,
    /// HTTP/2 stream reset `STREAM_CLOSED`.
    H2StreamClosed,
    /// HTTP/2 stream reset with another error code.
    H2StreamError,
    /// HTTP/2 `GOAWAY` with an error code: the connection was refused.
    H2ConnectionError,
    /// Refused by the identity registry (`403`, SPEC §9).
    Access(AccessRefusal),
}

impl Refusal {
    /// Every refusal, in [`Refusal::index`] order.
    pub const ALL: [Self; 29] = [
        Self::AuditUnavailable,
        Self::MethodNotAllowed,
        Self::TooManyHeaders,
        Self::BadTransferEncoding,
        Self::BadHost,
        Self::NoRoute,
        Self::BadPathEncoding,
        Self::AmbiguousTarget,
        Self::PurposeRequired,
        Self::HttpHeadTooLarge,
        Self::HttpUriTooLong,
        Self::HttpBadMethod,
        Self::HttpBadUri,
        Self::HttpBadVersion,
        Self::HttpMalformed,
        Self::HttpBadContentLength,
        Self::HttpBadTransferEncoding,
        Self::HttpH2Preface,
        Self::HttpBadMessage,
        Self::H2HeaderListTooLarge,
        Self::H2ProtocolError,
        Self::H2RefusedStream,
        Self::H2FlowControlError,
        Self::H2StreamClosed,
        Self::H2StreamError,
        Self::H2ConnectionError,
        Self::Access(AccessRefusal::UnknownIdentity),
        Self::Access(AccessRefusal::RouteNotGranted),
        Self::Access(AccessRefusal::ReviewOverdue),
    ];

    /// Public contract: used verbatim in the audit `reason` and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuditUnavailable => "audit_unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyHeaders => "too_many_headers",
            Self::BadTransferEncoding => "bad_transfer_encoding",
            Self::BadHost => "bad_host",
            Self::NoRoute => "no_route",
            Self::BadPathEncoding => "bad_path_encoding",
            Self::AmbiguousTarget => "ambiguous_target",
            Self::PurposeRequired => "purpose_required",
            Self::HttpHeadTooLarge => "http_head_too_large",
            Self::HttpUriTooLong => "http_uri_too_long",
            Self::HttpBadMethod => "http_bad_method",
            Self::HttpBadUri => "http_bad_uri",
            Self::HttpBadVersion => "http_bad_version",
            Self::HttpMalformed => "http_malformed",
            Self::HttpBadContentLength => "http_bad_content_length",
            Self::HttpBadTransferEncoding => "http_bad_transfer_encoding",
            Self::HttpH2Preface => "http_h2_preface",
            Self::HttpBadMessage => "http_bad_message",
            Self::H2HeaderListTooLarge => "h2_header_list_too_large",
            Self::H2ProtocolError => "h2_protocol_error",
            Self::H2RefusedStream => "h2_refused_stream",
            Self::H2FlowControlError => "h2_flow_control_error",
            Self::H2StreamClosed => "h2_stream_closed",
            Self::H2StreamError => "h2_stream_error",
            Self::H2ConnectionError => "h2_connection_error",
            Self::Access(r) => r.as_str(),
        }
    }

    /// The status of the proxy's answer to this refusal. The HTTP layer's
    /// own refusals are answered by hyper or h2 (see
    /// [`Refusal::protocol_status`]); this is what they stand for.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyHeaders | Self::HttpHeadTooLarge | Self::H2HeaderListTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Access(_) => StatusCode::FORBIDDEN,
            Self::PurposeRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::HttpUriTooLong => StatusCode::URI_TOO_LONG,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The S3 error code of the answer's XML body.
    pub const fn s3_code(self) -> &'static str {
        match self {
            Self::AuditUnavailable => "ServiceUnavailable",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::TooManyHeaders | Self::HttpHeadTooLarge | Self::H2HeaderListTooLarge => {
                "RequestHeaderFieldsTooLarge"
            }
            Self::NoRoute => "NoSuchRoute",
            Self::Access(_) => "AccessDenied",
            Self::BadPathEncoding | Self::AmbiguousTarget | Self::HttpUriTooLong => "InvalidURI",
            Self::PurposeRequired => "PreconditionRequired",
            _ => "InvalidRequest",
        }
    }

    /// The message of the answer's XML body: public, no detail.
    /// [`Refusal::PurposeRequired`]'s is followed by the header to use.
    pub const fn message(self) -> &'static str {
        match self {
            Self::AuditUnavailable => {
                "the access trace cannot be recorded; requests are refused until it can"
            }
            Self::MethodNotAllowed => "CONNECT is not supported by this proxy",
            Self::TooManyHeaders => "too many header fields",
            Self::BadTransferEncoding => {
                "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)"
            }
            Self::BadHost => "missing, repeated or invalid Host header",
            Self::NoRoute => "no route of this proxy matches the host and path",
            Self::BadPathEncoding => {
                "invalid percent-encoding in the request path (a '%' must be followed by two hex digits)"
            }
            Self::AmbiguousTarget => {
                "the request path or host can be read as addressing routes that judge differently; spell it canonically (the bucket in lower case, no %2F, '//', ';', '.' or '..' segments)"
            }
            Self::PurposeRequired => "a purpose of access is required in the header",
            Self::HttpHeadTooLarge | Self::H2HeaderListTooLarge => "the request head is too large",
            Self::HttpUriTooLong => "the request target is too long",
            Self::Access(r) => r.message(),
            _ => "the request is malformed",
        }
    }

    /// The `x-residency-decision` value of the answer, for the refusals
    /// that name their reason to the client: governed access (SPEC §9).
    pub const fn decision(self) -> Option<&'static str> {
        match self {
            Self::Access(AccessRefusal::UnknownIdentity) => {
                Some("refused; reason=unknown_identity")
            }
            Self::Access(AccessRefusal::RouteNotGranted) => {
                Some("refused; reason=route_not_granted")
            }
            Self::Access(AccessRefusal::ReviewOverdue) => Some("refused; reason=review_overdue"),
            _ => None,
        }
    }

    /// Position in [`Refusal::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The status the HTTP layer sent for a refusal of its own; `0` when
    /// it sent none (the stream or connection was reset or closed).
    pub const fn protocol_status(self) -> u16 {
        match self {
            Self::HttpHeadTooLarge | Self::H2HeaderListTooLarge => 431,
            Self::HttpUriTooLong => 414,
            Self::HttpBadMethod
            | Self::HttpBadUri
            | Self::HttpBadVersion
            | Self::HttpMalformed
            | Self::HttpBadContentLength
            | Self::HttpBadTransferEncoding
            | Self::HttpBadMessage => 400,
            _ => 0,
        }
    }

    /// The refusal behind the error an HTTP/1.1 connection ended with, if
    /// it was a parse error (hyper then answered it itself, except the
    /// HTTP/2 preface). hyper's error kinds are private; their messages
    /// are fixed strings, and an unknown one is still a refusal.
    pub fn of_http1_error(e: &hyper::Error) -> Option<Self> {
        if !e.is_parse() {
            return None;
        }
        if e.is_parse_version_h2() {
            return Some(Self::HttpH2Preface);
        }
        Some(match e.to_string().as_str() {
            "message head is too large" => Self::HttpHeadTooLarge,
            "URI too long" => Self::HttpUriTooLong,
            "invalid HTTP method parsed" => Self::HttpBadMethod,
            "invalid URI" => Self::HttpBadUri,
            "invalid HTTP version parsed" => Self::HttpBadVersion,
            "invalid HTTP header parsed" => Self::HttpMalformed,
            "invalid content-length parsed" => Self::HttpBadContentLength,
            "invalid transfer-encoding parsed" | "unexpected transfer-encoding parsed" => {
                Self::HttpBadTransferEncoding
            }
            _ if e.is_parse_too_large() => Self::HttpHeadTooLarge,
            _ => Self::HttpBadMessage,
        })
    }

    /// The refusal an HTTP/2 stream reset sent by the server stands for;
    /// `None` for codes that refuse nothing the client asked (`NO_ERROR`
    /// after a complete response, `CANCEL`, `INTERNAL_ERROR`: ours).
    pub const fn of_h2_reset(code: u32) -> Option<Self> {
        match code {
            0 | 2 | 8 => None,
            1 => Some(Self::H2ProtocolError),
            3 => Some(Self::H2FlowControlError),
            5 => Some(Self::H2StreamClosed),
            7 => Some(Self::H2RefusedStream),
            _ => Some(Self::H2StreamError),
        }
    }
}

/// The client address as recorded, canonicalised as the policy would
/// judge it, and its country (none for Teredo or a NAT64 address with a
/// non-zero u octet, which hide the client).
pub fn locate(ip: IpAddr, geo: &GeoDb, nat64: &Nat64Prefixes) -> (IpAddr, Option<Country>) {
    match canonicalize(ip, nat64) {
        Canonical::Ip(ip) => (ip, geo.country(ip)),
        Canonical::Untraceable(v6) => (IpAddr::V6(v6), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_that_refuse_nothing_are_not_refusals() {
        assert_eq!(Refusal::of_h2_reset(0), None); // NO_ERROR
        assert_eq!(Refusal::of_h2_reset(2), None); // INTERNAL_ERROR
        assert_eq!(Refusal::of_h2_reset(8), None); // CANCEL
        assert_eq!(Refusal::of_h2_reset(1), Some(Refusal::H2ProtocolError));
        assert_eq!(Refusal::of_h2_reset(7), Some(Refusal::H2RefusedStream));
        assert_eq!(Refusal::of_h2_reset(0xb), Some(Refusal::H2StreamError));
    }

    #[test]
    fn reasons_are_distinct_and_indexed() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(
                Refusal::ALL
                    .iter()
                    .filter(|o| o.as_str() == r.as_str())
                    .count(),
                1
            );
        }
    }
}

/// Why the registry refuses a request (403 `AccessDenied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRefusal {
    /// `require_known` and the identity is not listed.
    UnknownIdentity,
    /// The identity is listed with `routes` that do not include this one.
    RouteNotGranted,
    /// The entry's review is overdue and `on_overdue = "refuse"`.
    ReviewOverdue,
}

impl AccessRefusal {
    /// Public contract: header, audit reason and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownIdentity => "unknown_identity",
            Self::RouteNotGranted => "route_not_granted",
            Self::ReviewOverdue => "review_overdue",
        }
    }

    /// The XML `Message`.
    pub const fn message(self) -> &'static str {
        match self {
            Self::UnknownIdentity => "access denied: this identity is not in the identity registry",
            Self::RouteNotGranted => "access denied: this identity is not granted this route",
            Self::ReviewOverdue => "access denied: this identity's periodic review is overdue",
        }
    }
}
