//! `residency-proxy run`: build the snapshot, bind, serve; SIGHUP reloads
//! and reopens the audit file (a reload that cannot reopen it is refused),
//! SIGUSR1 only reopens the audit file,
//! SIGTERM/SIGINT drain and exit.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::audit::writer::AuditSink;
use crate::cartography::LiveCartography;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Server;
use crate::snapshot::{Evidence, Shared, Snapshot};

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let metrics = Arc::new(Metrics::new());
    metrics.init_reloads();
    let (sink, writer) = if config.audit.enabled {
        let keeper = crate::audit::rotate::Keeper::of(&config.audit)?;
        let (sink, writer) = AuditSink::start_keeping(
            &config.audit.path,
            config.audit.queue,
            metrics.clone(),
            keeper,
        )
        .context("cannot start the audit trail")?;
        (Some(sink), Some(writer))
    } else {
        tracing::warn!(
            "the audit trail is disabled ([audit] enabled = false): requests are not traced"
        );
        (None, None)
    };
    let export = config.audit.export.clone().filter(|_| config.audit.enabled);
    let evidence = Evidence {
        metrics,
        cartography: Arc::new(LiveCartography::new()),
        audit: sink,
        operated: Arc::default(),
    };
    let snapshot = Snapshot::build(config, &evidence)?;
    snapshot.publish();
    // This thread runs signals, reloads and the admin endpoints; the
    // traffic runs on one worker thread per core (see proxy::listener).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shared = snapshot.share();
    if let Some(spec) = &export {
        // The store is judged before anything is served: one outside the
        // area is refused at start and never dialled.
        crate::export::credentials(spec)?;
        match runtime.block_on(crate::export::preflight(spec, &shared.load())) {
            Err(e @ crate::export::ExportError::Outside { .. }) => return Err(e.into()),
            // Not resolvable now: retried with each upload.
            Err(e) => tracing::warn!(error = %e, "audit export endpoint not resolved at start"),
            Ok(_) => {}
        }
    }
    let result = runtime.block_on(async {
        let exporter = export
            .map(|_| tokio::spawn(crate::export::run(shared.clone(), evidence.audit.clone())));
        let result = serve(path, shared, evidence).await;
        if let Some(task) = exporter {
            task.abort();
        }
        result
    });
    // Connections past the grace were dropped with their workers; their
    // records were written as they dropped. Then the trail is synced to disk.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Some(writer) = writer {
        writer.join();
    }
    result
}

async fn serve(path: &Path, shared: Shared, evidence: Evidence) -> anyhow::Result<ExitCode> {
    let server = Server::bind(shared.clone()).await?;
    let admin = match shared.load().config.admin_listen {
        Some(addr) => {
            let listener = crate::admin::bind(addr).await?;
            let bound = listener.local_addr()?;
            tracing::info!(addr = %bound, "admin endpoints on http://{bound}");
            Some(tokio::spawn(crate::admin::serve(listener, shared.clone())))
        }
        None => None,
    };
    let addrs = server.local_addrs();
    let ready = move || {
        for (addr, tls) in addrs {
            if tls {
                tracing::info!(%addr, "listening on https://{addr}");
            } else {
                tracing::info!(%addr, "listening on http://{addr}");
            }
        }
    };
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot install SIGUSR1 handler")?;
    let reload_shared = shared.clone();
    let path = Arc::new(path.to_owned());
    let fixed = Fixed::of(&shared.load().config);
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = spawn_watch(&shared, watch_tx.clone(), "GeoIP database", database_files);
    let cert_watcher = spawn_watch(
        &shared,
        watch_tx,
        "TLS certificate or key",
        certificate_files,
    );
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(&path, &reload_shared, &evidence, &fixed, true).await,
                _ = usr1.recv() => reopen_audit(&reload_shared, &evidence).await,
                Some(()) = watch_rx.recv() => reload(&path, &reload_shared, &evidence, &fixed, false).await,
            }
        }
        tracing::info!("shutting down: no new connections, draining");
    };
    let workers = crate::worker::count();
    let left = server
        .run(workers, ready, shutdown)
        .await
        .context("cannot start the worker threads")?;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "shutdown grace over; closing remaining connections"
        );
    }
    if let Some(task) = admin {
        task.abort();
    }
    watcher.abort();
    cert_watcher.abort();
    Ok(ExitCode::SUCCESS)
}

