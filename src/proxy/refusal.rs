//! Refusals: requests turned away before any policy verdict, by the proxy
//! (CONNECT, a bad `Host`, no route, …) or by the HTTP layer underneath it
//! (hyper's `400`/`414`/`431` for an unparsable HTTP/1.1 head, h2's `431`
//! and stream resets). Each leaves one audit record with decision
//! [`REFUSED`] and one count, like any request.
//!
//! The HTTP layer's refusals cost a client a few bytes each, so their
//! records are bounded: at most `audit.protocol_error_records` per
//! `audit.protocol_error_window`, process-wide ([`Budget`]). Beyond that
//! each is still counted in the metrics and the live cartography, and one
//! summary record per window says how many were not recorded one by one
//! (field `unrecorded`).
//!
//! hyper gives no hook for what it refuses: HTTP/1.1 refusals are read from
//! the error the connection ends with ([`ConnEnd`]); HTTP/2 ones from the
//! frames the server writes ([`H2Watch`]: a bare `:status` header block
//! ending a stream is h2's own `431`, and resets carry their error code).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

mod budget;
mod frames;

pub use budget::{Admit, Budget};
pub use frames::{BARE_BLOCK, Frame, FrameScan, H2Watch};

use super::client_ip::ClientAddr;
use super::respond::RequestId;
use super::service::ConnInfo;
use crate::audit::{AuditRecord, format_time};
use crate::config::ClientIpSource;
use crate::geo::{Canonical, Country, GeoDb, Nat64Prefixes, canonicalize, label};
use crate::snapshot::{Shared, Snapshot};

/// The decision of a refused request, in the audit record and the
/// `decision` label of `residency_requests_total`: the request was turned
/// away before the policy judged it (it is neither `allowed` nor a policy
/// `blocked`).
pub const REFUSED: &str = "refused";

/// The `route` label of requests refused before a route was chosen (not a
/// valid route name, so it cannot collide with one).
pub const NO_ROUTE: &str = "(none)";

/// The `method` of a record whose request line was never parsed.
const NO_METHOD: &str = "-";

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
}

impl Refusal {
    /// Every refusal, in [`Refusal::index`] order.
    pub const ALL: [Self; 26] = [
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
        }
    }

    /// Position in [`Refusal::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The status the HTTP layer sent for a refusal of its own; `0` when
    /// it sent none (the stream or connection was reset or closed).
    const fn protocol_status(self) -> u16 {
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
    const fn of_h2_reset(code: u32) -> Option<Self> {
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

/// Counts and (within the [`Budget`]) records one refusal by the HTTP
/// layer on `conn`. Its headers were never parsed, so the client is the
/// connection's: the peer, or the PROXY protocol source, named in
/// `client_ip_source`.
pub fn protocol_refusal(conn: &ConnInfo, shared: &Shared, refusal: Refusal) {
    let snap = shared.load();
    let client = match conn.client {
        ClientAddr::Ip(ip) => Some(locate(ip, &snap.geo, &snap.config.nat64_prefixes)),
        ClientAddr::Untraceable => None,
    };
    let ev = &snap.evidence;
    tracing::debug!(peer = %conn.peer, reason = refusal.as_str(), "request refused by the HTTP layer");
    if let Some(sink) = &ev.audit {
        write(conn, shared, &snap, sink, client, refusal);
    }
    let rule = crate::transfer::refused_rule(&snap.config.policy.policy, client.map(|(ip, _)| ip));
    ev.cartography.record_refused(
        crate::policy::Side::Client,
        client.and_then(|(_, c)| c),
        rule,
    );
    // Counted last: once the count shows, its record (or drop) is done.
    ev.metrics.refused(refusal, None);
}

/// Writes the record of a refusal by the HTTP layer, or counts it dropped.
fn write(
    conn: &ConnInfo,
    shared: &Shared,
    snap: &Snapshot,
    sink: &crate::audit::writer::AuditSink,
    client: Option<(IpAddr, Option<Country>)>,
    refusal: Refusal,
) {
    let audit = &snap.config.audit;
    match BUDGET.admit(
        audit.protocol_error_records,
        audit.protocol_error_window,
        Instant::now(),
    ) {
        Admit::Record => {
            let source = if snap.config.server.client_ip_source == ClientIpSource::ProxyProtocol
                && conn.peer_trusted
            {
                "proxy-protocol"
            } else {
                "peer"
            };
            let mut r = record(snap, refusal.as_str(), refusal.protocol_status());
            r.client_ip = client.map(|(ip, _)| ip.to_string());
            r.client_country = label(client.and_then(|(_, c)| c)).to_owned();
            r.client_ip_source = Some(source.to_owned());
            r.sides.client_rule =
                crate::transfer::refused_rule(&snap.config.policy.policy, client.map(|(ip, _)| ip))
                    .map(|rule| crate::transfer::rule_key(rule).to_owned());
            sink.write_detached(r);
        }
        Admit::Drop { summary_at } => {
            snap.evidence.metrics.protocol_errors_dropped.inc();
            if let (Some(at), Ok(rt)) = (summary_at, tokio::runtime::Handle::try_current()) {
                // Owned by the worker's runtime; at exit it is dropped and
                // the count stays in the metric.
                let shared = shared.clone();
                rt.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    summarise(&shared);
                });
            }
        }
    }
}

