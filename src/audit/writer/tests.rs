use std::sync::atomic::AtomicUsize;
use std::task::Wake;

use super::*;
use crate::audit::record::example;

fn record(n: u64) -> AuditRecord {
    example(n)
}

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// While one request leads, others queue; the leader writes them in
/// order before it stops, wakes each, and the chain verifies.
#[test]
fn queued_records_are_written_by_the_leader_and_woken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (sink, writer) =
        AuditSink::start_batched(&path, 8, 2, Arc::new(Metrics::new()), Keeper::default()).unwrap();
    let woken = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    // Pretend a leader is busy: the next three records queue.
    lock(sink.inner.queues.mine()).leading = true;
    let mut waiting: Vec<Commit> = (0..3).map(|n| sink.write(record(n))).collect();
    for c in &mut waiting {
        assert!(Pin::new(c).poll(&mut cx).is_pending());
    }
    sink.write_detached(record(3));
    assert_eq!(lock(sink.inner.queues.mine()).pending.len(), 4);
    // The busy leader stops. A new one yields once before writing, so
    // that requests ready meanwhile join its batch: r5 queues.
    lock(sink.inner.queues.mine()).leading = false;
    let leader_woken = Arc::new(Count(AtomicUsize::new(0)));
    let leader_waker = Waker::from(leader_woken.clone());
    let mut leader_cx = Context::from_waker(&leader_waker);
    let mut own = sink.write(record(4));
    assert!(Pin::new(&mut own).poll(&mut leader_cx).is_pending());
    assert_eq!(
        leader_woken.0.load(Ordering::SeqCst),
        1,
        "yield wakes the leader"
    );
    let mut late = sink.write(record(5));
    assert!(Pin::new(&mut late).poll(&mut cx).is_pending());
    // Its second poll writes everything, in batches of 2: the oldest
    // queued first, its own record closing the first batch.
    assert_eq!(Pin::new(&mut own).poll(&mut leader_cx), Poll::Ready(true));
    assert_eq!(woken.0.load(Ordering::SeqCst), 4, "every waiter is woken");
    waiting.push(late);
    for c in &mut waiting {
        assert_eq!(Pin::new(c).poll(&mut cx), Poll::Ready(true));
    }
    // A record whose future is dropped unpolled is written all the same.
    drop(sink.write(record(6)));
    writer.join();
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| {
            let id = crate::audit::unseal(l.as_bytes())
                .unwrap()
                .record
                .request_id;
            u64::from_str_radix(&id, 16).unwrap()
        })
        .collect();
    assert_eq!(ids, [0, 1, 4, 2, 3, 5, 6]);
    let summary = crate::audit::verify(&[path], &crate::audit::Expect::default()).unwrap();
    assert_eq!(summary.records, 7);
}

fn ids(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let id = crate::audit::unseal(l.as_bytes())
                .unwrap()
                .record
                .request_id;
            u64::from_str_radix(&id, 16).unwrap()
        })
        .collect()
}

/// Queues `n` records from as many spawned requests, behind a busy
/// leader, then lets a request (record 100) lead: it writes the oldest
/// queued record with its own, `LEAD_ROUNDS - 1` more batches of one,
/// then hands the lead to the oldest waiter, record `LEAD_ROUNDS`.
/// `detached` records queue after the waiters'.
async fn hand_off(
    sink: &AuditSink,
    n: u64,
    detached: &[u64],
) -> Vec<tokio::task::JoinHandle<bool>> {
    lock(sink.inner.queues.mine()).leading = true;
    let waiters: Vec<_> = (0..n)
        .map(|i| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.write(record(i)).await })
        })
        .collect();
    while lock(sink.inner.queues.mine()).pending.len() < waiters.len() {
        tokio::task::yield_now().await;
    }
    for &i in detached {
        sink.write_detached(record(i));
    }
    lock(sink.inner.queues.mine()).leading = false;
    assert!(sink.write(record(100)).await);
    let q = lock(sink.inner.queues.mine());
    assert!(!q.leading, "the lead was handed over");
    assert_eq!(
        q.pending.len(),
        waiters.len() + detached.len() - LEAD_ROUNDS
    );
    drop(q);
    waiters
}

