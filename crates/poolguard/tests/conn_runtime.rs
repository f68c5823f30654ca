//! Run-time settings: `set_min_idle`, `set_idle_timeout`, `set_max_lifetime` and
//! `set_acquire_timeout` take effect without a restart, are validated with the same errors
//! as `build()`, and show in `current_config()` (while `config()` stays as built). Idle
//! order: LIFO by default, FIFO on request.

use std::time::Duration;

use poolguard::conn::{CloseReason, IdleOrder, Pool};
use poolguard_testkit::sim::{Op, SimManager};
use tokio::time::Instant;

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn builder(m: &SimManager) -> poolguard::conn::Builder<SimManager> {
    m.with_reset(false);
    Pool::builder(m.clone())
        .max_size(4)
        .keepalive_interval(None)
        .jitter(0.0)
        .acquire_timeout(Duration::from_secs(5))
}

async fn fill(p: &Pool<SimManager>, n: usize) -> Vec<u64> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(p.get().await.expect("get"));
    }
    let ids = all.iter().map(|c| c.id()).collect();
    drop(all); // returned in order: 0, 1, 2, ...
    ids
}

#[tokio::test(start_paused = true)]
async fn set_min_idle_opens_now_paced_and_is_validated_like_build() {
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_millis(10));
    let p = builder(&m).max_concurrent_opens(2).build().expect("valid");
    m.reset_connecting_max();
    p.set_min_idle(4).expect("within max_size");
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(p.status().idle, 4, "opened without waiting for maintenance");
    assert_eq!(m.connecting_max(), 2, "paced by max_concurrent_opens");
    assert_eq!(p.current_config().min_idle, 4);
    assert_eq!(
        p.config().min_idle,
        0,
        "config() is the configuration as built"
    );
    let built = builder(&SimManager::new())
        .min_idle(5)
        .build()
        .expect_err("min_idle above max_size");
    assert_eq!(p.set_min_idle(5).expect_err("refused"), built);
    assert_eq!(
        p.current_config().min_idle,
        4,
        "a refused value changes nothing"
    );
    // resize checks the run-time min_idle.
    assert_eq!(p.resize(3).expect_err("below min_idle").field, "max_size");
    p.set_min_idle(1).expect("valid");
    p.resize(3).expect("now fine");
    assert_eq!(p.current_config().max_size, 3);
}

#[tokio::test(start_paused = true)]
async fn set_idle_timeout_retires_idle_connections_by_the_new_value() {
    let m = SimManager::new();
    let p = builder(&m)
        .idle_timeout(Some(Duration::from_secs(600)))
        .build()
        .expect("valid");
    fill(&p, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.status().idle, 3);
    p.set_idle_timeout(Some(Duration::from_secs(5)))
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        p.stats().closed_by(CloseReason::Idle),
        3,
        "idle 5.5 s > the new 5 s: retired by maintenance"
    );
    assert_eq!(
        p.current_config().idle_timeout,
        Some(Duration::from_secs(5))
    );
    for bad in [Some(Duration::ZERO), Some(Duration::MAX)] {
        let built = builder(&SimManager::new())
            .idle_timeout(bad)
            .build()
            .expect_err("refused by build");
        assert_eq!(p.set_idle_timeout(bad).expect_err("refused"), built);
    }
    p.set_idle_timeout(None).expect("never");
    fill(&p, 2).await;
    // Past the built 600 s, within the default 30 min lifetime.
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert_eq!(p.status().idle, 2, "idle_timeout None: kept");
}

#[tokio::test(start_paused = true)]
async fn set_max_lifetime_applies_to_idle_now_and_to_held_ones_on_return() {
    let m = SimManager::new();
    let p = builder(&m)
        .max_lifetime(Some(Duration::from_secs(1800)))
        .idle_timeout(None)
        .build()
        .expect("valid");
    fill(&p, 2).await;
    let held = p.get().await.expect("get");
    let held_id = held.id();
    tokio::time::sleep(Duration::from_secs(20)).await;
    p.set_max_lifetime(Some(Duration::from_secs(10)))
        .expect("valid");
    // The idle one is already past the new lifetime: the next maintenance pass retires it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(p.stats().closed_by(CloseReason::Lifetime), 1);
    // The held one (opened 20 s ago) is retired when it comes back.
    drop(held);
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Lifetime), 2);
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), held_id);
    drop(c);
    for bad in [Some(Duration::ZERO), Some(Duration::MAX)] {
        let built = builder(&SimManager::new())
            .max_lifetime(bad)
            .build()
            .expect_err("refused by build");
        assert_eq!(p.set_max_lifetime(bad).expect_err("refused"), built);
    }
    assert_eq!(
        p.current_config().max_lifetime,
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn set_acquire_timeout_bounds_the_next_gets() {
    let m = SimManager::new();
    let p = builder(&m).max_size(1).build().expect("valid");
    let held = p.get().await.expect("get");
    p.set_acquire_timeout(Duration::from_millis(200))
        .expect("valid");
    let t0 = Instant::now();
    assert!(p.get().await.is_err());
    assert_eq!(t0.elapsed(), Duration::from_millis(200));
    assert_eq!(
        p.current_config().acquire_timeout,
        Duration::from_millis(200)
    );
    assert_eq!(p.config().acquire_timeout, Duration::from_secs(5));
    for bad in [Duration::ZERO, Duration::MAX] {
        let built = builder(&SimManager::new())
            .acquire_timeout(bad)
            .build()
            .expect_err("refused by build");
        assert_eq!(p.set_acquire_timeout(bad).expect_err("refused"), built);
    }
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn idle_order_lifo_reuses_the_last_returned_fifo_the_first() {
    let m = SimManager::new();
    let lifo = builder(&m).build().expect("valid");
    assert_eq!(lifo.config().idle_order, IdleOrder::Lifo, "the default");
    let ids = fill(&lifo, 3).await;
    assert_eq!(lifo.get().await.expect("get").id(), ids[2]);

    let m = SimManager::new();
    let fifo = builder(&m)
        .idle_order(IdleOrder::Fifo)
        .build()
        .expect("valid");
    let ids = fill(&fifo, 3).await;
    // FIFO spreads use over every idle connection: one get after another cycles through them.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let c = fifo.get().await.expect("get");
        seen.push(c.id());
    }
    assert_eq!(seen, [ids[0], ids[1], ids[2], ids[0], ids[1], ids[2]]);
}
