//! The serde mirror of the TOML file. Every struct refuses unknown keys;
//! values that are checked after parsing keep their span for error positions.
//! Defaults here are the documented defaults of `config/residency-proxy.toml`.

use serde::Deserialize;
use toml::Spanned;

/// Text with its position in the file.
pub type Text = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[admin]`
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[geoip]`
    #[serde(default)]
    pub geoip: RawGeoip,
    /// `[policy]`
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[resolver]`
    #[serde(default)]
    pub resolver: RawResolver,
    /// `[[route]]`
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    /// `[audit]`
    #[serde(default)]
    pub audit: RawAudit,
    /// `[identities]` (SPEC §9); absent: no registry.
    #[serde(default)]
    pub identities: Option<super::access::RawIdentities>,
    /// `[grants]` (SPEC §9); absent: no grants.
    #[serde(default)]
    pub grants: Option<super::access::RawGrants>,
    /// `[transparency]`
    #[serde(default)]
    pub transparency: Option<Spanned<super::transparency::RawTransparency>>,
}

/// `[audit]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// false: no trail at all (benchmarks only).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The JSON Lines file.
    #[serde(default = "default_audit_path")]
    pub path: Text,
    /// Request header carrying the purpose of access.
    #[serde(default = "default_purpose_header")]
    pub purpose_header: Text,
    /// Refuse requests without a purpose (428).
    #[serde(default)]
    pub require_purpose: bool,
    /// How object keys are recorded.
    #[serde(default)]
    pub object_key: RawObjectKey,
    /// What to do when the audit file cannot be written.
    #[serde(default)]
    pub on_error: RawOnError,
    /// Most records waiting to be written on one worker thread.
    #[serde(default = "default_audit_queue")]
    pub queue: Spanned<u64>,
    /// Protocol-error refusals recorded one by one per window.
    #[serde(default = "default_protocol_error_records")]
    pub protocol_error_records: Spanned<u64>,
    /// The window of `protocol_error_records`.
    #[serde(default = "default_protocol_error_window")]
    pub protocol_error_window: Text,
    /// Private key signing checkpoints; empty: none.
    #[serde(default = "empty_text")]
    pub signing_key: Text,
    /// This proxy's name in checkpoints; empty: the host name.
    #[serde(default = "empty_text")]
    pub origin: Text,
    /// How often a checkpoint is signed.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: Text,
    /// Rotate at this many bytes; 0: never.
    #[serde(default = "zero")]
    pub rotate_size: Spanned<u64>,
    /// Rotate after this long; 0s: never.
    #[serde(default = "default_rotate_every")]
    pub rotate_every: Text,
    /// `[audit.export]`: closed segments uploaded to S3; absent: none.
    #[serde(default)]
    pub export: Option<RawExport>,
}

/// `[audit.export]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// `http://host:port` or `https://host:port` of the S3 service.
    pub endpoint: Text,
    /// The bucket.
    pub bucket: Text,
    /// Prepended to `<origin>/<segment file name>`.
    #[serde(default = "empty_text")]
    pub prefix: Text,
    /// The SigV4 region.
    pub region: Text,
    /// The access key id.
    pub access_key_id: Text,
    /// A file holding the secret access key.
    pub secret_access_key_file: Text,
    /// "" (none), "COMPLIANCE" or "GOVERNANCE".
    #[serde(default = "empty_text")]
    pub object_lock_mode: Text,
    /// Object Lock retention; required with a mode.
    #[serde(default = "empty_text")]
    pub retain: Text,
    /// Bytes of unacknowledged segments before `on_error` applies.
    #[serde(default = "default_spool_max")]
    pub spool_max: Spanned<u64>,
    /// What to do when the spool is full.
    #[serde(default)]
    pub on_error: RawOnError,
}