/// The request woken to lead has gone (its client closed) before it
/// ran: the requests queued behind it still complete, with no further
/// record on this worker to start a new leader. Paused time: a stall
/// lets the clock run to the timeout at once.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_woken_to_lead_passes_the_lead_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (sink, writer) =
        AuditSink::start_batched(&path, 64, 1, Arc::new(Metrics::new()), Keeper::default())
            .unwrap();
    let n = LEAD_ROUNDS as u64 + 4;
    let mut waiters = hand_off(&sink, n, &[]).await;
    let designated = waiters.remove(LEAD_ROUNDS);
    designated.abort();
    assert!(designated.await.unwrap_err().is_cancelled());
    for (i, w) in (0..n).filter(|&i| i != LEAD_ROUNDS as u64).zip(waiters) {
        let done = tokio::time::timeout(std::time::Duration::from_secs(3600), w).await;
        assert!(
            done.unwrap_or_else(|_| panic!("request {i} stalled"))
                .unwrap()
        );
    }
    let mut want: Vec<u64> = vec![0, 100];
    want.extend(1..n);
    assert_eq!(ids(&path), want, "every record, the dropped one's too");
    writer.join();
    assert_eq!(verify(&[path]).records, n + 1);
}

/// The same, with nobody waiting behind the dropped request (only a
/// detached record): it writes what is queued itself as it goes.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_woken_to_lead_with_nobody_behind_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (sink, writer) =
        AuditSink::start_batched(&path, 64, 1, Arc::new(Metrics::new()), Keeper::default())
            .unwrap();
    let n = LEAD_ROUNDS as u64 + 1;
    let mut waiters = hand_off(&sink, n, &[n]).await;
    let designated = waiters.remove(LEAD_ROUNDS);
    designated.abort();
    assert!(designated.await.unwrap_err().is_cancelled());
    let mut want: Vec<u64> = vec![0, 100];
    want.extend(1..=n);
    assert_eq!(ids(&path), want, "written before any further record");
    writer.join();
    assert_eq!(verify(&[path]).records, n + 2);
}

/// `[audit] queue` bounds the records waiting on a worker: behind a
/// leader that does not get to write (a stalled disk), a request that
/// finds the queue full does not queue but writes the waiting records
/// and its own, in order, waiting for the file meanwhile.
#[test]
fn a_full_queue_makes_the_next_request_write_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (sink, writer) = AuditSink::start(&path, 2, Arc::new(Metrics::new())).unwrap();
    let woken = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let pending = || lock(sink.inner.queues.mine()).pending.len();
    lock(sink.inner.queues.mine()).leading = true;
    let mut waiting: Vec<Commit> = (0..2).map(|n| sink.write(record(n))).collect();
    for c in &mut waiting {
        assert!(Pin::new(c).poll(&mut cx).is_pending());
    }
    assert_eq!(pending(), 2);
    // A detached record finds the queue full.
    sink.write_detached(record(2));
    assert_eq!(pending(), 0);
    assert_eq!(ids(&path), [0, 1, 2]);
    assert_eq!(woken.0.load(Ordering::SeqCst), 2, "the waiters are woken");
    for c in &mut waiting {
        assert_eq!(Pin::new(c).poll(&mut cx), Poll::Ready(true));
    }
    // So does a request, on its first poll.
    sink.write_detached(record(3));
    let mut queued = sink.write(record(4));
    assert!(Pin::new(&mut queued).poll(&mut cx).is_pending());
    let mut full = sink.write(record(5));
    assert_eq!(Pin::new(&mut full).poll(&mut cx), Poll::Ready(true));
    assert_eq!(Pin::new(&mut queued).poll(&mut cx), Poll::Ready(true));
    assert_eq!(ids(&path), [0, 1, 2, 3, 4, 5]);
    // While another worker's leader holds the file, it waits for it.
    let file = lock(&sink.inner.writer);
    let share = sink.inner.queues.my_slot();
    let through = {
        let sink = sink.clone();
        std::thread::spawn(move || {
            let entry = |n| Entry {
                record: Box::new(record(n)),
                slot: None,
            };
            for n in 6..8 {
                lock(sink.inner.queues.get(share)).pending.push(entry(n));
            }
            sink.inner.write_through(share, entry(8))
        })
    };
    while lock(sink.inner.queues.get(share)).pending.len() < 2 {
        std::thread::yield_now();
    }
    assert_eq!(
        ids(&path).len(),
        6,
        "nothing written while the file is held"
    );
    drop(file);
    assert!(through.join().unwrap());
    assert_eq!(pending(), 0);
    lock(sink.inner.queues.mine()).leading = false;
    writer.join();
    assert_eq!(ids(&path), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(verify(&[path]).records, 9);
}

