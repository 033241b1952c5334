//! `residency-proxy upstreams`: resolve every route's upstreams now and show
//! each address's country and verdict; exit 1 if a route could not connect
//! anywhere.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::preflight::{RouteReport, preflight};
use crate::snapshot::{Evidence, Snapshot};

pub fn upstreams(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let snap = Snapshot::build(Config::load(path)?, &Evidence::detached())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reports = runtime.block_on(preflight(&snap));
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", table(&reports));
    }
    let all_ready = reports.iter().all(|r| r.ready);
    if !all_ready {
        for r in reports.iter().filter(|r| !r.ready) {
            eprintln!("route {}: no upstream address may be used", r.route);
        }
    }
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn table(reports: &[RouteReport]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "route {} ({}): {}",
            r.route,
            r.mode,
            if r.ready { "ready" } else { "NOT READY" }
        );
        for u in &r.upstreams {
            let _ = writeln!(out, "  upstream {}", u.url);
            if let Some(e) = &u.error {
                let _ = writeln!(out, "    error: {e}");
            }
            for a in &u.addresses {
                let verdict = match (a.reason, a.allowed) {
                    (None, _) => format!("allowed by {}", a.rule),
                    (Some(reason), true) => format!("flagged: {reason} by {}", a.rule),
                    (Some(reason), false) => format!("rejected: {reason} by {}", a.rule),
                };
                let operated = a.operator.map_or_else(String::new, |op| {
                    let asn = a.asn.map_or_else(String::new, |n| format!(" AS{n}"));
                    format!("\toperated {op}{asn}")
                });
                let _ = writeln!(out, "    {}\t{}{operated}\t{verdict}", a.address, a.country);
            }
        }
    }
    out
}
