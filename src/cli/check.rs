//! `residency-proxy check`: validate the config and the database the way
//! `run` would, and print what would be enforced.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, PolicySpec, UpstreamHost};
use crate::geo::eea;
use crate::snapshot::{Evidence, Snapshot};

pub fn check(path: &Path, allow_unready_routes: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let keeping = audit_keeping(&config)?;
    let snap = Snapshot::build(config, &Evidence::detached())?;
    let export = export_check(&snap)?;
    print!("{}{keeping}{export}", summary(&snap));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    print!("{}", expiry(&snap, now));
    let now_signed = i64::try_from(now).unwrap_or(i64::MAX);
    print!(
        "{}{}",
        super::grants::identities_text(&snap.access, now_signed),
        super::grants::grants_text(&snap.access, now_signed)
    );
    print!("{}", super::transfers::check_transparency(&snap.config));
    let (unready, unresolved) = unready_routes(&snap)?;
    for line in &unresolved {
        println!("WARNING: {line}");
    }
    if unready.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if allow_unready_routes {
        for line in &unready {
            println!("WARNING: {line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "{}\n(pass --allow-unready-routes to accept such a route)",
        unready.join("\n")
    )
}

/// One line per route with no upstream address it may dial, resolved and
/// judged now as `/readyz` does: first the routes whose every upstream
/// resolved and none may be dialled (the policy refuses them: an error),
/// then those where a name did not resolve here (a warning: `run` starts
/// and waits for it, and `check` may run where the storage is unknown).
fn unready_routes(snap: &Snapshot) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let routes = runtime.block_on(crate::preflight::preflight(snap));
    let (unresolved, refused): (Vec<_>, Vec<_>) = routes
        .iter()
        .filter(|r| !r.ready)
        .partition(|r| r.upstreams.iter().any(|u| u.error.is_some()));
    let why = |r: &&crate::preflight::RouteReport| {
        let why: Vec<String> = r
            .upstreams
            .iter()
            .map(|u| match &u.error {
                Some(e) => format!("{}: {e}", u.url),
                None if u.addresses.is_empty() => format!("{}: no address", u.url),
                None => {
                    let each: Vec<String> = u
                        .addresses
                        .iter()
                        .map(|a| {
                            format!("{} {} {}", a.address, a.country, a.reason.unwrap_or(a.rule))
                        })
                        .collect();
                    format!("{}: {}", u.url, each.join(", "))
                }
            })
            .collect();
        why.join("; ")
    };
    Ok((
        refused
            .iter()
            .map(|r| {
                format!(
                    "route {} has no upstream address its policy allows: {}",
                    r.route,
                    why(r)
                )
            })
            .collect(),
        unresolved
            .iter()
            .map(|r| {
                format!(
                    "route {} has no upstream address that resolves here and its policy allows \
                     (judged again when it resolves): {}",
                    r.route,
                    why(r)
                )
            })
            .collect(),
    ))
}

/// A certificate expiring within this many days is warned about.
const CERTIFICATE_WARN_DAYS: i64 = 30;

/// Certificate expiry dates, and warnings (not failures: the proxy would
/// serve with them) for a certificate that expires within 30 days or has
/// expired, and for a database (the country one, and the operator one if
/// configured) older than `[geoip] max_age`.
fn expiry(snap: &Snapshot, now: u64) -> String {
    let mut out = String::new();
    let w = &mut out;
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    for c in &snap.certificates {
        let Some(t) = c.not_after else {
            let _ = writeln!(
                w,
                "WARNING: certificate {} ({}): expiry date unreadable",
                c.name,
                c.path.display()
            );
            continue;
        };
        let date = format_epoch(u64::try_from(t).unwrap_or(0));
        let days = (t - now_i).div_euclid(86_400);
        let _ = writeln!(
            w,
            "certificate {} ({}): expires {date} ({days} days)",
            c.name,
            c.path.display()
        );
        if t <= now_i {
            let _ = writeln!(
                w,
                "WARNING: certificate {} ({}) expired on {date}: clients refuse it",
                c.name,
                c.path.display()
            );
        } else if days < CERTIFICATE_WARN_DAYS {
            let _ = writeln!(
                w,
                "WARNING: certificate {} ({}) expires in {days} days ({date}): renew it",
                c.name,
                c.path.display()
            );
        }
    }
    let max_age = snap.config.geoip_max_age.as_secs();
    let operator = snap.operators.as_ref().map(|o| o.database());
    for (kind, db, moves) in
        std::iter::once(("geoip", &snap.geo, "address blocks move between countries")).chain(
            operator.map(|db| {
                (
                    "geoip operator",
                    db,
                    "address blocks change hands between networks",
                )
            }),
        )
    {
        let built = db.build_epoch();
        let age = now.saturating_sub(built);
        if age > max_age {
            let _ = writeln!(
                w,
                "WARNING: {kind} {}: built {} ({} days ago), older than [geoip] max_age ({} days): \
                 {moves}; install a fresh database",
                db.path().display(),
                format_epoch(built),
                age / 86_400,
                max_age / 86_400
            );
        }
    }
    out
}

/// The `[audit]` signing and rotation lines, the signing key read as `run`
/// reads it; empty when neither is configured.
fn audit_keeping(c: &Config) -> anyhow::Result<String> {
    let a = &c.audit;
    let mut out = String::new();
    if !a.enabled {
        return Ok(out);
    }
    if let Some(path) = &a.signing_key {
        let key = crate::audit::checkpoint::SigningKey::load(path)?;
        let origin = if a.origin.is_empty() {
            crate::audit::checkpoint::host_name()
        } else {
            a.origin.clone()
        };
        let _ = writeln!(
            out,
            "audit checkpoints: origin {origin}, key {} ({}), every {:?}, into {}",
            key.name(),
            path.display(),
            a.checkpoint_every,
            crate::audit::checkpoint::checkpoint_path(&a.path).display()
        );
    }
    if a.rotate_size.is_some() || a.rotate_every.is_some() {
        let size = a.rotate_size.map(|b| format!("at {b} bytes"));
        let every = a.rotate_every.map(|d| format!("every {d:?}"));
        let when: Vec<String> = size.into_iter().chain(every).collect();
        let _ = writeln!(out, "audit rotation: {}", when.join(" or "));
    }
    Ok(out)
}

/// The `[audit.export]` line: the secret read and the endpoint resolved
/// and judged as `run` does; an endpoint with no address in the area fails.
fn export_check(snap: &Snapshot) -> anyhow::Result<String> {
    let Some(spec) = snap
        .config
        .audit
        .export
        .as_ref()
        .filter(|_| snap.config.audit.enabled)
    else {
        return Ok(String::new());
    };
    crate::export::credentials(spec)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addrs = runtime.block_on(crate::export::preflight(spec, snap))?;
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let lock = spec.object_lock.map_or_else(
        || "no Object Lock".to_owned(),
        |(m, r)| format!("Object Lock {} for {}d", m.as_str(), r.as_secs() / 86_400),
    );
    let a = &snap.config.audit;
    let warning = if a.rotate_size.is_none() && a.rotate_every.is_none() {
        "WARNING: [audit.export] without [audit] rotate_size or rotate_every: no segment is ever closed, nothing is exported\n"
    } else {
        ""
    };
    Ok(format!(
        "audit export: {} bucket {} prefix \"{}\" ({lock}, spool_max {} bytes, when full: {}); allowed addresses: {}\n{warning}",
        spec.endpoint.url,
        spec.bucket,
        spec.prefix,
        spec.spool_max,
        if spec.fail_closed {
            "refuse requests"
        } else {
            "continue"
        },
        addrs.join(" ")
    ))
}

fn summary(snap: &Snapshot) -> String {
    let c = &snap.config;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "config {}: ok", c.path.display());
    let _ = writeln!(
        w,
        "geoip {}: {}, built {} (epoch {}), {} nodes",
        snap.geo.path().display(),
        snap.geo.database_type(),
        format_epoch(snap.geo.build_epoch()),
        snap.geo.build_epoch(),
        snap.geo.node_count()
    );
    if let Some(db) = snap.operators.as_ref().map(|o| o.database()) {
        let _ = writeln!(
            w,
            "geoip operator {}: {}, built {} (epoch {}), {} nodes",
            db.path().display(),
            db.database_type(),
            format_epoch(db.build_epoch()),
            db.build_epoch(),
            db.node_count()
        );
    }
    let _ = writeln!(w, "policy version: {}", snap.policy_version);
    let listen: Vec<String> = c.server.listen.iter().map(ToString::to_string).collect();
    let _ = writeln!(w, "listen: {}", listen.join(", "));
    if let Some(tls) = &c.server.tls {
        let tls_listen: Vec<String> = c
            .server
            .tls_listen
            .iter()
            .map(ToString::to_string)
            .collect();
        let mtls = match (&tls.client_ca, tls.client_auth_required) {
            (None, _) => "no client certificates".to_owned(),
            (Some(ca), true) => format!("client certificates required ({})", ca.display()),
            (Some(ca), false) => format!("client certificates optional ({})", ca.display()),
        };
        let _ = writeln!(
            w,
            "tls listen: {} (certificate {}, {} SNI certificate(s), {mtls}): ok",
            tls_listen.join(", "),
            tls.cert.display(),
            tls.sni.len()
        );
    }
    let _ = writeln!(
        w,
        "admin: {}",
        c.admin_listen
            .map_or_else(|| "disabled".to_owned(), |a| a.to_string())
    );
    if !c.audit.enabled {
        let _ = writeln!(
            w,
            "WARNING: audit trail disabled ([audit] enabled = false): requests will not be traced"
        );
    }
    let _ = writeln!(
        w,
        "audit: {} (object_key {}, purpose header {}{}, on error: {})",
        c.audit.path.display(),
        c.audit.object_key.as_str(),
        c.audit.purpose_header,
        if c.audit.require_purpose {
            ", required"
        } else {
            ""
        },
        if c.audit.fail_closed {
            "refuse requests"
        } else {
            "continue"
        }
    );
    let _ = writeln!(
        w,
        "client ip: {} (trusted proxies: {})",
        c.server.client_ip_source.as_str(),
        list_or_none(&c.server.trusted_proxies_text)
    );
    let nat64: Vec<String> = c.nat64_prefixes.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(
        w,
        "IPv4 unwrapped from: ::ffff:0:0/96 ::ffff:0:0:0/96 ::/96 2002::/16, NAT64 {}",
        list_or_none(&nat64)
    );
    let eea_codes: Vec<String> = eea().iter().map(|c| c.to_string()).collect();
    let _ = writeln!(
        w,
        "EEA alias ({} codes): {}",
        eea_codes.len(),
        eea_codes.join(" ")
    );
    let _ = writeln!(w, "policy:");
    policy(w, &c.policy, "  ");
    for r in &snap.routes {
        let s = &r.spec;
        let hosts: Vec<String> = s
            .hosts
            .iter()
            .map(|h| match h {
                crate::config::HostPattern::Exact(n) => n.clone(),
                crate::config::HostPattern::Suffix(n) => format!("*{n}"),
            })
            .collect();
        let _ = writeln!(
            w,
            "route {}: hosts {}, path_prefix {}, preserve_host {}",
            s.name,
            if hosts.is_empty() {
                "any".to_owned()
            } else {
                hosts.join(", ")
            },
            s.path_prefix,
            s.preserve_host
        );
        if !s.buckets.is_empty() {
            let _ = writeln!(w, "  buckets: {}", s.buckets.join(" "));
        }
        policy(w, &s.policy, "  ");
        for u in &s.upstreams {
            let _ = write!(w, "  upstream {}", u.url);
            match u.host {
                UpstreamHost::Ip(ip) => {
                    let v = s.policy.policy.judge_side(
                        ip,
                        crate::policy::Side::Upstream,
                        &snap.geo,
                        snap.operators.as_ref(),
                    );
                    let _ = writeln!(
                        w,
                        ": {} {} by {}",
                        crate::geo::label(v.country),
                        if v.passes() || v.advisory {
                            "allowed"
                        } else {
                            "rejected"
                        },
                        v.rule.as_str()
                    );
                }
                UpstreamHost::Name(_) => {
                    let _ = writeln!(w, ": resolved when connecting");
                }
            }
        }
    }
    route_warnings(w, &snap.config);
    out
}

