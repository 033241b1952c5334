//! The integration suite: one binary, a file per topic. Most tests run the
//! real `residency-proxy` binary on a config they write, with a GeoIP
//! database they generate, in front of a recording origin, with clients
//! bound to loopback addresses that the database maps to countries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail by panicking"
)]

mod support;

mod access;
mod access_attacks;
mod adversarial;
mod attack;
mod audit;
mod checkpoint;
mod cli;
mod client_ip;
mod decisions;
mod deploy;
mod embedded;
mod evidence;
mod export;
mod faults;
mod forwarding;
mod geodb;
mod lifecycle;
mod limits;
mod operations;
mod operator;
mod operator_values;
mod policy_engine;
mod progress;
mod readiness;
mod refusals;
mod reload;
mod starvation;
mod streaming;
mod tls_reload;
mod transfers;
mod upstream_dns;
