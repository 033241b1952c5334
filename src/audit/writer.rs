//! The audit writer: records are sealed into the chain and appended to the
//! file by the request that finishes them, with group commit. Each worker
//! thread has its own queue. A request whose record is ready leads its
//! worker's queue if nobody does, lets the worker's other ready requests run
//! first (one yield), then writes its record together with every record they
//! queued (one `write` per batch); requests arriving while a batch is being
//! written queue their records and wait for that leader to acknowledge them.
//! Leaders of different workers take turns on the file. At most `[audit]
//! queue` records wait on one worker: a request that finds the queue full
//! does not queue but writes the waiting records and its own, waiting for
//! the file (backpressure), so memory stays bounded without dropping a
//! record. A leader that has written several batches hands the lead to a
//! waiting request; one that goes away (its client closed) before it ran
//! passes the lead on. No response completes before its record is written,
//! and no record is ever dropped.
//!
//! Why in the request path and not on a thread of its own: at tens of
//! thousands of requests per second, handing every record to a writer thread
//! and waiting for its acknowledgement cost two cross-thread wake-ups per
//! batch and held the end of every response back one scheduling round (the
//! response went out in two writes instead of one). Appending to the page
//! cache is a few microseconds; nginx writes its access log from its workers
//! the same way. A write that blocks (a stalled disk) blocks the one worker
//! thread leading the batch, and every audited response waits for it, as it
//! must: nothing is served untraced.
//!
//! A failed write marks the sink unhealthy — requests are then refused with
//! 503 unless `on_error = "continue"` — and the next batch retries,
//! reopening the file. A failed batch is cut back off the file and does not
//! advance the chain, so the trail holds no half record and no gap.
//! `reopen` (SIGHUP, for logrotate; or a reload that changes `[audit]
//! path`) opens the path anew: a new, empty file continues the chain from
//! the last hash written; a file that already holds records continues its
//! own chain from its last record, so that each file verifies on its own.
//! If the new file cannot be opened, or its last line is not a sealed
//! record, the old file is kept and the reopen refused.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::rotate::Keeper;
use super::{AuditError, AuditRecord, Chain};
use crate::metrics::Metrics;
use crate::worker::PerWorker;

/// Batches a leader writes before handing the rest to a waiting request, so
/// that one request is not kept writing for everybody else under sustained
/// load.
const LEAD_ROUNDS: usize = 8;

/// The request path's handle on the trail. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// Kept by `run` to close the trail at exit.
pub struct AuditWriter {
    inner: Arc<Inner>,
    /// The checkpoint and rotation timer (see [`super::rotate`]): dropping
    /// the sender stops it.
    timer: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl AuditWriter {
    /// Writes any record still queued and syncs the file to disk. Call once
    /// the runtime is gone (records of dropped connections are queued as
    /// they drop).
    pub fn join(self) {
        if let Some((stop, thread)) = self.timer {
            drop(stop);
            let _ = thread.join();
        }
        self.inner.flush_queued();
        let mut writer = lock(&self.inner.writer);
        writer.closing();
        if let Some(f) = writer.file.as_ref() {
            let _ = f.sync_all();
        }
    }
}

struct Inner {
    /// One queue per worker thread: a batch gathers the records of one
    /// worker, whose requests it wakes without crossing to another thread.
    /// Leaders of different workers take turns on `writer`.
    queues: PerWorker<Mutex<Queue>>,
    /// The file and the chain; held by the leader while it writes.
    writer: Mutex<Writer>,
    healthy: AtomicBool,
    /// The export spool is full and `[audit.export] on_error` is fail-closed.
    spool_full: AtomicBool,
    /// Most records waiting in one worker's queue: a request that finds it
    /// full writes instead of queueing (memory stays bounded, no record is
    /// dropped; see [`Commit`]).
    queue: usize,
    /// Most records in one write: `queue` (less in tests).
    batch: usize,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Entry>,
    /// Somebody is leading: it will write what is pending before it stops.
    leading: bool,
}

impl Queue {
    /// The oldest `most` pending records (or all, if fewer).
    fn take(&mut self, most: usize) -> Vec<Entry> {
        let n = self.pending.len().min(most);
        self.pending.drain(..n).collect()
    }
}

struct Entry {
    record: Box<AuditRecord>,
    /// Where the outcome goes; `None` for detached records.
    slot: Option<Arc<Slot>>,
}

/// The outcome of one queued record, and who to wake with it.
#[derive(Default)]
struct Slot {
    state: Mutex<(Option<bool>, Option<Waker>)>,
}

impl Slot {
    /// The outcome, or `None` after registering `waker` for it.
    fn poll(&self, waker: &Waker) -> Option<bool> {
        let mut s = lock(&self.state);
        if s.0.is_none() {
            s.1 = Some(waker.clone());
        }
        s.0
    }

