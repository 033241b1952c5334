//! One request, start to end, as named phases over one [`RequestCtx`], in
//! the spirit of pingora's `ProxyHttp`:
//!
//! 1. **admit** (`admit`): the request is one this proxy serves at all
//!    (audit trail writable under fail-closed, not `CONNECT`, header count,
//!    framing, a valid `Host`);
//! 2. **route** (`route`): the route, by host and path as the storage
//!    will read them;
//! 3. **judge client** (`judge_client`): the client's verdict under the
//!    route's policy, then the checks that may still turn it away;
//! 4. **forward** (`forward`): the request to a judged upstream address;
//! 5. **finish** (`finish`): the response with its evidence (metrics,
//!    cartography, audit record) written before it completes.
//!
//! Each of the first four may stop the request with a [`Stop`]; finish
//! turns it into the proxy's own answer ([`respond::answer`], the only
//! place) before any body byte is read, so `Expect: 100-continue` uploads
//! nothing.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::body::{Audited, Completion, OnDrop};
use super::client_ip::ClientAddr;
use super::context::{ConnInfo, RequestCtx};
use super::evidence::RequestEvidence;
use super::forward::{Proxied, forward};
use super::respond::{self, Body, DECISION_HEADER, Generated, REQUEST_ID_HEADER, Stop};
use super::route::{self, Unroutable};
use crate::policy::{Decision, Side, Verdict};
use crate::refusal::Refusal;
use crate::snapshot::{Shared, Snapshot};

/// Handles one request. Never fails: every failure becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Shared,
) -> Result<Response<Body>, Infallible> {
    // The current snapshot, once: the whole request sees this one.
    let ctx = RequestCtx::new(&req, conn, shared.load_full());
    let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    Ok(finish(ctx, req, has_body).await)
}

/// The phases up to the storage's response, or the [`Stop`] that ended
/// them. A flag (monitor mode) goes on the proxied response.
async fn phases(req: Request<Incoming>, ctx: &mut RequestCtx) -> Result<Proxied, Stop> {
    admit(&req, ctx)?;
    route(&req, ctx)?;
    let flag = judge_client(&req, ctx)?;
    let mut proxied = forward(req, ctx).await?;
    if let Some(v) = flag {
        proxied.rsp.headers_mut().append(DECISION_HEADER.clone(), v);
    }
    Ok(proxied)
}

/// Phase 1: turns away what this proxy does not serve at all, before
/// anything is looked up for it.
fn admit(req: &Request<Incoming>, ctx: &RequestCtx) -> Result<(), Stop> {
    let snap = &ctx.snap;
    if let Some(sink) = &snap.evidence.audit
        && snap.config.audit.fail_closed
        && !sink.is_healthy()
    {
        snap.evidence.metrics.audit_refused.inc();
        return Err(Stop::Refused(Refusal::AuditUnavailable));
    }
    if req.method() == Method::CONNECT {
        return Err(Stop::Refused(Refusal::MethodNotAllowed));
    }
    if req.headers().len() > snap.config.server.max_headers {
        // hyper enforces max_headers on HTTP/1.1 only; h2 bounds the bytes
        // (max_header_bytes) but not the count.
        return Err(Stop::Refused(Refusal::TooManyHeaders));
    }
    if !framing_is_plain(req) {
        return Err(Stop::Refused(Refusal::BadTransferEncoding));
    }
    Ok(())
}

