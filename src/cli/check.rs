//! `residency-proxy check`: validate the config and the database the way
//! `run` would, and print what would be enforced.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, PolicySpec, UpstreamHost};
use crate::geo::eea;
use crate::snapshot::{Evidence, Snapshot};

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let snap = Snapshot::build(config, &Evidence::detached())?;
    print!("{}", summary(&snap));
    Ok(ExitCode::SUCCESS)
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
    out
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

/// `YYYY-MM-DD` of a Unix time, UTC (civil-from-days, H. Hinnant).
pub fn format_epoch(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
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
