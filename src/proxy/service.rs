//! One request, start to end: snapshot, route, client verdict, then either a
//! refusal (before any body byte is read, so `Expect: 100-continue` uploads
//! nothing) or the forward to a judged upstream address with both bodies
//! streaming; and, whatever happened, its evidence (metrics, cartography,
//! audit record) before the response completes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::client_ip::{ClientAddr, client_addr};
use super::evidence::RequestEvidence;
use super::forward::{Forwarded, forward};
use super::refusal::{Refusal, locate};
use super::respond::{self, Body, DECISION_HEADER, Generated, REQUEST_ID_HEADER, RequestId};
use super::route::{self, Unroutable};
use crate::body::Audited;
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::snapshot::{Shared, Snapshot};

/// What the connection knows about its client.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// The untrusted peer; from a trusted peer, the address it announced
    /// with PROXY protocol, or what a trusted proxy naming no client stands
    /// for (`trusted_proxy_without_client`; see `client_ip::client_addr`).
    pub client: ClientAddr,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The verified mTLS client certificate subject, if any.
    pub mtls_subject: Option<String>,
}

/// Handles one request. Never fails: every failure becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Shared,
) -> Result<Response<Body>, Infallible> {
    let snap = shared.load_full();
    let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let head = req.method() == Method::HEAD;
    let resource = req.uri().path().to_owned();
    let ev = RequestEvidence::start(&req, &snap, conn.mtls_subject.as_deref());
    let id = ev.id;
    let mut pending = Pending {
        ev: Some(ev),
        snap: snap.clone(),
    };
    let decided = decide(req, &conn, &snap, pending.ev(), &resource, head).await;
    let (mut rsp, refused) = match decided {
        Forwarded::Proxied(rsp, timeout) if holds(&rsp, head) => {
            held(rsp, timeout, pending, snap, &resource, head).await
        }
        Forwarded::Proxied(rsp, _) => (audited(rsp, pending.decided(), snap), false),
        Forwarded::Refused(rsp) => {
            let ev = pending.decided();
            (
                finish_generated(rsp, ev, &snap, &resource, head).await,
                true,
            )
        }
    };
    rsp.headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), id.header_value());
    if has_body && refused {
        // A refusal leaves the request body unread: close the connection
        // rather than guess where the next request starts.
        rsp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(rsp)
}

/// The audit status of a request abandoned before its response existed
/// (nginx's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request's evidence while it is decided and forwarded. If the request
/// is abandoned before a response exists (the client went away, or its
/// connection timed out while the upstream was still silent), its record is
/// written anyway, with status [`CLIENT_CLOSED_REQUEST`]: the request may
/// already have reached the storage, and every request leaves a record.
struct Pending {
    ev: Option<RequestEvidence>,
    snap: Arc<Snapshot>,
}

impl Pending {
    fn ev(&mut self) -> &mut RequestEvidence {
        self.ev.as_mut().expect("taken only by decided()")
    }

    /// The evidence, now that a response exists to carry it.
    fn decided(mut self) -> RequestEvidence {
        self.ev.take().expect("taken only once")
    }
}

impl Drop for Pending {
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

/// A generated response: its record is written before it is sent; if that
/// fails and the policy is fail-closed, the client gets 503 instead.
async fn finish_generated(
    rsp: Response<Generated>,
    ev: RequestEvidence,
    snap: &Snapshot,
    resource: &str,
    head: bool,
) -> Response<Body> {
    if !trace(&ev, snap, rsp.status().as_u16(), 0).await {
        return audit_unavailable(resource, ev.id, head).map(Either::Right);
    }
    rsp.map(Either::Right)
}

/// Counts the request and writes its record. False when the record could
/// not be written and the policy is fail-closed (the response must not
/// complete; counted as refused).
async fn trace(ev: &RequestEvidence, snap: &Snapshot, status: u16, bytes_down: u64) -> bool {
    ev.account(snap, bytes_down);
    let Some(sink) = &snap.evidence.audit else {
        return true;
    };
    if sink.write(ev.record(snap, status, bytes_down)).await || !snap.config.audit.fail_closed {
        return true;
    }
    snap.evidence.metrics.audit_refused.inc();
    false
}

fn audit_unavailable(resource: &str, id: RequestId, head: bool) -> Response<Generated> {
    respond::xml_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the access trace cannot be recorded; requests are refused until it can",
        resource,
        id,
        head,
    )
}

/// Largest upstream body held back whole: its record is written before the
/// response head goes out, so the response leaves in one write and the
/// record can share a batch with others; larger bodies stream.
const HOLD_MAX: u64 = 64 * 1024;

