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
//! frames the server writes ([`RefusalWatch`]: a bare `:status` header block
//! ending a stream is h2's own `431`, and resets carry their error code).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

mod budget;
mod frames;

pub use budget::{Admit, Budget};
pub use frames::{BARE_BLOCK, RefusalWatch};

pub use crate::refusal::{NO_ROUTE, REFUSED, Refusal, locate};

use super::client_ip::ClientAddr;
use super::context::ConnInfo;
use super::respond::RequestId;
use crate::audit::{AuditRecord, format_time};
use crate::geo::{Country, label};
use crate::snapshot::{Shared, Snapshot};

/// The `method` of a record whose request line was never parsed.
const NO_METHOD: &str = "-";

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
            let source = if conn.proxy_header {
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
        policy_change: None,
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
    /// Set by the [`RefusalWatch`] of the connection once it recorded a
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

    /// The watch of what this HTTP/2 connection writes.
    pub fn watch(&self) -> RefusalWatch {
        RefusalWatch::new(
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
            // Refusals are seen in the frames ([`RefusalWatch`]), GOAWAY
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
