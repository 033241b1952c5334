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
use crate::upstream::Upstream;

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
    /// Opens the database named by `config` and builds the routes.
    ///
    /// # Errors
    /// [`GeoError`] if the database cannot be opened or verified.
    pub fn build(config: Config) -> Result<Self, GeoError> {
        let geo = GeoDb::open(&config.geoip_database)?;
        let routes = config
            .routes
            .iter()
            .map(|spec| Route {
                upstreams: spec
                    .upstreams
                    .iter()
                    .map(|u| Upstream::new(u.clone(), spec.connect_timeout))
                    .collect(),
                spec: spec.clone(),
                next: AtomicUsize::new(0),
            })
            .collect();
        Ok(Self {
            config,
            geo,
            routes,
        })
    }

    /// Wraps the snapshot for sharing.
    pub fn share(self) -> Shared {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