    fn set(&self, ok: bool) {
        let waker = {
            let mut s = lock(&self.state);
            s.0 = Some(ok);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn take_waker(&self) -> Option<Waker> {
        lock(&self.state).1.take()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AuditSink {
    /// Opens (or creates) `path` and resumes the chain from its last record.
    /// At most `queue` records wait on one worker thread, and go into one
    /// write; a request that finds its worker's queue full writes instead
    /// (see [`Commit`]).
    ///
    /// # Errors
    /// [`AuditError`] if the file cannot be created or its last record does
    /// not verify (the chain could not be continued honestly).
    pub fn start(
        path: &Path,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, AuditWriter), AuditError> {
        Self::start_keeping(path, queue, metrics, Keeper::default())
    }

    /// [`AuditSink::start`], with segments kept by `keeper`: signed
    /// checkpoints and rotation (see [`super::rotate`]), on a timer thread
    /// if they need one.
    ///
    /// # Errors
    /// As [`AuditSink::start`].
    pub fn start_keeping(
        path: &Path,
        queue: usize,
        metrics: Arc<Metrics>,
        keeper: Keeper,
    ) -> Result<(Self, AuditWriter), AuditError> {
        Self::start_batched(path, queue, queue, metrics, keeper)
    }

    /// [`AuditSink::start_keeping`], with at most `batch` records (no more
    /// than `queue`) in one write: tests write smaller batches than their
    /// queue holds.
    fn start_batched(
        path: &Path,
        queue: usize,
        batch: usize,
        metrics: Arc<Metrics>,
        mut keeper: Keeper,
    ) -> Result<(Self, AuditWriter), AuditError> {
        let read_error = |source| AuditError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = open(path).map_err(read_error)?;
        let chain = Chain::resume_file(&mut file, path)?.unwrap_or_default();
        let len = file.metadata().map_err(read_error)?.len();
        keeper.attach(path, &file, true);
        let timed = keeper.timed();
        let inner = Arc::new(Inner {
            queues: PerWorker::default(),
            writer: Mutex::new(Writer {
                path: path.to_owned(),
                file: Some(file),
                len,
                chain,
                metrics,
                text: Vec::new(),
                keeper,
            }),
            healthy: AtomicBool::new(true),
            spool_full: AtomicBool::new(false),
            queue: queue.max(1),
            batch: batch.clamp(1, queue.max(1)),
        });
        let timer = if timed {
            let (stop, stopped) = std::sync::mpsc::channel();
            let ticking = inner.clone();
            let thread = std::thread::Builder::new()
                .name("audit-timer".into())
                .spawn(move || super::rotate::timer(&stopped, || lock(&ticking.writer).tick()))
                .map_err(read_error)?;
            Some((stop, thread))
        } else {
            None
        };
        Ok((
            Self {
                inner: inner.clone(),
            },
            AuditWriter { inner, timer },
        ))
    }

    /// False after a failed write, until a write succeeds again; and
    /// while the export spool is full with `on_error = "fail-closed"`.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed) && !self.inner.spool_full.load(Ordering::Relaxed)
    }

    /// The export spool is over `spool_max` (see [`crate::export`]).
    pub fn set_spool_full(&self, full: bool) {
        self.inner.spool_full.store(full, Ordering::Relaxed);
    }

    /// Writes `record`; resolves to whether it was written. Uncontended, the
    /// record is written during the first poll.
    pub fn write(&self, record: AuditRecord) -> Commit {
        Commit {
            inner: self.inner.clone(),
            share: self.inner.queues.my_slot(),
            state: CommitState::Start(Box::new(record)),
        }
    }

    /// Writes `record` without waiting for the outcome, for paths that
    /// cannot wait (a response dropped mid-stream): queued for the current
    /// leader, or written now if there is none.
    pub fn write_detached(&self, record: AuditRecord) {
        let entry = Entry {
            record: Box::new(record),
            slot: None,
        };
        let share = self.inner.queues.my_slot();
        let mut q = lock(self.inner.queues.get(share));
        if q.leading && q.pending.len() < self.inner.queue {
            q.pending.push(entry);
            return;
        }
        if q.leading {
            drop(q);
            self.inner.write_through(share, entry);
            return;
        }
        q.leading = true;
        drop(q);
        self.inner.lead(share, vec![entry]);
    }

    /// Whether `path` names the file being written (false once it was
    /// renamed away or removed).
    pub fn is_open_at(&self, path: &Path) -> bool {
        lock(&self.inner.writer).is_open_at(path)
    }

    /// Opens `path` (the same path after rotation, or a new one after a
    /// reload) and writes there from now on: an empty file continues the
    /// chain, a file with records continues its own (see the module
    /// documentation). Waits for a batch being written to finish.
    ///
    /// # Errors
    /// [`AuditError`] if `path` cannot be opened, or its last line is not a
    /// sealed record: nothing changed, records keep going to the old file.
    pub fn reopen(&self, path: PathBuf) -> Result<(), AuditError> {
        let mut w = lock(&self.inner.writer);
        if w.is_open_at(&path) {
            // The same file (not rotated): a second handle could not take
            // the lock, and there is nothing to change.
            tracing::info!(path = %path.display(), "audit file reopened");
            return Ok(());
        }
        let (file, len, chain) = open_resumed(&path)?;
        let own_chain = chain.is_some();
        w.closing();
        w.keeper.attach(&path, &file, true);
        w.file = Some(file);
        w.len = len;
        if let Some(chain) = chain {
            w.chain = chain;
        }
        w.path = path;
        w.sign();
        if own_chain {
            tracing::info!(
                path = %w.path.display(),
                "audit file reopened; it holds records, their chain continues from its last record"
            );
        } else {
            tracing::info!(path = %w.path.display(), "audit file reopened");
        }
        Ok(())
    }
}

/// `error: cause: cause`, for a log line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Opens `path` for appending (see [`open`]), with its length and, if it
/// holds records, the chain of its last record.
fn open_resumed(path: &Path) -> Result<(File, u64, Option<Chain>), AuditError> {
    let read_error = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = open(path).map_err(read_error)?;
    let chain = Chain::resume_file(&mut file, path)?;
    let len = file.metadata().map_err(read_error)?.len();
    Ok((file, len, chain))
}

/// The future of one record's write. It queues the record behind its
/// worker's leader, or leads; if the queue already holds `[audit] queue`
/// records, it writes them and its own at once, waiting for the file.
pub struct Commit {
    inner: Arc<Inner>,
    /// The queue this record goes through (the writing thread's).
    share: usize,
    state: CommitState,
}

enum CommitState {
    Start(Box<AuditRecord>),
    /// Leading: lets the other requests that are ready in this round of
    /// the scheduler queue their records first, then writes them together.
    Lead(Box<AuditRecord>, Pin<Box<dyn Future<Output = ()> + Send>>),
    Queued(Arc<Slot>),
    Done,
}

impl Drop for Commit {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, CommitState::Done) {
            // Never polled: written without waiting.
            CommitState::Start(record) => AuditSink {
                inner: self.inner.clone(),
            }
            .write_detached(*record),
            // Dropped while leading: the queue is this request's to write.
            CommitState::Lead(record, _) => {
                self.inner
                    .lead(self.share, vec![Entry { record, slot: None }]);
            }
            // Queued records are written by their leader; but this request
            // may have been woken to lead (see `Inner::lead`) and gone
            // before it ran: then nobody leads, and it passes the lead on.
            CommitState::Queued(slot) => self.inner.pass_lead(self.share, &slot),
            CommitState::Done => {}
        }
    }
}

impl Future for Commit {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, CommitState::Done) {
                CommitState::Start(record) => {
                    let mut q = lock(this.inner.queues.get(this.share));
                    if q.leading && q.pending.len() >= this.inner.queue {
                        drop(q);
                        let entry = Entry { record, slot: None };
                        return Poll::Ready(this.inner.write_through(this.share, entry));
                    }
                    if q.leading {
                        let slot = Arc::new(Slot::default());
                        let _ = slot.poll(cx.waker());
                        q.pending.push(Entry {
                            record,
                            slot: Some(slot.clone()),
                        });
                        this.state = CommitState::Queued(slot);
                        return Poll::Pending;
                    }
                    q.leading = true;
                    drop(q);
                    this.state = CommitState::Lead(record, Box::pin(tokio::task::yield_now()));
                }
                CommitState::Lead(record, mut yielded) => {
                    if yielded.as_mut().poll(cx).is_pending() {
                        this.state = CommitState::Lead(record, yielded);
                        return Poll::Pending;
                    }
                    // What queued meanwhile goes first, then this record.
                    let mut q = lock(this.inner.queues.get(this.share));
                    let mut batch = q.take(this.inner.batch);
                    drop(q);
                    batch.push(Entry { record, slot: None });
                    return Poll::Ready(this.inner.lead(this.share, batch));
                }
                CommitState::Queued(slot) => {
                    if let Some(ok) = slot.poll(cx.waker()) {
                        return Poll::Ready(ok);
                    }
                    let mut q = lock(this.inner.queues.get(this.share));
                    if q.leading {
                        this.state = CommitState::Queued(slot);
                        return Poll::Pending;
                    }
                    // Handed over (or the leader stopped before reaching
                    // this record): lead the rest.
                    q.leading = true;
                    let batch = q.take(this.inner.batch);
                    drop(q);
                    this.inner.lead(this.share, batch);
                    this.state = CommitState::Queued(slot);
                }
                CommitState::Done => panic!("Commit polled after completion"),
            }
        }
    }
}

