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
use super::route;
use crate::access::{Facts, Judged, Outcome};
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::refusal::Refusal;

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
    ctx: &mut RequestCtx,
    route: usize,
    verdict: &Verdict,
    decision: Decision,
) -> Result<(Decision, Option<HeaderValue>), Stop> {
    let snap = ctx.snap.clone();
    if !snap.access.is_active() {
        return Ok((decision, None));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let conn = ctx.conn.clone();
    let host = std::mem::take(&mut ctx.host);
    let sources = route::copy_sources(req.headers(), req.uri().query());
    let routes = snap.routes.iter().map(|r| &r.spec);
    let domains = &snap.config.server.s3_domains;
    // The route phase refused a request whose copy source it cannot read;
    // should one come here anyway, it is within no scope.
    let source = route::copy_source(
        routes.clone(),
        domains,
        &host,
        sources.iter().map(AsRef::as_ref),
    )
    .unwrap_or_else(|_| Some((None, String::new())));
    // Every route a reading of the path (and of the copy source's) leads
    // to: the storage may act on any, so each must be listed and granted.
    let mut read = Readings::default();
    let mut note = |r: Option<usize>| read.note(r);
    if route::readings(
        routes.clone(),
        domains,
        &host,
        req.uri().path(),
        false,
        &mut note,
    )
    .is_err()
    {
        note(None);
    }
    if let Some((_, path)) = &source
        && route::readings(routes, domains, &host, path, true, &mut note).is_err()
    {
        note(None);
    }
    let ev = ctx.ev();
    let facts = Facts {
        identity: ev.identity(),
        mtls_subject: conn.mtls_subject.as_deref(),
        route,
        method: req.method().as_str(),
        path: req.uri().path(),
        host: &host,
        copy_source: source.as_ref().map(|(r, p)| (*r, p.as_str())),
        readings: read.as_slice(),
        country: verdict.country,
        policy: match (decision, verdict.reason) {
            (Decision::Blocked, Some(Reason::CountryNotAllowed)) => Outcome::CountryNotAllowed,
            (Decision::Blocked, _) => Outcome::Blocked,
            _ => Outcome::Passes,
        },
        now,
    };
    let judged = snap.access.judge(&facts);
    ctx.host = host;
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

/// The distinct routes a request's readings lead to, on the stack: a
/// request read more ways than fit counts as read by no route (which no
/// route restriction admits).
struct Readings {
    routes: [Option<usize>; Self::MAX],
    len: usize,
}

impl Readings {
    const MAX: usize = 16;

    fn note(&mut self, r: Option<usize>) {
        if self.routes[..self.len].contains(&r) {
            return;
        }
        if self.len == Self::MAX {
            self.routes[Self::MAX - 1] = None;
        } else {
            self.routes[self.len] = r;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[Option<usize>] {
        &self.routes[..self.len]
    }
}

impl Default for Readings {
    fn default() -> Self {
        Self {
            routes: [None; Self::MAX],
            len: 0,
        }
    }
}
