use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

fn balance(loads: &[usize], me: usize) -> Balance {
    Balance {
        loads: loads.iter().map(|&n| AtomicUsize::new(n)).collect(),
        changed: Arc::new(tokio::sync::Notify::new()),
        me,
    }
}

#[test]
fn a_worker_ahead_of_the_least_loaded_one_lets_it_accept() {
    assert!(balance(&[1, 1], 0).may_accept());
    assert!(
        balance(&[2, 1], 0).may_accept(),
        "one ahead is within slack"
    );
    assert!(!balance(&[3, 1], 0).may_accept());
    assert!(
        balance(&[3, 1], 1).may_accept(),
        "the least loaded always may"
    );
    // An eighth more is tolerated at higher counts.
    assert!(balance(&[90, 80], 0).may_accept());
    assert!(balance(&[91, 80], 0).may_accept());
    assert!(!balance(&[92, 80], 0).may_accept());
}

/// A worker over its share waits without polling, and gets its turn
/// as soon as the counts change (here: another worker takes one).
#[tokio::test(start_paused = true)]
async fn a_worker_over_its_share_waits_for_a_change() {
    let all = Balance::new(2);
    let (first, second) = (all.worker(0), all.worker(1));
    let held: Vec<_> = (0..2).map(|_| first.hold()).collect();
    assert!(!first.may_accept());
    let turn = tokio::spawn({
        let first = first.clone();
        async move { first.my_turn().await }
    });
    // Time passes: no turn, and no timer drives it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!turn.is_finished());
    let other = second.hold();
    tokio::time::timeout(Duration::from_secs(1), turn)
        .await
        .expect("woken when the other worker took a connection")
        .unwrap();
    drop((held, other));
}

#[test]
fn a_held_connection_counts_until_dropped() {
    let b = balance(&[0, 0], 1);
    let held = b.hold();
    assert_eq!(b.loads[1].load(Ordering::Relaxed), 1);
    drop(held);
    assert_eq!(b.loads[1].load(Ordering::Relaxed), 0);
}

/// Sized 64 before, workers 64 and beyond shared slot 0 with the threads
/// off the workers (and worker 65 slot 1 with worker 1).
#[test]
fn every_worker_has_its_own_slot_beyond_63() {
    let per: PerWorker<()> = PerWorker::for_workers(100);
    assert_eq!(per.len(), 101);
    for index in 1..=100 {
        assert_eq!(per.slot_of(index), index, "worker {index}");
    }
    assert_eq!(per.slot_of(0), 0);
}

#[test]
fn the_default_size_follows_the_worker_count() {
    let per: PerWorker<()> = PerWorker::default();
    assert_eq!(per.len(), count() + 1);
}

#[test]
fn a_thread_that_entered_as_a_worker_uses_its_slot() {
    let per: PerWorker<AtomicUsize> = PerWorker::for_workers(3);
    std::thread::spawn(move || {
        enter(2);
        per.mine().store(7, Ordering::Relaxed);
        assert_eq!(per.get(2).load(Ordering::Relaxed), 7);
        assert_eq!(per.get(0).load(Ordering::Relaxed), 0);
    })
    .join()
    .unwrap();
}
