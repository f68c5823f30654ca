//! Build-time validation of the connection pool's configuration: every refusal names the
//! field, the problem and the fix; defaults and floors are documented figures.

use std::time::Duration;

use poolguard::conn::{Error, Pool};
use poolguard_testkit::sim::SimManager;

#[tokio::test(start_paused = true)]
async fn zero_max_waiters_is_refused_because_a_cold_pool_could_never_serve() {
    let e = Pool::builder(SimManager::new())
        .max_waiters(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "max_waiters");
    assert!(e.problem.contains("never serve"), "{e}");
    assert!(e.fix.contains("at least 1"), "{e}");
    // The smallest accepted value serves a cold pool: the first caller waits while the
    // first connection is opened.
    let m = SimManager::new();
    let pool = Pool::builder(m.clone())
        .max_size(1)
        .max_waiters(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    let c = pool
        .get()
        .await
        .expect("a cold pool opens a connection for its first caller");
    assert_eq!(m.created(), 1);
    drop(c);
    // Admission control still works at 1: with the one connection held and one caller
    // waiting for it, the next caller is refused.
    let held = pool.get().await.expect("idle");
    let pool2 = pool.clone();
    let waiter = tokio::spawn(async move { pool2.get().await.map(drop) });
    while pool.status().waiters == 0 {
        tokio::task::yield_now().await;
    }
    match pool.get().await {
        Err(Error::Overloaded { max_waiters: 1, .. }) => {}
        other => panic!("expected Overloaded, got {:?}", other.map(drop)),
    }
    drop(held);
    waiter.await.expect("join").expect("the waiter is served");
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_interval_below_the_floor_is_refused_naming_it() {
    use poolguard::conn::MIN_MAINTENANCE_INTERVAL;
    for d in [
        Duration::from_nanos(1),
        MIN_MAINTENANCE_INTERVAL - Duration::from_nanos(1),
    ] {
        let e = Pool::builder(SimManager::new())
            .maintenance_interval(d)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "maintenance_interval");
        assert!(e.problem.contains("10ms"), "{e}");
        assert!(e.fix.contains("10 ms"), "{e}");
    }
    let pool = Pool::builder(SimManager::new())
        .maintenance_interval(MIN_MAINTENANCE_INTERVAL)
        .build()
        .expect("the floor itself is accepted");
    assert_eq!(pool.config().maintenance_interval, MIN_MAINTENANCE_INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn resize_refuses_a_size_above_the_limit() {
    let pool = Pool::builder(SimManager::new()).build().expect("valid");
    let e = pool.resize(poolguard::conn::MAX_SIZE + 1).unwrap_err();
    assert_eq!(e.field, "max_size");
    assert!(e.problem.contains("10000"), "{e}");
    assert_eq!(pool.status().max_size, 10, "unchanged");
    pool.resize(poolguard::conn::MAX_SIZE)
        .expect("the limit itself");
    assert_eq!(pool.status().max_size, poolguard::conn::MAX_SIZE);
}

#[tokio::test(start_paused = true)]
async fn a_name_breaking_the_name_rule_is_refused_and_an_empty_one_is_generated() {
    let e = Pool::builder(SimManager::new())
        .name("x".repeat(poolguard::diag::MAX_NAME_BYTES + 1))
        .build()
        .unwrap_err();
    assert_eq!(e.field, "name");
    assert!(e.problem.contains("129 bytes"), "{e}");
    let pool = Pool::builder(SimManager::new())
        .name("")
        .build()
        .expect("empty = generated");
    assert!(
        pool.config().name.starts_with("SimManager-"),
        "{}",
        pool.config().name
    );
}
