//! Item 9: cancellation safety. A fault-switch manager whose connect, validate, reset and
//! close each succeed, fail, are slow or hang (seeded at random), callers that drop `get`
//! futures mid-wait, and tasks aborted at random points; then the invariants: the size
//! never exceeds `max_size`, no capacity is lost, and after the pool is closed every
//! connection has been closed exactly once. Workers also report failover-class errors, so
//! automatic soft-evicts (`failover_burst`) happen amid the aborts.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::conn::{HookError, HookFuture, HookName, PauseMode, Pool};
use poolguard_testkit::sim::{Behavior, Op, SimConn, SimError, SimManager};
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
                } else if rng.random_bool(0.3) {
                    // A failover-class error: bursts of them soft-evict the pool.
                    c.report(&SimError::ReadOnly);
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

/// Sometimes, a burst of failover-class errors on one connection: an automatic
/// soft-evict (outside its cooldown) with gets waiting, validating and opening.
async fn failover_burst(p: &Pool<SimManager>, rng: &mut StdRng) {
    if rng.random_range(0..8) != 0 {
        return;
    }
    if let Ok(Ok(mut c)) = timeout(Duration::from_millis(200), p.get()).await {
        for _ in 0..3 {
            c.report(&SimError::ReadOnly);
        }
    }
}

/// Returns the automatic soft-evicts the seed's failover bursts caused.
async fn run_seed(seed: u64) -> u64 {
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
        .failover_burst(Some(3))
        .failover_window(Duration::from_secs(1))
        .failover_cooldown(Duration::from_millis(300))
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
        failover_burst(&p, &mut rng).await;
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
    t.auto_soft_evicts
}

#[tokio::test(start_paused = true)]
async fn random_aborts_leak_nothing() {
    let mut auto = 0;
    for seed in 0..24 {
        auto += run_seed(seed).await;
    }
    assert!(auto > 0, "failover bursts soft-evicted amid the aborts");
}

/// A hook that succeeds, refuses, panics, is slow or hangs, at random (seeded), until
/// `healthy` is set.
fn random_hook(
    seed: u64,
    healthy: Arc<AtomicBool>,
) -> impl Fn(&mut SimConn) -> HookFuture<'_> + Send + Sync + 'static {
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
    move |_conn: &mut SimConn| {
        let pick = if healthy.load(SeqCst) {
            0
        } else {
            rng.lock().unwrap().random_range(0..8u8)
        };
        Box::pin(async move {
            match pick {
                0..=3 => Ok(()),
                4 => Err(HookError::new("refused at random")),
                5 => panic!("hook panicked at random"),
                6 => {
                    sleep(Duration::from_millis(30)).await;
                    Ok(())
                }
                _ => std::future::pending().await,
            }
        })
    }
}

fn spawn_variant_worker(p: &Pool<SimManager>, seed: u64) -> JoinHandle<()> {
    let p = p.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let patience = Duration::from_millis(rng.random_range(1..400));
            let hold = Duration::from_millis(rng.random_range(0..30));
            match rng.random_range(0..6u8) {
                0 => {
                    if let Ok(Ok(c)) = timeout(patience, p.get()).await {
                        if rng.random_bool(0.2) {
                            drop(c.detach()); // dropped at once: out of the pool's hands
                        } else {
                            sleep(hold).await;
                        }
                    }
                }
                1 => {
                    let d = Duration::from_millis(rng.random_range(0..300));
                    if let Ok(Ok(mut c)) = timeout(patience, p.get_timeout(d)).await {
                        if rng.random_bool(0.1) {
                            c.mark_broken();
                        }
                        sleep(hold).await;
                    }
                }
                2 => {
                    // The owned future, spawned and raced against an abort of its own.
                    let fut = p.get_owned();
                    let t = tokio::spawn(async move {
                        if let Ok(c) = fut.await {
                            sleep(hold).await;
                            drop(c);
                        }
                    });
                    sleep(Duration::from_millis(rng.random_range(0..50))).await;
                    if rng.random_bool(0.5) {
                        t.abort();
                    }
                    let _ = t.await;
                }
                3 => {
                    if let Ok(Ok(c)) = timeout(patience, p.try_get()).await {
                        sleep(hold).await;
                        drop(c);
                    }
                }
                4 => {
                    let _ = timeout(patience, p.ready(Duration::from_millis(200))).await;
                }
                _ => {
                    if let Ok(Ok(owned)) = timeout(patience, p.get_owned()).await {
                        if rng.random_bool(0.2) {
                            drop(owned.detach());
                        } else {
                            sleep(hold).await;
                        }
                    }
                }
            }
            sleep(Duration::from_millis(rng.random_range(0..10))).await;
        }
    })
}