/// Routes to the same storage that judge differently are where a request
/// spelled to match the laxer route would dodge the stricter one (issue 13):
/// the proxy reads every spelling the storage may act on, but the operator
/// should know where that matters.
fn route_warnings(w: &mut String, c: &crate::config::Config) {
    for (i, a) in c.routes.iter().enumerate() {
        for b in &c.routes[i + 1..] {
            let Some(shared) = a.upstreams.iter().find(|u| {
                b.upstreams
                    .iter()
                    .any(|v| v.host == u.host && v.port == u.port)
            }) else {
                continue;
            };
            let (ma, mb) = (a.policy.policy.mode, b.policy.policy.mode);
            let what = if ma != mb {
                format!("different modes ({} and {})", ma.as_str(), mb.as_str())
            } else if !crate::proxy::route::same_rules(&a.policy, &b.policy) {
                "different policies".to_owned()
            } else {
                continue;
            };
            let _ = writeln!(
                w,
                "WARNING: routes \"{}\" and \"{}\" reach the same upstream {} with {what}: \
                 a request is judged by the route its host, path_prefix and buckets match on \
                 what the storage acts on (or refused 400 when its spellings match both and \
                 neither is stricter); make sure the storage serves nothing of the stricter \
                 route's data outside what it matches",
                a.name, b.name, shared.url
            );
        }
    }
    if c.server.s3_domains.is_empty() && c.routes.iter().any(|r| !r.buckets.is_empty()) {
        let _ = writeln!(
            w,
            "WARNING: routes name buckets but [server] s3_domains is empty: a virtual-hosted \
             request (bucket.<domain>) is recognised only by a host starting with a bucket the \
             config names; declare the storage's domains"
        );
    }
}

