//! What one request leaves behind: its audit record, its metrics and its
//! place in the live cartography. Gathered while the request is decided,
//! emitted once when its response ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::Request;
use hyper::body::Incoming;

use super::headers::ip_text;
use super::respond::RequestId;
use crate::audit::record::{OperatorFields, SideFields};
use crate::audit::sides::side_fields;
use crate::audit::{AuditRecord, Credential, UNREADABLE, credential, format_time, object_key};
use crate::geo::{Country, Operator, label};
use crate::policy::{Decision, Reason, Rule, Side};
use crate::refusal::{REFUSED, Refusal};
use crate::snapshot::Snapshot;
use crate::transfer::{Fate, SideFacts, refused_rule, rule_key};

/// Most characters of the purpose header kept in a record.
const MAX_PURPOSE: usize = 256;

/// The evidence of one request, filled in as it is decided.
pub struct RequestEvidence {
    /// The request id (also in the response and the XML error bodies).
    pub id: RequestId,
    time: SystemTime,
    start: Instant,
    method: String,
    object_key: Option<String>,
    identity: String,
    /// The purpose of access, from the configured header.
    pub purpose: Option<String>,
    /// Index of the route in the snapshot, once chosen.
    pub route: Option<usize>,
    /// The client address as judged, and its country.
    pub client: Option<(IpAddr, Option<Country>)>,
    /// The client verdict, when it failed the policy.
    pub client_failed: Option<(Decision, Reason)>,
    /// The upstream address the request was sent to, and its country.
    pub upstream: Option<(SocketAddr, Option<Country>)>,
    /// The upstream verdict, when it failed the policy.
    pub upstream_failed: Option<(Decision, Option<Country>, Reason)>,
    /// Request body bytes sent upstream (shared with the body wrapper).
    pub bytes_up: Arc<AtomicU64>,
    /// Set when the request was refused before the policy judged it (or
    /// after, for a missing purpose): its decision is then `refused`.
    pub refused: Option<Refusal>,
    /// The client's operator, when an operator database is configured.
    pub client_operator: Option<Operator>,
    /// The upstream's operator (dialled or refused), likewise.
    pub upstream_operator: Option<Operator>,
    /// The valid grant that admitted the client (index in the snapshot's
    /// `access`), SPEC §9.
    pub grant: Option<usize>,
    /// The rule that decided the client side, once judged.
    pub client_rule: Option<Rule>,
    /// The rule that decided the upstream side (dialled or refused).
    pub upstream_rule: Option<Rule>,
}

