//! Core behaviour: builder validation, get/return, acquire timeout, close, status.

use std::time::Duration;

use poolguard::conn::{Error, Manager, Pool};
use poolguard_testkit::sim::{Faults, SimError, SimManager};

fn pool(m: &SimManager, max: usize) -> Pool<SimManager> {
    Pool::builder(m.clone())
        .max_size(max)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn builder_rejects_bad_config_with_a_fix() {
    let e = Pool::builder(SimManager::new())
        .max_size(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "max_size");
    assert!(e.to_string().contains("fix:"), "{e}");
    let e = Pool::builder(SimManager::new())
        .max_size(2)
        .min_idle(3)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "min_idle");
    let e = Pool::builder(SimManager::new())
        .acquire_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "acquire_timeout");
    let e = Pool::builder(SimManager::new())
        .jitter(0.9)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "jitter");
}

#[tokio::test(start_paused = true)]
async fn absurd_durations_are_refused_not_a_panic_later() {
    // `now + Duration::MAX` would panic at the first get; the builder refuses it instead.
    let e = Pool::builder(SimManager::new())
        .acquire_timeout(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "acquire_timeout");
    assert!(e.to_string().contains("365 days"), "{e}");
    let e = Pool::builder(SimManager::new())
        .validation_bypass(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "validation_bypass");
    let e = Pool::builder(SimManager::new())
        .max_lifetime(Some(Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(e.field, "max_lifetime");
    // The longest accepted value works end to end.
    let p = Pool::builder(SimManager::new())
        .acquire_timeout(poolguard::conn::MAX_DURATION)
        .max_lifetime(Some(poolguard::conn::MAX_DURATION))
        .build()
        .expect("one year is accepted");
    drop(p.get().await.expect("get"));
}

#[test]
fn build_outside_a_runtime_is_an_error_not_a_panic() {
    let e = Pool::builder(SimManager::new()).build().unwrap_err();
    assert_eq!(e.field, "runtime");
}

#[tokio::test(start_paused = true)]
async fn get_returns_on_drop_and_reuses() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = pool(&m, 2);
    let mut c = p.get().await.expect("get");
    let id = c.id();
    c.break_it(); // DerefMut reaches the connection...
    drop(c); // ...and a broken connection is closed, not reused
    tokio::task::yield_now().await;
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), id, "broken connection was reused");
    let id2 = c.id();
    drop(c);
    let c = p.get().await.expect("get");
    assert_eq!(c.id(), id2, "healthy connection was not reused");
    let s = p.status();
    assert_eq!((s.size, s.in_use, s.idle), (1, 1, 0));
    drop(c);
    assert_eq!(p.status().idle, 1);
    assert_eq!(m.created(), 2);
}

#[tokio::test(start_paused = true)]
async fn reset_runs_on_return_before_reuse() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    let c = p.get().await.expect("get");
    drop(c);
    let c = p.get().await.expect("get after reset");
    assert_eq!(m.resets(), 1);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_names_the_holder() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    let held = p.get().await.expect("get");
    let start = tokio::time::Instant::now();
    let err = p.get().await.expect_err("pool exhausted");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "bounded by acquire_timeout"
    );
    let snap = err.snapshot().expect("a timeout carries a snapshot");
    assert_eq!(
        (snap.status.size, snap.status.in_use, snap.status.idle),
        (1, 1, 0)
    );
    assert_eq!(snap.longest_holders.len(), 1);
    assert!(snap.longest_holders[0]
        .site
        .file()
        .ends_with("conn_basic.rs"));
    let line = err.to_string();
    assert!(line.contains("conn_basic.rs"), "{line}");
    assert!(line.contains("size 1/1"), "{line}");
    assert_eq!(p.stats().timed_out, 1);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn refused_connect_is_a_backend_error_not_a_timeout() {
    let m = SimManager::new();
    m.set_refuse(true);
    let p = Pool::builder(m.clone())
        .acquire_timeout(Duration::from_secs(30))
        .breaker_threshold(None)
        .build()
        .expect("valid");
    let start = tokio::time::Instant::now();
    match p.get().await {
        Err(Error::Backend { source, .. }) => assert_eq!(*source, SimError::Refused),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1), "failed fast");
}

#[tokio::test(start_paused = true)]
async fn close_wakes_waiters_and_closes_everything() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    let held = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(p.status().waiters, 1);
    p.close();
    let r = waiter.await.expect("join");
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(matches!(p.get().await, Err(Error::Closed)));
    drop(held); // closed on return
    assert!(p.wait_closed(Duration::from_secs(5)).await);
    assert_eq!(m.alive(), 0);
    assert_eq!(m.closes(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_closes_the_pool() {
    let m = SimManager::new();
    let p = pool(&m, 3);
    let a = p.get().await.expect("get");
    let b = p.get().await.expect("get");
    drop(a);
    drop(p);
    drop(b);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        m.alive(),
        0,
        "every connection closed after the pool is dropped"
    );
    assert_eq!(m.closes(), m.created());
}

#[tokio::test(start_paused = true)]
async fn report_evicts_only_fatal_errors() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = pool(&m, 1);
    let mut c = p.get().await.expect("get");
    let id = c.id();
    c.report(&SimError::BadQuery);
    assert!(!c.is_marked_broken());
    drop(c);
    let mut c = p.get().await.expect("get");
    assert_eq!(c.id(), id);
    c.report(&SimError::ConnectionLost);
    assert!(c.is_marked_broken());
    drop(c);
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), id);
    let _ = m.classify(&SimError::BadQuery);
}

#[test]
fn handles_cross_tasks_and_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool<SimManager>>();
    send::<poolguard::conn::PooledConnection<SimManager>>();
    send_sync::<Error<SimError>>();
    send_sync::<poolguard::conn::TimeoutSnapshot>();
}

#[test]
fn dropping_after_the_runtime_is_gone_neither_panics_nor_leaks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let m = SimManager::new();
    let (p, c) = rt.block_on(async {
        let p = pool(&m, 2);
        let c = p.get().await.expect("get");
        let idle = p.get().await.expect("get");
        drop(idle);
        (p, c)
    });
    drop(rt);
    drop(c);
    drop(p);
    assert_eq!(m.alive(), 0);
}
