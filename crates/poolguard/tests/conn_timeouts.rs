//! Item 1: every await has a deadline (connect, validate, reset, close, acquire).

use std::time::Duration;

use poolguard::conn::{CloseReason, Error, Phase, Pool};
use poolguard_testkit::sim::{Behavior, Op, SimManager};
use tokio::time::Instant;

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn default_timeouts_are_bounded() {
    let p = Pool::builder(SimManager::new()).build().expect("valid");
    let c = p.config();
    assert_eq!(c.acquire_timeout, Duration::from_secs(30));
    assert!(c.validation_timeout >= Duration::from_secs(1));
    assert!(c.validation_timeout <= Duration::from_secs(5));
    assert!(c.connect_timeout <= c.acquire_timeout);
    assert!(!c.reset_timeout.is_zero() && !c.close_timeout.is_zero());
}

#[tokio::test(start_paused = true)]
async fn hanging_connect_is_cut_by_connect_timeout() {
    let m = SimManager::new();
    m.set(Op::Connect, Behavior::Hang);
    let p = Pool::builder(m.clone())
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(10))
        .breaker_threshold(None)
        .build()
        .expect("valid");
    let start = Instant::now();
    match p.get().await {
        Err(Error::PhaseTimeout { phase, after }) => {
            assert_eq!(phase, Phase::Connect);
            assert_eq!(after, Duration::from_secs(2));
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(p.status().size, 0, "the reserved place was given back");
}

#[tokio::test(start_paused = true)]
async fn hanging_validation_is_cut_and_the_connection_replaced() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .validation_timeout(Duration::from_secs(1))
        .keepalive_interval(None)
        .build()
        .expect("valid");
    let first = p.get().await.expect("get").id();
    tokio::time::sleep(Duration::from_secs(2)).await; // idle past the bypass window
    m.set(Op::Validate, Behavior::Hang);
    let start = Instant::now();
    let c = p
        .get()
        .await
        .expect("a fresh connection after the dead one");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "one validation_timeout"
    );
    assert_ne!(c.id(), first);
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Validation), 1);
    assert_eq!(p.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn hanging_reset_is_cut_and_the_connection_closed() {
    let m = SimManager::new();
    m.set(Op::Reset, Behavior::Hang);
    let p = Pool::builder(m.clone())
        .reset_timeout(Duration::from_millis(300))
        .build()
        .expect("valid");
    drop(p.get().await.expect("get"));
    tokio::time::sleep(Duration::from_millis(301)).await;
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Reset), 1);
    assert_eq!(p.status().size, 0);
    assert_eq!(m.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_close_never_stalls_the_pool() {
    let m = SimManager::new();
    m.with_reset(false).set(Op::Close, Behavior::Hang);
    let p = Pool::builder(m.clone())
        .max_size(1)
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("valid");
    let mut c = p.get().await.expect("get");
    c.mark_broken();
    drop(c);
    // The close hangs, but the place is free at once.
    let c = tokio::time::timeout(Duration::from_millis(10), p.get())
        .await
        .expect("not stalled behind the close")
        .expect("get");
    assert_eq!(p.status().closing, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(p.status().closing, 0);
    assert_eq!(p.stats().close_timeouts, 1);
    drop(c);
}
