//! Pause and resume: while paused a get waits (under its deadline) or fails fast, returns
//! go idle, maintenance keeps running; resume serves the queued callers oldest first.

use std::time::Duration;

use poolguard::conn::{CloseReason, Error, PauseMode, Pool};
use poolguard::diag::PrometheusWriter;
use poolguard_testkit::sim::SimManager;
use tokio::sync::mpsc;

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn pool(m: &SimManager, max: usize) -> Pool<SimManager> {
    m.with_reset(false);
    Pool::builder(m.clone())
        .max_size(max)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config")
}

/// Waits (on the paused clock, by yielding) until `n` callers are queued.
async fn until_waiters(p: &Pool<SimManager>, n: usize) {
    for _ in 0..1000 {
        if p.status().waiters == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("expected {n} waiters, status {:?}", p.status());
}

#[tokio::test(start_paused = true)]
async fn paused_gets_wait_and_resume_serves_them_oldest_first() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    drop(p.get().await.expect("warm"));
    assert_eq!(p.status().idle, 1);
    p.pause(PauseMode::Wait);
    assert_eq!(p.paused(), Some(PauseMode::Wait));
    assert!(p.status().paused);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (p2, tx) = (p.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let c = p2.get().await.expect("served after resume");
            tx.send(i).expect("send");
            // Held across a yield so the next caller is served by this return.
            tokio::task::yield_now().await;
            drop(c);
        }));
        until_waiters(&p, i + 1).await;
    }
    // An idle connection is there, yet nobody is served while paused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = p.status();
    assert_eq!((s.idle, s.waiters, s.in_use), (1, 3, 0), "{s:?}");
    assert!(rx.try_recv().is_err(), "nobody served while paused");
    assert!(p.resume());
    assert!(!p.resume(), "not paused any more");
    for t in tasks {
        t.await.expect("task");
    }
    let order: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(order, [0, 1, 2], "FIFO after resume");
    assert_eq!(
        m.created(),
        1,
        "served by the one connection, no connect while paused"
    );
    let s = p.status();
    assert_eq!((s.idle, s.waiters, s.size, s.paused), (1, 0, 1, false));
}

#[tokio::test(start_paused = true)]
async fn a_paused_get_times_out_under_its_deadline_and_says_paused() {
    let m = SimManager::new();
    let p = pool(&m, 2);
    p.pause(PauseMode::Wait);
    let t0 = tokio::time::Instant::now();
    let e = p.get().await.expect_err("paused until the deadline");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "the get's own acquire_timeout"
    );
    let snap = e.snapshot().expect("a timeout snapshot");
    assert!(snap.status.paused);
    assert!(e.to_string().contains("paused"), "{e}");
    assert_eq!(m.attempts(), 0, "a paused waiter opens nothing");
    assert_eq!(p.status().waiters, 0, "it left the queue");
}

#[tokio::test(start_paused = true)]
async fn fail_fast_refuses_at_once_with_a_typed_error() {
    let m = SimManager::new();
    let p = pool(&m, 2);
    drop(p.get().await.expect("warm"));
    p.pause(PauseMode::FailFast);
    let t0 = tokio::time::Instant::now();
    let e = p.get().await.expect_err("fail fast");
    assert!(matches!(e, Error::Paused), "{e:?}");
    assert_eq!(e.code(), "paused");
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(p.stats().paused_refused, 1);
    let mut w = PrometheusWriter::new();
    p.write_prometheus(&mut w);
    let text = w.finish();
    assert!(text.contains("poolguard_conn_paused{pool=\""), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("poolguard_conn_paused{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("poolguard_conn_paused_refused_total{") && l.ends_with(" 1")),
        "{text}"
    );
    p.resume();
    assert!(p.get().await.is_ok(), "served again after resume");
}

#[tokio::test(start_paused = true)]
async fn returns_go_idle_while_paused_and_maintenance_keeps_running() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(4)
        .min_idle(2)
        .max_lifetime(Some(Duration::from_secs(10)))
        .jitter(0.0)
        .keepalive_interval(None)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .expect("valid");
    settle().await;
    let held = p.get().await.expect("get");
    p.pause(PauseMode::Wait);
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    until_waiters(&p, 1).await;
    drop(held);
    let s = p.status();
    assert_eq!(
        (s.idle, s.waiters),
        (2, 1),
        "the return went idle, the waiter stays queued: {s:?}"
    );
    // Maintenance retires past max_lifetime and refills min_idle while paused.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(p.stats().closed_by(CloseReason::Lifetime) >= 2);
    let s = p.status();
    assert_eq!((s.idle, s.waiters, s.paused), (2, 1, true), "{s:?}");
    assert!(m.created() >= 4, "replacements opened while paused");
    p.resume();
    let id = waiter.await.expect("task").expect("served");
    assert!(id >= 2, "served by a replacement, not a retired connection");
}

#[tokio::test(start_paused = true)]
async fn the_doctor_reports_a_pause_longer_than_the_acquire_timeout_with_waiters() {
    let m = SimManager::new();
    let p = pool(&m, 2);
    p.pause(PauseMode::Wait);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !p.doctor().iter().any(|f| f.code == "conn.paused"),
        "nobody waits: no finding"
    );
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.get().await.is_ok() });
    until_waiters(&p, 1).await;
    let f = p
        .doctor()
        .into_iter()
        .find(|f| f.code == "conn.paused")
        .expect("paused 6 s > acquire_timeout 5 s with a waiter");
    assert!(f.message.contains("1 callers waiting"), "{}", f.message);
    p.resume();
    assert!(
        waiter.await.expect("task"),
        "the waiter is served after resume"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_paused_waiter_leaves_the_queue() {
    let m = SimManager::new();
    let p = pool(&m, 1);
    drop(p.get().await.expect("warm"));
    p.pause(PauseMode::Wait);
    let p2 = p.clone();
    let t = tokio::spawn(async move { p2.get().await.is_ok() });
    until_waiters(&p, 1).await;
    t.abort();
    let _ = t.await;
    assert_eq!(p.status().waiters, 0);
    p.resume();
    let s = p.status();
    assert_eq!((s.idle, s.size, s.in_use), (1, 1, 0), "nothing lost: {s:?}");
}