impl Inner {
    /// Writes `first` (the caller has set `leading`), then what queued
    /// meanwhile, until the queue is empty or, after [`LEAD_ROUNDS`]
    /// batches, a waiting request can take over. Returns whether `first`
    /// was written.
    fn lead(&self, share: usize, mut batch: Vec<Entry>) -> bool {
        let mut writer = lock(&self.writer);
        let first = writer.write_batch(&mut batch, &self.healthy);
        let mut rounds = 1;
        loop {
            let mut q = lock(self.queues.get(share));
            if q.pending.is_empty() {
                q.leading = false;
                return first;
            }
            if rounds >= LEAD_ROUNDS
                && let Some(w) = q
                    .pending
                    .iter()
                    .find_map(|e| e.slot.as_ref().and_then(|s| s.take_waker()))
            {
                q.leading = false;
                drop(q);
                drop(writer);
                w.wake();
                return first;
            }
            batch.extend(q.take(self.batch));
            drop(q);
            writer.write_batch(&mut batch, &self.healthy);
            rounds += 1;
        }
    }

    /// Writes `entry` after the records waiting in the queue of `share`,
    /// which is full: waits for the file as leaders of other workers do
    /// (backpressure: a disk slower than the traffic slows requests down,
    /// it never grows the queue nor loses a record). The queue's leader,
    /// if it is still leading, writes what comes after. Returns whether
    /// `entry` was written.
    fn write_through(&self, share: usize, entry: Entry) -> bool {
        let mut writer = lock(&self.writer);
        let mut q = lock(self.queues.get(share));
        let mut batch = q.take(self.queue);
        drop(q);
        batch.push(entry);
        writer.write_batch(&mut batch, &self.healthy)
    }

