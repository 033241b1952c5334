//! DNS resolution of upstream names with hickory: the system configuration
//! or `[resolver] nameservers`, A and AAAA, answers cached for their TTL
//! clamped to `[min_ttl, max_ttl]`. The cache belongs to the snapshot, so a
//! reload starts from fresh answers.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ProtocolConfig, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::config::ResolverSpec;

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The system configuration could not be read.
    #[error("cannot set up the DNS resolver: reading /etc/resolv.conf")]
    System(#[source] ResolveError),
    /// hickory refused the configuration.
    #[error("cannot set up the DNS resolver")]
    Build(#[source] ResolveError),
}

/// hickory's error: no such name, timeout, server failure, a bad
/// configuration.
pub type ResolveError = hickory_resolver::net::NetError;

/// A shareable resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver for `spec`.
    ///
    /// # Errors
    /// [`ResolverError`] when the system configuration cannot be read.
    pub fn new(spec: &ResolverSpec) -> Result<Self, ResolverError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if spec.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(ResolverError::System)?
        } else {
            let servers = spec.nameservers.iter().map(|a| name_server(*a)).collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
                .with_options(ResolverOpts::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.positive_min_ttl = Some(spec.min_ttl);
        opts.positive_max_ttl = Some(spec.max_ttl);
        opts.negative_min_ttl = Some(spec.min_ttl.min(std::time::Duration::from_secs(1)));
        opts.negative_max_ttl = Some(spec.min_ttl);
        opts.timeout = spec.timeout;
        opts.attempts = 2;
        let inner = builder.build().map_err(ResolverError::Build)?;
        Ok(Self { inner })
    }

    /// The A and AAAA addresses of `host`, from the cache or the servers.
    ///
    /// # Errors
    /// The resolver's error (no such name, timeout, server failure).
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        // A trailing dot makes the name absolute: no search-domain surprises.
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let answer = self.inner.lookup_ip(fqdn.as_str()).await?;
        Ok(answer.iter().collect())
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}
