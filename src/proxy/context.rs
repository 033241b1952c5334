//! What a request carries through its phases ([`RequestCtx`]): the
//! snapshot it took when it arrived, what its connection knows about the
//! client ([`ConnInfo`]), the client address, its id and its evidence; and
//! the one way a failing verdict is logged. Used by the service (the
//! phases) and by the forwarding side, which do not import each other.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use super::client_ip::{ClientAddr, client_addr, is_trusted};
use super::evidence::RequestEvidence;
use super::respond::RequestId;
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::refusal::{Refusal, locate};
use crate::snapshot::{Route, Snapshot};

/// What the connection knows about its client.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// The untrusted peer; from a trusted peer, the address it announced
    /// with PROXY protocol, or what a trusted proxy naming no client stands
    /// for (`trusted_proxy_without_client`; see `client_ip::client_addr`).
    pub client: ClientAddr,
    /// Whether `client` came from a PROXY protocol header (read from a
    /// peer trusted when the connection was accepted).
    pub proxy_header: bool,
    /// The verified mTLS client certificate subject, if any.
    pub mtls_subject: Option<String>,
}

/// The audit status of a request abandoned before its response existed
/// (nginx's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// One request on its way through the phases (admit, route, judge client,
/// forward, finish; see the crate documentation).
///
/// It holds the snapshot taken when the request arrived, for the whole
/// request and no longer: each request of a connection takes the current
/// one. If the request is abandoned before a response exists (the client
/// went away, or its connection timed out while the upstream was still
/// silent), dropping the context writes its record anyway, with status
/// [`CLIENT_CLOSED_REQUEST`]: the request may already have reached the
/// storage, and every request leaves a record.
pub struct RequestCtx {
    /// The snapshot the request is decided and forwarded under.
    pub snap: Arc<Snapshot>,
    /// What the connection knows.
    pub conn: Arc<ConnInfo>,
    /// Whether the peer is a trusted proxy under this snapshot's
    /// `trusted_proxies`.
    pub peer_trusted: bool,
    /// The client, as the policy will judge it.
    pub client: ClientAddr,
    /// The request id.
    pub id: RequestId,
    /// The request path, for error bodies.
    pub resource: String,
    /// Whether the request is a HEAD (error bodies are then empty).
    pub head: bool,
    /// The request's host, once the route phase has read it.
    pub host: String,
    /// Every route a reading of the path or of the copy source leads to,
    /// noted by the route phase.
    pub readings: super::route::Readings,
    /// The copy source: the route its path leads to and that path, noted
    /// by the route phase.
    pub copy_source: Option<(Option<usize>, String)>,
    ev: Option<RequestEvidence>,
}

impl RequestCtx {
    /// The context of `req`, under the current snapshot `snap`: its
    /// evidence starts now (id, time, method, identity, purpose, key).
    pub fn new(req: &Request<Incoming>, conn: Arc<ConnInfo>, snap: Arc<Snapshot>) -> Self {
        let server = &snap.config.server;
        let peer_trusted = is_trusted(conn.peer.ip(), &server.trusted_proxies);
        let client = client_addr(
            conn.peer,
            conn.client,
            req.headers(),
            server.client_ip_source,
            &server.trusted_proxies,
        );
        let ev = RequestEvidence::start(req, &snap, conn.mtls_subject.as_deref());
        Self {
            peer_trusted,
            client,
            id: ev.id,
            resource: req.uri().path().to_owned(),
            head: req.method() == http::Method::HEAD,
            host: String::new(),
            readings: super::route::Readings::default(),
            copy_source: None,
            ev: Some(ev),
            snap,
            conn,
        }
    }

    /// The evidence, while the request is decided.
    pub fn evidence(&self) -> &RequestEvidence {
        self.ev.as_ref().expect("taken only by decided()")
    }

    /// The evidence, while the request is decided, to write into.
    pub fn ev(&mut self) -> &mut RequestEvidence {
        self.ev.as_mut().expect("taken only by decided()")
    }

    /// The evidence, now that a response exists to carry it.
    pub fn decided(&mut self) -> RequestEvidence {
        self.ev.take().expect("taken only once")
    }

    /// The chosen route, once the route phase chose one. Borrowed from
    /// `snap` (the context's own, cloned), so the evidence stays writable.
    pub fn route<'s>(&self, snap: &'s Snapshot) -> Option<&'s Route> {
        snap.routes.get(self.ev.as_ref()?.route?)
    }

    /// Records that the request is refused: the refusal, and who was
    /// refused from where (the address as the policy would judge it, and
    /// its country, looked up only when refusing: the verdict looks it up
    /// otherwise).
    pub fn refuse(&mut self, refusal: Refusal) {
        let client = self.client;
        let snap = self.snap.clone();
        let ev = self.ev();
        ev.refused = Some(refusal);
        if let (None, ClientAddr::Ip(ip)) = (ev.client, client) {
            ev.client = Some(locate(ip, &snap.geo, &snap.config.nat64_prefixes));
        }
    }

    /// Logs a failing verdict once: `info` when blocked, `warn` when
    /// flagged, as fields.
    pub fn log_verdict(
        &self,
        decision: Decision,
        side: Side,
        route: &str,
        v: &Verdict,
        reason: Reason,
    ) {
        log_verdict(decision, side, route, v, reason, self.id, &self.conn);
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        let Some(ev) = self.ev.take() else {
            return;
        };
        ev.account(&self.snap, 0);
        if let Some(sink) = &self.snap.evidence.audit {
            sink.write_detached(ev.record(&self.snap, CLIENT_CLOSED_REQUEST, 0));
        }
    }
}

/// Logs a failing verdict once: `info` when blocked, `warn` when flagged,
/// as fields.
fn log_verdict(
    decision: Decision,
    side: Side,
    route: &str,
    v: &Verdict,
    reason: Reason,
    id: RequestId,
    conn: &ConnInfo,
) {
    let country = label(v.country);
    let ip = v.ip.map(|ip| ip.to_string());
    let peer = conn.peer.ip();
    match decision {
        Decision::Blocked => tracing::info!(
            decision = decision.as_str(), side = side.as_str(), route, country, reason = reason.as_str(),
            request_id = %id, ip = ip.as_deref().unwrap_or("untraceable"), %peer, "request blocked"
        ),
        _ => tracing::warn!(
            decision = decision.as_str(), side = side.as_str(), route, country, reason = reason.as_str(),
            request_id = %id, ip = ip.as_deref().unwrap_or("untraceable"), %peer, "request flagged"
        ),
    }
}