/// Phase 2: the route, matched on what the storage will act on (see
/// `proxy::route`; the request is forwarded as sent), recorded in the
/// evidence.
fn route(req: &Request<Incoming>, ctx: &mut RequestCtx) -> Result<(), Stop> {
    let Some(host) = request_host(req) else {
        return Err(Stop::Refused(Refusal::BadHost));
    };
    let snap = &ctx.snap;
    let domains = &snap.config.server.s3_domains;
    let routes = snap.routes.iter().map(|r| &r.spec);
    // Every route a reading of the path or of a copy source leads to is
    // noted once here, for governed access in the judge-client phase.
    let mut seen = route::Readings::default();
    let mut source = None;
    let chosen = route::choose_seen(routes.clone(), domains, &host, req.uri().path(), &mut seen)
        .and_then(|chosen| {
            let Some(chosen) = chosen else {
                return Ok(None);
            };
            let sources = route::copy_sources(req.headers(), req.uri().query());
            let sources = sources.iter().map(AsRef::as_ref);
            source = route::copy_source(routes.clone(), domains, &host, sources, &mut seen)?;
            route::with_source_read(routes, chosen, source.as_ref().map(|(read, _)| *read))
        });
    let index = match chosen {
        Ok(Some(index)) => index,
        Ok(None) => return Err(Stop::Refused(Refusal::NoRoute)),
        Err(Unroutable::BadPercent) => return Err(Stop::Refused(Refusal::BadPathEncoding)),
        Err(Unroutable::BadHost) => return Err(Stop::Refused(Refusal::BadHost)),
        Err(Unroutable::Ambiguous) => return Err(Stop::Refused(Refusal::AmbiguousTarget)),
    };
    ctx.ev().route = Some(index);
    ctx.host = host;
    ctx.readings = seen;
    ctx.copy_source = source;
    Ok(())
}

/// Phase 3: whether this client may go on, on this route: the verdict, or
/// the [`Stop`] that turns it away. Every check on who the client is goes
/// here, in this order, each able to stop the request:
///
/// 1. residency: the client's address under the route's policy (country,
///    networks, and the operator's jurisdiction when an operator database
///    is configured: `policy::Policy::judge_side`);
/// 2. governed access (`super::access::judge`, SPEC §9): the identity
///    registry may refuse ([`Refusal::Access`]), a signed grant may admit
///    a client the policy blocked for its country;
/// 3. the purpose of access, when the audit requires one.
///
/// A failing verdict is recorded and logged once here; enforce stops the
/// request, monitor lets it on with the flag returned for the response.
fn judge_client(
    req: &Request<Incoming>,
    ctx: &mut RequestCtx,
) -> Result<Option<HeaderValue>, Stop> {
    let snap = ctx.snap.clone();
    let route = ctx.route(&snap).expect("judged after the route phase");
    let name = &route.spec.name;
    let policy = &route.spec.policy.policy;
    let verdict = match ctx.client {
        ClientAddr::Ip(ip) => {
            policy.judge_side(ip, Side::Client, &snap.geo, snap.operators.as_ref())
        }
        ClientAddr::Untraceable => Verdict::untraceable(),
    };
    let decision = policy.decide(&verdict);
    let index = ctx.ev().route.expect("judged after the route phase");
    let (decision, granted) = super::access::judge(req, &snap, ctx, index, &verdict, decision)?;
    let failed = verdict.reason.filter(|_| decision != Decision::Allowed);
    let ev = ctx.ev();
    ev.client = verdict.ip.map(|ip| (ip, verdict.country));
    ev.client_operator = snap.operators.as_ref().map(|_| verdict.operator);
    ev.client_rule = Some(verdict.rule);
    let flag = match failed {
        None => {
            tracing::trace!(route = %name, request_id = %ctx.id, "client allowed");
            granted
        }
        Some(reason) => {
            ctx.ev().client_failed = Some((decision, reason));
            ctx.log_verdict(decision, Side::Client, name, &verdict, reason);
            if decision == Decision::Blocked {
                return Err(Stop::Blocked {
                    side: Side::Client,
                    verdict,
                    reason,
                });
            }
            Some(respond::with_operator(
                respond::decision_value(decision, Side::Client, verdict.country, reason),
                &verdict,
            ))
        }
    };
    if snap.config.audit.require_purpose && ctx.ev().purpose.is_none() {
        return Err(Stop::Refused(Refusal::PurposeRequired));
    }
    Ok(flag)
}

