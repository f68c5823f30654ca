//! Checkout variants: `try_get` (never waits, never opens), `get_timeout` (a per-call
//! deadline, clamped to `acquire_timeout`), `get_owned` (a `'static` guard holding the pool)
//! and `detach` (the connection leaves the pool for good, its place is freed).

use std::time::Duration;

use poolguard::conn::{Error, Pool};
use poolguard_testkit::sim::{Behavior, Op, SimManager};
use tokio::time::{sleep, Instant};

fn pool(m: &SimManager, max: usize) -> Pool<SimManager> {
    Pool::builder(m.clone())
        .max_size(max)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .expect("valid")
}

#[tokio::test(start_paused = true)]
async fn try_get_takes_an_idle_connection_or_would_block_without_opening() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = pool(&m, 2);
    let start = Instant::now();
    assert!(matches!(p.try_get().await, Err(Error::WouldBlock)));
    assert_eq!(start.elapsed(), Duration::ZERO, "it did not wait");
    sleep(Duration::from_millis(50)).await;
    assert_eq!(m.attempts(), 0, "it never opens a connection");
    assert_eq!(p.status().size, 0);
    let c = p.get().await.expect("get");
    let id = c.id();
    drop(c);
    let c = p.try_get().await.expect("the idle one");
    assert_eq!(c.id(), id);
    // Held: nothing idle again, so WouldBlock, with room to grow and nothing opened.
    assert!(matches!(p.try_get().await, Err(Error::WouldBlock)));
    assert_eq!(m.attempts(), 1);
    let t = p.stats();
    assert_eq!(t.would_block, 2);
    assert!(p
        .prometheus()
        .contains("poolguard_conn_would_block_total{pool="));
    drop(c);
    p.close();
    assert!(matches!(p.try_get().await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn try_get_validates_a_stale_idle_connection_and_skips_a_dead_one() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .keepalive_interval(None)
        .validation_timeout(Duration::from_millis(100))
        .build()
        .expect("valid");
    let (a, b) = (p.get().await.expect("a"), p.get().await.expect("b"));
    drop((a, b));
    sleep(Duration::from_secs(1)).await; // past the bypass window: checkouts validate
    m.set(Op::Validate, Behavior::Hang);
    let start = Instant::now();
    // Both idle ones hang in validation: each is cut at validation_timeout and closed,
    // then nothing is idle.
    assert!(matches!(p.try_get().await, Err(Error::WouldBlock)));
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200),
        "bounded by validation_timeout"
    );
    assert_eq!(m.validations(), 2);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(p.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn get_timeout_has_its_own_deadline_and_is_clamped_to_the_pools() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    let held = p.get().await.expect("get");
    let start = Instant::now();
    match p.get_timeout(Duration::from_millis(100)).await {
        Err(Error::Timeout(snap)) => assert_eq!(snap.waited, Duration::from_millis(100)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // Longer than acquire_timeout (2 s): clamped to it.
    let start = Instant::now();
    assert!(matches!(
        p.get_timeout(Duration::from_secs(60)).await,
        Err(Error::Timeout(_))
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Served when a connection comes back in time.
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        p2.get_timeout(Duration::from_millis(500))
            .await
            .map(|c| c.id())
    });
    sleep(Duration::from_millis(200)).await;
    let id = held.id();
    drop(held);
    assert_eq!(waiter.await.unwrap().expect("handed over"), id);
    // Zero: an idle connection at once, else a timeout.
    assert!(p.get_timeout(Duration::ZERO).await.is_ok());
    assert_eq!(p.stats().timed_out, 2);
}

#[tokio::test(start_paused = true)]
async fn get_owned_is_static_and_keeps_the_pool_open() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = pool(&m, 2);
    let fut = p.get_owned();
    let owned = tokio::spawn(fut).await.unwrap().expect("owned");
    assert_eq!(owned.pool().status().in_use, 1);
    let id = owned.id(); // PooledConnection's methods through the deref
    drop(p); // the last user handle: the guard's own keeps the pool open
    assert!(!owned.pool().is_closed());
    let pool = owned.pool().clone();
    // A task that holds it while the pool is used elsewhere.
    let task = tokio::spawn(async move {
        sleep(Duration::from_millis(10)).await;
        owned.id()
    });
    assert_eq!(task.await.unwrap(), id);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(pool.status().idle, 1, "returned on drop");
    let c = pool.try_get().await.expect("idle");
    assert_eq!(c.id(), id);
}

#[tokio::test(start_paused = true)]
async fn detach_frees_the_place_and_a_waiter_gets_a_replacement() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = pool(&m, 1);
    let c = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    sleep(Duration::from_millis(10)).await;
    assert_eq!(p.status().waiters, 1);
    let raw = c.detach();
    let new_id = waiter
        .await
        .unwrap()
        .expect("a replacement opened for the waiter");
    assert_ne!(new_id, raw.id());
    assert_eq!(m.created(), 2);
    let t = p.stats();
    assert_eq!(t.detached, 1);
    assert_eq!(t.closed_total(), 0, "the pool closes nothing it detached");
    let s = p.status();
    assert_eq!((s.size, s.in_use, s.idle), (1, 0, 1));
    assert!(p
        .prometheus()
        .contains("poolguard_conn_detached_total{pool="));
    // Owned guards detach too; and once closed, a detach of the last one drains the pool.
    let owned = p.get_owned().await.expect("owned");
    p.close();
    let raw2 = owned.detach();
    assert!(p.wait_closed(Duration::from_secs(1)).await);
    assert_eq!(p.stats().detached, 2);
    drop((raw, raw2));
    assert_eq!(m.alive(), 0);
}