/// Whether an upstream response is small enough to hold back: a
/// `Content-Length` body of at most [`HOLD_MAX`], not the answer to HEAD.
fn holds(rsp: &Response<Incoming>, head: bool) -> bool {
    let status = rsp.status();
    !(head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
        && hyper::body::Body::size_hint(rsp.body())
            .exact()
            .is_some_and(|n| n <= HOLD_MAX)
}

/// A small proxied response, read whole (within the route's response
/// timeout), recorded, then sent. Nothing has reached the client yet, so an
/// upstream failing mid-body becomes a clean 502 (504 if it stalls), and an
/// unwritable record a 503 under fail-closed. Returns the response and
/// whether the proxy answered itself.
async fn held(
    rsp: Response<Incoming>,
    timeout: std::time::Duration,
    mut pending: Pending,
    snap: Arc<Snapshot>,
    resource: &str,
    head: bool,
) -> (Response<Body>, bool) {
    let status = rsp.status().as_u16();
    let (parts, body) = rsp.into_parts();
    let id = pending.ev().id;
    // Dropped while reading (client gone), `pending` still writes the record.
    let read = tokio::time::timeout(timeout, http_body_util::BodyExt::collect(body)).await;
    let ev = pending.decided();
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        failed => {
            let timed_out = failed.is_err();
            tracing::warn!(request_id = %id, timed_out, "upstream response body failed before its end");
            let rsp = respond::upstream_failed(timed_out, resource, id, head);
            return (finish_generated(rsp, ev, &snap, resource, head).await, true);
        }
    };
    if !trace(&ev, &snap, status, bytes.len() as u64).await {
        return (
            audit_unavailable(resource, id, head).map(Either::Right),
            true,
        );
    }
    (
        Response::from_parts(parts, Either::Right(Generated::new(bytes))),
        false,
    )
}

/// A proxied response: its body streams through [`Audited`], which writes
/// the record when the body ends (or is dropped).
fn audited(rsp: Response<Incoming>, ev: RequestEvidence, snap: Arc<Snapshot>) -> Response<Body> {
    let status = rsp.status().as_u16();
    let shared = Arc::new((ev, snap));
    let on_end = shared.clone();
    let complete: crate::body::Completion = Box::new(move |down, _completed| {
        Box::pin(async move {
            let (ev, snap) = &*on_end;
            trace(ev, snap, status, down).await
        })
    });
    let on_drop: crate::body::OnDrop = Box::new(move |down| {
        let (ev, snap) = &*shared;
        ev.account(snap, down);
        if let Some(sink) = &snap.evidence.audit {
            sink.write_detached(ev.record(snap, status, down));
        }
    });
    rsp.map(|body| Either::Left(Audited::new(body, complete, on_drop)))
}

