//! residency-proxy: a reverse proxy that keeps health data inside the EEA.
//!
//! The request path, in order:
//!
//! 1. [`proxy::listener`] accepts a connection (limits, PROXY protocol);
//! 2. [`proxy::service`] takes the current [`snapshot::Snapshot`] once;
//! 3. [`proxy::route`] chooses the route by Host and path prefix;
//! 4. [`proxy::client_ip`] establishes the client address;
//! 5. [`policy::Policy::judge`] gives the [`policy::Verdict`] (via [`geo`]);
//! 6. blocked: [`proxy::respond`] answers 451 before any body is read;
//! 7. allowed: [`upstream`] resolves, judges and dials the upstream, and the
//!    bodies stream both ways.
//!
//! Refused before the policy judged it (by hyper or h2, or by the service
//! for a bad `Host`, no route, …), a request leaves its record and count
//! through [`proxy::refusal`].
//!
//! [`config`] builds everything a snapshot holds; [`cli`] is the binary.

pub mod admin;
pub mod audit;
pub mod body;
pub mod cartography;
pub mod cli;
pub mod config;
pub mod geo;
pub mod live_operated;
pub mod markup;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod snapshot;
pub mod tls;
pub mod transfer;
pub mod upstream;
