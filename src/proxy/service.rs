//! One request, start to end: snapshot, route, client verdict, then either a
//! refusal (before any body byte is read, so `Expect: 100-continue` uploads
//! nothing) or the forward to a judged upstream address with both bodies
//! streaming.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::client_ip::{ClientAddr, client_addr};
use super::headers::{add_forwarding, is_chunked, set_chunked, set_host, strip_hop_by_hop};
use super::respond::{self, Body, DECISION_HEADER, REQUEST_ID_HEADER, RequestId};
use super::route;
use crate::geo::label;
use crate::policy::{Decision, Mode, Reason, Side, Verdict};
use crate::snapshot::{Route, Shared, Snapshot};
use crate::upstream::Upstream;

/// What the connection knows about its client.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// The peer, or the address a trusted peer announced with PROXY protocol.
    pub client: ClientAddr,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
}

/// Handles one request. Never fails: every failure becomes a response.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Shared,
) -> Result<Response<Body>, Infallible> {
    let snap = shared.load_full();
    let id = RequestId::next();
    let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut rsp = decide(req, &conn, &snap, id).await;
    rsp.headers_mut()
        .insert(REQUEST_ID_HEADER.clone(), id.header_value());
    if has_body && matches!(rsp.body(), Either::Right(_)) {
        // A refusal leaves the request body unread: close the connection
        // rather than guess where the next request starts.
        rsp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(rsp)
}

async fn decide(
    req: Request<Incoming>,
    conn: &ConnInfo,
    snap: &Snapshot,
    id: RequestId,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let resource = req.uri().path().to_owned();
    let bad =
        |code: &str, msg: &str, status| respond::xml_error(status, code, msg, &resource, id, head);

    if req.method() == Method::CONNECT {
        return bad(
            "MethodNotAllowed",
            "CONNECT is not supported by this proxy",
            StatusCode::METHOD_NOT_ALLOWED,
        );
    }
    if !framing_is_plain(&req) {
        return bad(
            "InvalidRequest",
            "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
            StatusCode::BAD_REQUEST,
        );
    }
    let Some(host) = request_host(&req) else {
        return bad(
            "InvalidRequest",
            "missing, repeated or invalid Host header",
            StatusCode::BAD_REQUEST,
        );
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Some(index) = route::choose(snap.routes.iter().map(|r| &r.spec), &host, path) else {
        return bad(
            "NoSuchRoute",
            "no route of this proxy matches the host and path",
            StatusCode::NOT_FOUND,
        );
    };
    let route = &snap.routes[index];
    let server = &snap.config.server;
    let policy = &route.spec.policy.policy;
    let client = client_addr(
        conn.peer,
        conn.client,
        req.headers(),
        server.client_ip_source,
        &server.trusted_proxies,
    );
    let verdict = match client {
        ClientAddr::Ip(ip) => policy.judge(ip, &snap.geo),
        ClientAddr::Untraceable => Verdict::untraceable(),
    };
    let decision = policy.decide(&verdict);
    let flag = match (decision, verdict.reason) {
        (Decision::Allowed, _) | (_, None) => {
            tracing::trace!(route = %route.spec.name, request_id = %id, "client allowed");
            None
        }
        (Decision::Blocked, Some(reason)) => {
            log_verdict(
                decision,
                Side::Client,
                &route.spec.name,
                &verdict,
                reason,
                id,
                conn,
            );
            return respond::blocked(Side::Client, verdict.country, reason, &resource, id, head);
        }
        (Decision::Flagged, Some(reason)) => {
            log_verdict(
                decision,
                Side::Client,
                &route.spec.name,
                &verdict,
                reason,
                id,
                conn,
            );
            Some(respond::decision_value(
                Decision::Flagged,
                Side::Client,
                verdict.country,
                reason,
            ))
        }
    };
    let mut rsp = forward(req, conn, route, snap, id, &resource, head)
        .await
        .response;
    if let Some(v) = flag {
        rsp.headers_mut().append(DECISION_HEADER.clone(), v);
    }
    rsp
}

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
        (Some(_), _) => None,
        (None, Some(h)) => Some(h.to_owned()),
        (None, None) if req.version() < Version::HTTP_11 => Some(String::new()),
        (None, None) => None,
    }
}

/// What the upstream side came to: the response and, for the evidence, the
/// address that answered and the upstream verdict if it failed the policy.
pub struct Forwarded {
    /// The response for the client.
    pub response: Response<Body>,
    /// The judged address the request was sent to.
    pub upstream: Option<(SocketAddr, Verdict)>,
    /// The failed upstream verdict (blocked, or flagged in monitor mode).
    pub failed: Option<Verdict>,
}