/// What a reload cannot change: sockets are bound, and the audit writer
/// started (or not), once at start.
#[derive(Debug, PartialEq, Eq)]
struct Fixed {
    listen: Vec<std::net::SocketAddr>,
    tls_listen: Vec<std::net::SocketAddr>,
    admin: Option<std::net::SocketAddr>,
    max_connections: usize,
    audit_enabled: bool,
    audit_queue: usize,
    /// Signing and rotation, read by the writer at start.
    audit_keeping: AuditKeeping,
    /// `[audit.export]`, read by the exporter at start.
    audit_export: Option<crate::config::ExportSpec>,
}

type AuditKeeping = (
    Option<std::path::PathBuf>,
    String,
    Duration,
    Option<u64>,
    Option<Duration>,
);

impl Fixed {
    fn of(c: &Config) -> Self {
        Self {
            listen: c.server.listen.clone(),
            tls_listen: c.server.tls_listen.clone(),
            admin: c.admin_listen,
            max_connections: c.server.max_connections,
            audit_enabled: c.audit.enabled,
            audit_queue: c.audit.queue,
            audit_keeping: (
                c.audit.signing_key.clone(),
                c.audit.origin.clone(),
                c.audit.checkpoint_every,
                c.audit.rotate_size,
                c.audit.rotate_every,
            ),
            audit_export: c.audit.export.clone(),
        }
    }

    /// Each key whose value differs in `now`, with both values.
    fn changed(&self, now: &Self) -> Vec<String> {
        fn key<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, name: &str, a: &T, b: &T) {
            if a != b {
                out.push(format!("{name} (running with {a:?}, file has {b:?})"));
            }
        }
        let mut out = Vec::new();
        key(&mut out, "[server] listen", &self.listen, &now.listen);
        key(
            &mut out,
            "[server] tls_listen",
            &self.tls_listen,
            &now.tls_listen,
        );
        key(&mut out, "[admin] listen", &self.admin, &now.admin);
        key(
            &mut out,
            "[server] max_connections",
            &self.max_connections,
            &now.max_connections,
        );
        key(
            &mut out,
            "[audit] enabled",
            &self.audit_enabled,
            &now.audit_enabled,
        );
        key(
            &mut out,
            "[audit] queue",
            &self.audit_queue,
            &now.audit_queue,
        );
        key(
            &mut out,
            "[audit] signing_key, origin, checkpoint_every, rotate_size or rotate_every",
            &self.audit_keeping,
            &now.audit_keeping,
        );
        key(
            &mut out,
            "[audit.export]",
            &self.audit_export,
            &now.audit_export,
        );
        out
    }
}

/// Builds a whole new snapshot and swaps it in only if everything compiled,
/// nothing read only at start changed, and the audit file could be opened:
/// on SIGHUP (logrotate), or when `[audit] path` changed, the audit file is
/// reopened at the path of the new configuration first (a file with records
/// continues its own chain); if that fails the whole reload is refused and
/// records keep going to the old file. A refused configuration still
/// reopens the audit file at the current path on SIGHUP.
async fn reload(
    path: &Path,
    shared: &Shared,
    evidence: &Evidence,
    fixed: &Fixed,
    reopen_audit: bool,
) {
    let built = Config::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|c| {
            let changed = fixed.changed(&Fixed::of(&c));
            if !changed.is_empty() {
                anyhow::bail!(
                    "{} cannot change on reload (read only at start); restart to apply",
                    changed.join(", ")
                );
            }
            Snapshot::build(c, evidence).map_err(anyhow::Error::from)
        });
    // The audit file is reopened at the path of the new configuration, or
    // at the current one if the configuration was refused: logrotate's
    // SIGHUP must not be lost to an unrelated error in the file.
    let current = shared.load().config.audit.path.clone();
    let target = built
        .as_ref()
        .map_or_else(|_| current.clone(), |snap| snap.config.audit.path.clone());
    let built = match &evidence.audit {
        Some(sink) if reopen_audit || target != current => match sink.reopen(target).await {
            Ok(()) => built,
            Err(e) => {
                let e = anyhow::Error::from(e).context(
                    "cannot reopen the audit trail; records keep going to the current file",
                );
                match built {
                    Ok(_) => Err(e),
                    Err(refused) => {
                        tracing::error!(error = format!("{e:#}"), "audit file not reopened");
                        Err(refused)
                    }
                }
            }
        },
        _ => built,
    };
    match built {
        Ok(snap) => {
            snap.publish();
            tracing::info!(config = %path.display(), policy_version = %snap.policy_version, "reloaded");
            shared.store(Arc::new(snap));
            evidence.metrics.reload(true);
        }
        Err(e) => {
            evidence.metrics.reload(false);
            tracing::error!(
                config = %path.display(),
                error = format!("{e:#}"),
                "reload refused; the previous configuration keeps serving"
            );
        }
    }
}

