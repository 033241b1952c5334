//! Prometheus metrics (SPEC §5). One process-wide [`Metrics`] (counters
//! survive reloads); each snapshot resolves its routes' label handles up
//! front ([`RouteMetrics`]), so counting a request is an atomic add, never a
//! label lookup under a lock. Per-country series are created on first use
//! through lock-free `OnceLock` cells, so only countries actually seen are
//! exported. Label values are bounded: route names, fixed words, ISO codes
//! or `unknown` — never addresses, paths or keys.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::geo::{COUNTRY_SLOTS, Country, label, slot};
use crate::policy::{Decision, Reason, Side};
use crate::refusal::{NO_ROUTE, REFUSED, Refusal};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    blocked: IntCounterVec,
    flagged: IntCounterVec,
    bytes: IntCounterVec,
    duration: HistogramVec,
    upstream_rejected: IntCounterVec,
    /// `residency_geoip_database_build_timestamp_seconds`
    pub geoip_build: IntGauge,
    /// `residency_geoip_operator_database_build_timestamp_seconds`: only
    /// while an operator database is configured (no labels; absent, not 0,
    /// without one, so a staleness alert cannot fire on nothing).
    operator_build: IntGaugeVec,
    reloads: IntCounterVec,
    /// `residency_audit_records_total`
    pub audit_records: IntCounter,
    /// `residency_audit_write_errors_total`
    pub audit_write_errors: IntCounter,
    /// `residency_audit_refused_requests_total`: requests answered 503
    /// because the audit trail could not be written (fail-closed).
    pub audit_refused: IntCounter,
    policy_info: IntGaugeVec,
    /// `residency_tls_handshake_failures_total`: refused or failed TLS
    /// handshakes (including missing or untrusted client certificates).
    pub tls_handshake_failures: IntCounter,
    /// `residency_tls_certificate_expiry_timestamp_seconds{name}`
    tls_expiry: IntGaugeVec,
    /// `residency_requests_total{route="(none)",decision="refused"}`.
    refused_no_route: IntCounter,
    /// `residency_refused_requests_total{reason}`, in [`Refusal::ALL`] order.
    refused_by: Box<[IntCounter]>,
    /// `residency_audit_protocol_errors_dropped_total`: refusals by the HTTP
    /// layer over the record budget, counted but not recorded one by one.
    pub protocol_errors_dropped: IntCounter,
    /// `residency_audit_export_spool_bytes`: closed audit segments (and
    /// their checkpoint files) not yet acknowledged by the export store.
    pub export_spool_bytes: IntGauge,
    /// `residency_audit_export_uploads_total`: files the store acknowledged.
    pub export_uploads: IntCounter,
    /// `residency_audit_export_failures_total`: upload attempts that failed.
    pub export_failures: IntCounter,
    /// `residency_grant_requests_total{route,grant}` (SPEC §9).
    pub grant_requests: IntCounterVec,
    /// `residency_identity_overdue_requests_total`: requests by an identity
    /// whose registry review is overdue (served or refused per `on_overdue`).
    pub identity_overdue: IntCounter,
}