async fn decide(
    req: Request<Incoming>,
    conn: &ConnInfo,
    snap: &Snapshot,
    ev: &mut RequestEvidence,
    resource: &str,
    head: bool,
) -> Forwarded {
    let id = ev.id;
    // The client first: every refusal below records who was refused, from
    // where (the address as the policy would judge it, and its country,
    // looked up only when refusing: the verdict looks it up otherwise).
    let server = &snap.config.server;
    let client = client_addr(
        conn.peer,
        conn.client,
        req.headers(),
        server.client_ip_source,
        &server.trusted_proxies,
    );
    let refuse = |ev: &mut RequestEvidence, refusal| {
        ev.refused = Some(refusal);
        if let (None, ClientAddr::Ip(ip)) = (ev.client, client) {
            ev.client = Some(locate(ip, &snap.geo, &snap.config.nat64_prefixes));
        }
    };
    let bad = |ev: &mut RequestEvidence, refusal, code: &str, msg: &str, status| {
        refuse(ev, refusal);
        Forwarded::Refused(respond::xml_error(status, code, msg, resource, id, head))
    };

    if let Some(sink) = &snap.evidence.audit
        && snap.config.audit.fail_closed
        && !sink.is_healthy()
    {
        snap.evidence.metrics.audit_refused.inc();
        refuse(ev, Refusal::AuditUnavailable);
        return Forwarded::Refused(audit_unavailable(resource, id, head));
    }
    if req.method() == Method::CONNECT {
        return bad(
            ev,
            Refusal::MethodNotAllowed,
            "MethodNotAllowed",
            "CONNECT is not supported by this proxy",
            StatusCode::METHOD_NOT_ALLOWED,
        );
    }
    if req.headers().len() > server.max_headers {
        // hyper enforces max_headers on HTTP/1.1 only; h2 bounds the bytes
        // (max_header_bytes) but not the count.
        return bad(
            ev,
            Refusal::TooManyHeaders,
            "RequestHeaderFieldsTooLarge",
            "too many header fields",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        );
    }
    if !framing_is_plain(&req) {
        return bad(
            ev,
            Refusal::BadTransferEncoding,
            "InvalidRequest",
            "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
            StatusCode::BAD_REQUEST,
        );
    }
    let Some(host) = request_host(&req) else {
        return bad(
            ev,
            Refusal::BadHost,
            "InvalidRequest",
            "missing, repeated or invalid Host header",
            StatusCode::BAD_REQUEST,
        );
    };
    // Matched on what the storage will act on (proxy::route); forwarded as sent.
    let routes = snap.routes.iter().map(|r| &r.spec);
    let chosen = route::choose(
        routes,
        &snap.config.server.s3_domains,
        &host,
        req.uri().path(),
    )
    .and_then(|chosen| {
        let sources = route::copy_sources(req.headers(), req.uri().query());
        let sources = sources.iter().map(AsRef::as_ref);
        let routes = snap.routes.iter().map(|r| &r.spec);
        route::with_copy_source(
            routes,
            &snap.config.server.s3_domains,
            &host,
            sources,
            chosen,
        )
    });
    let index = match chosen {
        Ok(Some(index)) => index,
        Ok(None) => {
            return bad(
                ev,
                Refusal::NoRoute,
                "NoSuchRoute",
                "no route of this proxy matches the host and path",
                StatusCode::NOT_FOUND,
            );
        }
        Err(why) => {
            let refusal = match why {
                Unroutable::BadPercent => Refusal::BadPathEncoding,
                Unroutable::BadHost => Refusal::BadHost,
                Unroutable::Ambiguous => Refusal::AmbiguousTarget,
            };
            return bad(
                ev,
                refusal,
                why.code(),
                why.message(),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    ev.route = Some(index);
    let route = &snap.routes[index];
    let policy = &route.spec.policy.policy;
    let verdict = match client {
        ClientAddr::Ip(ip) => {
            policy.judge_side(ip, Side::Client, &snap.geo, snap.operators.as_ref())
        }
        ClientAddr::Untraceable => Verdict::untraceable(),
    };
    ev.client = verdict.ip.map(|ip| (ip, verdict.country));
    ev.client_operator = snap.operators.as_ref().map(|_| verdict.operator);
    ev.client_rule = Some(verdict.rule);
    let decision = policy.decide(&verdict);
    // A failing verdict is recorded and logged once; enforce refuses here,
    // monitor lets the request on with the flag in the response.
    let flag = match verdict.reason.filter(|_| decision != Decision::Allowed) {
        None => {
            tracing::trace!(route = %route.spec.name, request_id = %id, "client allowed");
            None
        }
        Some(reason) => {
            ev.client_failed = Some((decision, reason));
            log_verdict(
                decision,
                Side::Client,
                &route.spec.name,
                &verdict,
                reason,
                id,
                conn,
            );
            if decision == Decision::Blocked {
                let mut rsp =
                    respond::blocked(Side::Client, verdict.country, reason, resource, id, head);
                respond::note_operator(&mut rsp, &verdict);
                return Forwarded::Refused(rsp);
            }
            Some(respond::with_operator(
                respond::decision_value(decision, Side::Client, verdict.country, reason),
                &verdict,
            ))
        }
    };
    if snap.config.audit.require_purpose && ev.purpose.is_none() {
        let msg = format!(
            "a purpose of access is required in the {} header",
            snap.config.audit.purpose_header
        );
        return bad(
            ev,
            Refusal::PurposeRequired,
            "PreconditionRequired",
            &msg,
            StatusCode::PRECONDITION_REQUIRED,
        );
    }
    let mut out = forward(req, conn, route, snap, ev, resource, head).await;
    if let (Some(v), Forwarded::Proxied(rsp, _)) = (flag, &mut out) {
        rsp.headers_mut().append(DECISION_HEADER.clone(), v);
    }
    out
}

pub(super) fn log_verdict(
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

/// Only `Transfer-Encoding: chunked`, once, is accepted. hyper already
/// refuses a final coding other than chunked; codings before it (`gzip,
/// chunked`) would reach the upstream as an unlabelled body, and repeated
/// fields are a classic desync vector, so both are refused here.
fn framing_is_plain(req: &Request<Incoming>) -> bool {
    let mut te = req
        .headers()
        .get_all(http::header::TRANSFER_ENCODING)
        .iter();
    match (te.next(), te.next()) {
        (None, _) => true,
        (Some(v), None) => v.as_bytes().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// The request's host: the single `Host` header, or the authority of an
/// absolute-form target, which must then agree with `Host` (RFC 9112 §3.2.2).
fn request_host(req: &Request<Incoming>) -> Option<String> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let header = hosts.next().map(HeaderValue::to_str);
    if hosts.next().is_some() {
        return None;
    }
    let header = match header {
        Some(Ok(h)) if !h.is_empty() && !h.contains(['/', '@', ' ', '\\']) => Some(h),
        Some(_) => return None,
        None => None,
    };
    match (req.uri().authority(), header) {
        (Some(auth), Some(h)) if auth.as_str().eq_ignore_ascii_case(h) => Some(h.to_owned()),
        // HTTP/2 carries the host in :authority; a Host field is optional.
        (Some(auth), None) if req.version() == Version::HTTP_2 => Some(auth.as_str().to_owned()),
        (Some(_), _) => None,
        (None, Some(h)) => Some(h.to_owned()),
        (None, None) if req.version() < Version::HTTP_11 => Some(String::new()),
        (None, None) => None,
    }
}