async fn forward(
    req: Request<Incoming>,
    conn: &ConnInfo,
    route: &Route,
    snap: &Snapshot,
    id: RequestId,
    resource: &str,
    head: bool,
) -> Forwarded {
    let mut req = upstream_request(req, conn);
    let policy = &route.spec.policy.policy;
    let mut blocked: Option<Verdict> = None;
    let mut last_error = String::from("no upstream");
    for upstream in route.upstream_order() {
        let addrs = match upstream.resolve(&snap.resolver).await {
            Ok(a) => a,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let judged = Upstream::judge(&addrs, policy, &snap.geo);
        for (addr, v) in &judged.rejected {
            let reason = v.reason.unwrap_or(Reason::NoAllowedUpstreamIp);
            tracing::info!(
                route = %route.spec.name, side = "upstream", country = label(v.country), reason = reason.as_str(),
                %addr, upstream = %upstream.url.url, request_id = %id, "upstream address rejected"
            );
        }
        // Only judged-allowed addresses are candidates; in monitor mode the
        // rejected ones are used (flagged) when nothing else exists.
        let (candidates, failed) = match (judged.allowed.is_empty(), policy.mode) {
            (false, _) => (judged.allowed, None),
            (true, Mode::Enforce) => {
                blocked = blocked.or(judged.rejected.first().map(|(_, v)| *v));
                continue;
            }
            (true, Mode::Monitor) => {
                let first = judged.rejected.first().map(|(_, v)| *v);
                (judged.rejected, first)
            }
        };
        if !route.spec.preserve_host {
            set_host(req.headers_mut(), &upstream.url.authority);
        }
        for (addr, verdict) in candidates {
            match send(upstream, addr, req).await {
                Ok(rsp) => {
                    if let Some(v) = &failed {
                        log_verdict(
                            Decision::Flagged,
                            Side::Upstream,
                            &route.spec.name,
                            v,
                            Reason::NoAllowedUpstreamIp,
                            id,
                            conn,
                        );
                    }
                    let mut response = upstream_response(rsp);
                    if let Some(v) = &failed {
                        let value = respond::decision_value(
                            Decision::Flagged,
                            Side::Upstream,
                            v.country,
                            Reason::NoAllowedUpstreamIp,
                        );
                        response
                            .headers_mut()
                            .append(DECISION_HEADER.clone(), value);
                    }
                    return Forwarded {
                        response,
                        upstream: Some((addr, verdict)),
                        failed,
                    };
                }
                Err((e, Some(back))) => {
                    last_error = e;
                    req = back;
                }
                Err((e, None)) => {
                    tracing::warn!(route = %route.spec.name, %addr, error = %e, request_id = %id, "upstream request failed");
                    let response = respond::xml_error(
                        StatusCode::BAD_GATEWAY,
                        "BadGateway",
                        "the storage upstream failed",
                        resource,
                        id,
                        head,
                    );
                    return Forwarded {
                        response,
                        upstream: Some((addr, verdict)),
                        failed,
                    };
                }
            }
        }
    }
    if let Some(v) = blocked {
        log_verdict(
            Decision::Blocked,
            Side::Upstream,
            &route.spec.name,
            &v,
            Reason::NoAllowedUpstreamIp,
            id,
            conn,
        );
        let response = respond::blocked(
            Side::Upstream,
            v.country,
            Reason::NoAllowedUpstreamIp,
            resource,
            id,
            head,
        );
        return Forwarded {
            response,
            upstream: None,
            failed: Some(v),
        };
    }
    tracing::warn!(route = %route.spec.name, error = %last_error, request_id = %id, "no upstream reachable");
    let response = respond::xml_error(
        StatusCode::BAD_GATEWAY,
        "BadGateway",
        "the storage upstream cannot be reached",
        resource,
        id,
        head,
    );
    Forwarded {
        response,
        upstream: None,
        failed: None,
    }
}

/// The request as the upstream receives it: hop-by-hop fields dropped,
/// framing as the client sent it, forwarding fields extended, origin-form
/// target byte for byte as received (SigV4 signs it).
fn upstream_request(req: Request<Incoming>, conn: &ConnInfo) -> Request<Incoming> {
    let (mut parts, body) = req.into_parts();
    let chunked = is_chunked(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if chunked {
        set_chunked(&mut parts.headers);
    }
    add_forwarding(&mut parts.headers, conn.peer, conn.peer_trusted);
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

type SendError = (String, Option<Request<Incoming>>);

/// Sends on a connection to exactly `addr`. When the request was not written
/// (connect failure, or a pooled connection that closed under us) it is
/// handed back so another address or a fresh connection can be tried.
async fn send(
    upstream: &Upstream,
    addr: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, SendError> {
    for _attempt in 0..2 {
        let mut sender = match upstream.connect(addr).await {
            Ok(s) => s,
            Err(e) => return Err((e, Some(req))),
        };
        if sender.ready().await.is_err() {
            continue;
        }
        let pending = sender.try_send_request(req);
        upstream.release(addr, sender);
        match pending.await {
            Ok(rsp) => return Ok(rsp),
            Err(mut e) => match e.take_message() {
                Some(back) => req = back,
                None => return Err((format!("upstream {addr}: {}", e.error()), None)),
            },
        }
    }
    Err((
        format!("upstream {addr}: connection closed before the request could be sent"),
        Some(req),
    ))
}

fn upstream_response(rsp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = rsp.into_parts();
    let chunked = is_chunked(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if chunked {
        set_chunked(&mut parts.headers);
    }
    Response::from_parts(parts, Either::Left(body))
}
