//! The upstream side of one request: resolve each upstream of the route,
//! judge every address, send only to judged addresses, and hand back the
//! upstream's response (or the reason there is none).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::context::RequestCtx;
use super::headers::{add_forwarding, is_chunked, set_chunked, set_host, strip_hop_by_hop};
use super::respond::{self, DECISION_HEADER, Stop};
use crate::geo::label;
use crate::policy::{Decision, Mode, Reason, Side, Verdict};
use crate::upstream::{Chain, Metered, SendError, Sent, Upstream, UpstreamError};

/// The storage's response, its body still to stream, with the route's
/// response timeout, which also bounds reading a held body.
pub struct Proxied {
    /// The response as it goes to the client.
    pub rsp: Response<Incoming>,
    /// The route's `response_timeout`.
    pub timeout: Duration,
}

/// Phase 4: forwards `req` on the chosen route to a judged upstream
/// address; records the upstream address and any upstream verdict failure
/// in the evidence. Stops with the upstream side's 451, or 502/504.
pub async fn forward(req: Request<Incoming>, ctx: &mut RequestCtx) -> Result<Proxied, Stop> {
    let snap = ctx.snap.clone();
    let route = ctx.route(&snap).expect("forwarded after the route phase");
    let id = ctx.id;
    let client_h2 = req.version() == Version::HTTP_2;
    let sent = Arc::new(Sent::default());
    let mut req = upstream_request(req, ctx, &sent);
    let policy = &route.spec.policy.policy;
    let mut blocked: Option<Verdict> = None;
    let mut last_error: Option<UpstreamError> = None;
    for upstream in route.upstream_order() {
        let addrs = match upstream.resolve(&snap.resolver).await {
            Ok(a) => a,
            Err(e) => {
                last_error = Some(e);
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
            let ev = ctx.ev();
            ev.upstream = Some((addr, verdict.country));
            ev.upstream_operator = snap.operators.as_ref().map(|_| verdict.operator);
            ev.upstream_rule = Some(verdict.rule);
            ev.upstream_failed = flag.map(|(v, reason)| (Decision::Flagged, v.country, reason));
            match upstream
                .send(addr, req, &sent, route.spec.response_timeout)
                .await
            {
                Ok(rsp) if rsp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    // Upgrade is stripped from every request, so this 101 is
                    // uninvited; relayed, it would leave the client holding
                    // what it believes is a tunnel.
                    tracing::warn!(route = %route.spec.name, %addr, request_id = %id, "upstream switched protocols uninvited");
                    return Err(Stop::UpstreamFailed { timed_out: false });
                }
                Ok(rsp) => {
                    let mut rsp = upstream_response(rsp, client_h2);
                    if let Some((v, reason)) = &flag {
                        let reason = *reason;
                        ctx.log_verdict(
                            Decision::Flagged,
                            Side::Upstream,
                            &route.spec.name,
                            v,
                            reason,
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
                    return Ok(Proxied {
                        rsp,
                        timeout: route.spec.response_timeout,
                    });
                }
                Err(SendError::NotSent { request, error }) => {
                    // Not sent: this address is not part of the request's story.
                    let ev = ctx.ev();
                    ev.upstream = None;
                    ev.upstream_operator = None;
                    ev.upstream_failed = None;
                    ev.upstream_rule = None;
                    last_error = Some(error);
                    req = *request;
                }
                Err(SendError::Sent(e)) => {
                    tracing::warn!(route = %route.spec.name, %addr, error = %Chain(&e), request_id = %id, "upstream request failed");
                    return Err(Stop::UpstreamFailed {
                        timed_out: e.timed_out(),
                    });
                }
            }
        }
    }
    if let Some(v) = blocked {
        let reason = upstream_reason(&v);
        let ev = ctx.ev();
        ev.upstream_failed = Some((Decision::Blocked, v.country, reason));
        ev.upstream_operator = snap.operators.as_ref().map(|_| v.operator);
        ev.upstream_rule = Some(v.rule);
        ctx.log_verdict(
            Decision::Blocked,
            Side::Upstream,
            &route.spec.name,
            &v,
            reason,
        );
        return Err(Stop::Blocked {
            side: Side::Upstream,
            verdict: v,
            reason,
        });
    }
    match &last_error {
        Some(e) => {
            tracing::warn!(route = %route.spec.name, error = %Chain(e), request_id = %id, "no upstream reachable");
        }
        None => {
            tracing::warn!(route = %route.spec.name, request_id = %id, "no upstream reachable");
        }
    }
    Err(Stop::UpstreamUnreachable)
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
    ctx: &mut RequestCtx,
    sent: &Arc<Sent>,
) -> Request<Metered> {
    let (mut parts, body) = req.into_parts();
    let chunked = is_chunked(&parts.headers);
    strip_hop_by_hop(&mut parts.headers);
    if chunked {
        set_chunked(&mut parts.headers);
    }
    add_forwarding(&mut parts.headers, ctx.conn.peer, ctx.peer_trusted);
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
    Request::from_parts(
        parts,
        Metered::new(body, ctx.ev().bytes_up.clone(), sent.clone()),
    )
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
