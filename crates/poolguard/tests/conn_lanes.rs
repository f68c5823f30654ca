//! The per-thread checkout path: a connection returned on one thread is reused there without
//! the pool lock, and everything the pool does with idle connections, holders and counts
//! still reaches it (waiters, close, pause, soft-evict, idle timeout, lifetime, resize,
//! status and holders), from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{Manager, PauseMode, Pool};
use poolguard_testkit::sim::SimManager;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs `f` to completion on a new OS thread (so on that thread's lane), on `rt`.
fn on_thread<F, T>(rt: &tokio::runtime::Handle, f: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let rt = rt.clone();
    std::thread::spawn(move || rt.block_on(f))
        .join()
        .expect("thread")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Lets the runtime's other tasks (the pool's maintenance and close tasks, which hold the
/// pool until they end) run until `done`, for at most 100 turns.
async fn turns_until(done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A simulated database whose sessions need no reset on return (so returns take the
/// thread's path; with a reset they go through the reset task).
fn sim() -> SimManager {
    let m = SimManager::new();
    m.with_reset(false);
    m
}

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn a_thread_reuses_its_connection_and_the_counts_stay_exact() {
    let m = sim();
    let p = Pool::builder(m.clone()).max_size(4).build().expect("valid");
    let first = p.get().await.expect("get").id();
    for _ in 0..50 {
        let c = p.get().await.expect("get");
        assert_eq!(c.id(), first, "the returned connection is reused");
        let s = p.status();
        assert_eq!((s.size, s.idle, s.in_use), (1, 0, 1));
        assert_eq!(p.holders().len(), 1, "the hold is visible");
    }
    let s = p.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 1, 0));
    assert!(p.holders().is_empty());
    assert_eq!(p.stats().gets, 51);
    assert_eq!(m.created(), 1);
}

#[test]
fn a_connection_left_on_another_thread_serves_this_one() {
    let rt = runtime();
    let m = sim();
    let p = rt.block_on(async { Pool::builder(m.clone()).max_size(1).build().expect("valid") });
    let p2 = p.clone();
    let id = on_thread(
        rt.handle(),
        async move { p2.get().await.expect("get").id() },
    );
    // Idle on the other thread (its lane or the idle list): this thread's get takes it.
    let p3 = p.clone();
    let again = on_thread(rt.handle(), async move {
        let c = tokio::time::timeout(LIMIT, p3.get())
            .await
            .expect("in time");
        c.expect("get").id()
    });
    assert_eq!(again, id);
    assert_eq!(m.created(), 1, "no second connection was opened");
    assert_eq!(p.status().idle, 1);
}

#[test]
fn a_return_on_one_thread_serves_a_caller_waiting_on_another() {
    let rt = runtime();
    let m = sim();
    let p = rt.block_on(async { Pool::builder(m.clone()).max_size(1).build().expect("valid") });
    for round in 0..20 {
        // Held from thread A (after a first round, from A's lane).
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let pa = p.clone();
        let h = rt.handle().clone();
        let a = std::thread::spawn(move || {
            h.block_on(async {
                // The second get is served by this thread's path (the first return left
                // the connection there).
                drop(pa.get().await.expect("get"));
                let c = pa.get().await.expect("get");
                held_tx.send(c.id()).expect("send");
                go_rx.recv().expect("go");
                drop(c);
            })
        });
        let id = held_rx.recv().expect("held");
        // Thread B queues, then A returns: B gets that very connection.
        let pb = p.clone();
        let b = rt.spawn(async move { tokio::time::timeout(LIMIT, pb.get()).await });
        rt.block_on(async {
            while p.status().waiters == 0 {
                tokio::task::yield_now().await;
            }
        });
        go_tx.send(()).expect("go");
        a.join().expect("thread A");
        let got = rt
            .block_on(b)
            .expect("task")
            .expect("served in time")
            .expect("get");
        assert_eq!(got.id(), id, "round {round}");
        drop(got);
    }
    assert_eq!(m.created(), 1);
}

#[tokio::test(start_paused = true)]
async fn soft_evict_reaches_parked_and_held_connections() {
    let m = sim();
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    let parked = p.get().await.expect("get").id();
    assert_eq!(
        p.soft_evict_all(),
        1,
        "the parked idle connection is closed now"
    );
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), parked);
    let held = c.id();
    assert_eq!(p.soft_evict_all(), 0);
    drop(c); // held across the evict: closed on return, not parked
    let c = p.get().await.expect("get");
    assert_ne!(c.id(), held);
    assert_eq!(m.created(), 3);
}