impl RequestEvidence {
    /// Starts the evidence of `req`: id, time, method, identity, purpose
    /// and object key are taken before anything else happens to it.
    pub fn start(req: &Request<Incoming>, snap: &Snapshot, mtls_subject: Option<&str>) -> Self {
        let audit = &snap.config.audit;
        let purpose = req
            .headers()
            .get(&audit.purpose_header)
            // UTF-8, not only visible ASCII: "soins médicaux" is a purpose.
            // Bytes that are not UTF-8 are no purpose one can record.
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.chars().take(MAX_PURPOSE).collect());
        // A credential the proxy cannot read is not the mTLS subject's nor
        // anonymous: the storage may act as any key id.
        let identity = match credential(req.headers(), req.uri().query()) {
            Credential::One(id) => id,
            Credential::Unreadable => UNREADABLE.to_owned(),
            Credential::None => mtls_subject.map_or_else(|| "anonymous".to_owned(), str::to_owned),
        };
        Self {
            id: RequestId::next(),
            time: SystemTime::now(),
            start: Instant::now(),
            method: req.method().as_str().to_owned(),
            object_key: object_key(req.uri().path(), audit.object_key),
            identity,
            purpose,
            route: None,
            client: None,
            client_failed: None,
            upstream: None,
            upstream_failed: None,
            bytes_up: Arc::new(AtomicU64::new(0)),
            refused: None,
            client_operator: None,
            upstream_operator: None,
            grant: None,
            client_rule: None,
            upstream_rule: None,
        }
    }

    /// The identity the record names.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The request's decision: blocked if either side was blocked, flagged
    /// if either was flagged, else allowed.
    pub fn decision(&self) -> Decision {
        let sides = [
            self.client_failed.map(|(d, _)| d),
            self.upstream_failed.map(|(d, _, _)| d),
        ];
        if sides.contains(&Some(Decision::Blocked)) {
            Decision::Blocked
        } else if sides.contains(&Some(Decision::Flagged)) {
            Decision::Flagged
        } else {
            Decision::Allowed
        }
    }

    /// The upstream side's country, when there is an upstream side: the
    /// address the request went to, else the one refused.
    fn upstream_country(&self) -> Option<Option<Country>> {
        self.upstream
            .map(|(_, c)| c)
            .or(self.upstream_failed.map(|(_, c, _)| c))
    }

    /// The audit record, for a response with `status` that sent
    /// `bytes_down` body bytes.
    pub fn record(&self, snap: &Snapshot, status: u16, bytes_down: u64) -> AuditRecord {
        let (side, reason) = match (self.refused, self.client_failed, self.upstream_failed) {
            (Some(r), _, _) => (None, Some(r.as_str())),
            (None, Some((_, r)), _) => (Some(Side::Client), Some(r.as_str())),
            (None, None, Some((_, _, r))) => (Some(Side::Upstream), Some(r.as_str())),
            (None, None, None) => (None, None),
        };
        let decision = match self.refused {
            Some(_) => REFUSED,
            None => self.decision().as_str(),
        };
        let route = self
            .route
            .and_then(|i| snap.routes.get(i))
            .map(|r| r.spec.name.clone());
        let upstream_country = self.upstream_country();
        AuditRecord {
            time: format_time(self.time),
            request_id: self.id.text(),
            route,
            method: self.method.clone(),
            object_key: self.object_key.clone(),
            client_ip: self.client.map(|(ip, _)| ip_text(ip)),
            client_country: label(self.client.and_then(|(_, c)| c)).to_owned(),
            identity: self.identity.clone(),
            purpose: self.purpose.clone(),
            upstream_ip: self.upstream.map(|(a, _)| ip_text(a.ip())),
            upstream_country: upstream_country.map(|c| label(c).to_owned()),
            decision: decision.to_owned(),
            side: side.map(|s| s.as_str().to_owned()),
            reason: reason.map(str::to_owned),
            status,
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down,
            duration_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            policy_version: snap.policy_version.clone(),
            client_ip_source: None,
            unrecorded: None,
            operators: OperatorFields {
                client_operator: self.client_operator.map(|o| label(o.country).to_owned()),
                client_asn: self.client_operator.and_then(|o| o.asn),
                upstream_operator: self.upstream_operator.map(|o| label(o.country).to_owned()),
                upstream_asn: self.upstream_operator.and_then(|o| o.asn),
            },
            policy_change: None,
            sides: match self.refused {
                Some(_) => SideFields {
                    client_rule: self.refused_rule(snap).map(|r| rule_key(r).to_owned()),
                    ..SideFields::default()
                },
                None => side_fields(
                    self.side_facts(Side::Client).as_ref(),
                    self.side_facts(Side::Upstream).as_ref(),
                ),
            },
            grant: self
                .grant
                .and_then(|i| snap.access.grant(i))
                .map(|g| g.id.clone()),
            prev: String::new(),
        }
    }

    /// The client's rule on a refusal (see [`refused_rule`]), by the
    /// route's policy once chosen, else the global one.
    fn refused_rule(&self, snap: &Snapshot) -> Option<Rule> {
        let policy = self
            .route
            .and_then(|i| snap.routes.get(i))
            .map_or(&snap.config.policy.policy, |r| &r.spec.policy.policy);
        refused_rule(policy, self.client.map(|(ip, _)| ip))
    }

    /// What happened to the request as a whole, for [`crate::transfer`].
    pub fn fate(&self) -> Fate {
        match (self.refused, self.decision()) {
            (Some(_), _) => Fate::Refused,
            (None, Decision::Blocked) => Fate::Blocked,
            // A client admitted by a signed grant (SPEC §9).
            (None, _) => Fate::Forwarded {
                grant: self.grant.is_some(),
            },
        }
    }

    /// What is known of `side`, as its audit record says it; `None` when
    /// it was not judged (no client address, no upstream address).
    pub fn side_facts(&self, side: Side) -> Option<SideFacts> {
        match side {
            // An untraceable client is of unknown country, as its record says.
            Side::Client => Some(SideFacts {
                location: self.client.and_then(|(_, c)| c),
                operator: self.client_operator.and_then(|o| o.country),
                rule: self.client_rule,
                decision: self.client_failed.map_or(Decision::Allowed, |(d, _)| d),
            }),
            Side::Upstream => {
                let location = self
                    .upstream
                    .map(|(_, c)| c)
                    .or(self.upstream_failed.map(|(_, c, _)| c))?;
                Some(SideFacts {
                    location,
                    operator: self.upstream_operator.and_then(|o| o.country),
                    rule: self.upstream_rule,
                    decision: self
                        .upstream_failed
                        .map_or(Decision::Allowed, |(d, _, _)| d),
                })
            }
        }
    }

    /// Counts the request in the metrics and the live cartography.
    pub fn account(&self, snap: &Snapshot, bytes_down: u64) {
        let up = self.bytes_up.load(Ordering::Relaxed);
        let decision = self.decision();
        let carto = &snap.evidence.cartography;
        let route = self.route.and_then(|i| snap.routes.get(i));
        if let Some(refusal) = self.refused {
            // Refused before it was forwarded: no upstream side, no bytes.
            carto.record_refused(
                Side::Client,
                self.client.and_then(|(_, c)| c),
                self.refused_rule(snap),
            );
            snap.evidence
                .metrics
                .refused(refusal, route.map(|r| &r.metrics));
            if let Some(r) = route {
                r.metrics.duration(self.start.elapsed().as_secs_f64());
            }
            return;
        }
        let fate = self.fate();
        for side in [Side::Client, Side::Upstream] {
            if let Some(facts) = self.side_facts(side) {
                carto.record(side, &facts, fate, up, bytes_down);
                let operator = match side {
                    Side::Client => self.client_operator,
                    Side::Upstream => self.upstream_operator,
                };
                snap.evidence
                    .operated
                    .record(side, &facts, operator, fate, up, bytes_down);
            }
        }
        let Some(route) = route else {
            return;
        };
        let m = &route.metrics;
        m.request(decision);
        if let Some((d, reason)) = self.client_failed {
            m.failed(d, Side::Client, self.client.and_then(|(_, c)| c), reason);
        }
        if let Some((d, country, reason)) = self.upstream_failed {
            m.failed(d, Side::Upstream, country, reason);
        }
        m.bytes(up, bytes_down);
        m.duration(self.start.elapsed().as_secs_f64());
    }
}
