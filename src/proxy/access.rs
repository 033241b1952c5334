//! Governed access in the request path (SPEC §9): the identity registry,
//! then signed grants, judged in the **judge client** phase right after the
//! residency verdict and before any body byte is read. The judging itself
//! is [`crate::access::Access::judge`] (pure, lock- and allocation-free);
//! this module gives it the request's facts and turns what it decides into
//! a [`Stop`] or the decision to go on with.

use http::Request;
use http::header::HeaderValue;

use super::context::RequestCtx;
use super::respond::Stop;
use crate::access::{Facts, Judged, Outcome};
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::refusal::Refusal;
use crate::snapshot::Snapshot;

/// Judges the request's identity and grants, given the client `verdict`
/// and the policy's `decision` on it.
///
/// - `Err(Stop::Refused(Refusal::Access(_)))`: the registry refuses (403
///   `AccessDenied`, reason in `x-residency-decision`).
/// - `Ok((Allowed, Some(header)))`: a valid grant admits a client the
///   policy blocked for its country; the evidence records the grant,
///   `header` is the `x-residency-decision` value for the response.
/// - `Ok((decision, None))`: the policy's decision stands.
///
/// Only a client blocked with reason `country_not_allowed` can be admitted:
/// `deny_countries`, `deny_networks`, unknown countries, untraceable
/// addresses and foreign operators are never opened by a grant, and the
/// upstream side is judged afterwards as for any request.
///
/// # Errors
/// The registry's refusal, as a [`Stop`].
pub fn judge<B>(
    req: &Request<B>,
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    route: usize,
    verdict: &Verdict,
    decision: Decision,
) -> Result<(Decision, Option<HeaderValue>), Stop> {
    if !snap.access.is_active() {
        return Ok((decision, None));
    }
    let now = crate::access::now();
    // The routes every reading leads to and the copy source, as the route
    // phase read them: the storage may act on any, so each must be listed
    // and granted.
    let RequestCtx {
        conn,
        host,
        readings,
        copy_source,
        ..
    } = &*ctx;
    let facts = Facts {
        identity: ctx.evidence().identity(),
        mtls_subject: conn.mtls_subject.as_deref(),
        route,
        method: req.method().as_str(),
        path: req.uri().path(),
        host,
        copy_source: copy_source.as_ref().map(|(r, p)| (*r, p.as_str())),
        readings: readings.as_slice(),
        country: verdict.country,
        policy: match (decision, verdict.reason) {
            (Decision::Blocked, Some(Reason::CountryNotAllowed)) => Outcome::CountryNotAllowed,
            (Decision::Blocked, _) => Outcome::Blocked,
            _ => Outcome::Passes,
        },
        now,
    };
    let judged = snap.access.judge(&facts);
    match judged {
        Judged::Pass => Ok((decision, None)),
        Judged::Refused(why) => {
            let ev = ctx.ev();
            tracing::info!(
                identity = ev.identity(),
                reason = why.as_str(),
                request_id = %ev.id,
                "request refused by the identity registry"
            );
            Err(Stop::Refused(Refusal::Access(why)))
        }
        Judged::Granted(i) => {
            let ev = ctx.ev();
            ev.grant = Some(i);
            let id = snap.access.grant(i).map_or("", |g| g.id.as_str());
            tracing::info!(grant = id, identity = ev.identity(), country = label(verdict.country), request_id = %ev.id, "client admitted by grant");
            let value = format!(
                "{}; side={}; country={}; grant={id}",
                Decision::Allowed.as_str(),
                Side::Client.as_str(),
                label(verdict.country)
            );
            Ok((Decision::Allowed, HeaderValue::from_str(&value).ok()))
        }
    }
}