#[tokio::test(start_paused = true)]
async fn pause_stops_the_thread_path_too() {
    let p = Pool::builder(sim()).max_size(1).build().expect("valid");
    drop(p.get().await.expect("get"));
    p.pause(PauseMode::FailFast);
    assert!(matches!(p.get().await, Err(poolguard::conn::Error::Paused)));
    assert!(p.resume());
    // Held across the pause: its return must not make it available to the next get.
    let c = p.get().await.expect("get after resume");
    p.pause(PauseMode::FailFast);
    drop(c);
    assert!(matches!(p.get().await, Err(poolguard::conn::Error::Paused)));
    assert!(p.resume());
    drop(p.get().await.expect("get after resume"));
}

#[tokio::test(start_paused = true)]
async fn close_closes_a_parked_connection_and_frees_the_pool() {
    let (m, dropped, p) = tracked_pool();
    drop(p.get().await.expect("get"));
    p.close();
    assert!(p.wait_closed(LIMIT).await, "closed in time");
    assert_eq!(m.alive(), 0, "the parked connection was closed");
    assert!(matches!(p.get().await, Err(poolguard::conn::Error::Closed)));
    drop(p);
    turns_until(|| dropped.load(SeqCst)).await;
    assert!(
        dropped.load(SeqCst),
        "the pool (and its manager) is freed once every handle is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_held_across_close_is_closed_on_return() {
    let m = sim();
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    drop(p.get().await.expect("get"));
    let c = p.get().await.expect("get");
    p.close();
    drop(c);
    assert!(p.wait_closed(LIMIT).await, "closed in time");
    assert_eq!(m.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pool_dropped_with_a_parked_connection_is_freed() {
    let (m, dropped, p) = tracked_pool();
    drop(p.get().await.expect("get"));
    drop(p);
    turns_until(|| dropped.load(SeqCst)).await;
    assert!(dropped.load(SeqCst), "no reference cycle keeps it");
    assert_eq!(m.alive(), 0, "the parked connection was closed");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_lifetime_reach_a_parked_connection() {
    let (m, p) = idle_timeout_pool();
    drop(p.get().await.expect("get"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(p.status().size, 0, "retired by maintenance while parked");
    assert_eq!(m.alive(), 0);

    let q = Pool::builder(m.clone())
        .max_size(2)
        .max_lifetime(Some(Duration::from_secs(60)))
        .build()
        .expect("valid");
    let first = q.get().await.expect("get").id();
    tokio::time::advance(Duration::from_secs(120)).await;
    let c = q.get().await.expect("get");
    assert_ne!(
        c.id(),
        first,
        "past its lifetime: not handed out from the lane"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_hold_returned_on_the_thread_path_is_not_taken_for_idle() {
    let (m, p) = idle_timeout_pool();
    drop(p.get().await.expect("get")); // now parked on this thread
    let c = p.get().await.expect("get"); // from the thread's path
    let id = c.id();
    tokio::time::sleep(Duration::from_secs(30)).await; // held past the idle timeout
    drop(c);
    tokio::time::sleep(Duration::from_secs(3)).await; // a few maintenance passes
    assert_eq!(p.status().size, 1, "just used: kept");
    assert_eq!(p.get().await.expect("get").id(), id);
    assert_eq!(m.created(), 1, "nothing was reopened");
}

#[tokio::test(start_paused = true)]
async fn a_smaller_max_size_reaches_parked_connections() {
    let m = sim();
    let p = Pool::builder(m.clone()).max_size(3).build().expect("valid");
    let (a, b, c) = (
        p.get().await.expect("get"),
        p.get().await.expect("get"),
        p.get().await.expect("get"),
    );
    drop((a, b, c));
    assert_eq!(p.status().size, 3);
    p.resize(1).expect("valid");
    for _ in 0..3 {
        drop(p.get().await.expect("get"));
    }
    let s = p.status();
    assert!(s.size <= 1, "shrunk: {s:?}");
    // The surplus closes on background tasks (the clock is paused: sleeping only lets them run).
    tokio::time::timeout(LIMIT, async {
        while p.status().closing > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(m.alive(), p.status().size as u64);
}

#[test]
fn random_traffic_with_aborts_loses_nothing() {
    let rt = runtime();
    let m = sim();
    let p = rt.block_on(async {
        Pool::builder(m.clone())
            .max_size(4)
            .acquire_timeout(Duration::from_secs(30))
            .build()
            .expect("valid")
    });
    let ok = Arc::new(AtomicU64::new(0));
    // Connections checked out now: a connection handed to two callers at once fails.
    let out = Arc::new(parking_lot::Mutex::new(std::collections::HashSet::new()));
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let p = p.clone();
                let ok = Arc::clone(&ok);
                let out = Arc::clone(&out);
                let mut r = StdRng::seed_from_u64(seed * 100 + t);
                rt.spawn(async move {
                    for _ in 0..200 {
                        match r.random_range(0..20u8) {
                            0 => {
                                p.soft_evict_all();
                            }
                            1 => {
                                let _ = p.status();
                                let _ = p.holders();
                            }
                            _ => {
                                if let Ok(c) = p.get().await {
                                    ok.fetch_add(1, SeqCst);
                                    let id = c.id();
                                    assert!(out.lock().insert(id), "{id} handed out twice");
                                    let _out = Out(&out, id);
                                    if r.random_bool(0.5) {
                                        tokio::task::yield_now().await;
                                    }
                                    drop(_out);
                                    drop(c);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        // Abort some tasks at whatever await they are at.
        let victims: Vec<_> = tasks
            .iter()
            .filter(|_| rng.random_range(0..4u8) == 0)
            .collect();
        rt.block_on(async {
            for _ in 0..rng.random_range(0..50u32) {
                tokio::task::yield_now().await;
            }
        });
        for v in victims {
            v.abort();
        }
        for t in tasks {
            let _ = rt.block_on(t);
        }
        let s = p.status();
        assert_eq!(s.in_use, 0, "seed {seed}: {s:?}");
        assert_eq!(s.waiters, 0, "seed {seed}: {s:?}");
        assert!(p.holders().is_empty(), "seed {seed}");
        assert!(s.size <= 4);
    }
    assert!(ok.load(SeqCst) > 0);
    assert!(p.stats().gets >= ok.load(SeqCst));
    rt.block_on(async {
        p.close();
        assert!(p.wait_closed(LIMIT).await);
    });
    assert_eq!(m.alive(), 0, "every connection closed");
}

// ---- managers for the tests above ----

/// A pool of 2 whose connections retire after 10 s idle, maintained every second.
fn idle_timeout_pool() -> (SimManager, Pool<SimManager>) {
    let m = sim();
    let p = Pool::builder(m.clone())
        .max_size(2)
        .idle_timeout(Some(Duration::from_secs(10)))
        .maintenance_interval(Duration::from_secs(1))
        .build()
        .expect("valid");
    (m, p)
}

/// A pool of 2 over a simulated database, and a flag set when the pool's manager is dropped.
fn tracked_pool() -> (SimManager, Arc<AtomicBool>, Pool<Tracked>) {
    let m = sim();
    let dropped = Arc::new(AtomicBool::new(false));
    let p = Pool::builder(Tracked(m.clone(), DropFlag(Arc::clone(&dropped))))
        .max_size(2)
        .build()
        .expect("valid");
    (m, dropped, p)
}

/// Sets its flag when dropped (with the pool that owns the manager).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

struct Tracked(SimManager, #[allow(dead_code)] DropFlag);

impl Manager for Tracked {
    type Connection = <SimManager as Manager>::Connection;
    type Error = <SimManager as Manager>::Error;
    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.0.connect().await
    }
    async fn validate(&self, c: &mut Self::Connection) -> Result<(), Self::Error> {
        self.0.validate(c).await
    }
    fn is_broken(&self, c: &mut Self::Connection) -> bool {
        self.0.is_broken(c)
    }
}

/// Takes a connection id out of the checked-out set when dropped (also when its task is
/// aborted while holding it).
struct Out<'a>(&'a parking_lot::Mutex<std::collections::HashSet<u64>>, u64);

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}
