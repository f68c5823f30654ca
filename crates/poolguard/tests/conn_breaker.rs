//! Admission control and the circuit breaker.

use std::time::Duration;

use poolguard::conn::{BreakerState, Error, Pool};
use poolguard_testkit::sim::{Faults, SimError, SimManager};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn past_max_waiters_get_fails_at_once() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .max_waiters(2)
        .build()
        .expect("valid");
    let held = p.get().await.expect("get");
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let p = p.clone();
        waiters.push(tokio::spawn(async move { p.get().await.map(|_| ()) }));
    }
    tokio::task::yield_now().await;
    assert_eq!(p.status().waiters, 2);
    let start = Instant::now();
    match p.get().await {
        Err(Error::Overloaded {
            waiters,
            max_waiters,
        }) => assert_eq!((waiters, max_waiters), (2, 2)),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    drop(held);
    for w in waiters {
        assert!(w.await.expect("join").is_ok());
    }
    assert_eq!(p.stats().overloaded, 1);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_fails_fast_probes_and_closes() {
    let m = SimManager::new();
    m.set_refuse(true);
    let p = Pool::builder(m.clone())
        .breaker_threshold(Some(3))
        .breaker_backoff(Duration::from_secs(2))
        .breaker_max_backoff(Duration::from_secs(8))
        .build()
        .expect("valid");
    for _ in 0..3 {
        assert!(matches!(p.get().await, Err(Error::Backend { .. })));
    }
    assert_eq!(p.status().breaker, BreakerState::Open);
    let attempts = m.attempts();
    let first_wait;
    // Open: fail fast, with the last backend error, without touching the backend.
    let start = Instant::now();
    match p.get().await {
        Err(Error::Unavailable {
            last_error,
            retry_in,
            failures,
        }) => {
            assert_eq!(last_error.as_deref(), Some(&SimError::Refused));
            // The backoff, jittered up to 50 % shorter.
            assert!(
                retry_in >= Duration::from_secs(1) && retry_in <= Duration::from_secs(2),
                "{retry_in:?}"
            );
            first_wait = retry_in;
            assert_eq!(failures, 3);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(m.attempts(), attempts);
    let e = p.get().await.expect_err("still open");
    assert!(e.to_string().contains("connection refused"), "{e}");
    // After the backoff: one probe; it fails (its caller sees why), the backoff doubles.
    tokio::time::sleep(first_wait - Duration::from_millis(1)).await;
    let e = p.get().await.expect_err("not yet");
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(matches!(p.get().await, Err(Error::Backend { .. })));
    assert_eq!(m.attempts(), attempts + 1, "exactly one probe");
    let second_wait = match p.get().await {
        Err(Error::Unavailable { retry_in, .. }) => retry_in,
        other => panic!("expected Unavailable, got {other:?}"),
    };
    assert!(
        second_wait >= Duration::from_secs(2) && second_wait <= Duration::from_secs(4),
        "doubled: {second_wait:?}"
    );
    // Backend back: the next probe succeeds and closes the breaker.
    m.set_refuse(false);
    tokio::time::sleep(second_wait).await;
    let c = p.get().await.expect("probe connection");
    assert_eq!(p.status().breaker, BreakerState::Closed);
    drop(c);
    assert!(p.stats().breaker_opened >= 2);
}

#[tokio::test(start_paused = true)]
async fn opening_breaker_fails_every_waiter_fast() {
    let m = SimManager::new();
    m.set_outage(true); // connects hang
    let p = Pool::builder(m.clone())
        .connect_timeout(Duration::from_millis(100))
        .acquire_timeout(Duration::from_secs(30))
        .breaker_threshold(Some(2))
        .max_concurrent_opens(1)
        .build()
        .expect("valid");
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            (p.get().await.map(|_| ()), start.elapsed())
        }));
    }
    let mut unavailable = 0;
    for t in tasks {
        let (r, waited) = t.await.expect("join");
        assert!(
            waited <= Duration::from_millis(200),
            "no one waits for acquire_timeout"
        );
        if matches!(r, Err(Error::Unavailable { .. })) {
            unavailable += 1;
        }
    }
    assert!(
        unavailable >= 3,
        "the waiters left when the breaker opened failed fast"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_still_served_while_open() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .breaker_threshold(Some(1))
        .build()
        .expect("valid");
    let a = p.get().await.expect("get");
    m.set_refuse(true);
    let b = p.get().await;
    assert!(matches!(b, Err(Error::Backend { .. })));
    assert_eq!(p.status().breaker, BreakerState::Open);
    drop(a);
    let a = p.get().await.expect("the healthy idle connection");
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn status_carries_the_last_backend_error() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .breaker_threshold(Some(3))
        .build()
        .expect("valid");
    drop(p.get().await.expect("a healthy backend serves"));
    assert_eq!(p.status().last_error, None, "no error met yet");
    m.set_refuse(true);
    p.resize(2).expect("resize");
    let _held = p.get().await.expect("the idle connection");
    assert!(matches!(p.get().await, Err(Error::Backend { .. })));
    let last = p.status().last_error.expect("the refused connect is named");
    assert_eq!(
        last,
        format!("connect: {}", SimError::Refused),
        "phase and cause"
    );
}
