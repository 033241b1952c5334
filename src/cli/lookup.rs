//! `residency-proxy lookup IP...`: the country and verdict of each address
//! under the configured global policy, judged as a client. With `[geoip]
//! operator_database`, also the operator's country and, when known, its AS
//! number and organisation (SPEC §11).

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;

use crate::config::Config;
use crate::geo::{GeoDb, OperatorDb, label};
use crate::policy::{Decision, Side};

pub fn lookup(path: &Path, json: bool, ips: &[String]) -> anyhow::Result<ExitCode> {
    let mut parsed = Vec::with_capacity(ips.len());
    for text in ips {
        match text.parse::<IpAddr>() {
            Ok(ip) => parsed.push(ip),
            Err(_) => bail!(
                "invalid IP address \"{text}\" (expected IPv4 such as 8.8.8.8 or IPv6 such as 2001:db8::1)"
            ),
        }
    }
    let config = Config::load(path)?;
    let geo = GeoDb::open(&config.geoip_database)?;
    let operators = config
        .operator_database
        .as_deref()
        .map(OperatorDb::open)
        .transpose()?;
    let policy = &config.policy.policy;
    let mut rows = Vec::new();
    for ip in parsed {
        let v = policy.judge_side(ip, Side::Client, &geo, operators.as_ref());
        let decision = policy.decide(&v);
        let mut row = serde_json::json!({
            "ip": ip.to_string(),
            "judged_as": v.ip.map_or_else(|| ip.to_string(), |j| j.to_string()),
            "country": label(v.country),
            "decision": decision.as_str(),
            "reason": v.reason.map(|r| r.as_str()),
            "rule": v.rule.as_str(),
        });
        let organization = operators
            .as_ref()
            .zip(v.ip)
            .and_then(|(db, judged)| db.organization(judged));
        let operated = operators.as_ref().map(|_| {
            if let Some(obj) = row.as_object_mut() {
                obj.insert("operator".into(), label(v.operator.country).into());
                obj.insert("asn".into(), v.operator.asn.into());
                obj.insert("organization".into(), organization.clone().into());
            }
            let mut text = format!("\toperated {}", label(v.operator.country));
            if let Some(asn) = v.operator.asn {
                text.push_str(&format!(" AS{asn}"));
            }
            if let Some(org) = &organization {
                text.push_str(&format!(" {org}"));
            }
            text
        });
        rows.push(row);
        if !json {
            let wrapped =
                v.ip.filter(|j| *j != ip)
                    .map_or_else(String::new, |j| format!(" (judged as {j})"));
            let why = match v.reason {
                Some(r) => format!("{} by {}", r.as_str(), v.rule.as_str()),
                None => format!("by {}", v.rule.as_str()),
            };
            let word = match decision {
                Decision::Allowed => "allowed",
                Decision::Blocked => "blocked",
                Decision::Flagged => "flagged",
            };
            let operated = operated.unwrap_or_default();
            println!(
                "{ip}{wrapped}\t{}{operated}\t{word}\t{why}",
                label(v.country)
            );
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(ExitCode::SUCCESS)
}