    /// Called by a waiting request that goes away: if it was handed the
    /// lead (nobody leads, records are pending), wakes the next waiting
    /// request to lead instead, or, with none left, writes the queue now
    /// (its own record among it), as a leader dropped mid-lead does.
    fn pass_lead(&self, share: usize, gone: &Arc<Slot>) {
        let mut q = lock(self.queues.get(share));
        if q.leading || q.pending.is_empty() {
            return;
        }
        let next = q
            .pending
            .iter()
            .filter_map(|e| e.slot.as_ref())
            .filter(|s| !Arc::ptr_eq(s, gone))
            .find_map(|s| s.take_waker());
        if let Some(w) = next {
            drop(q);
            w.wake();
            return;
        }
        q.leading = true;
        let batch = q.take(self.batch);
        drop(q);
        self.lead(share, batch);
    }

    /// Writes whatever is queued and has no leader (at exit).
    fn flush_queued(&self) {
        for share in 0..self.queues.len() {
            let mut q = lock(self.queues.get(share));
            if q.leading || q.pending.is_empty() {
                continue;
            }
            q.leading = true;
            let batch = q.take(self.batch);
            drop(q);
            self.lead(share, batch);
        }
    }
}

/// Opens `path` for appending and takes an exclusive lock on it: two
/// processes appending to one file would interleave two chains, and the
/// trail would no longer verify. The lock lives as long as the file handle.
pub(super) fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Readable too: the chain continues from the last line of the file
    // this handle (and its lock) holds, not from another open of the path.
    // 0600: records hold client addresses, identities and object keys. The
    // mode applies when the file is created (less the umask); an existing
    // file keeps the mode it has.
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
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
    /// The file's length after the last successful write: a failed write
    /// is cut back to it.
    len: u64,
    chain: Chain,
    metrics: Arc<Metrics>,
    /// The batch's lines, reused.
    text: Vec<u8>,
    /// Checkpoints and rotation.
    keeper: Keeper,
}

