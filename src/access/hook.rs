//! The one place the request path calls into governed access: after the
//! client verdict, before any body byte is read. Kept apart from
//! [`super::Access::judge`] (pure) so the request service calls one
//! function and learns either a refusal to send or the decision to go on
//! with.

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};

use super::{Facts, Judged, Outcome};
use crate::geo::label;
use crate::policy::{Decision, Reason, Side, Verdict};
use crate::proxy::evidence::RequestEvidence;
use crate::proxy::refusal::Refusal;
use crate::proxy::respond::{self, DECISION_HEADER, Generated};
use crate::snapshot::Snapshot;

/// What the request path does next.
pub type Admitted = Result<(Decision, Option<HeaderValue>), Response<Generated>>;

/// Judges the request's identity and grants, given the client `verdict`
/// and the policy's `decision` on it.
///
/// - `Err(response)`: the registry refuses (403 `AccessDenied`, reason in
///   `x-residency-decision`); `ev` records the refusal.
/// - `Ok((Allowed, Some(header)))`: a valid grant admits a client the
///   policy blocked for its country; `ev` records the grant, `header` is
///   the `x-residency-decision` value for the response.
/// - `Ok((decision, None))`: the policy's decision stands.
///
/// Only a client blocked with reason `country_not_allowed` can be admitted:
/// `deny_countries`, `deny_networks`, unknown countries, untraceable
/// addresses and foreign operators are never opened by a grant, and the
/// upstream side is judged afterwards as for any request.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's facts, passed as they are"
)]
#[expect(
    clippy::result_large_err,
    reason = "the refusal moves once per request, as `Forwarded::Refused` carries it"
)]
pub fn admit<B>(
    snap: &Snapshot,
    ev: &mut RequestEvidence,
    mtls_subject: Option<&str>,
    route: usize,
    host: &str,
    req: &Request<B>,
    verdict: &Verdict,
    decision: Decision,
    resource: &str,
    head: bool,
) -> Admitted {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let facts = Facts {
        identity: ev.identity(),
        mtls_subject,
        route,
        method: req.method().as_str(),
        path: req.uri().path(),
        host,
        country: verdict.country,
        policy: match (decision, verdict.reason) {
            (Decision::Blocked, Some(Reason::CountryNotAllowed)) => Outcome::CountryNotAllowed,
            (Decision::Blocked, _) => Outcome::Blocked,
            _ => Outcome::Passes,
        },
        now,
    };
    match snap.access.judge(&facts) {
        Judged::Pass => Ok((decision, None)),
        Judged::Refused(why) => {
            tracing::info!(
                identity = ev.identity(),
                reason = why.as_str(),
                request_id = %ev.id,
                "request refused by the identity registry"
            );
            ev.refused = Some(Refusal::Access(why));
            let mut rsp = respond::xml_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                why.message(),
                resource,
                ev.id,
                head,
            );
            rsp.headers_mut().insert(
                DECISION_HEADER.clone(),
                HeaderValue::from_static(match why {
                    super::AccessRefusal::UnknownIdentity => "refused; reason=unknown_identity",
                    super::AccessRefusal::RouteNotGranted => "refused; reason=route_not_granted",
                    super::AccessRefusal::ReviewOverdue => "refused; reason=review_overdue",
                }),
            );
            Err(rsp)
        }
        Judged::Granted(i) => {
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