fn default_spool_max() -> Spanned<u64> {
    Spanned::new(0..0, 1 << 30)
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            enabled: true,
            path: default_audit_path(),
            purpose_header: default_purpose_header(),
            require_purpose: false,
            object_key: RawObjectKey::default(),
            on_error: RawOnError::default(),
            queue: default_audit_queue(),
            protocol_error_records: default_protocol_error_records(),
            protocol_error_window: default_protocol_error_window(),
            signing_key: empty_text(),
            origin: empty_text(),
            checkpoint_every: default_checkpoint_every(),
            rotate_size: zero(),
            rotate_every: default_rotate_every(),
            export: None,
        }
    }
}

/// `object_key = "full" | "sha256" | "none"`
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawObjectKey {
    /// The key as requested.
    #[default]
    Full,
    /// Its SHA-256.
    Sha256,
    /// Not recorded.
    None,
}

/// `on_error = "fail-closed" | "continue"`
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RawOnError {
    /// Refuse requests with 503 while records cannot be written.
    #[default]
    FailClosed,
    /// Serve requests untraced, counting the failures.
    Continue,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address of the admin listener (`/healthz`, `/readyz`); "" disables it.
    #[serde(default = "default_admin_listen")]
    pub listen: Text,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

/// `[resolver]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// DNS servers as `IP` or `IP:port`; empty: the system's (/etc/resolv.conf).
    #[serde(default)]
    pub nameservers: Vec<Text>,
    /// Shortest time an answer is cached, whatever its TTL.
    #[serde(default = "default_min_ttl")]
    pub min_ttl: Text,
    /// Longest time an answer is cached, whatever its TTL: the bound on how
    /// long a changed record can take to be seen.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: Text,
    /// Time allowed for one DNS query attempt (two attempts per server).
    #[serde(default = "default_dns_timeout")]
    pub timeout: Text,
}

impl Default for RawResolver {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            min_ttl: default_min_ttl(),
            max_ttl: default_max_ttl(),
            timeout: default_dns_timeout(),
        }
    }
}

/// `[route.tls]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTls {
    /// PEM file of the CA certificates that sign the upstream's certificate;
    /// absent: the system's trusted roots.
    pub ca: Option<Text>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Plain HTTP/1.1 listen addresses.
    #[serde(default = "default_listen")]
    pub listen: Vec<Text>,
    /// HTTPS listen addresses (HTTP/1.1 and h2 by ALPN).
    #[serde(default)]
    pub tls_listen: Vec<Text>,
    /// `[server.tls]`: certificates for `tls_listen`.
    pub tls: Option<RawServerTls>,
    /// CIDRs whose forwarding headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Text>,
    /// Where the client address comes from.
    #[serde(default)]
    pub client_ip_source: ClientIpSource,
    /// Who the client is when a trusted proxy names none.
    #[serde(default)]
    pub trusted_proxy_without_client: TrustedProxyWithoutClient,
    /// Time allowed to send a request's header section.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Text,
    /// A connection with no bytes read or written for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Text,
    /// Largest request header section, in bytes; larger ones get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Spanned<u64>,
    /// Most header fields in one request; more get 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: Spanned<u64>,
    /// Most client connections open at once; further ones wait in the
    /// kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<u64>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Text,
    /// Domains under which the storage serves virtual-hosted buckets
    /// (`bucket.<domain>`).
    #[serde(default)]
    pub s3_domains: Vec<Text>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_listen: Vec::new(),
            tls: None,
            trusted_proxies: Vec::new(),
            client_ip_source: ClientIpSource::default(),
            trusted_proxy_without_client: TrustedProxyWithoutClient::default(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_connections: default_max_connections(),
            shutdown_grace: default_shutdown_grace(),
            s3_domains: Vec::new(),
        }
    }
}

/// `[server.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: Text,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Text,
    /// PEM CA certificates for client certificates (mTLS); absent: no mTLS.
    pub client_ca: Option<Text>,
    /// `required` or `optional` client certificates when `client_ca` is set.
    #[serde(default)]
    pub client_auth: RawClientAuth,
    /// Further certificates, chosen by SNI.
    #[serde(default)]
    pub sni: Vec<RawSniCert>,
    /// Reload when a certificate or key file is replaced (renewal).
    #[serde(default)]
    pub watch: bool,
    /// How often the files are checked when `watch = true`.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: Text,
}

