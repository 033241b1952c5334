//! The audit writer: one dedicated thread owns the file and the chain, fed
//! through a bounded queue. A request waits for a queue slot (a full queue
//! slows requests down, it never drops a record) and for the acknowledgement
//! that its line was written, so no response completes untraced.
//!
//! Lines are appended in batches (one `write` per batch) and each batch is
//! flushed to the OS before it is acknowledged. A failed write marks the sink
//! unhealthy — requests are then refused with 503 unless `on_error =
//! "continue"` — and the next batch retries, reopening the file. `reopen`
//! (SIGHUP, for logrotate) closes and reopens the path; the chain continues
//! in the new file from the last hash written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{AuditError, AuditRecord, Chain};
use crate::metrics::Metrics;

/// Most records sealed and written in one batch.
const BATCH: usize = 256;

enum Job {
    Write(Box<AuditRecord>, Option<oneshot::Sender<bool>>),
    Reopen(PathBuf),
}

/// The request path's handle on the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// The writer thread; joining it waits until every queued record is written.
pub struct AuditWriter {
    thread: std::thread::JoinHandle<()>,
}

impl AuditWriter {
    /// Waits for the writer to drain its queue and stop. It stops once every
    /// [`AuditSink`] clone has been dropped.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

impl AuditSink {
    /// Opens (or creates) `path`, resumes the chain from its last record,
    /// and starts the writer thread with a queue of `capacity` records.
    ///
    /// # Errors
    /// [`AuditError`] if the file cannot be created or its last record does
    /// not verify (the chain could not be continued honestly).
    pub fn start(
        path: &Path,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, AuditWriter), AuditError> {
        let chain = Chain::resume(path)?;
        let file = open(path).map_err(|source| AuditError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let state = Writer {
            path: path.to_owned(),
            file: Some(file),
            chain,
            healthy: healthy.clone(),
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|source| AuditError::Read {
                path: path.to_owned(),
                source,
            })?;
        Ok((Self { tx, healthy }, AuditWriter { thread }))
    }

    /// False after a failed write, until a write succeeds again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Queues `record` and waits until it is written. Returns false if it
    /// could not be written (or the writer is gone).
    pub async fn write(&self, record: AuditRecord) -> bool {
        let (ack, done) = oneshot::channel();
        if self
            .tx
            .send(Job::Write(Box::new(record), Some(ack)))
            .await
            .is_err()
        {
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// Queues `record` without waiting, for paths that cannot wait (a
    /// response dropped mid-stream). Waits for a slot on a spawned task if
    /// the queue is full: the record is never dropped while the process runs.
    pub fn write_detached(&self, record: AuditRecord) {
        match self.tx.try_send(Job::Write(Box::new(record), None)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = tx.send(job).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Closes the file and opens `path` (the same path after rotation, or a
    /// new one after a reload); the chain continues.
    pub async fn reopen(&self, path: PathBuf) {
        let _ = self.tx.send(Job::Reopen(path)).await;
    }
}

/// Opens `path` for appending and takes an exclusive lock on it: two
/// processes appending to one file would interleave two chains, and the
/// trail would no longer verify. The lock lives as long as the file handle.
fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.is_file() {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the file is locked by another process writing its own chain (give each proxy its own audit path)",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(file)
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    chain: Chain,
    healthy: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch: Vec<(Box<AuditRecord>, Option<oneshot::Sender<bool>>)> =
            Vec::with_capacity(BATCH);
        while let Some(job) = rx.blocking_recv() {
            let mut reopen = None;
            match job {
                Job::Write(r, ack) => batch.push((r, ack)),
                Job::Reopen(p) => reopen = Some(p),
            }
            while batch.len() < BATCH && reopen.is_none() {
                match rx.try_recv() {
                    Ok(Job::Write(r, ack)) => batch.push((r, ack)),
                    Ok(Job::Reopen(p)) => reopen = Some(p),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write_batch(&mut batch);
            }
            if let Some(path) = reopen {
                self.path = path;
                self.file = None;
                self.ensure_open();
                tracing::info!(path = %self.path.display(), "audit file reopened");
            }
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_all();
        }
    }

    fn ensure_open(&mut self) -> bool {
        if self.file.is_none() {
            match open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot open audit file");
                    return false;
                }
            }
        }
        true
    }

    fn write_batch(&mut self, batch: &mut Vec<(Box<AuditRecord>, Option<oneshot::Sender<bool>>)>) {
        // Seal on a copy of the chain: only a successful write advances it,
        // so a failed batch leaves no gap in the chain on disk.
        let mut chain = self.chain.clone();
        let mut text = String::new();
        for (record, _) in batch.iter_mut() {
            text.push_str(&chain.seal(record));
            text.push('\n');
        }
        let ok = self.ensure_open()
            && self
                .file
                .as_mut()
                .is_some_and(|f| append(f, text.as_bytes()));
        let n = batch.len() as u64;
        if ok {
            self.chain = chain;
            self.metrics.audit_records.inc_by(n);
            if !self.healthy.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %self.path.display(), "audit writes succeed again");
            }
        } else {
            self.metrics.audit_write_errors.inc_by(n);
            self.file = None;
            if self.healthy.swap(false, Ordering::Relaxed) {
                tracing::error!(path = %self.path.display(), records = n, "audit write failed");
            }
        }
        for (_, ack) in batch.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(ok);
            }
        }
    }
}

/// Appends `bytes` whole or not at all: a write that fails part-way is cut
/// back to the previous length, so the file never holds half a record or
/// records the chain does not know about.
fn append(file: &mut File, bytes: &[u8]) -> bool {
    let before = file.metadata().map(|m| m.len()).ok();
    match file.write_all(bytes).and_then(|()| file.flush()) {
        Ok(()) => true,
        Err(_) => {
            if let Some(len) = before {
                let _ = file.set_len(len);
            }
            false
        }
    }
}