async fn run_seed_with_hooks(seed: u64) {
    let m = SimManager::new();
    let slow = Duration::from_millis(60);
    m.randomize(Op::Connect, seed ^ 1, slow)
        .randomize(Op::Validate, seed ^ 2, slow)
        .randomize(Op::Reset, seed ^ 3, slow)
        .randomize(Op::Close, seed ^ 4, slow);
    let healthy = Arc::new(AtomicBool::new(false));
    let p = Pool::builder(m.clone())
        .max_size(MAX)
        .max_concurrent_opens(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(100))
        .validation_timeout(Duration::from_millis(50))
        .reset_timeout(Duration::from_millis(50))
        .close_timeout(Duration::from_millis(80))
        .after_connect_timeout(Duration::from_millis(80))
        .before_acquire_timeout(Duration::from_millis(50))
        .after_release_timeout(Duration::from_millis(50))
        .validation_bypass(Duration::from_millis(5))
        .keepalive_interval(Some(Duration::from_millis(300)))
        .maintenance_interval(Duration::from_millis(100))
        .breaker_threshold(if seed % 2 == 0 { Some(4) } else { None })
        .breaker_backoff(Duration::from_millis(50))
        .breaker_max_backoff(Duration::from_millis(200))
        .after_connect(random_hook(seed ^ 11, healthy.clone()))
        .before_acquire(random_hook(seed ^ 12, healthy.clone()))
        .after_release(random_hook(seed ^ 13, healthy.clone()))
        .build()
        .expect("valid");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workers: Vec<JoinHandle<()>> = (0..TASKS)
        .map(|i| spawn_variant_worker(&p, seed * 100 + i as u64))
        .collect();
    for step in 0..150u64 {
        sleep(Duration::from_millis(rng.random_range(0..15))).await;
        check_bounds(&p, &m);
        let i = rng.random_range(0..TASKS);
        workers[i].abort();
        workers[i] = spawn_variant_worker(&p, seed * 100 + 50 + step);
    }
    for w in &workers {
        w.abort();
    }
    for w in workers {
        let _ = w.await;
    }
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
    let t = p.stats();
    for h in HookName::ALL {
        assert!(t.hook(h).runs > 0, "seed {seed}: {h} never ran: {t:?}");
    }

    // No lost capacity: healthy again, max_size callers hold connections at once.
    for op in [Op::Connect, Op::Validate, Op::Reset, Op::Close] {
        m.set(op, Behavior::Ok);
    }
    healthy.store(true, SeqCst);
    sleep(Duration::from_secs(1)).await;
    let mut held = Vec::new();
    for _ in 0..MAX {
        match timeout(Duration::from_secs(2), p.get()).await {
            Ok(Ok(c)) => held.push(c),
            other => panic!("seed {seed}: capacity lost: {other:?} {:?}", p.status()),
        }
    }
    assert_eq!(p.status().size, MAX);
    drop(held);

    p.close();
    assert!(
        p.wait_closed(Duration::from_secs(5)).await,
        "seed {seed}: {:?}",
        p.status()
    );
    let t = p.stats();
    assert_eq!(m.alive(), 0, "seed {seed}: connections left alive");
    assert_eq!(t.created, m.created(), "seed {seed}");
    // Every connection the pool made is closed by it exactly once, or was detached.
    assert_eq!(
        t.closed_total() + t.detached,
        m.created(),
        "seed {seed}: {t:?}"
    );
    assert_eq!(
        m.closes() + t.detached,
        m.created(),
        "seed {seed}: Manager::close once each"
    );
    drop(p);
}

#[tokio::test(start_paused = true)]
async fn random_aborts_with_hooks_and_checkout_variants_leak_nothing() {
    // Hooks panic on purpose: keep the test output readable.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("hook panicked at random") {
            default(info);
        }
    }));
    for seed in 0..16 {
        run_seed_with_hooks(seed).await;
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

mod cred_common;

/// A provider that answers, fails, panics, is slow or hangs at random (seeded), and
/// rotates between passwords `A` and `B`, until `healthy` is set (then always `A`).
fn random_provider(
    seed: u64,
    healthy: Arc<AtomicBool>,
) -> impl poolguard::conn::CredentialsProvider {
    use poolguard::conn::{Credentials, CredentialsError};
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
    move || {
        let pick = if healthy.load(SeqCst) {
            0
        } else {
            rng.lock().unwrap().random_range(0..10u8)
        };
        async move {
            match pick {
                0..=3 => Ok(Credentials::new("app", "A")),
                4 | 5 => Ok(Credentials::new("app", "B")),
                6 => Err(CredentialsError::new("failed at random")),
                7 => panic!("provider panicked at random"),
                8 => {
                    sleep(Duration::from_millis(30)).await;
                    Ok(Credentials::new("app", "A"))
                }
                _ => std::future::pending().await,
            }
        }
    }
}

fn spawn_cred_worker(p: &Pool<cred_common::AuthSim>, seed: u64) -> JoinHandle<()> {
    let p = p.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let patience = Duration::from_millis(rng.random_range(1..400));
            let hold = Duration::from_millis(rng.random_range(0..30));
            match rng.random_range(0..8u8) {
                0 => {
                    // A refresh (its probe connect) dropped at a random point.
                    let _ = timeout(patience, p.refresh_credentials()).await;
                }
                1 => {
                    p.soft_evict_all();
                }
                _ => {
                    if let Ok(Ok(mut c)) = timeout(patience, p.get()).await {
                        if rng.random_bool(0.1) {
                            c.mark_broken();
                        }
                        sleep(hold).await;
                    }
                }
            }
            sleep(Duration::from_millis(rng.random_range(0..10))).await;
        }
    })
}