/// SIGUSR1: reopens the audit file at the path in force (after logrotate
/// renamed it) and nothing else: edits pending in the config file stay
/// pending until SIGHUP.
async fn reopen_audit(shared: &Shared, evidence: &Evidence) {
    tracing::info!("SIGUSR1: reopening the audit file; configuration left as it is");
    if let Some(sink) = &evidence.audit
        && let Err(e) = sink.reopen(shared.load().config.audit.path.clone()).await
    {
        tracing::error!(
            error = format!("{e:#}"),
            "audit file not reopened; records keep going to the current file"
        );
    }
}

/// Files watched for a reload, and how often: what `select` names in the
/// config in force, or `None` when nothing is watched.
type Watched = Option<(Duration, Vec<std::path::PathBuf>)>;

/// `[geoip] watch = true`: the database file.
fn database_files(c: &Config) -> Watched {
    // The country database, then the operator database when configured.
    let mut paths = vec![c.geoip_database.clone()];
    paths.extend(c.operator_database.clone());
    c.geoip_watch.map(|interval| (interval, paths))
}

/// `[server.tls] watch = true`: every certificate, key and client CA file.
fn certificate_files(c: &Config) -> Watched {
    let tls = c.server.tls.as_ref()?;
    let mut files = vec![tls.cert.clone(), tls.key.clone()];
    for (_, cert, key) in &tls.sni {
        files.push(cert.clone());
        files.push(key.clone());
    }
    files.extend(tls.client_ca.clone());
    tls.watch.map(|interval| (interval, files))
}

/// Device, inode, size and modification time of each file: what a
/// replacement changes (`None`: missing).
type Stamps = Vec<(std::path::PathBuf, Option<(u64, u64, u64, i64, i64)>)>;

fn stamps(paths: Vec<std::path::PathBuf>) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    paths
        .into_iter()
        .map(|p| {
            let s = std::fs::metadata(&p)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
            (p, s)
        })
        .collect()
}

/// Starts polling the files `select` names in the config in force. Their
/// first stamps are taken now, before the listeners accept, so that a file
/// replaced after that is always seen as replaced.
fn spawn_watch(
    shared: &Shared,
    tx: tokio::sync::mpsc::Sender<()>,
    what: &'static str,
    select: fn(&Config) -> Watched,
) -> tokio::task::JoinHandle<()> {
    let first = select(&shared.load().config).map(|(_, paths)| stamps(paths));
    tokio::spawn(watch_files(shared.clone(), tx, what, select, first))
}

/// Polls the files `select` names and asks for a reload when one was
/// replaced (a new inode, size or modification time — what geoipupdate's
/// write-then-rename, certbot's renewal or a Kubernetes Secret update
/// produce) and then left alone for one interval, so that a certificate
/// and its key renamed one after the other reload once, together. A file
/// missing for a moment is not a change.
async fn watch_files(
    shared: Shared,
    tx: tokio::sync::mpsc::Sender<()>,
    what: &'static str,
    select: fn(&Config) -> Watched,
    first: Option<Stamps>,
) {
    // What the snapshot in force was built from, and the previous poll.
    let mut applied: Option<Stamps> = first.clone();
    let mut last: Option<Stamps> = first;
    loop {
        let Some((interval, paths)) = select(&shared.load().config) else {
            (applied, last) = (None, None);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let now = stamps(paths);
        let same_files = |a: &Stamps| a.iter().map(|f| &f.0).eq(now.iter().map(|f| &f.0));
        match &applied {
            Some(a) if same_files(a) => {
                let settled = last.as_ref() == Some(&now);
                if settled && *a != now && now.iter().all(|f| f.1.is_some()) {
                    for ((p, s0), (_, s1)) in a.iter().zip(&now) {
                        if s0 != s1 {
                            tracing::info!(file = %p.display(), "{what} replaced; reloading");
                        }
                    }
                    let _ = tx.send(()).await;
                    applied = Some(now.clone());
                }
            }
            // Watching starts, or the config now names other files.
            _ => applied = Some(now.clone()),
        }
        last = Some(now);
        tokio::time::sleep(interval).await;
    }
}
