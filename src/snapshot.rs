//! What one request sees: the config, the GeoIP database, the compiled
//! policies and the routes with their upstream pools — one immutable value,
//! published through one `ArcSwap`. A request loads it once and keeps that
//! `Arc` to the end; a reload builds a whole new snapshot and swaps it in
//! only if everything compiled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::{Config, RouteSpec};
use crate::geo::{GeoDb, GeoError};
use crate::upstream::{Resolver, ResolverError, TlsError, Upstream, client_config};

/// The snapshot cell shared by every connection.
pub type Shared = Arc<ArcSwap<Snapshot>>;

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
    /// An upstream TLS configuration.
    #[error("route {route}: {source}")]
    Tls {
        /// The route name.
        route: String,
        /// What failed.
        #[source]
        source: TlsError,
    },
}

/// A route with its upstreams.
#[derive(Debug)]
pub struct Route {
    /// The route's config, including its compiled policy.
    pub spec: RouteSpec,
    /// One per upstream URL.
    pub upstreams: Vec<Upstream>,
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
    pub fn build(config: Config) -> Result<Self, SnapshotError> {
        let geo = GeoDb::open(&config.geoip_database)?;
        let resolver = Resolver::new(&config.resolver)?;
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
                spec: spec.clone(),
                next: AtomicUsize::new(0),
            });
        }
        Ok(Self {
            config,
            geo,
            routes,
            resolver,
        })
    }

    /// Wraps the snapshot for sharing.
    pub fn share(self) -> Shared {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
