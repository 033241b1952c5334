//! residency-proxy: a reverse proxy that keeps health data inside the EEA.
//!
//! [`proxy::listener`] accepts a connection (limits, PROXY protocol, TLS);
//! each request on it then goes through named phases in
//! [`proxy::service`], carrying one [`proxy::context::RequestCtx`] (the
//! current [`snapshot::Snapshot`], taken once per request; the connection;
//! the client address; the request id; the route once chosen; the
//! evidence):
//!
//! 1. **admit**: what this proxy does not serve at all (audit trail down
//!    under fail-closed, `CONNECT`, too many headers, odd framing);
//! 2. **route**: [`proxy::route`] chooses the route by `Host` and path as
//!    the storage will read them ([`normalise`]);
//! 3. **judge client**: one function returning the verdict or a stop:
//!    [`policy::Policy::judge_side`] judges the client's address (country,
//!    networks, and operator jurisdiction when an operator database is
//!    set: [`geo::OperatorDb`]); then governed access ([`proxy::access`]):
//!    the identity registry may refuse ([`refusal::Refusal::Access`]) and a
//!    signed grant may admit a client blocked for its country; the purpose
//!    of access is checked last;
//! 4. **forward**: [`upstream`] resolves, judges and dials the upstream
//!    (a judged address only), and the bodies stream both ways;
//! 5. **finish**: the response leaves with its evidence (metrics,
//!    cartography, audit record) written first.
//!
//! Any of 1-4 may stop the request with one [`proxy::respond::Stop`]
//! (a [`refusal::Refusal`], a 451 block, an upstream failure), which
//! [`proxy::respond::answer`] alone turns into a response, before any body
//! byte is read. Refused by the HTTP layer before the service ran (hyper or
//! h2), a request leaves its record and count through [`proxy::refusal`].
//!
//! [`config`] builds everything a snapshot holds; [`cli`] is the binary.
//! Dependencies point one way (`scripts/deps` lists them and fails on a
//! circle): [`worker`], [`refusal`], [`normalise`] and [`geo`] are leaves;
//! [`preflight`] and [`export`] use the snapshot and the upstream side,
//! neither of which imports the other.

pub mod access;
pub mod admin;
pub mod audit;
pub mod cartography;
pub mod cli;
pub mod config;
pub mod export;
pub mod geo;
pub mod live_operated;
pub mod markup;
pub mod metrics;
pub mod normalise;
pub mod policy;
pub mod preflight;
pub mod proxy;
pub mod refusal;
pub mod reload;
pub mod snapshot;
pub mod tls;
pub mod transfer;
pub mod upstream;
pub mod worker;
