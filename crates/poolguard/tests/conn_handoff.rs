//! The handoff budget (`handoff_after`): while the oldest waiter has waited less than it, a
//! returned connection goes idle (an arriving caller may take it at once, and one waiter is
//! woken to compete for it); beyond it, every return is handed strictly to the oldest waiter.
//! All on tokio's paused clock: time moves only when a test advances it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::Pool;
use poolguard_testkit::sim::SimManager;

fn pool(m: &SimManager, budget: Duration) -> Pool<SimManager> {
    m.with_reset(false);
    Pool::builder(m.clone())
        .max_size(1)
        .handoff_after(budget)
        .build()
        .expect("valid")
}

/// Lets every runnable task run until each is parked again.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn within_the_budget_an_arrival_takes_the_idle_connection_ahead_of_the_waiter() {
    let m = SimManager::new();
    let p = pool(&m, Duration::from_millis(1));
    let held = p.get().await.expect("get");
    let order = Arc::new(Mutex::new(Vec::new()));
    let (p2, o2) = (p.clone(), Arc::clone(&order));
    let waiter = tokio::spawn(async move {
        let c = p2.get().await.expect("served");
        o2.lock().push("waiter");
        drop(c);
    });
    settle().await;
    assert_eq!(p.status().waiters, 1);
    // The waiter has waited 0 s (< 1 ms): the connection goes idle...
    drop(held);
    assert_eq!(p.status().idle, 1, "returned within the budget: left idle");
    // ... and this arrival takes it at once, ahead of the waiter.
    let barged = p.get().await.expect("barge");
    order.lock().push("arrival");
    settle().await;
    // The woken waiter found nothing and queued again, at the front.
    assert!(!waiter.is_finished());
    assert_eq!(p.status().waiters, 1);
    drop(barged);
    waiter.await.expect("join");
    assert_eq!(*order.lock(), ["arrival", "waiter"]);
    assert_eq!(m.created(), 1);
}

#[tokio::test(start_paused = true)]
async fn beyond_the_budget_a_return_is_handed_strictly_to_the_oldest_waiter() {
    let m = SimManager::new();
    let p = pool(&m, Duration::from_millis(1));
    let held = p.get().await.expect("get");
    let order = Arc::new(Mutex::new(Vec::new()));
    let (p2, o2) = (p.clone(), Arc::clone(&order));
    let waiter = tokio::spawn(async move {
        let c = p2.get().await.expect("served");
        o2.lock().push("waiter");
        drop(c);
    });
    settle().await;
    tokio::time::advance(Duration::from_millis(2)).await;
    // The waiter has waited 2 ms (> 1 ms): handed over, nothing left idle for an arrival.
    drop(held);
    assert_eq!(
        p.status().idle,
        0,
        "beyond the budget: handed to the waiter"
    );
    let (p3, o3) = (p.clone(), Arc::clone(&order));
    let arrival = tokio::spawn(async move {
        let c = p3.get().await.expect("served");
        o3.lock().push("arrival");
        drop(c);
    });
    waiter.await.expect("join");
    arrival.await.expect("join");
    assert_eq!(*order.lock(), ["waiter", "arrival"]);
}

#[tokio::test(start_paused = true)]
async fn a_zero_budget_is_strict_fifo_handoff() {
    let m = SimManager::new();
    let p = pool(&m, Duration::ZERO);
    let held = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    settle().await;
    drop(held);
    assert_eq!(p.status().idle, 0, "no budget: handed over at once");
    assert!(waiter.await.expect("join").is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_woken_waiter_takes_the_connection_when_nobody_barges() {
    let m = SimManager::new();
    let p = pool(&m, Duration::from_secs(1));
    let held = p.get().await.expect("get");
    let id = held.id();
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    settle().await;
    drop(held);
    assert_eq!(p.status().idle, 1);
    // No arrival: the waiter woken by the return takes it, with no time passing (it does not
    // sit out the budget).
    let start = tokio::time::Instant::now();
    assert_eq!(waiter.await.expect("join").expect("served"), id);
    assert_eq!(tokio::time::Instant::now(), start);
    assert_eq!(p.status().idle, 1);
}

#[tokio::test(start_paused = true)]
async fn a_woken_waiter_that_is_cancelled_passes_the_wake_on() {
    let m = SimManager::new();
    let p = pool(&m, Duration::from_secs(1));
    let held = p.get().await.expect("get");
    let p1 = p.clone();
    let first = tokio::spawn(async move { p1.get().await.map(|c| c.id()) });
    settle().await;
    let p2 = p.clone();
    let second = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    settle().await;
    assert_eq!(p.status().waiters, 2);
    // The return wakes the first waiter, which is aborted before it runs.
    drop(held);
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    // The second waiter is woken in its place and gets the idle connection.
    let got = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second waiter was woken")
        .expect("join");
    assert!(got.is_ok());
    let s = p.status();
    assert_eq!((s.size, s.idle, s.waiters), (1, 1, 0));
}
