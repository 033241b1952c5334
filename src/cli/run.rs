//! `residency-proxy run`: build the snapshot, bind, serve; SIGHUP and the
//! file watchers reload (see [`crate::reload`]), SIGUSR1 only reopens the
//! audit file, SIGTERM/SIGINT drain and exit.

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
use crate::reload::{self, StartOnly, Trigger};
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
    let fixed = StartOnly::of(&shared.load().config);
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::channel::<Trigger>(1);
    let watcher = reload::spawn_watch(
        &shared,
        watch_tx.clone(),
        Trigger::DatabaseWatch,
        reload::database_files,
    );
    let cert_watcher = reload::spawn_watch(
        &shared,
        watch_tx.clone(),
        Trigger::TlsWatch,
        reload::certificate_files,
    );
    let access_watcher = reload::spawn_watch(
        &shared,
        watch_tx,
        Trigger::AccessWatch,
        reload::access_files,
    );
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload::reload(&path, &reload_shared, &evidence, &fixed, Trigger::Signal).await,
                _ = usr1.recv() => reload::reopen_audit(&reload_shared, &evidence).await,
                Some(trigger) = watch_rx.recv() => reload::reload(&path, &reload_shared, &evidence, &fixed, trigger).await,
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
    access_watcher.abort();
    Ok(ExitCode::SUCCESS)
}
