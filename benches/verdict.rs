//! Question: how long does judging one client address take, compared with
//! the cheapest thing a proxy could do instead (a bare `HashSet` lookup)?
//!
//! Run: `cargo bench --bench verdict`
//!
//! Inputs: the shipped database and a mix of allowed, blocked, unknown,
//! IPv6, IPv6-wrapped and Teredo addresses, judged under the shipped policy.
//!
//! Last ratios seen (2026-11-28 19:35 UTC, 2-core x86_64 VM, one run):
//! per address, `judge` ≈ 55 ns, `geo_country_only` ≈ 68 ns, the HashSet
//! baseline ≈ 10 ns: judging costs ≈ 5.6× a bare set lookup, under the
//! 100 ns target, and allocates nothing (tests/alloc.rs).
//!
//! With the operator database (SPEC §11; 2026-12-06 02:53 UTC, same VM
//! shared with ~8 concurrent compiles, so absolute times are inflated; one
//! short run, `--warm-up-time 1 --measurement-time 3`): per address, `judge`
//! ≈ 165 ns, `geo_country_only` ≈ 191 ns, `operator_only` ≈ 188 ns,
//! `judge_with_operator` ≈ 335 ns, baseline ≈ 16 ns: the second lookup
//! costs about what the first does, so a verdict with an operator database
//! takes ≈ 2× one without. Rerun on a quiet machine for absolute numbers.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use residency_proxy::config::Config;
use residency_proxy::geo::{GeoDb, OperatorDb};
use residency_proxy::policy::Side;

const MIX: [&str; 12] = [
    "90.0.0.1",
    "82.64.0.1",
    "8.8.8.8",
    "1.1.1.1",
    "10.1.2.3",
    "192.168.1.1",
    "2a01:cb00::1",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::5a00:1",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
];

fn verdict(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("config/residency-proxy.toml")).expect("shipped config");
    let geo = GeoDb::open(&root.join(&config.geoip_database)).expect("shipped database");
    let policy = &config.policy.policy;
    let ips: Vec<IpAddr> = MIX.iter().map(|s| s.parse().expect("literal")).collect();
    let set: HashSet<IpAddr> = ips.iter().step_by(2).copied().collect();

    let mut g = c.benchmark_group("verdict");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("baseline_hashset_contains", |b| {
        b.iter(|| ips.iter().filter(|ip| set.contains(black_box(*ip))).count())
    });
    g.bench_function("geo_country_only", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|ip| geo.country(black_box(**ip)).is_some())
                .count()
        })
    });
    g.bench_function("judge", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|ip| policy.judge(black_box(**ip), &geo).passes())
                .count()
        })
    });
    // SPEC §11: the second lookup, alone and inside the verdict.
    let ops = OperatorDb::open(&root.join("geodata/iptoasn-country.mmdb"))
        .expect("shipped operator database");
    g.bench_function("operator_only", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|ip| ops.operator(black_box(**ip)).country.is_some())
                .count()
        })
    });
    g.bench_function("judge_with_operator", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|ip| {
                    policy
                        .judge_side(black_box(**ip), Side::Upstream, &geo, Some(&ops))
                        .passes()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, verdict);
criterion_main!(benches);