/// Phase 5: runs the phases and sends what they came to, each response
/// with its evidence: a proxied one through [`held`] or [`audited`], the
/// proxy's own answer to a [`Stop`] through [`finish_generated`].
async fn finish(mut ctx: RequestCtx, req: Request<Incoming>, has_body: bool) -> Response<Body> {
    let outcome = phases(req, &mut ctx).await;
    let id = ctx.id;
    let (mut rsp, refused) = match outcome {
        Ok(proxied) if holds(&proxied.rsp, ctx.head) => held(proxied, ctx).await,
        Ok(proxied) => {
            let snap = ctx.snap.clone();
            (audited(proxied.rsp, ctx.decided(), snap), false)
        }
        // Boxed: the proxy's own answer is about 2 KiB of future state that
        // a proxied request, the usual case, would otherwise carry too.
        Err(stop) => (Box::pin(answered(&stop, ctx)).await, true),
    };
    rsp.headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), id.header_value());
    if has_body && refused {
        // A refusal leaves the request body unread: close the connection
        // rather than guess where the next request starts.
        rsp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    rsp
}

/// The proxy's answer to `stop`, with the request's evidence.
async fn answered(stop: &Stop, mut ctx: RequestCtx) -> Response<Body> {
    if let Stop::Refused(refusal) = stop {
        ctx.refuse(*refusal);
    }
    let rsp = answer(stop, &ctx);
    let ev = ctx.decided();
    finish_generated(rsp, ev, &ctx).await
}

fn answer(stop: &Stop, ctx: &RequestCtx) -> Response<Generated> {
    respond::answer(
        stop,
        ctx.snap.config.audit.purpose_header.as_str(),
        &ctx.resource,
        ctx.id,
        ctx.head,
    )
}

/// A generated response: its record is written before it is sent; if that
/// fails and the policy is fail-closed, the client gets 503 instead.
async fn finish_generated(
    rsp: Response<Generated>,
    ev: RequestEvidence,
    ctx: &RequestCtx,
) -> Response<Body> {
    if !trace(&ev, &ctx.snap, rsp.status().as_u16(), 0).await {
        return answer(&Stop::Refused(Refusal::AuditUnavailable), ctx).map(Either::Right);
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
async fn held(proxied: Proxied, mut ctx: RequestCtx) -> (Response<Body>, bool) {
    let status = proxied.rsp.status().as_u16();
    let (parts, body) = proxied.rsp.into_parts();
    // Dropped while reading (client gone), `ctx` still writes the record.
    let read = tokio::time::timeout(proxied.timeout, http_body_util::BodyExt::collect(body)).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        failed => {
            let timed_out = failed.is_err();
            tracing::warn!(request_id = %ctx.id, timed_out, "upstream response body failed before its end");
            // Boxed, as in `finish`: a rare path kept out of the state of
            // every request in flight.
            return (
                Box::pin(answered(&Stop::UpstreamFailed { timed_out }, ctx)).await,
                true,
            );
        }
    };
    let ev = ctx.decided();
    if !trace(&ev, &ctx.snap, status, bytes.len() as u64).await {
        let rsp = answer(&Stop::Refused(Refusal::AuditUnavailable), &ctx);
        return (rsp.map(Either::Right), true);
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
    let complete: Completion = Box::new(move |down| {
        Box::pin(async move {
            let (ev, snap) = &*on_end;
            trace(ev, snap, status, down).await
        })
    });
    let on_drop: OnDrop = Box::new(move |down| {
        let (ev, snap) = &*shared;
        ev.account(snap, down);
        if let Some(sink) = &snap.evidence.audit {
            sink.write_detached(ev.record(snap, status, down));
        }
    });
    rsp.map(|body| Either::Left(Audited::new(body, complete, on_drop)))
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
