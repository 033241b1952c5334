//! Plumbing so each test reads like the SPEC: a generated GeoIP database, a
//! recording origin server, the real proxy binary, and clients bound to
//! chosen loopback source addresses.

pub mod client;
pub mod data;
pub mod dns;
pub mod geo;
pub mod origin;
pub mod proxy;
pub mod tls;

pub use client::{Client, raw_exchange};
pub use dns::Dns;
pub use geo::{Layout, TestGeo, TestOperators};
pub use origin::Origin;
pub use proxy::Proxy;

/// Loopback addresses and the countries the standard test database gives them.
pub mod ips {
    pub const FR: &str = "127.0.0.2";
    pub const DE: &str = "127.0.0.3";
    pub const NO: &str = "127.0.0.4";
    pub const US: &str = "127.0.0.5";
    pub const CN: &str = "127.0.0.6";
    pub const CH: &str = "127.0.0.7";
    /// In no network of the database.
    pub const UNMAPPED: &str = "127.0.0.8";
    /// Where origins listen; mapped to DE.
    pub const ORIGIN: &str = "127.0.0.10";
    /// A second origin address, mapped to US.
    pub const ORIGIN_US: &str = "127.0.0.11";
    /// The trusted proxy in forwarding tests; mapped to FR.
    pub const TRUSTED: &str = "127.0.0.20";
}

/// The standard map of SPEC-like countries onto loopback addresses.
pub fn standard_geo(layout: Layout) -> TestGeo {
    TestGeo::new(layout)
        .map(ips::FR, "FR")
        .map(ips::DE, "DE")
        .map(ips::NO, "NO")
        .map(ips::US, "US")
        .map(ips::CN, "CN")
        .map(ips::CH, "CH")
        .map(ips::ORIGIN, "DE")
        .map(ips::ORIGIN_US, "US")
        .map(ips::TRUSTED, "FR")
}

/// A config with the standard test database, one route to `origin`, no
/// loopback allowance (so loopback clients are judged by country), and
/// `extra` TOML spliced into `[policy]`.
pub fn config(
    geo: &TestGeo,
    origin: &Origin,
    server_extra: &str,
    policy_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
{server_extra}

[admin]
listen = "127.0.0.1:0"

[geoip]
database = "{db}"

[policy]
allow_networks = []
{policy_extra}

[[route]]
name = "s3"
upstreams = ["{upstream}"]
{route_extra}
"#,
        db = geo.path().display(),
        upstream = origin.url(),
    )
}
