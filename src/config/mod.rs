//! Configuration: the TOML file (`raw`), its validation with located errors
//! (`validate`), and the compiled, typed result ([`Config`]) that `run`,
//! `check`, `lookup` and reload all build from the same function.

pub mod access;
mod duration;
mod error;
mod raw;
mod transparency;
mod validate;
mod vocab;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::parse as parse_duration;
pub(crate) use duration::parse_age;
pub use error::{ConfigError, Problem, read_file};
pub(crate) use error::{Problems, line_col, shown};
pub use raw::{ClientIpSource, TrustedProxyWithoutClient};
pub use transparency::{Declared, LegalBasis, Transparency, warnings as transparency_warnings};
pub use vocab::{ObjectKeyMode, valid_note_name};

use crate::geo::Nat64Prefixes;
use crate::policy::{NetworkTable, Policy};

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/residency-proxy.toml";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// `[server]`
    pub server: ServerSpec,
    /// `[admin] listen`; `None` when disabled.
    pub admin_listen: Option<SocketAddr>,
    /// `[resolver]`
    pub resolver: ResolverSpec,
    /// `[geoip] database`
    pub geoip_database: PathBuf,
    /// `[geoip] watch`: poll interval when the database file is watched.
    pub geoip_watch: Option<Duration>,
    /// `[geoip] max_age`: `check` warns when the database is older.
    pub geoip_max_age: Duration,
    /// `[geoip] nat64_prefixes`, also held by every policy and the trusted
    /// proxies table, which canonicalise with them.
    pub nat64_prefixes: Nat64Prefixes,
    /// `[policy]`, compiled.
    pub policy: PolicySpec,
    /// `[[route]]`, in file order.
    pub routes: Vec<RouteSpec>,
    /// `[audit]`
    pub audit: AuditSpec,
    /// `[geoip] operator_database`: the operator `.mmdb` (SPEC §11), if any.
    pub operator_database: Option<PathBuf>,
    /// `[identities]` and `[grants]` (SPEC §9); their files are read when
    /// the snapshot is built.
    pub access: access::AccessSpec,
    /// `[transparency]`: what the transfer report publishes beside the
    /// flows; `None` when the section is absent.
    pub transparency: Option<Transparency>,
}

/// `[audit]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSpec {
    /// Whether the trail is written at all.
    pub enabled: bool,
    /// The JSON Lines file.
    pub path: PathBuf,
    /// Header carrying the purpose of access.
    pub purpose_header: http::HeaderName,
    /// A request without purpose gets 428.
    pub require_purpose: bool,
    /// How object keys are recorded.
    pub object_key: ObjectKeyMode,
    /// Refuse requests (503) while the trail cannot be written.
    pub fail_closed: bool,
    /// Most records waiting to be written on one worker thread (and so in
    /// one write); a request finding the queue full writes them itself.
    pub queue: usize,
    /// Refusals by the HTTP layer recorded one by one per
    /// `protocol_error_window`; the rest are counted and summarised.
    pub protocol_error_records: u64,
    /// The window of `protocol_error_records`.
    pub protocol_error_window: std::time::Duration,
    /// Private key file signing checkpoints (SPEC §10).
    pub signing_key: Option<PathBuf>,
    /// This proxy's name in checkpoints; empty: the host name.
    pub origin: String,
    /// How often a checkpoint is signed.
    pub checkpoint_every: std::time::Duration,
    /// Rotate at this many bytes.
    pub rotate_size: Option<u64>,
    /// Rotate after this long.
    pub rotate_every: Option<std::time::Duration>,
    /// `[audit.export]`: closed segments uploaded to S3.
    pub export: Option<ExportSpec>,
}

/// `[audit.export]`, typed (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    /// The S3 service, judged by the global policy like an upstream.
    pub endpoint: UpstreamUrl,
    /// The bucket.
    pub bucket: String,
    /// Prepended to `<origin>/<segment file name>`.
    pub prefix: String,
    /// The SigV4 region.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The file holding the secret access key (read at start).
    pub secret_access_key_file: PathBuf,
    /// Object Lock mode and retention, when set.
    pub object_lock: Option<(ObjectLockMode, std::time::Duration)>,
    /// Bytes of unacknowledged files before `fail_closed` applies.
    pub spool_max: u64,
    /// Refuse requests (503) while the spool is over `spool_max`.
    pub fail_closed: bool,
}

/// `object_lock_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLockMode {
    /// Nobody can delete or shorten the retention, not even the root user.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl ObjectLockMode {
    /// The `x-amz-object-lock-mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "COMPLIANCE",
            Self::Governance => "GOVERNANCE",
        }
    }
}

