//! Pre-flight: resolve every route's upstreams now and judge each address,
//! for `residency-proxy upstreams` and the admin `/readyz`.

use serde::Serialize;

use crate::geo::label;
use crate::policy::{Mode, Side};
use crate::snapshot::{Route, Snapshot};
use crate::upstream::Chain;

/// One resolved address and its verdict.
#[derive(Debug, Serialize)]
pub struct AddressReport {
    /// The address, as dialled.
    pub address: String,
    /// ISO code or `unknown`.
    pub country: &'static str,
    /// Whether the route's policy lets the proxy connect to it.
    pub allowed: bool,
    /// The deciding rule.
    pub rule: &'static str,
    /// The reason it fails, if it does.
    pub reason: Option<&'static str>,
    /// The operator's country (ISO code or `unknown`), when an operator
    /// database is configured (absent from JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<&'static str>,
    /// The operator's AS number, when the operator database has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
}

/// One upstream URL.
#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    /// The URL as configured.
    pub url: String,
    /// Resolution failure, if any.
    pub error: Option<String>,
    /// Each resolved address.
    pub addresses: Vec<AddressReport>,
}

/// One route: usable when at least one address may be dialled.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// The route name.
    pub route: String,
    /// `enforce` or `monitor`.
    pub mode: &'static str,
    /// True when at least one upstream address may be dialled (in monitor
    /// mode, any resolved address).
    pub ready: bool,
    /// Each upstream URL.
    pub upstreams: Vec<UpstreamReport>,
    /// `required = true`: the process is not ready while this route is not.
    pub required: bool,
}

/// `/readyz`: ready when at least one route is, and every required route.
pub fn process_ready(routes: &[RouteReport]) -> bool {
    routes.iter().any(|r| r.ready) && routes.iter().all(|r| r.ready || !r.required)
}

/// Resolves and judges every upstream of every route of `snap`.
pub async fn preflight(snap: &Snapshot) -> Vec<RouteReport> {
    let mut out = Vec::with_capacity(snap.routes.len());
    for route in &snap.routes {
        out.push(route_report(snap, route).await);
    }
    out
}

async fn route_report(snap: &Snapshot, route: &Route) -> RouteReport {
    let policy = &route.spec.policy.policy;
    let mut upstreams = Vec::new();
    let mut ready = false;
    for upstream in &route.upstreams {
        let (error, addresses) = match upstream.resolve(&snap.resolver).await {
            Err(e) => (Some(Chain(&e).to_string()), Vec::new()),
            Ok(addrs) => {
                let reports: Vec<AddressReport> = addrs
                    .iter()
                    .map(|a| {
                        let v = policy.judge_side(
                            a.ip(),
                            Side::Upstream,
                            &snap.geo,
                            snap.operators.as_ref(),
                        );
                        AddressReport {
                            address: a.to_string(),
                            country: label(v.country),
                            allowed: v.passes() || v.advisory,
                            rule: v.rule.as_str(),
                            reason: v.reason.map(|r| r.as_str()),
                            operator: snap.operators.as_ref().map(|_| label(v.operator.country)),
                            asn: v.operator.asn,
                        }
                    })
                    .collect();
                (None, reports)
            }
        };
        ready |= addresses.iter().any(|a| a.allowed)
            || (policy.mode == Mode::Monitor && !addresses.is_empty());
        upstreams.push(UpstreamReport {
            url: upstream.url.url.clone(),
            error,
            addresses,
        });
    }
    RouteReport {
        route: route.spec.name.clone(),
        mode: policy.mode.as_str(),
        ready,
        upstreams,
        required: route.spec.required,
    }
}
