//! What one request sees: the config, the GeoIP database, the compiled
//! policies and the routes with their upstream pools — one immutable value,
//! published through one `ArcSwap`. A request loads it once and keeps that
//! `Arc` to the end; a reload builds a whole new snapshot and swaps it in
//! only if everything compiled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use sha2::{Digest, Sha256};

use crate::audit::writer::AuditSink;
use crate::cartography::LiveCartography;
use crate::config::{Config, RouteSpec};
use crate::geo::{GeoDb, GeoError, OperatorDb};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::{Resolver, ResolverError, TlsError, Upstream, client_config};

/// The snapshot cell shared by every connection.
pub type Shared = Arc<ArcSwap<Snapshot>>;

/// The process-wide evidence sinks every snapshot shares: they outlive
/// reloads (counters keep counting, the audit chain keeps chaining).
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The live cartography of `/transfers`.
    pub cartography: Arc<LiveCartography>,
    /// The audit writer; `None` for commands that serve no request.
    pub audit: Option<AuditSink>,
    /// The live "operated from outside" section of `/transfers` (SPEC §11).
    pub operated: Arc<crate::live_operated::LiveOperated>,
}

impl Evidence {
    /// Sinks for a command that builds a snapshot but serves nothing.
    pub fn detached() -> Self {
        Self {
            metrics: Arc::new(Metrics::new()),
            cartography: Arc::new(LiveCartography::new()),
            audit: None,
            operated: Arc::default(),
        }
    }
}

/// Everything a request is decided with.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// The open country database.
    pub geo: GeoDb,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// The DNS resolver and its cache.
    pub resolver: Resolver,
    /// TLS for `tls_listen`, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// When each server certificate and the client CA expire.
    pub certificates: Vec<crate::tls::CertExpiry>,
    /// Short hash of the compiled policies and the database build: every
    /// audit record names the version it was decided under.
    pub policy_version: String,
    /// Metrics, cartography and audit.
    pub evidence: Evidence,
    /// The open operator database, when `[geoip] operator_database` is set.
    pub operators: Option<OperatorDb>,
    /// The identity registry and the grants, compiled (SPEC §9).
    pub access: crate::access::Access,
}

/// Why a snapshot could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The GeoIP database.
    #[error(transparent)]
    Geo(#[from] GeoError),
    /// The resolver configuration.
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    /// The server certificates.
    #[error(transparent)]
    ServerTls(#[from] crate::tls::ServerTlsError),
    /// An upstream TLS configuration.
    #[error("route {route}: {source}")]
    Tls {
        /// The route name.
        route: String,
        /// What failed.
        #[source]
        source: TlsError,
    },
    /// The identities or grants file (SPEC §9).
    #[error(transparent)]
    Access(#[from] crate::config::ConfigError),
}

/// A route with its upstreams.
#[derive(Debug)]
pub struct Route {
    /// The route's config, including its compiled policy.
    pub spec: RouteSpec,
    /// One per upstream URL.
    pub upstreams: Vec<Upstream>,
    /// Pre-resolved metric handles.
    pub metrics: RouteMetrics,
    next: AtomicUsize,
}

impl Route {
    /// Upstreams in the order to try them for the next request: round-robin
    /// start, then the others in file order.
    pub fn upstream_order(&self) -> impl Iterator<Item = &Upstream> {
        let n = self.upstreams.len();
        let start = if n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        (0..n).map(move |i| &self.upstreams[(start + i) % n])
    }
}

impl Snapshot {
    /// Opens the database named by `config`, sets up the resolver and the
    /// upstream TLS configurations, and builds the routes.
    ///
    /// # Errors
    /// [`SnapshotError`] naming what could not be loaded.
    pub fn build(config: Config, evidence: &Evidence) -> Result<Self, SnapshotError> {
        let geo = GeoDb::open(&config.geoip_database)?;
        let operators = config
            .operator_database
            .as_deref()
            .map(OperatorDb::open)
            .transpose()?;
        let resolver = Resolver::new(&config.resolver)?;
        let tls = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        let certificates = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::expiries)
            .unwrap_or_default();
        let mut routes = Vec::with_capacity(config.routes.len());
        for spec in &config.routes {
            let tls_err = |source| SnapshotError::Tls {
                route: spec.name.clone(),
                source,
            };
            let tls = if spec.upstreams.iter().any(|u| u.https) {
                Some(client_config(spec.tls_ca.as_deref()).map_err(tls_err)?)
            } else {
                None
            };
            let upstreams = spec
                .upstreams
                .iter()
                .map(|u| Upstream::new(u.clone(), spec.connect_timeout, tls.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(tls_err)?;
            routes.push(Route {
                upstreams,
                metrics: evidence.metrics.route(&spec.name),
                spec: spec.clone(),
                next: AtomicUsize::new(0),
            });
        }
        let mut policy_version = policy_version(&config, &geo);
        if let Some(db) = &operators {
            // The operator database decides verdicts too: a new build is a
            // new version. Without one, versions are unchanged.
            let mut h = Sha256::new();
            h.update(policy_version.as_bytes());
            let db = db.database();
            h.update(format!(
                "|operator|{}|{}|{}",
                db.database_type(),
                db.build_epoch(),
                db.node_count()
            ));
            policy_version = h.finalize()[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        }
        let access = crate::access::load(
            &config.access,
            &config.routes,
            &config.server.s3_domains,
            &evidence.metrics,
        )?;
        Ok(Self {
            access,
            config,
            geo,
            routes,
            resolver,
            tls,
            certificates,
            policy_version,
            evidence: evidence.clone(),
            operators,
        })
    }

    /// Makes this snapshot's facts visible in the metrics (on start and
    /// after a successful reload).
    pub fn publish(&self) {
        let m = &self.evidence.metrics;
        m.geoip_build
            .set(i64::try_from(self.geo.build_epoch()).unwrap_or(i64::MAX));
        m.set_policy_version(&self.policy_version);
        m.set_certificate_expiries(&self.certificates);
        self.access.log_invalid(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
    }

    /// Wraps the snapshot for sharing.
    pub fn share(self) -> Shared {
        Arc::new(ArcSwap::from_pointee(self))
    }
}

/// The first 12 hex digits of SHA-256 over everything that decides a
/// verdict: each policy (global and per route, with the route's name, hosts,
/// prefix, upstreams and buckets, and the S3 domains) and the database's
/// type, build time and size.
fn policy_version(config: &Config, geo: &GeoDb) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}", config.policy.policy));
    for r in &config.routes {
        h.update(format!(
            "|{}|{:?}|{}|{:?}|{:?}|{:?}",
            r.name, r.hosts, r.path_prefix, r.upstreams, r.policy.policy, r.buckets
        ));
    }
    h.update(format!("|{:?}", config.server.s3_domains));
    h.update(format!(
        "|{}|{}|{}",
        geo.database_type(),
        geo.build_epoch(),
        geo.node_count()
    ));
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}