/// `[server]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Plain HTTP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listen addresses.
    pub tls_listen: Vec<SocketAddr>,
    /// `[server.tls]`
    pub tls: Option<TlsSpec>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: NetworkTable,
    /// The trusted proxy networks as written, for `check`.
    pub trusted_proxies_text: Vec<String>,
    /// Where the client address comes from.
    pub client_ip_source: ClientIpSource,
    /// Who the client is when a trusted proxy names none.
    pub trusted_proxy_without_client: TrustedProxyWithoutClient,
    /// Slowloris guard for the header section.
    pub header_read_timeout: Duration,
    /// No bytes either way for this long closes the connection.
    pub idle_timeout: Duration,
    /// Largest header section, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields per request.
    pub max_headers: usize,
    /// Most open client connections.
    pub max_connections: usize,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Virtual-hosting domains of the storage, canonical (lower case, no
    /// trailing dot).
    pub s3_domains: Vec<String>,
}

/// `[server.tls]`, typed (files are read when the snapshot is built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Default certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates; `None`: no mTLS.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required (when `client_ca` is set).
    pub client_auth_required: bool,
    /// Certificates chosen by SNI: names, chain, key.
    pub sni: Vec<(Vec<String>, PathBuf, PathBuf)>,
    /// `watch`: poll interval when the certificate and key files are watched.
    pub watch: Option<Duration>,
}

/// `[resolver]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSpec {
    /// Name servers; empty means the system configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Cache floor for answers.
    pub min_ttl: Duration,
    /// Cache ceiling for answers.
    pub max_ttl: Duration,
    /// Per-attempt query timeout.
    pub timeout: Duration,
}

/// A policy with the text it was compiled from, for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The compiled rules.
    pub policy: Policy,
    /// `allow_countries` after alias expansion, as codes.
    pub allow_countries: Vec<String>,
    /// `deny_countries` after alias expansion, as codes.
    pub deny_countries: Vec<String>,
    /// `allow_networks` as written.
    pub allow_networks: Vec<String>,
    /// `deny_networks` as written.
    pub deny_networks: Vec<String>,
}

/// One `[[route]]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Unique name.
    pub name: String,
    /// Host patterns; empty matches any host.
    pub hosts: Vec<HostPattern>,
    /// Path prefix, compared with the decoded, normalised path
    /// (`proxy::route`); one ending in `/` also matches without it.
    pub path_prefix: String,
    /// Upstreams, tried in order.
    pub upstreams: Vec<UpstreamUrl>,
    /// Keep the client's Host header.
    pub preserve_host: bool,
    /// Time to open a connection to one upstream IP: TCP connect, TLS and
    /// HTTP handshakes together.
    pub connect_timeout: Duration,
    /// Time allowed for the response head after the request body was sent.
    pub response_timeout: Duration,
    /// `[route.tls] ca`: private CA for `https://` upstreams.
    pub tls_ca: Option<PathBuf>,
    /// The route's policy (global with the route's overrides).
    pub policy: PolicySpec,
    /// S3 buckets served (path-style or virtual-hosted); empty: any.
    pub buckets: Vec<String>,
    /// `required`: `/readyz` is 503 while this route has no upstream
    /// address it may dial (else only when no route has one).
    pub required: bool,
}

/// A `hosts` entry: an exact name, or `*.suffix` for virtual-hosted buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Matches this name exactly (lower case, no port, no trailing dot; an
    /// IP literal in its canonical text).
    Exact(String),
    /// `*.example.com`: matches any name ending in `.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// True when `host` (lower case, port removed) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name.eq_ignore_ascii_case(host),
            Self::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

/// Where an upstream is: `http://host:port` or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// The URL as written.
    pub url: String,
    /// `https://`: TLS to the upstream, certificate checked against the host.
    pub https: bool,
    /// Host name or IP literal.
    pub host: UpstreamHost,
    /// TCP port.
    pub port: u16,
    /// `host:port` as sent in `Host` when `preserve_host = false`.
    pub authority: String,
}

/// An upstream's host part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// A DNS name, resolved when connecting.
    Name(String),
    /// An IP literal, judged like any resolved IP.
    Ip(IpAddr),
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if unreadable; [`ConfigError::Invalid`] with
    /// every problem found, each at its line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = error::read_file(path)?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem found.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        validate::validate(path, text)
    }
}

#[cfg(test)]
mod tests_bounds;

#[cfg(test)]
mod tests_reported_once;
