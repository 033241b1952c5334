//! The upstream side of one request: resolve each upstream of the route,
//! judge every address, send only to judged addresses, and hand back the
//! upstream's response (or the reason there is none).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::evidence::RequestEvidence;
use super::headers::{add_forwarding, is_chunked, set_chunked, set_host, strip_hop_by_hop};
use super::respond::{self, DECISION_HEADER, Generated};
use super::service::{ConnInfo, log_verdict};
use crate::body::{Metered, Sent};
use crate::geo::label;
use crate::policy::{Decision, Mode, Reason, Side, Verdict};
use crate::snapshot::{Route, Snapshot};
use crate::upstream::Upstream;

/// What the upstream side came to.
pub enum Forwarded {
    /// The upstream answered; its body still has to stream. With the
    /// route's response timeout, which also bounds reading a held body.
    Proxied(Response<Incoming>, Duration),
    /// The proxy answers itself (451 upstream side, 502).
    Refused(Response<Generated>),
}

/// Forwards `req` on `route`; records the upstream address and any upstream
/// verdict failure in `ev`.
pub async fn forward(
    req: Request<Incoming>,
    conn: &ConnInfo,
    route: &Route,
    snap: &Snapshot,
    ev: &mut RequestEvidence,
    resource: &str,
    head: bool,
) -> Forwarded {
    let id = ev.id;
    let client_h2 = req.version() == Version::HTTP_2;
    let sent = Arc::new(Sent::default());
    let mut req = upstream_request(req, conn, ev, &sent);
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
        let judged = Upstream::judge(&addrs, policy, &snap.geo, snap.operators.as_ref());
        for (addr, v) in &judged.rejected {
            let reason = v.reason.unwrap_or(Reason::NoAllowedUpstreamIp);
            route.metrics.upstream_rejected(v.country);
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
            // The flag this address carries: the monitor-mode fallback's, or
            // its own when only flagged for a foreign operator.
            let flag = failed.map(|v| (v, upstream_reason(&v))).or_else(|| {
                verdict
                    .advisory
                    .then_some((verdict, Reason::ForeignOperator))
            });
            // Recorded before sending: a request abandoned while the upstream
            // is still answering is traced with the address it went to.
            ev.upstream = Some((addr, verdict.country));
            ev.upstream_operator = snap.operators.as_ref().map(|_| verdict.operator);
            ev.upstream_rule = Some(verdict.rule);
            ev.upstream_failed = flag.map(|(v, reason)| (Decision::Flagged, v.country, reason));
            match send(upstream, addr, req, &sent, route.spec.response_timeout).await {
                Ok(rsp) if rsp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    // Upgrade is stripped from every request, so this 101 is
                    // uninvited; relayed, it would leave the client holding
                    // what it believes is a tunnel.
                    tracing::warn!(route = %route.spec.name, %addr, request_id = %id, "upstream switched protocols uninvited");
                    return Forwarded::Refused(respond::xml_error(
                        StatusCode::BAD_GATEWAY,
                        "BadGateway",
                        "the storage upstream failed",
                        resource,
                        id,
                        head,
                    ));
                }
                Ok(rsp) => {
                    let mut rsp = upstream_response(rsp, client_h2);
                    if let Some((v, reason)) = &flag {
                        let reason = *reason;
                        log_verdict(
                            Decision::Flagged,
                            Side::Upstream,
                            &route.spec.name,
                            v,
                            reason,
                            id,
                            conn,
                        );
                        let value = respond::decision_value(
                            Decision::Flagged,
                            Side::Upstream,
                            v.country,
                            reason,
                        );
                        let value = respond::with_operator(value, v);
                        rsp.headers_mut().append(DECISION_HEADER.clone(), value);
                    }
                    return Forwarded::Proxied(rsp, route.spec.response_timeout);
                }
                Err((e, Some(back), _)) => {
                    // Not sent: this address is not part of the request's story.
                    ev.upstream = None;
                    ev.upstream_operator = None;
                    ev.upstream_failed = None;
                    ev.upstream_rule = None;
                    last_error = e;
                    req = back;
                }
                Err((e, None, timed_out)) => {
                    tracing::warn!(route = %route.spec.name, %addr, error = %e, request_id = %id, "upstream request failed");
                    return Forwarded::Refused(respond::upstream_failed(
                        timed_out, resource, id, head,
                    ));
                }
            }
        }
    }
    if let Some(v) = blocked {
        let reason = upstream_reason(&v);
        ev.upstream_failed = Some((Decision::Blocked, v.country, reason));
        ev.upstream_operator = snap.operators.as_ref().map(|_| v.operator);
        ev.upstream_rule = Some(v.rule);
        log_verdict(
            Decision::Blocked,
            Side::Upstream,
            &route.spec.name,
            &v,
            reason,
            id,
            conn,
        );
        let mut rsp = respond::blocked(Side::Upstream, v.country, reason, resource, id, head);
        respond::note_operator(&mut rsp, &v);
        return Forwarded::Refused(rsp);
    }
    tracing::warn!(route = %route.spec.name, error = %last_error, request_id = %id, "no upstream reachable");
    Forwarded::Refused(respond::xml_error(
        StatusCode::BAD_GATEWAY,
        "BadGateway",
        "the storage upstream cannot be reached",
        resource,
        id,
        head,
    ))
}