/// `[[server.tls.sni]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSniCert {
    /// Host names (or `*.suffix`) this certificate serves.
    pub names: Vec<Text>,
    /// PEM certificate chain.
    pub cert: Text,
    /// PEM private key.
    pub key: Text,
}

/// `client_auth`
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuth {
    /// Handshakes without a valid client certificate are refused.
    #[default]
    Required,
    /// A client certificate is verified if presented, but not demanded.
    Optional,
}

/// Where the client address is taken from (SPEC §4).
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpSource {
    /// The socket peer.
    #[default]
    Peer,
    /// `X-Forwarded-For`, from trusted proxies only.
    XForwardedFor,
    /// `Forwarded` (RFC 7239), from trusted proxies only.
    Forwarded,
    /// The PROXY protocol v1/v2 header, from trusted proxies only.
    ProxyProtocol,
}

impl ClientIpSource {
    /// The config value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::ProxyProtocol => "proxy-protocol",
        }
    }
}

/// Who the client is when a trusted proxy names none: PROXY protocol
/// `UNKNOWN`, `LOCAL`, an unspecified or UNIX family; no forwarding header;
/// a chain of trusted proxies only.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TrustedProxyWithoutClient {
    /// Nobody: the request is judged `untraceable_address`.
    #[default]
    Untraceable,
    /// The trusted proxy itself (load-balancer health checks).
    Peer,
}

/// `[geoip]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoip {
    /// Path of the `.mmdb` file, relative to the working directory.
    #[serde(default = "default_database")]
    pub database: Text,
    /// Reload when the database file is replaced.
    #[serde(default)]
    pub watch: bool,
    /// How often the file is checked when `watch = true`.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: Text,
    /// Age of the database's build past which `check` warns.
    #[serde(default = "default_geoip_max_age")]
    pub max_age: Text,
    /// NAT64 prefixes (RFC 6052) whose addresses embed an IPv4 address.
    #[serde(default = "default_nat64_prefixes")]
    pub nat64_prefixes: Vec<Text>,
    /// Path of the operator `.mmdb` (SPEC §11); none by default.
    #[serde(default)]
    pub operator_database: Option<Text>,
}

impl Default for RawGeoip {
    fn default() -> Self {
        Self {
            database: default_database(),
            watch: false,
            watch_interval: default_watch_interval(),
            max_age: default_geoip_max_age(),
            nat64_prefixes: default_nat64_prefixes(),
            operator_database: None,
        }
    }
}

/// `enforce` or `monitor`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    /// Block.
    #[default]
    Enforce,
    /// Pass and flag.
    Monitor,
}

/// What to do with an address the database has no country for.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawUnknown {
    /// Fail the policy.
    #[default]
    Deny,
    /// Pass the policy.
    Allow,
}