/// The `reason` of a summary record.
pub const UNRECORDED: &str = "protocol_errors_unrecorded";

/// Writes the summary record of the refusals dropped since the last one.
fn summarise(shared: &Shared) {
    let Some((n, since)) = BUDGET.take_dropped() else {
        return;
    };
    let snap = shared.load();
    if let Some(sink) = &snap.evidence.audit {
        let mut r = record(&snap, UNRECORDED, 0);
        r.time = format_time(since);
        r.unrecorded = Some(n);
        sink.write_detached(r);
    }
}

/// A refusal record with what is known before any header was parsed.
fn record(snap: &Snapshot, reason: &str, status: u16) -> AuditRecord {
    AuditRecord {
        time: format_time(SystemTime::now()),
        request_id: RequestId::next().to_string(),
        route: None,
        method: NO_METHOD.to_owned(),
        object_key: None,
        client_ip: None,
        client_country: label(None).to_owned(),
        identity: "anonymous".to_owned(),
        purpose: None,
        upstream_ip: None,
        upstream_country: None,
        decision: REFUSED.to_owned(),
        side: None,
        reason: Some(reason.to_owned()),
        status,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
        policy_version: snap.policy_version.clone(),
        client_ip_source: None,
        unrecorded: None,
        operators: Default::default(),
        sides: Default::default(),
        grant: None,
        prev: String::new(),
    }
}

/// The process-wide budget of protocol-error records.
static BUDGET: Budget = Budget::new();

/// Reports how a client connection ended: a refusal by the HTTP/1.1 layer
/// is counted and recorded, anything else is logged at debug level.
pub struct ConnEnd {
    conn: Arc<ConnInfo>,
    shared: Shared,
    h2: bool,
    /// Set by the [`H2Watch`] of the connection once it recorded a
    /// `GOAWAY` with an error code.
    goaway_recorded: Arc<AtomicBool>,
}

impl ConnEnd {
    /// For the connection `conn`, served over HTTP/2 if `h2`.
    pub fn new(conn: Arc<ConnInfo>, shared: Shared, h2: bool) -> Self {
        Self {
            conn,
            shared,
            h2,
            goaway_recorded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Watches the HTTP/2 stream `io` of this connection.
    pub fn watch<I>(&self, io: I) -> H2Watch<I> {
        H2Watch::new(
            io,
            self.conn.clone(),
            self.shared.clone(),
            self.goaway_recorded.clone(),
        )
    }

    /// The connection future returned `r`.
    pub fn ended(&self, r: Result<(), hyper::Error>) {
        let Err(e) = r else {
            return;
        };
        tracing::debug!(peer = %self.conn.peer, error = %e, "client connection ended with an error");
        let refusal = if self.h2 {
            // Refusals are seen in the frames ([`H2Watch`]), GOAWAY
            // included; h2 writes none for a bad preface, though.
            h2_connection_refused(&e).filter(|_| !self.goaway_recorded.load(Ordering::Relaxed))
        } else {
            Refusal::of_http1_error(&e)
        };
        if let Some(refusal) = refusal {
            protocol_refusal(&self.conn, &self.shared, refusal);
        }
    }
}

/// A connection error h2 raised against the client (a protocol violation
/// such as a bad preface), not an I/O error or the client's own `GOAWAY`.
fn h2_connection_refused(e: &hyper::Error) -> Option<Refusal> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2e) = s.downcast_ref::<::h2::Error>() {
            return (h2e.is_library() && h2e.reason().is_some_and(|r| r != ::h2::Reason::NO_ERROR))
                .then_some(Refusal::H2ConnectionError);
        }
        source = s.source();
    }
    None
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