impl Writer {
    /// Reopens the file after a failed write. Records already in it (ours,
    /// or those of a file put in its place meanwhile) are continued from
    /// its last record; one whose last line is not a sealed record (a cut
    /// that could not be undone) is not appended to.
    fn ensure_open(&mut self) -> bool {
        if self.file.is_none() {
            match open_resumed(&self.path) {
                Ok((f, len, chain)) => {
                    self.len = len;
                    self.keeper.attach(&self.path, &f, false);
                    self.file = Some(f);
                    if let Some(chain) = chain {
                        self.chain = chain;
                    }
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %with_causes(&e), "cannot open audit file");
                    return false;
                }
            }
        }
        true
    }

    /// Whether the open file is the one at `path` now (same device and
    /// inode).
    fn is_open_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(file) = &self.file else {
            return false;
        };
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Seals and appends `batch` (emptied on return), tells each waiting
    /// request the outcome, and returns it.
    fn write_batch(&mut self, batch: &mut Vec<Entry>, healthy: &AtomicBool) -> bool {
        // Seal on a copy of the chain: only a successful write advances it,
        // so a failed batch leaves no gap in the chain on disk.
        let mut chain = self.chain.clone();
        self.text.clear();
        for entry in batch.iter_mut() {
            chain.seal_into(&mut entry.record, &mut self.text);
            self.text.push(b'\n');
        }
        let ok = self.ensure_open() && self.append();
        let n = batch.len() as u64;
        if ok {
            self.chain = chain;
            self.metrics.audit_records.inc_by(n);
            if self.keeper.recorded(n, self.len) {
                self.rotate();
            }
            if !healthy.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %self.path.display(), "audit writes succeed again");
            }
        } else {
            self.metrics.audit_write_errors.inc_by(n);
            self.file = None;
            if healthy.swap(false, Ordering::Relaxed) {
                tracing::error!(path = %self.path.display(), records = n, "audit write failed");
            }
        }
        for entry in batch.drain(..) {
            if let Some(slot) = entry.slot {
                slot.set(ok);
            }
        }
        ok
    }

    /// Signs a checkpoint of the open file (if signing): the file is
    /// synced first, so that a crash never leaves a checkpoint covering
    /// records the disk lost (which would read as a cut trail).
    fn sign(&mut self) {
        self.keeper
            .checkpoint(self.chain.last(), self.file.as_ref());
    }

    /// Signs a last checkpoint of the file being closed (at a reopen and at
    /// exit).
    fn closing(&mut self) {
        if self.file.is_some() {
            self.sign();
        }
    }

    /// Closes the file into a segment and starts the path anew (see
    /// [`super::rotate`]).
    fn rotate(&mut self) {
        self.closing();
        match super::rotate::rotate(&self.path, self.file.as_ref()) {
            Ok(file) => {
                self.keeper.attach(&self.path, &file, true);
                self.file = Some(file);
                self.len = 0;
                self.sign();
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the audit file");
                // Renamed but not reopened: the next write opens the path.
                if !self.is_open_at(&self.path) {
                    self.file = None;
                }
            }
        }
    }

    /// What the timer does: rotation by age, or a checkpoint, if due;
    /// returns when to come back.
    fn tick(&mut self) -> std::time::Instant {
        let (rotate, checkpoint, _) = self.keeper.due(std::time::Instant::now());
        if rotate && self.len > 0 {
            self.rotate();
        } else if rotate {
            self.keeper.restart_age();
        } else if checkpoint && self.file.is_some() {
            self.sign();
        }
        self.keeper.due(std::time::Instant::now()).2
    }

    /// Appends the batch whole or not at all: a write that fails part-way
    /// is cut back to the previous length, so the file never holds half a
    /// record or records the chain does not know about.
    fn append(&mut self) -> bool {
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        match file.write_all(&self.text) {
            Ok(()) => {
                self.len += self.text.len() as u64;
                true
            }
            Err(_) => {
                let _ = file.set_len(self.len);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