/// `[policy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// `enforce` | `monitor`.
    #[serde(default)]
    pub mode: RawMode,
    /// ISO codes or `EEA`.
    #[serde(default = "default_allow_countries")]
    pub allow_countries: Vec<Text>,
    /// ISO codes or `EEA`; wins over allow.
    #[serde(default)]
    pub deny_countries: Vec<Text>,
    /// `deny` | `allow`.
    #[serde(default)]
    pub unknown_country: RawUnknown,
    /// CIDRs that always pass (after `deny_networks`).
    #[serde(default = "default_allow_networks")]
    pub allow_networks: Vec<Text>,
    /// CIDRs that always fail.
    #[serde(default)]
    pub deny_networks: Vec<Text>,
    /// ISO codes or `EEA`: operators that raise no `foreign_operator`.
    #[serde(default = "default_allow_countries")]
    pub operator_countries: Vec<Text>,
    /// `"ignore"` | `"flag"` | `"block"`, or `{ client = …, upstream = … }`;
    /// checked in `validate`, so errors carry a position.
    #[serde(default)]
    pub on_foreign_operator: Option<Spanned<toml::Value>>,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            mode: RawMode::default(),
            allow_countries: default_allow_countries(),
            deny_countries: Vec::new(),
            unknown_country: RawUnknown::default(),
            allow_networks: default_allow_networks(),
            deny_networks: Vec::new(),
            operator_countries: default_allow_countries(),
            on_foreign_operator: None,
        }
    }
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, used in metrics and audit.
    pub name: Text,
    /// Host header patterns; empty matches any host.
    #[serde(default)]
    pub hosts: Vec<Text>,
    /// Path prefix the request target must start with.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: Text,
    /// `http://host:port` URLs.
    pub upstreams: Vec<Text>,
    /// Keep the client's Host header (SigV4 signs it).
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Time allowed to open a TCP connection to one upstream IP.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Text,
    /// Time allowed for the response head once the request is fully sent.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Text,
    /// Overrides `[policy] mode`.
    pub mode: Option<RawMode>,
    /// Replaces `[policy] allow_countries`.
    pub allow_countries: Option<Vec<Text>>,
    /// Replaces `[policy] deny_countries`.
    pub deny_countries: Option<Vec<Text>>,
    /// Overrides `[policy] unknown_country`.
    pub unknown_country: Option<RawUnknown>,
    /// Replaces `[policy] allow_networks`.
    pub allow_networks: Option<Vec<Text>>,
    /// Replaces `[policy] deny_networks`.
    pub deny_networks: Option<Vec<Text>>,
    /// `[route.tls]`, for `https://` upstreams.
    pub tls: Option<RawRouteTls>,
    /// S3 buckets (path-style or virtual-hosted) this route serves.
    #[serde(default)]
    pub buckets: Vec<Text>,
    /// Replaces `[policy] operator_countries`.
    pub operator_countries: Option<Vec<Text>>,
    /// Overrides `[policy] on_foreign_operator`; a table overrides only the
    /// sides it names.
    pub on_foreign_operator: Option<Spanned<toml::Value>>,
    /// `/readyz` answers 503 while this route has no upstream address it
    /// may dial.
    #[serde(default)]
    pub required: bool,
}

fn text(s: &str) -> Text {
    Spanned::new(0..0, s.to_owned())
}

fn default_listen() -> Vec<Text> {
    vec![text("0.0.0.0:8080")]
}
fn default_header_read_timeout() -> Text {
    text("10s")
}
fn default_idle_timeout() -> Text {
    text("60s")
}
fn default_shutdown_grace() -> Text {
    text("30s")
}
fn default_response_timeout() -> Text {
    text("60s")
}
fn default_connect_timeout() -> Text {
    text("5s")
}
fn default_max_header_bytes() -> Spanned<u64> {
    Spanned::new(0..0, 65536)
}
fn default_max_headers() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_max_connections() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}
fn default_watch_interval() -> Text {
    text("5s")
}
fn default_audit_path() -> Text {
    text("audit/audit.jsonl")
}
fn empty_text() -> Text {
    text("")
}
fn zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
fn default_checkpoint_every() -> Text {
    text("60s")
}
fn default_rotate_every() -> Text {
    text("0s")
}
fn default_purpose_header() -> Text {
    text("x-access-purpose")
}
fn default_audit_queue() -> Spanned<u64> {
    Spanned::new(0..0, 4096)
}
fn default_protocol_error_records() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_protocol_error_window() -> Text {
    text("1s")
}
fn default_admin_listen() -> Text {
    text("127.0.0.1:9090")
}
fn default_min_ttl() -> Text {
    text("5s")
}
fn default_max_ttl() -> Text {
    text("300s")
}
fn default_dns_timeout() -> Text {
    text("3s")
}
fn default_database() -> Text {
    text("geodata/geo-whois-asn-country.mmdb")
}
fn default_allow_countries() -> Vec<Text> {
    vec![text("EEA")]
}
fn default_allow_networks() -> Vec<Text> {
    vec![text("127.0.0.0/8"), text("::1/128")]
}
fn default_path_prefix() -> Text {
    text("/")
}
fn default_geoip_max_age() -> Text {
    text("30d")
}

fn default_nat64_prefixes() -> Vec<Text> {
    vec![text("64:ff9b::/96"), text("64:ff9b:1::/48")]
}

const fn default_true() -> bool {
    true
}
