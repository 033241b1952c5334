//! Per-worker plumbing: the worker threads that serve traffic, which one
//! the calling thread is, one value per worker ([`PerWorker`]: a share of
//! the upstream pools, an audit queue), and the balance of connections
//! between workers. A leaf: the proxy, the audit writer and the upstream
//! pools use it; it uses none of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// How many worker threads serve traffic: one per CPU, decided once for
/// the process, so that everything sized per worker agrees with it.
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as worker `index` (from 1) for the rest of
/// its life.
pub fn enter(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The worker the calling thread is (from 1), or 0 off the workers.
pub fn current() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// One `T` per worker thread, for what a worker uses on its own: its share
/// of the upstream pools, its audit queue. Slot 0 serves the threads off
/// the workers; worker `i` has slot `i`, its own.
pub struct PerWorker<T>(Box<[T]>);

impl<T: Default> Default for PerWorker<T> {
    /// One slot per worker of [`count`], and slot 0.
    fn default() -> Self {
        Self::for_workers(count())
    }
}

impl<T: Default> PerWorker<T> {
    /// Slots for `workers` workers and the threads off them.
    pub fn for_workers(workers: usize) -> Self {
        Self((0..=workers).map(|_| T::default()).collect())
    }
}

impl<T> PerWorker<T> {
    /// The calling thread's `T`.
    pub fn mine(&self) -> &T {
        &self.0[self.slot_of(current())]
    }

    /// The slot of worker `index`: its own. A worker beyond the count it
    /// was sized for (none is started) would share slot 0.
    pub fn slot_of(&self, index: usize) -> usize {
        if index < self.0.len() { index } else { 0 }
    }

    /// The slot of the calling thread.
    pub fn my_slot(&self) -> usize {
        self.slot_of(current())
    }

    /// The `T` of `slot`.
    pub fn get(&self, slot: usize) -> &T {
        &self.0[slot]
    }

    /// How many slots there are (workers and slot 0).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: slot 0 always exists.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How many connections each worker serves, so that none takes far more
/// than the others.
#[derive(Clone)]
pub struct Balance {
    loads: Arc<[AtomicUsize]>,
    /// Signalled when a count changes, for a worker waiting for its turn.
    changed: Arc<tokio::sync::Notify>,
    me: usize,
}

impl Balance {
    /// Counts for `workers` workers, seen from the first.
    pub fn new(workers: usize) -> Self {
        Self {
            loads: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            changed: Arc::new(tokio::sync::Notify::new()),
            me: 0,
        }
    }

    /// The same counts, seen from worker `me` (from 0).
    pub fn worker(&self, me: usize) -> Self {
        Self { me, ..self.clone() }
    }

    /// Whether this worker may take another connection: it serves at most
    /// one more (or an eighth more) than the least loaded worker. The
    /// least loaded one always may, so connections are never left waiting.
    pub fn may_accept(&self) -> bool {
        let mine = self.loads[self.me].load(Ordering::Relaxed);
        let least = self
            .loads
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        mine <= least + 1 + least / 8
    }

    /// Waits until this worker may take another connection. No timer: a
    /// worker over its share sleeps until some worker's count changes.
    pub async fn my_turn(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.may_accept() {
                return;
            }
            changed.await;
        }
    }

    /// Counts a connection on this worker until the guard drops.
    pub fn hold(&self) -> impl Drop + Send + use<> {
        struct Held(Balance);
        impl Drop for Held {
            fn drop(&mut self) {
                self.0.loads[self.0.me].fetch_sub(1, Ordering::Relaxed);
                self.0.changed.notify_waiters();
            }
        }
        self.loads[self.me].fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        Held(self.clone())
    }
}

#[cfg(test)]
mod tests;
