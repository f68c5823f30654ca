//! The breaker and a server restart: a restart of 0.2 s must not cost a long backoff on top
//! (probes start tens of milliseconds apart, and stay at most 100 ms apart while the server
//! says it is restarting), while a long outage still fails fast with a bounded probe rate.
//! Paused clock: every figure below is exact for the run, and the bounds hold whatever the
//! jitter draws.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{BreakerState, Error, Pool};
use poolguard_testkit::sim::{Faults, Op, SimManager, Workload};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const CLIENTS: usize = 8;
/// A client's pause after a failed request.
const RETRY: Duration = Duration::from_millis(5);
/// A request's deadline.
const QUERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Record {
    ok: Vec<Instant>,
    /// (when it ended, how long it took, fast-failed by the breaker)
    failed: Vec<(Instant, Duration, bool)>,
}

struct Clients {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(pool: &Pool<SimManager>, m: &SimManager) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (pool, m, stop, record) =
                    (pool.clone(), m.clone(), stop.clone(), record.clone());
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        let t0 = Instant::now();
                        let res = match pool.get().await {
                            // Every request has a deadline (a dead node never answers).
                            Ok(mut c) => match tokio::time::timeout(QUERY, m.work(&mut c)).await {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(e)) => {
                                    c.report(&e);
                                    Err(false)
                                }
                                Err(_) => {
                                    c.mark_broken();
                                    Err(false)
                                }
                            },
                            Err(Error::Unavailable { .. }) => Err(true),
                            Err(_) => Err(false),
                        };
                        let now = Instant::now();
                        match res {
                            Ok(()) => {
                                record.lock().ok.push(now);
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err(fast) => {
                                record.lock().failed.push((now, now - t0, fast));
                                tokio::time::sleep(RETRY).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            record,
            tasks,
        }
    }

    async fn stop(self) -> Record {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            t.await.expect("client");
        }
        std::mem::take(&mut *self.record.lock())
    }
}

fn sim() -> SimManager {
    let m = SimManager::new();
    m.with_reset(false)
        .latency(Op::Connect, Duration::from_millis(1))
        .latency(Op::Query, Duration::from_millis(1));
    m
}

