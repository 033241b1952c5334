//! `residency-proxy run`: build the snapshot, bind, serve; SIGHUP reloads,
//! SIGTERM/SIGINT drain and exit.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::proxy::Server;
use crate::snapshot::{Shared, Snapshot};

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let snapshot = Snapshot::build(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(path, snapshot.share()))
}

async fn serve(path: &Path, shared: Shared) -> anyhow::Result<ExitCode> {
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
    for addr in server.local_addrs() {
        tracing::info!(%addr, "listening on http://{addr}");
    }
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let reload_shared = shared.clone();
    let path = Arc::new(path.to_owned());
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(&path, &reload_shared),
            }
        }
        tracing::info!("shutting down: no new connections, draining");
    };
    let left = server.run(shutdown).await;
    if let Some(task) = admin {
        task.abort();
    }
    if left > 0 {
        tracing::warn!(
            connections = left,
            "shutdown grace over; closing remaining connections"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds a whole new snapshot; swaps it in only if everything compiled.
fn reload(path: &Path, shared: &Shared) {
    let built = Config::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|c| Snapshot::build(c).map_err(anyhow::Error::from));
    match built {
        Ok(snap) => {
            shared.store(Arc::new(snap));
            tracing::info!(config = %path.display(), "reloaded");
        }
        Err(e) => {
            tracing::error!(config = %path.display(), error = format!("{e:#}"), "reload refused; the previous configuration keeps serving")
        }
    }
}