/// The commit the binary was built from: `RESIDENCY_PROXY_COMMIT` in the
/// build's environment (`RESIDENCY_PROXY_COMMIT=$(git rev-parse --short HEAD)
/// cargo build`), else `unknown` (a build from a source archive).
pub const COMMIT: &str = match option_env!("RESIDENCY_PROXY_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(v.clone()))
        .expect("metric names are unique");
    v
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "residency_request_duration_seconds",
                "Time from request headers to the end of the response body, in seconds.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        r.register(Box::new(duration.clone()))
            .expect("metric names are unique");
        let export_spool_bytes = IntGauge::new(
            "residency_audit_export_spool_bytes",
            "Bytes of closed audit segments and checkpoint files waiting for the export store's acknowledgement.",
        )
        .expect("static metric definition");
        r.register(Box::new(export_spool_bytes.clone()))
            .expect("metric names are unique");
        let geoip_build = IntGauge::new(
            "residency_geoip_database_build_timestamp_seconds",
            "Build time of the GeoIP database in use, in seconds since the Unix epoch.",
        )
        .expect("static metric definition");
        r.register(Box::new(geoip_build.clone()))
            .expect("metric names are unique");
        let operator_build = IntGaugeVec::new(
            Opts::new(
                "residency_geoip_operator_database_build_timestamp_seconds",
                "Build time of the operator database in use ([geoip] operator_database), in seconds since the Unix epoch; absent without one.",
            ),
            &[],
        )
        .expect("static metric definition");
        r.register(Box::new(operator_build.clone()))
            .expect("metric names are unique");
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "residency_policy_info",
                "The policy version in force (short hash of the compiled policy and database build); value 1.",
            ),
            &["version"],
        )
        .expect("static metric definition");
        r.register(Box::new(policy_info.clone()))
            .expect("metric names are unique");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "residency_build_info",
                "The running binary: its version and the commit it was built from; value 1.",
            ),
            &["version", "commit"],
        )
        .expect("static metric definition");
        r.register(Box::new(build_info.clone()))
            .expect("metric names are unique");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), COMMIT])
            .set(1);
        let tls_expiry = IntGaugeVec::new(
            Opts::new(
                "residency_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each server certificate (default, first SNI name) and of the client CA, in seconds since the Unix epoch.",
            ),
            &["name"],
        )
        .expect("static metric definition");
        r.register(Box::new(tls_expiry.clone()))
            .expect("metric names are unique");
        let requests = counter_vec(
            &r,
            "residency_requests_total",
            "Requests by route and decision (refused: turned away before the policy judged them; route \"(none)\" before a route was chosen).",
            &["route", "decision"],
        );
        let refused = counter_vec(
            &r,
            "residency_refused_requests_total",
            "Requests refused before the policy judged them, by reason (HTTP layer and proxy).",
            &["reason"],
        );
        Self {
            refused_no_route: requests.with_label_values(&[NO_ROUTE, REFUSED]),
            refused_by: Refusal::ALL
                .iter()
                .map(|x| refused.with_label_values(&[x.as_str()]))
                .collect(),
            protocol_errors_dropped: counter(
                &r,
                "residency_audit_protocol_errors_dropped_total",
                "Refusals by the HTTP layer over audit.protocol_error_records: counted, summarised, not recorded one by one.",
            ),
            requests,
            blocked: counter_vec(
                &r,
                "residency_blocked_transfers_total",
                "Requests refused by the policy, by route, side, country and reason.",
                &["route", "side", "country", "reason"],
            ),
            flagged: counter_vec(
                &r,
                "residency_flagged_transfers_total",
                "Requests that failed the policy in monitor mode and passed, by route, side, country and reason.",
                &["route", "side", "country", "reason"],
            ),
            bytes: counter_vec(
                &r,
                "residency_transfer_bytes_total",
                "Body bytes proxied, by route and direction (upload: client to storage).",
                &["route", "direction"],
            ),
            duration,
            upstream_rejected: counter_vec(
                &r,
                "residency_upstream_ips_rejected_total",
                "Resolved upstream addresses the policy rejected, by route and country.",
                &["route", "country"],
            ),
            geoip_build,
            reloads: counter_vec(
                &r,
                "residency_config_reloads_total",
                "Reloads by result.",
                &["result"],
            ),
            audit_records: counter(
                &r,
                "residency_audit_records_total",
                "Audit records written.",
            ),
            audit_write_errors: counter(
                &r,
                "residency_audit_write_errors_total",
                "Failed audit writes.",
            ),
            audit_refused: counter(
                &r,
                "residency_audit_refused_requests_total",
                "Requests refused with 503 because the audit trail could not be written.",
            ),
            policy_info,
            operator_build,
            tls_handshake_failures: counter(
                &r,
                "residency_tls_handshake_failures_total",
                "TLS handshakes that failed or were refused (e.g. no or untrusted client certificate).",
            ),
            tls_expiry,
            export_spool_bytes,
            export_uploads: counter(
                &r,
                "residency_audit_export_uploads_total",
                "Closed audit segments and checkpoint files the export store acknowledged.",
            ),
            export_failures: counter(
                &r,
                "residency_audit_export_failures_total",
                "Audit export upload attempts that failed (refused address, connection, or a non-200 answer).",
            ),
            grant_requests: counter_vec(
                &r,
                "residency_grant_requests_total",
                "Requests refused by country that a valid signed grant admitted, by route and grant id.",
                &["route", "grant"],
            ),
            identity_overdue: counter(
                &r,
                "residency_identity_overdue_requests_total",
                "Requests by an identity whose registry review is overdue.",
            ),
            registry: r,
        }
    }

    /// Label handles for one route.
    pub fn route(&self, name: &str) -> RouteMetrics {
        let decisions = [Decision::Allowed, Decision::Blocked, Decision::Flagged]
            .map(|d| self.requests.with_label_values(&[name, d.as_str()]));
        RouteMetrics {
            name: name.to_owned(),
            requests: decisions,
            refused: self.requests.with_label_values(&[name, REFUSED]),
            upload: self.bytes.with_label_values(&[name, "upload"]),
            download: self.bytes.with_label_values(&[name, "download"]),
            duration: self.duration.with_label_values(&[name]),
            blocked: Cells::new(self.blocked.clone()),
            flagged: Cells::new(self.flagged.clone()),
            rejected: (0..COUNTRY_SLOTS).map(|_| OnceLock::new()).collect(),
            rejected_vec: self.upstream_rejected.clone(),
        }
    }

    /// Counts one refused request: on `route` if one was chosen, else on
    /// route `(none)`; and by reason.
    pub fn refused(&self, refusal: Refusal, route: Option<&RouteMetrics>) {
        match route {
            Some(m) => m.refused.inc(),
            None => self.refused_no_route.inc(),
        }
        if let Some(c) = self.refused_by.get(refusal.index()) {
            c.inc();
        }
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Publishes the policy version now in force (and drops the old one).
    /// Exports the operator database's build time, or nothing when there
    /// is none (after a reload that removed it, too).
    pub fn set_operator_build(&self, epoch: Option<u64>) {
        self.operator_build.reset();
        if let Some(epoch) = epoch {
            self.operator_build
                .with_label_values::<&str>(&[])
                .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        }
    }

    pub fn set_policy_version(&self, version: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
    }

    /// Publishes the certificates in force (and drops those no longer
    /// configured). A certificate whose expiry could not be read is left out.
    pub fn set_certificate_expiries(&self, certs: &[crate::tls::CertExpiry]) {
        self.tls_expiry.reset();
        for c in certs {
            if let Some(t) = c.not_after {
                self.tls_expiry.with_label_values(&[&c.name]).set(t);
            }
        }
    }

    /// Pre-creates the reload series so both results export 0 from start.
    pub fn init_reloads(&self) {
        self.reloads.with_label_values(&["success"]);
        self.reloads.with_label_values(&["failure"]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Per-(side, reason, country) counters, created on first use.
struct Cells {
    vec: IntCounterVec,
    cells: Box<[OnceLock<IntCounter>]>,
}

impl Cells {
    fn new(vec: IntCounterVec) -> Self {
        let n = 2 * Reason::ALL.len() * COUNTRY_SLOTS;
        Self {
            vec,
            cells: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    fn inc(&self, route: &str, side: Side, country: Option<Country>, reason: Reason) {
        let side_i = usize::from(side == Side::Upstream);
        let reason_i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        let i = (side_i * Reason::ALL.len() + reason_i) * COUNTRY_SLOTS + slot(country);
        if let Some(cell) = self.cells.get(i) {
            cell.get_or_init(|| {
                self.vec
                    .with_label_values(&[route, side.as_str(), label(country), reason.as_str()])
            })
            .inc();
        }
    }
}

/// One route's pre-resolved handles.
pub struct RouteMetrics {
    name: String,
    requests: [IntCounter; 3],
    refused: IntCounter,
    upload: IntCounter,
    download: IntCounter,
    duration: Histogram,
    blocked: Cells,
    flagged: Cells,
    rejected: Box<[OnceLock<IntCounter>]>,
    rejected_vec: IntCounterVec,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.name)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// Counts one request's decision.
    #[inline]
    pub fn request(&self, decision: Decision) {
        let i = match decision {
            Decision::Allowed => 0,
            Decision::Blocked => 1,
            Decision::Flagged => 2,
        };
        self.requests[i].inc();
    }

    /// Counts a blocked or flagged transfer (allowed ones are not counted here).
    pub fn failed(&self, decision: Decision, side: Side, country: Option<Country>, reason: Reason) {
        match decision {
            Decision::Blocked => self.blocked.inc(&self.name, side, country, reason),
            Decision::Flagged => self.flagged.inc(&self.name, side, country, reason),
            Decision::Allowed => {}
        }
    }

    /// Counts a rejected upstream address.
    pub fn upstream_rejected(&self, country: Option<Country>) {
        if let Some(cell) = self.rejected.get(slot(country)) {
            cell.get_or_init(|| {
                self.rejected_vec
                    .with_label_values(&[&self.name, label(country)])
            })
            .inc();
        }
    }

    /// Adds proxied body bytes.
    pub fn bytes(&self, up: u64, down: u64) {
        self.upload.inc_by(up);
        self.download.inc_by(down);
    }

    /// Observes a request's duration.
    pub fn duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
}