/// The upstream reason of a failed address: `foreign_operator` when that is
/// why it failed, else `no_allowed_upstream_ip` (which says the country side).
const fn upstream_reason(v: &Verdict) -> Reason {
    match v.reason {
        Some(Reason::ForeignOperator) => Reason::ForeignOperator,
        _ => Reason::NoAllowedUpstreamIp,
    }
}

/// The request as the upstream receives it: hop-by-hop fields dropped,
/// framing as the client sent it, forwarding fields extended, origin-form
/// target byte for byte as received (SigV4 signs it), body metered.
fn upstream_request(
    req: Request<Incoming>,
    conn: &ConnInfo,
    ev: &RequestEvidence,
    sent: &Arc<Sent>,
) -> Request<Metered> {
    let (mut parts, body) = req.into_parts();
    let chunked = is_chunked(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if chunked {
        set_chunked(&mut parts.headers);
    }
    add_forwarding(&mut parts.headers, conn.peer, conn.peer_trusted);
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(auth) = parts.uri.authority()
        && let Ok(v) = http::HeaderValue::from_str(auth.as_str())
    {
        // An HTTP/2 client names the host in :authority only; HTTP/1.1
        // upstreams need it as Host (and SigV4 signed it as host).
        parts.headers.insert(http::header::HOST, v);
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, Metered::new(body, ev.bytes_up.clone(), sent.clone()))
}

/// Why a request got no response: `(message, the request if it was not
/// written, whether the upstream took too long)`.
type SendError = (String, Option<Request<Metered>>, bool);

/// Sends on a connection to exactly `addr`. When the request was not written
/// (connect failure, or a pooled connection that closed under us) it is
/// handed back so another address or a fresh connection can be tried. Once
/// the body is sent, the response head must come within `timeout`.
async fn send(
    upstream: &Upstream,
    addr: SocketAddr,
    mut req: Request<Metered>,
    sent: &Sent,
    timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    for _attempt in 0..2 {
        let mut sender = match upstream.connect(addr).await {
            Ok(s) => s,
            Err(e) => return Err((e, Some(req), false)),
        };
        if sender.ready().await.is_err() {
            continue;
        }
        let pending = sender.try_send_request(req);
        upstream.release(addr, sender);
        let deadline = async {
            sent.wait().await;
            tokio::time::sleep(timeout).await;
        };
        let outcome = tokio::select! {
            r = pending => r,
            () = deadline => {
                let why = format!("upstream {addr} sent no response within {timeout:?} of the request");
                return Err((why, None, true));
            }
        };
        match outcome {
            Ok(rsp) => return Ok(rsp),
            Err(mut e) => match e.take_message() {
                Some(back) => req = back,
                None => return Err((format!("upstream {addr}: {}", e.error()), None, false)),
            },
        }
    }
    Err((
        format!("upstream {addr}: connection closed before the request could be sent"),
        Some(req),
        false,
    ))
}

/// The upstream's response with hop-by-hop and `x-residency-*` fields
/// removed and its framing kept (HTTP/2 frames bodies itself: no
/// Transfer-Encoding there).
fn upstream_response(rsp: Response<Incoming>, client_h2: bool) -> Response<Incoming> {
    let (mut parts, body) = rsp.into_parts();
    let chunked = is_chunked(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if chunked && !client_h2 {
        set_chunked(&mut parts.headers);
    }
    Response::from_parts(parts, body)
}