fn policy(w: &mut String, p: &PolicySpec, indent: &str) {
    let _ = writeln!(w, "{indent}mode: {}", p.policy.mode.as_str());
    let actions = p.policy.on_foreign_operator;
    if actions != crate::policy::OperatorActions::default() {
        let operator_countries: Vec<String> = p
            .policy
            .operator_countries
            .iter()
            .map(|c| c.to_string())
            .collect();
        let _ = writeln!(
            w,
            "{indent}on_foreign_operator: client {}, upstream {}; operator_countries ({}): {}",
            actions.client.as_str(),
            actions.upstream.as_str(),
            operator_countries.len(),
            list_or_none(&operator_countries)
        );
    }
    let _ = writeln!(
        w,
        "{indent}allow_countries ({}): {}",
        p.allow_countries.len(),
        list_or_none(&p.allow_countries)
    );
    let _ = writeln!(
        w,
        "{indent}deny_countries: {}",
        list_or_none(&p.deny_countries)
    );
    let _ = writeln!(
        w,
        "{indent}unknown_country: {}",
        if p.policy.unknown_allowed {
            "allow"
        } else {
            "deny"
        }
    );
    let _ = writeln!(
        w,
        "{indent}allow_networks: {}",
        list_or_none(&p.allow_networks)
    );
    let _ = writeln!(
        w,
        "{indent}deny_networks: {}",
        list_or_none(&p.deny_networks)
    );
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(" ")
    }
}

/// `YYYY-MM-DD` of a Unix time, UTC: the date of the audit trail's own
/// timestamps ([`crate::audit::format_time`]), one calendar algorithm.
pub fn format_epoch(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let mut date = crate::audit::format_time(t);
    date.truncate("YYYY-MM-DD".len());
    date
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_dates() {
        assert_eq!(super::format_epoch(0), "1970-01-01");
        assert_eq!(super::format_epoch(1_781_725_900), "2026-06-17");
        assert_eq!(super::format_epoch(951_782_400), "2000-02-29");
    }
}
