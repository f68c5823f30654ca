//! Items 3, 4, 11: min_idle, idle timeout and lifetime with jitter, validation bypass,
//! keepalive, and the maintenance task's lifetime.

use std::time::Duration;

use poolguard::conn::{CloseReason, Pool};
use poolguard_testkit::sim::{Behavior, Faults, Op, SimManager};

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_kept_warm() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(10)
        .min_idle(3)
        .build()
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(p.status().idle, 3);
    // Take them all: maintenance refills idle to min_idle on its next pass.
    let held: Vec<_> = [p.get().await, p.get().await, p.get().await]
        .into_iter()
        .map(|r| r.expect("get"))
        .collect();
    assert_eq!(p.status().idle, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(p.status().idle, 3);
    assert_eq!(p.status().size, 6);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_retires_down_to_min_idle_with_jitter() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(20)
        .min_idle(2)
        .idle_timeout(Some(Duration::from_secs(100)))
        .jitter(0.2)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    let held: Vec<_> = futures_collect(&p, 20).await;
    drop(held);
    assert_eq!(p.status().idle, 20);
    // Jitter 20 %: nothing retires before 80 s, everything above min_idle by 101 s,
    // and not all at once.
    tokio::time::sleep(Duration::from_secs(79)).await;
    assert_eq!(p.status().idle, 20);
    let mut seen = Vec::new();
    for _ in 0..22 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen.push(p.status().idle);
    }
    assert_eq!(p.status().idle, 2, "down to min_idle");
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert!(
        distinct.len() >= 4,
        "retirements spread over time: {seen:?}"
    );
    assert_eq!(p.stats().closed_by(CloseReason::Idle), 18);
}

async fn futures_collect(
    p: &Pool<SimManager>,
    n: usize,
) -> Vec<poolguard::conn::PooledConnection<SimManager>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(p.get().await.expect("get"));
    }
    v
}

#[tokio::test(start_paused = true)]
async fn lifetime_retires_idle_ones_but_never_under_a_holder() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(4)
        .max_lifetime(Some(Duration::from_secs(60)))
        .jitter(0.1)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    let held = p.get().await.expect("get");
    let idle = p.get().await.expect("get");
    drop(idle);
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    let s = p.status();
    assert_eq!(s.idle, 0, "the idle one was retired");
    assert_eq!(s.in_use, 1, "the held one was not taken away");
    let id = held.id();
    drop(held); // retired on return
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Lifetime), 2);
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), id);
}

#[tokio::test(start_paused = true)]
async fn validation_only_after_the_bypass_window() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .validation_bypass(Duration::from_millis(500))
        .keepalive_interval(None)
        .build()
        .expect("valid");
    drop(p.get().await.expect("get"));
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(p.get().await.expect("get"));
    }
    assert_eq!(m.validations(), 0, "busy connections are not validated");
    tokio::time::sleep(Duration::from_millis(501)).await;
    drop(p.get().await.expect("get"));
    assert_eq!(m.validations(), 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_finds_a_dead_connection_before_a_caller_does() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(4)
        .keepalive_interval(Some(Duration::from_secs(10)))
        .jitter(0.0)
        .validation_timeout(Duration::from_secs(1))
        .build()
        .expect("valid");
    let a = p.get().await.expect("get");
    let b = p.get().await.expect("get");
    drop((a, b));
    // The node dies silently, then comes back: the old connections are dead.
    m.set_outage(true);
    m.set_outage(false);
    tokio::time::sleep(Duration::from_secs(12)).await;
    settle().await;
    assert_eq!(
        p.stats().closed_by(CloseReason::Validation),
        2,
        "both found by keepalive"
    );
    assert_eq!(p.status().idle, 0);
    let before = m.validations();
    let _c = p.get().await.expect("a fresh one");
    assert_eq!(m.validations(), before, "the caller paid no validation");
}

/// deadpool #191: after a quiet night every pooled connection is dead, and the first request
/// recycles (and fails) each of them in turn before a new one is opened. Keepalive finds them
/// during the idle period instead; the request after it pays no failed validation.
async fn failed_validations_on_first_get_after_restart(keepalive: Option<Duration>) -> u64 {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(8)
        .keepalive_interval(keepalive)
        .idle_timeout(None)
        .build()
        .expect("valid");
    let held = futures_collect_sim(&p, 8).await;
    drop(held);
    // The server restarts during the quiet period: every pooled connection is dead.
    m.set_outage(true);
    m.set_outage(false);
    tokio::time::sleep(Duration::from_secs(300)).await;
    let before = p.stats().validation_failures;
    let _c = p.get().await.expect("a live connection");
    p.stats().validation_failures - before
}

#[tokio::test(start_paused = true)]
async fn keepalive_spares_the_first_request_after_an_idle_period_a_validation_storm() {
    assert_eq!(
        failed_validations_on_first_get_after_restart(None).await,
        8,
        "without keepalive the first get meets every dead connection"
    );
    assert_eq!(
        failed_validations_on_first_get_after_restart(Some(Duration::from_secs(30))).await,
        0,
        "keepalive found them before a caller did"
    );
}

async fn futures_collect_sim(
    p: &Pool<SimManager>,
    n: usize,
) -> Vec<poolguard::conn::PooledConnection<SimManager>> {
    futures_collect(p, n).await
}

#[tokio::test(start_paused = true)]
async fn maintenance_stops_when_the_pool_is_closed() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).min_idle(2).build().expect("valid");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(m.created(), 2);
    p.close();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(m.created(), 2, "no refill after close");
    assert_eq!(m.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn maintenance_stops_when_the_pool_is_dropped_with_a_connect_hanging() {
    let m = SimManager::new();
    m.set(Op::Connect, Behavior::Hang);
    let p = Pool::builder(m.clone())
        .min_idle(1)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("valid");
    drop(p);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        m.attempts() <= 1,
        "maintenance kept trying: {}",
        m.attempts()
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_hold_does_not_count_as_idle_time() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .idle_timeout(Some(Duration::from_secs(60)))
        .jitter(0.0)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    drop(p.get().await.expect("first use (its return is sampled)"));
    let c = p
        .get()
        .await
        .expect("second use (its return is not sampled)");
    tokio::time::sleep(Duration::from_secs(120)).await; // held twice the idle timeout
    drop(c);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        p.status().idle,
        1,
        "a just-returned connection was retired as idle"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(p.status().idle, 0, "retired after a real idle timeout");
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_so_connections_do_not_expire_together() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(20)
        .max_lifetime(Some(Duration::from_secs(100)))
        .jitter(0.2)
        .idle_timeout(None)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    drop(futures_collect(&p, 20).await);
    tokio::time::sleep(Duration::from_secs(79)).await;
    assert_eq!(p.status().idle, 20, "none before 80 % of the lifetime");
    let mut seen = Vec::new();
    for _ in 0..22 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen.push(p.status().idle);
    }
    assert_eq!(p.status().idle, 0, "all retired by the lifetime");
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert!(
        distinct.len() >= 4,
        "retirements spread over time: {seen:?}"
    );
    assert_eq!(p.stats().closed_by(CloseReason::Lifetime), 20);
}