/// A pool with the breaker on, every setting of it at its default.
fn pool(m: &SimManager) -> Pool<SimManager> {
    Pool::builder(m.clone())
        .max_size(4)
        .min_idle(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .expect("valid")
}

/// Runs `fault` (which returns when the server is back) under load; returns how long after
/// that the first request succeeded, and the whole record.
async fn fault_under_load(
    m: &SimManager,
    p: &Pool<SimManager>,
    fault: impl std::future::Future<Output = ()>,
) -> (Duration, Record) {
    tokio::time::sleep(Duration::from_millis(200)).await; // min_idle
    let clients = Clients::start(p, m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault.await;
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = clients.stop().await;
    let first = record
        .ok
        .iter()
        .find(|t| **t >= back)
        .map(|t| *t - back)
        .expect("served again after the fault");
    (first, record)
}

#[tokio::test(start_paused = true)]
async fn a_restart_with_its_signature_costs_at_most_the_short_probe_interval() {
    let m = sim();
    let p = pool(&m);
    let restart = async {
        m.set_restarting(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        m.set_restarting(false);
    };
    let (first, record) = fault_under_load(&m, &p, restart).await;
    assert!(
        p.stats().breaker_opened >= 1,
        "the restart opened the breaker"
    );
    assert!(record.failed.iter().any(|f| f.2), "and it failed gets fast");
    // 100 ms probe cap + one client retry + connect and query.
    assert!(
        first <= Duration::from_millis(110),
        "first success {first:?} after the server was back"
    );
    assert_eq!(p.status().breaker, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_restart_that_closes_the_port_is_still_short_after_its_signature() {
    // Shutting down (the signature) for 20 ms, then the port closed for 180 ms: refused
    // connects right after a signature keep the probes short.
    let m = sim();
    let p = pool(&m);
    let restart = async {
        m.set_restarting(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.set_restarting(false);
        m.set_refuse(true);
        tokio::time::sleep(Duration::from_millis(180)).await;
        m.set_refuse(false);
    };
    let (first, _) = fault_under_load(&m, &p, restart).await;
    assert!(p.stats().breaker_opened >= 1);
    assert!(
        first <= Duration::from_millis(110),
        "first success {first:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_short_refused_outage_without_signature_is_not_held_up_by_a_long_backoff() {
    // Indistinguishable from an outage at first: only the short initial backoff helps. With
    // the former 1 s default the first success came 800 ms or more after the server was back.
    let m = sim();
    let p = pool(&m);
    let outage = async {
        // Open connections end (a flick of the dead-node switch) and connects are refused.
        m.set_outage(true);
        m.set_outage(false);
        m.set_refuse(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        m.set_refuse(false);
    };
    let (first, _) = fault_under_load(&m, &p, outage).await;
    assert!(p.stats().breaker_opened >= 1);
    // Backoff 25, 50, 100, 200 ms: the wait in force when the server returns is at most 200 ms.
    assert!(
        first <= Duration::from_millis(210),
        "first success {first:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_fails_fast_with_a_bounded_probe_rate() {
    let m = sim();
    let p = pool(&m);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let clients = Clients::start(&p, &m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.set_outage(true);
    m.set_outage(false);
    m.set_refuse(true);
    let start = Instant::now();
    let before = m.attempts();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mid = m.attempts();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let end = m.attempts();
    let record = clients.stop().await;
    let during: Vec<_> = record.failed.iter().filter(|f| f.0 >= start).collect();
    let fast = during.iter().filter(|f| f.2).count();
    assert!(
        fast * 100 >= during.len() * 99,
        "{fast} of {} failures were the breaker's fast ones",
        during.len()
    );
    let slowest = during.iter().map(|f| f.1).max().expect("failures");
    assert!(
        slowest <= Duration::from_millis(5),
        "slowest failure {slowest:?}"
    );
    // Backoff 25 ms doubling to 30 s: about a dozen connects in the first 30 s, then at most
    // one per 15 s (30 s jittered).
    assert!(
        mid - before <= 20,
        "{} connects in the first 30 s",
        mid - before
    );
    assert!(end - mid <= 5, "{} connects in the next 60 s", end - mid);
}

#[tokio::test(start_paused = true)]
async fn a_long_restart_probes_at_most_twenty_times_a_second() {
    let m = sim();
    let p = pool(&m);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let clients = Clients::start(&p, &m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.set_restarting(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = m.attempts();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let probes = m.attempts() - before;
    m.set_restarting(false);
    let record = clients.stop().await;
    // At most 100 ms apart and at least 50 ms (jitter): 10 to 20 a second.
    assert!((100..=201).contains(&probes), "{probes} probes in 10 s");
    assert!(!record.failed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_holds_up_one_caller_not_all() {
    // A dead node: connects hang until connect_timeout (500 ms). Half-open, one get waits for
    // the probe; every other get fails fast.
    let m = sim();
    let p = pool(&m);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let clients = Clients::start(&p, &m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.set_outage(true);
    let start = Instant::now();
    let before = m.attempts();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let connects = m.attempts() - before;
    let record = clients.stop().await;
    let during: Vec<_> = record.failed.iter().filter(|f| f.0 >= start).collect();
    let slow = during
        .iter()
        .filter(|f| f.1 > Duration::from_millis(5))
        .count();
    // Before the breaker opens, each client waits once (its request on a now silent
    // connection, or its get for the first connects); after it, only a probe's one caller.
    assert!(
        slow <= 2 * CLIENTS + connects as usize,
        "{slow} slow failures of {} with {connects} connects",
        during.len()
    );
    assert!(
        during.len() > 100 * slow,
        "{} failures, {slow} slow",
        during.len()
    );
    assert!(connects <= 20, "{connects} connects in 30 s");
}
