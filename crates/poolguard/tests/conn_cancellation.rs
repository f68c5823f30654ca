//! Item 9: cancellation safety. A fault-switch manager whose connect, validate, reset and
//! close each succeed, fail, are slow or hang (seeded at random), callers that drop `get`
//! futures mid-wait, and tasks aborted at random points; then the invariants: the size
//! never exceeds `max_size`, no capacity is lost, and after the pool is closed every
//! connection has been closed exactly once.

use std::time::Duration;

use poolguard::conn::{PauseMode, Pool};
use poolguard_testkit::sim::{Behavior, Op, SimManager};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

const MAX: usize = 4;
const TASKS: usize = 12;

fn spawn_worker(p: &Pool<SimManager>, seed: u64) -> JoinHandle<()> {
    let p = p.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let patience = Duration::from_millis(rng.random_range(1..400));
            // Dropping the get future when `patience` runs out is a cancellation too.
            if let Ok(Ok(mut c)) = timeout(patience, p.get()).await {
                if rng.random_bool(0.1) {
                    c.mark_broken();
                }
                sleep(Duration::from_millis(rng.random_range(0..30))).await;
                drop(c);
            }
            sleep(Duration::from_millis(rng.random_range(0..10))).await;
        }
    })
}

fn check_bounds(p: &Pool<SimManager>, m: &SimManager) {
    let s = p.status();
    assert!(s.size <= s.max_size, "size {} > max {}", s.size, s.max_size);
    assert!(s.idle + s.in_use + s.opening <= s.size, "{s:?}");
    assert!(
        m.alive() <= (s.size + s.closing + s.abandoned) as u64,
        "connection outside the accounting: alive {} {s:?}",
        m.alive()
    );
}

/// One random operator control (or none): pause in either mode, resume, soft-evict,
/// retain with a random verdict, or a run-time setting.
fn control(p: &Pool<SimManager>, rng: &mut StdRng) {
    match rng.random_range(0..12) {
        0 => p.pause(PauseMode::Wait),
        1 => p.pause(PauseMode::FailFast),
        2 | 3 => {
            p.resume();
        }
        4 => {
            p.soft_evict_all();
        }
        5 => {
            let keep_odds = rng.random_range(0.0..1.0);
            let mut verdicts = StdRng::seed_from_u64(rng.random());
            p.retain(|_, _| verdicts.random_bool(keep_odds));
        }
        6 => p.set_min_idle(rng.random_range(0..=MAX)).expect("valid"),
        7 => {
            let life = Duration::from_millis(rng.random_range(50..2_000));
            p.set_max_lifetime(Some(life)).expect("valid");
        }
        _ => {}
    }
}

async fn run_seed(seed: u64) {
    let m = SimManager::new();
    let slow = Duration::from_millis(60);
    m.randomize(Op::Connect, seed ^ 1, slow)
        .randomize(Op::Validate, seed ^ 2, slow)
        .randomize(Op::Reset, seed ^ 3, slow)
        .randomize(Op::Close, seed ^ 4, slow);
    let p = Pool::builder(m.clone())
        .max_size(MAX)
        .max_concurrent_opens(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(100))
        .validation_timeout(Duration::from_millis(50))
        .reset_timeout(Duration::from_millis(50))
        .close_timeout(Duration::from_millis(80))
        .validation_bypass(Duration::from_millis(5))
        .keepalive_interval(Some(Duration::from_millis(300)))
        .maintenance_interval(Duration::from_millis(100))
        .breaker_threshold(if seed % 2 == 0 { Some(4) } else { None })
        .breaker_backoff(Duration::from_millis(50))
        .breaker_max_backoff(Duration::from_millis(200))
        .build()
        .expect("valid");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workers: Vec<JoinHandle<()>> = (0..TASKS)
        .map(|i| spawn_worker(&p, seed * 100 + i as u64))
        .collect();
    for step in 0..150u64 {
        sleep(Duration::from_millis(rng.random_range(0..15))).await;
        check_bounds(&p, &m);
        // Abort a random task wherever it is (waiting, validating, holding, sleeping).
        let i = rng.random_range(0..TASKS);
        workers[i].abort();
        workers[i] = spawn_worker(&p, seed * 100 + 50 + step);
        // Operator controls at random points, with gets waiting, validating and opening.
        control(&p, &mut rng);
    }
    // Back to the built settings, so the pool can settle (no refill, no short lifetime).
    p.resume();
    p.set_min_idle(0).expect("valid");
    p.set_max_lifetime(None).expect("valid");
    for w in &workers {
        w.abort();
    }
    for w in workers {
        let _ = w.await;
    }
    // Everything bounded has run out by now.
    sleep(Duration::from_secs(2)).await;
    check_bounds(&p, &m);
    let s = p.status();
    assert_eq!(
        (s.in_use, s.waiters, s.opening),
        (0, 0, 0),
        "seed {seed}: {s:?}"
    );
    assert_eq!(
        s.size, s.idle,
        "seed {seed}: capacity held by nobody: {s:?}"
    );

    // No lost capacity: with a healthy backend, max_size callers hold connections at once.
    for op in [Op::Connect, Op::Validate, Op::Reset, Op::Close] {
        m.set(op, Behavior::Ok);
    }
    sleep(Duration::from_secs(1)).await; // let a breaker that opened reach its probe
    let mut held = Vec::new();
    for _ in 0..MAX {
        match timeout(Duration::from_secs(2), p.get()).await {
            Ok(Ok(c)) => held.push(c),
            other => panic!("seed {seed}: capacity lost: {other:?} {:?}", p.status()),
        }
    }
    assert_eq!(p.status().size, MAX);
    drop(held);

    // Closed exactly once after the pool goes away.
    p.close();
    assert!(
        p.wait_closed(Duration::from_secs(5)).await,
        "seed {seed}: {:?}",
        p.status()
    );
    let t = p.stats();
    assert!(t.soft_evictions > 0, "seed {seed}: the controls ran");
    assert_eq!(m.alive(), 0, "seed {seed}: connections left alive");
    assert_eq!(t.created, m.created(), "seed {seed}");
    assert_eq!(
        t.closed_total(),
        m.created(),
        "seed {seed}: each closed once"
    );
    assert_eq!(
        m.closes(),
        m.created(),
        "seed {seed}: Manager::close once each"
    );
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn random_aborts_leak_nothing() {
    for seed in 0..24 {
        run_seed(seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_get_future_mid_validation_frees_its_place() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(1)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    drop(p.get().await.expect("get"));
    sleep(Duration::from_secs(1)).await; // past the bypass window
    m.set(Op::Validate, Behavior::Hang);
    assert!(timeout(Duration::from_millis(10), p.get()).await.is_err());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(p.status().size, 0, "the half-checked connection was closed");
    m.set(Op::Validate, Behavior::Ok);
    assert!(p.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_handoff_racing_a_cancelled_waiter_goes_to_the_next_one() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    let held = p.get().await.expect("get");
    let p1 = p.clone();
    let first = tokio::spawn(async move { p1.get().await.map(|c| c.id()) });
    tokio::task::yield_now().await;
    let p2 = p.clone();
    let second = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    tokio::task::yield_now().await;
    drop(held); // handed to `first`...
    first.abort(); // ...which is aborted before it runs: the connection goes on to `second`
    assert!(second.await.expect("join").is_ok());
    let s = p.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 1, 0));
}
