//! Items 5 and 6: leak detection (counters; the events are in `conn_leak_events.rs`), and
//! abandonment (maintenance only).

use std::time::Duration;

use poolguard::conn::{CloseReason, Pool};
use poolguard_testkit::sim::SimManager;

#[tokio::test(start_paused = true)]
async fn no_leak_reports_when_off() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).build().expect("valid");
    let c = p.get().await.expect("get");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(p.stats().leaks, 0);
    assert_eq!(p.status().in_use, 1);
    assert_eq!(p.status().abandoned, 0, "abandonment is off by default");
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_connection_frees_its_place_and_is_closed_on_return() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .leak_threshold(Some(Duration::from_secs(5)))
        .abandon_timeout(Some(Duration::from_secs(10)))
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .expect("valid");
    let long_tx = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let c = p2.get().await.expect("a replacement");
        (c.id(), start.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (id, waited) = waiter.await.expect("join");
    assert_ne!(id, long_tx.id(), "a replacement was opened");
    assert!(
        waited <= Duration::from_secs(11),
        "served once abandoned, waited {waited:?}"
    );
    let s = p.status();
    assert_eq!(s.abandoned, 1);
    assert!(s.size <= 1);
    // The long transaction was never interrupted: it still has its connection...
    assert_eq!(p.stats().abandoned, 1);
    drop(long_tx); // ...and it is closed, not reused, when it comes back.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(p.stats().closed_by(CloseReason::Abandoned), 1);
    assert_eq!(p.status().abandoned, 0);
}