/// Returns (rotations, failed probes, rotated closes, provider failures).
async fn run_seed_with_credentials(seed: u64) -> [u64; 4] {
    let m = cred_common::AuthSim::new(&["A"]);
    let slow = Duration::from_millis(60);
    m.sim
        .randomize(Op::Connect, seed ^ 1, slow)
        .randomize(Op::Validate, seed ^ 2, slow)
        .randomize(Op::Close, seed ^ 4, slow);
    let healthy = Arc::new(AtomicBool::new(false));
    let p = Pool::builder(m.clone())
        .max_size(MAX)
        .max_concurrent_opens(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(100))
        .credentials_timeout(Duration::from_millis(50))
        .validation_timeout(Duration::from_millis(50))
        .close_timeout(Duration::from_millis(80))
        .validation_bypass(Duration::from_millis(5))
        .keepalive_interval(Some(Duration::from_millis(300)))
        .maintenance_interval(Duration::from_millis(100))
        .breaker_threshold(if seed % 2 == 0 { Some(4) } else { None })
        .breaker_backoff(Duration::from_millis(50))
        .breaker_max_backoff(Duration::from_millis(200))
        .credentials(random_provider(seed ^ 21, healthy.clone()))
        .build()
        .expect("valid");
    let bounds = |p: &Pool<cred_common::AuthSim>| {
        let s = p.status();
        assert!(s.size <= s.max_size, "seed {seed}: {s:?}");
        assert!(
            s.idle + s.in_use + s.opening <= s.size,
            "seed {seed}: {s:?}"
        );
        // One refresh probe at a time may be connected outside `size`.
        assert!(
            m.sim.alive() <= (s.size + s.closing + s.abandoned + 1) as u64,
            "seed {seed}: connection outside the accounting: alive {} {s:?}",
            m.sim.alive()
        );
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workers: Vec<JoinHandle<()>> = (0..TASKS)
        .map(|i| spawn_cred_worker(&p, seed * 100 + i as u64))
        .collect();
    for step in 0..150u64 {
        sleep(Duration::from_millis(rng.random_range(0..15))).await;
        bounds(&p);
        if step % 10 == 0 {
            // The server's view of the rotation changes too.
            if rng.random_bool(0.5) {
                m.accept(&["A", "B"]);
            } else {
                m.accept(&["A"]);
            }
        }
        let i = rng.random_range(0..TASKS);
        workers[i].abort();
        workers[i] = spawn_cred_worker(&p, seed * 100 + 50 + step);
    }
    for w in &workers {
        w.abort();
    }
    for w in workers {
        let _ = w.await;
    }
    sleep(Duration::from_secs(2)).await;
    bounds(&p);
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
    let t = p.stats();
    assert!(t.credentials_calls > 0, "seed {seed}: {t:?}");

    // No lost capacity and no stuck probe: healthy again (the server takes both, the
    // provider says A), max_size callers hold connections at once.
    for op in [Op::Connect, Op::Validate, Op::Close] {
        m.sim.set(op, Behavior::Ok);
    }
    m.accept(&["A", "B"]);
    healthy.store(true, SeqCst);
    sleep(Duration::from_secs(1)).await;
    let mut held = Vec::new();
    for _ in 0..MAX {
        match timeout(Duration::from_secs(2), p.get()).await {
            Ok(Ok(c)) => held.push(c),
            other => panic!("seed {seed}: capacity lost: {other:?} {:?}", p.status()),
        }
    }
    assert_eq!(p.status().size, MAX);
    drop(held);

    p.close();
    assert!(
        p.wait_closed(Duration::from_secs(5)).await,
        "seed {seed}: {:?}",
        p.status()
    );
    let t = p.stats();
    assert_eq!(m.sim.alive(), 0, "seed {seed}: connections left alive");
    // Every connection the pool accepted is closed by it exactly once.
    assert_eq!(t.closed_total(), t.created, "seed {seed}: {t:?}");
    drop(p);
    [
        t.rotations,
        t.rotation_probe_failures,
        t.closed_by(poolguard::conn::CloseReason::Rotated),
        t.credentials_failures,
    ]
}

#[tokio::test(start_paused = true)]
async fn random_aborts_with_a_credentials_provider_leak_nothing() {
    // The provider panics on purpose: keep the test output readable.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("provider panicked at random") {
            default(info);
        }
    }));
    let mut seen = [0u64; 4];
    for seed in 0..16 {
        let got = run_seed_with_credentials(seed).await;
        for (s, g) in seen.iter_mut().zip(got) {
            *s += g;
        }
    }
    // The runs went through every path: rotations, failed probes, paced retirements and
    // provider failures.
    assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
}
