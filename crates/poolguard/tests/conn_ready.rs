//! Warm-up and fail-fast: `Pool::ready` waits for `min_idle` connections (or one) and
//! returns the first connect error; `Builder::build_and_connect` refuses to start.

use std::time::Duration;

use poolguard::conn::{Error, HookError, HookName, Phase, Pool, StartError};
use poolguard_testkit::sim::{Behavior, Op, SimManager};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn ready_waits_for_min_idle_connections() {
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_millis(100));
    let p = Pool::builder(m.clone())
        .max_size(4)
        .min_idle(3)
        .build()
        .expect("valid");
    let start = Instant::now();
    p.ready(Duration::from_secs(5)).await.expect("warm");
    // One connect at a time (max_concurrent_opens 1): three in a row.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(p.status().idle, 3);
    // Already warm: at once.
    p.ready(Duration::ZERO).await.expect("still warm");
}

#[tokio::test(start_paused = true)]
async fn ready_opens_one_when_min_idle_is_zero() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).build().expect("valid");
    assert_eq!(m.attempts(), 0);
    p.ready(Duration::from_secs(1)).await.expect("one open");
    assert_eq!(m.created(), 1);
    assert_eq!(p.status().idle, 1);
}

#[tokio::test(start_paused = true)]
async fn ready_returns_the_first_connect_error_at_once() {
    let m = SimManager::new();
    m.set(Op::Connect, Behavior::Err);
    let p = Pool::builder(m.clone()).min_idle(2).build().expect("valid");
    let start = Instant::now();
    match p.ready(Duration::from_secs(30)).await {
        Err(e @ Error::Backend { .. }) => assert_eq!(e.phase(), Some(Phase::Connect)),
        other => panic!("expected the connect error, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "it did not wait out the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn ready_names_a_connect_timeout_a_failing_hook_and_its_own_deadline() {
    let m = SimManager::new();
    m.set(Op::Connect, Behavior::Hang);
    let p = Pool::builder(m.clone())
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("valid");
    match p.ready(Duration::from_secs(5)).await {
        Err(Error::PhaseTimeout { phase, after }) => {
            assert_eq!((phase, after), (Phase::Connect, Duration::from_millis(200)))
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    // The connects outlast ready's own deadline: a timeout with the pool's snapshot.
    let start = Instant::now();
    match p.ready(Duration::from_millis(50)).await {
        Err(Error::Timeout(snap)) => assert!(snap.status.opening <= 1),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(50));

    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .after_connect(|_c| Box::pin(async { Err(HookError::new("wrong schema")) }))
        .build()
        .expect("valid");
    match p.ready(Duration::from_secs(5)).await {
        Err(Error::Hook(f)) => assert_eq!(f.hook, HookName::AfterConnect),
        other => panic!("expected the hook failure, got {other:?}"),
    }
    p.close();
    assert!(matches!(
        p.ready(Duration::from_secs(1)).await,
        Err(Error::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn build_and_connect_refuses_to_start_and_closes_what_it_opened() {
    // Two connects succeed, the third fails: the pool is not started, and the two are closed.
    let m = SimManager::new();
    m.with_reset(false);
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    let started = Pool::builder(m.clone())
        .max_size(4)
        .min_idle(3)
        .after_connect(move |_c| {
            let k = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if k == 2 {
                    Err(HookError::new("third one refused"))
                } else {
                    Ok(())
                }
            })
        })
        .build_and_connect(Duration::from_secs(5))
        .await;
    match started {
        Err(StartError::Connect(Error::Hook(f))) => {
            assert!(f.to_string().contains("third one refused"), "{f}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(m.created(), 3);
    assert_eq!(m.alive(), 0, "everything it opened is closed");
    assert_eq!(m.closes(), 3);

    // A bad config is a build error; a healthy backend starts.
    let e = Pool::builder(SimManager::new())
        .max_size(0)
        .build_and_connect(Duration::from_secs(1))
        .await
        .expect_err("bad config");
    assert!(
        matches!(e, StartError::Build(ref b) if b.field == "max_size"),
        "{e}"
    );
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .min_idle(2)
        .build_and_connect(Duration::from_secs(1))
        .await
        .expect("started");
    assert_eq!(p.status().idle, 2);
}

#[tokio::test(start_paused = true)]
async fn ready_after_an_outage_waits_for_the_breakers_probe() {
    let m = SimManager::new();
    m.set(Op::Connect, Behavior::Err);
    let p = Pool::builder(m.clone())
        .breaker_threshold(Some(1))
        .breaker_backoff(Duration::from_millis(100))
        .breaker_max_backoff(Duration::from_millis(100))
        .build()
        .expect("valid");
    assert!(p.ready(Duration::from_secs(1)).await.is_err());
    assert_ne!(p.status().breaker, poolguard::conn::BreakerState::Closed);
    // The backend is back: the next ready launches the probe when it is due and succeeds,
    // well before its own deadline.
    m.set(Op::Connect, Behavior::Ok);
    let start = Instant::now();
    p.ready(Duration::from_secs(10))
        .await
        .expect("the probe connects");
    assert!(
        start.elapsed() <= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(p.status().idle, 1);
}
