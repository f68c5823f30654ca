//! Item 2: fair FIFO waiters; connections opened in the background; surplus opens elided.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::Pool;
use poolguard_testkit::sim::{Op, SimManager, Workload};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    let held = p.get().await.expect("get");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = p.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.expect("served");
            order.lock().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(c);
        }));
        // let each one queue before the next arrives
        tokio::task::yield_now().await;
    }
    assert_eq!(p.status().waiters, 8);
    drop(held);
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>());
    assert_eq!(m.created(), 1, "no connection opened while one was in use");
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_never_barges_past_a_waiter() {
    let m = SimManager::new();
    m.with_reset(false);
    // Strict handoff from the first instant (no barging window; the window is tested in
    // conn_handoff.rs).
    let p = Pool::builder(m.clone())
        .max_size(1)
        .handoff_after(Duration::ZERO)
        .build()
        .expect("valid");
    let held = p.get().await.expect("get");
    let p2 = p.clone();
    let first = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    tokio::task::yield_now().await;
    drop(held); // handed to the waiter, not left idle for the newcomer
    assert_eq!(p.status().idle, 0);
    let p3 = p.clone();
    let newcomer = tokio::spawn(async move { p3.get().await.map(|c| c.id()) });
    assert!(first.await.expect("join").is_ok());
    assert!(newcomer.await.expect("join").is_ok());
}

/// HikariCP's spike test: 50 simultaneous requests, 150 ms per connect, 2 ms per query,
/// max 50, min idle 5. HikariCP ends with 5–6 connections; pools that open one connection
/// per waiter end with 40–45.
#[tokio::test(start_paused = true)]
async fn spike_opens_few_connections() {
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_millis(150))
        .latency(Op::Query, Duration::from_millis(2));
    let p = Pool::builder(m.clone())
        .max_size(50)
        .min_idle(5)
        .build()
        .expect("valid");
    while p.status().idle < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(m.created(), 5);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let p = p.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = p.get().await.expect("served");
            m.work(&mut c).await.expect("query");
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(m.created() <= 6, "opened {} connections", m.created());
    assert!(
        took < Duration::from_millis(100),
        "all served by the warm ones in {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn callers_only_wait_on_the_pool_not_on_their_own_connect() {
    // A slow connect started for an earlier waiter does not hold up a caller that a
    // returned connection can serve.
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_secs(1))
        .with_reset(false);
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    let a = p.get().await.expect("first connect");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        let _c = p2.get().await.expect("served");
        start.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(a); // handed to the waiter long before its connect finishes
    assert_eq!(waiter.await.expect("join"), Duration::from_millis(10));
}
