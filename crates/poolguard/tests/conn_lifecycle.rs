//! Item 10: resize, status, stats, doctor and Prometheus.

use std::time::Duration;

use poolguard::conn::{CloseReason, Pool};
use poolguard_testkit::sim::{Faults, Op, SimManager};

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn resize_up_serves_waiters_and_down_closes_surplus() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    let a = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    settle().await;
    assert_eq!(p.status().waiters, 1);
    p.resize(3).expect("valid size");
    let b_id = waiter.await.expect("join").expect("served after growing");
    assert_ne!(b_id, a.id());
    let c = p.get().await.expect("second (the waiter's, returned)");
    let d = p.get().await.expect("third");
    assert_eq!(p.status().size, 3);
    p.resize(1).expect("valid size");
    assert_eq!(p.status().max_size, 1);
    drop(c);
    drop(d);
    drop(a);
    settle().await;
    let s = p.status();
    assert_eq!(s.size, 1, "{s:?}");
    assert_eq!(p.stats().closed_by(CloseReason::Surplus), 2);
    assert!(p.resize(0).is_err());
}

#[tokio::test(start_paused = true)]
async fn stats_count_gets_waits_and_hold_times() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    let c = p.get().await.expect("get");
    let p2 = p.clone();
    let w = tokio::spawn(async move { drop(p2.get().await.expect("get")) });
    tokio::time::sleep(Duration::from_millis(40)).await;
    drop(c);
    w.await.expect("join");
    let t = p.stats();
    assert_eq!(t.gets, 2);
    assert_eq!(
        t.waited, 2,
        "the first get waited for its connect, the second for a return"
    );
    assert_eq!(t.created, 1);
    assert_eq!(t.wait_time.count(), 2);
    assert!(t.wait_time.max() >= Duration::from_millis(40));
    assert_eq!(
        t.hold_time.count(),
        1,
        "sampled: first use of the connection"
    );
    assert!(t.hold_time.max() >= Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn prometheus_and_doctor_render_the_state() {
    let m = SimManager::new();
    m.set_refuse(true);
    let p = Pool::builder(m.clone())
        .name("orders")
        .breaker_threshold(Some(1))
        .build()
        .expect("valid");
    assert!(p.get().await.is_err());
    let text = p.prometheus();
    for (state, v) in [("closed", 0), ("open", 1), ("half_open", 0)] {
        let line =
            format!("poolguard_conn_breaker_state{{pool=\"orders\",state=\"{state}\"}} {v}\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(
        text.contains("poolguard_conn_breaker_opens_total{pool=\"orders\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_conn_connect_failures_total{pool=\"orders\"} 1"),
        "{text}"
    );
    assert!(text.contains("reason=\"idle\""), "{text}");
    let findings = p.doctor();
    let open = findings
        .iter()
        .find(|f| f.code == "conn.breaker-open")
        .expect("doctor names the open breaker");
    assert!(open.message.contains("connection refused"), "{open}");
}

#[tokio::test(start_paused = true)]
async fn wait_closed_wakes_when_the_last_close_finishes() {
    let m = SimManager::new();
    m.with_reset(false);
    m.latency(Op::Close, Duration::from_millis(7));
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    let held = p.get().await.expect("get");
    drop(p.get().await.expect("second"));
    let p2 = p.clone();
    let start = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move { p2.wait_closed(Duration::from_secs(60)).await });
    settle().await;
    assert!(!waiter.is_finished(), "the pool is not even closed yet");
    p.close();
    settle().await;
    assert!(!waiter.is_finished(), "a connection is still held");
    let returned_at = tokio::time::Instant::now();
    drop(held);
    assert!(waiter.await.expect("join"), "everything closed in time");
    // Woken by the last close itself (7 ms after the return), not by a polling tick.
    assert_eq!(
        tokio::time::Instant::now() - returned_at,
        Duration::from_millis(7)
    );
    assert!(returned_at >= start);
    assert_eq!(m.closes(), 2);
    assert_eq!(m.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn wait_closed_gives_up_at_its_timeout() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    let held = p.get().await.expect("get");
    p.close();
    let start = tokio::time::Instant::now();
    assert!(!p.wait_closed(Duration::from_secs(3)).await);
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    drop(held);
    assert!(p.wait_closed(Duration::from_secs(3)).await);
}