fn verify(paths: &[PathBuf]) -> crate::audit::Summary {
    crate::audit::verify(paths, &crate::audit::Expect::default()).unwrap()
}

fn write_now(sink: &AuditSink, n: u64) {
    let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
    let mut cx = Context::from_waker(&waker);
    let mut commit = sink.write(record(n));
    // Uncontended: the first poll yields, the second writes.
    let _ = Pin::new(&mut commit).poll(&mut cx);
    assert_eq!(Pin::new(&mut commit).poll(&mut cx), Poll::Ready(true));
}

/// Reopening at a file that holds another chain continues that chain:
/// both files verify on their own, from genesis.
#[test]
fn reopen_at_a_file_with_records_continues_its_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let mut other = Chain::new();
    let lines: String = (10..12)
        .map(|n| format!("{}\n", other.seal(&mut record(n))))
        .collect();
    std::fs::write(&b, lines).unwrap();
    let (sink, writer) = AuditSink::start(&a, 8, Arc::new(Metrics::new())).unwrap();
    write_now(&sink, 1);
    sink.reopen(b.clone()).unwrap();
    write_now(&sink, 2);
    sink.reopen(a.clone()).unwrap();
    write_now(&sink, 3);
    writer.join();
    assert_eq!(verify(&[a]).records, 2);
    assert_eq!(verify(&[b]).records, 3);
}

/// A file whose last line is not a sealed record is not appended to:
/// the reopen is refused and records keep going to the old file.
#[test]
fn reopen_at_a_file_with_a_broken_tail_is_refused_and_the_old_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(&b, "{\"not\":\"sealed\"}\n").unwrap();
    let (sink, writer) = AuditSink::start(&a, 8, Arc::new(Metrics::new())).unwrap();
    write_now(&sink, 1);
    let err = sink.reopen(b.clone()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("the last line of audit file {}", b.display())),
        "{err}"
    );
    write_now(&sink, 2);
    writer.join();
    assert_eq!(verify(&[a]).records, 2);
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        "{\"not\":\"sealed\"}\n"
    );
}

/// Rotation: the file renamed away, the path reopened empty; the chain
/// continues across the two files. Reopening the same file again
/// changes nothing (a second handle could not take the lock).
#[test]
fn reopen_after_rotation_continues_the_chain_in_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let rotated = dir.path().join("a.jsonl.1");
    let (sink, writer) = AuditSink::start(&a, 8, Arc::new(Metrics::new())).unwrap();
    write_now(&sink, 1);
    sink.reopen(a.clone()).unwrap();
    write_now(&sink, 2);
    std::fs::rename(&a, &rotated).unwrap();
    sink.reopen(a.clone()).unwrap();
    write_now(&sink, 3);
    writer.join();
    assert_eq!(verify(&[rotated.clone(), a.clone()]).records, 3);
    assert_eq!(verify(&[rotated]).records, 2);
}
