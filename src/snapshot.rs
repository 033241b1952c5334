//! What one request sees: the config, the GeoIP database, the compiled
//! policies and the routes with their upstream pools — one immutable value,
//! published through one `ArcSwap`. A request loads it once and keeps that
//! `Arc` to the end; a reload builds a whole new snapshot and swaps it in
//! only if everything compiled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::audit::writer::AuditSink;
use crate::cartography::LiveCartography;
use crate::config::{Config, RouteSpec};

mod version;
use crate::geo::{GeoDb, GeoError, OperatorDb};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::{Resolver, ResolverError, TlsError, Upstream, client_config};
pub use version::{DatabaseBuild, canonical, policy_version};

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
    /// Several of the above, each on its own line with its causes.
    #[error("{}", .0.iter().map(SnapshotError::with_causes).collect::<Vec<_>>().join("\n"))]
    Several(Vec<SnapshotError>),
    /// The identities or grants file (SPEC §9).
    #[error(transparent)]
    Access(#[from] crate::config::ConfigError),
}

impl SnapshotError {
    /// One error for `errors` (at least one): itself when alone.
    fn all(mut errors: Vec<Self>) -> Self {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            Self::Several(errors)
        }
    }

    /// Each problem, with its causes after `: `, one line each.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Several(all) => all.iter().map(Self::with_causes).collect(),
            one => vec![one.with_causes()],
        }
    }

    fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // A message that already quotes its cause does not repeat it.
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
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
        // Every part is tried, so that one refusal names every problem (a
        // missing database and a missing key at once).
        let mut errors: Vec<SnapshotError> = Vec::new();
        let mut keep = |e: SnapshotError| errors.push(e);
        let geo = GeoDb::open(&config.geoip_database)
            .map_err(|e| keep(e.into()))
            .ok();
        let operators = config
            .operator_database
            .as_deref()
            .map(OperatorDb::open)
            .transpose()
            .map_err(|e| keep(e.into()))
            .ok()
            .flatten();
        let resolver = Resolver::new(&config.resolver)
            .map_err(|e| keep(e.into()))
            .ok();
        let tls = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()
            .map_err(|e| keep(e.into()))
            .ok()
            .flatten();
        let certificates = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::expiries)
            .unwrap_or_default();
        let mut pools = Vec::with_capacity(config.routes.len());
        for spec in &config.routes {
            let tls_err = |source| SnapshotError::Tls {
                route: spec.name.clone(),
                source,
            };
            let tls = if spec.upstreams.iter().any(|u| u.https) {
                match client_config(spec.tls_ca.as_deref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        keep(tls_err(e));
                        continue;
                    }
                }
            } else {
                None
            };
            let upstreams = match spec
                .upstreams
                .iter()
                .map(|u| Upstream::new(u.clone(), spec.connect_timeout, tls.clone()))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(u) => u,
                Err(e) => {
                    keep(tls_err(e));
                    continue;
                }
            };
            pools.push((spec, upstreams));
        }
        let access = crate::access::load(
            &config.access,
            &config.routes,
            &config.server.s3_domains,
            &evidence.metrics,
        )
        .map_err(|e| keep(e.into()))
        .ok();
        let (Some(geo), Some(resolver), Some(access), true) =
            (geo, resolver, access, errors.is_empty())
        else {
            return Err(SnapshotError::all(errors));
        };
        // Metric series only for the routes of a snapshot that will serve.
        let routes = pools
            .into_iter()
            .map(|(spec, upstreams)| Route {
                upstreams,
                metrics: evidence.metrics.route(&spec.name),
                spec: spec.clone(),
                next: AtomicUsize::new(0),
            })
            .collect();
        let policy_version = policy_version(
            &config,
            &access,
            &DatabaseBuild::of(&geo),
            operators
                .as_ref()
                .map(|o| DatabaseBuild::of(o.database()))
                .as_ref(),
        );
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
        m.set_operator_build(self.operators.as_ref().map(|o| o.database().build_epoch()));
        m.set_policy_version(&self.policy_version);
        m.set_certificate_expiries(&self.certificates);
        self.access.log_invalid(crate::access::now());
    }

    /// Wraps the snapshot for sharing.
    pub fn share(self) -> Shared {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
