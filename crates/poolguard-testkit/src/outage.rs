//! A load driver for fault tests against real servers: N tasks issue requests in a loop while
//! the test injects faults (through [`crate::proxy::FaultProxy`]), and every
//! request's outcome and latency is recorded, so the test can assert that no task hung and
//! report how fast failures were and how soon the pool recovered.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{BreakerState, Error as PoolError, Manager, Pool};
use tokio::task::JoinHandle;

use crate::proxy::FaultProxy;
use tokio::time::Instant;

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which task.
    pub task: usize,
    /// When it started, relative to the load's start.
    pub at: Duration,
    /// How long it took to fail.
    pub latency: Duration,
    /// A short label for the error kind (chosen by the request closure).
    pub kind: String,
}

#[derive(Debug, Default)]
struct Record {
    failures: Vec<Failure>,
    hung: Vec<(usize, Duration)>,
}

/// What a load run saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed (within the deadline).
    pub failures: Vec<Failure>,
    /// Requests cut off by the deadline: (task, start time). Must be empty.
    pub hung: Vec<(usize, Duration)>,
    /// Requests per task, successful or not.
    pub per_task: Vec<u64>,
}

impl LoadReport {
    /// Failures per task.
    pub fn failures_per_task(&self) -> Vec<usize> {
        let mut v = vec![0; self.per_task.len()];
        for f in &self.failures {
            v[f.task] += 1;
        }
        v
    }

    /// Failures by kind.
    pub fn kinds(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for f in &self.failures {
            *m.entry(f.kind.clone()).or_insert(0) += 1;
        }
        m
    }

    /// The slowest failure.
    pub fn max_failure_latency(&self) -> Duration {
        self.failures
            .iter()
            .map(|f| f.latency)
            .max()
            .unwrap_or_default()
    }

    /// The `q` quantile (0.0..=1.0) of the latency of failures of `kind`.
    pub fn failure_latency_quantile(&self, kind: &str, q: f64) -> Option<Duration> {
        let mut v: Vec<Duration> = self
            .failures
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.latency)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort();
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(v[i])
    }
}

/// Running load; [`stop`](Load::stop) it to get the report.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<u64>>,
    record: Arc<Mutex<Record>>,
}

impl Load {
    /// Starts `tasks` tasks; each calls `request(task)` in a loop, each call bounded by
    /// `deadline` (a call cut off by it counts as hung). After a failure a task pauses
    /// `pace` before its next request, so a fast-failing pool is not hammered in a busy loop.
    pub fn start<F, Fut>(tasks: usize, deadline: Duration, pace: Duration, request: F) -> Load
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let record = Arc::new(Mutex::new(Record::default()));
        let request = Arc::new(request);
        let origin = Instant::now();
        let handles = (0..tasks)
            .map(|task| {
                let (stop, ok, record, request) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&record),
                    Arc::clone(&request),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let t0 = Instant::now();
                        match tokio::time::timeout(deadline, request(task)).await {
                            Ok(Ok(())) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await;
                            }
                            Ok(Err(kind)) => {
                                record.lock().failures.push(Failure {
                                    task,
                                    at: t0 - origin,
                                    latency: t0.elapsed(),
                                    kind,
                                });
                                tokio::time::sleep(pace).await;
                            }
                            Err(_) => record.lock().hung.push((task, t0 - origin)),
                        }
                    }
                    n
                })
            })
            .collect();
        Load {
            stop,
            ok,
            tasks: handles,
            record,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failures so far.
    pub fn failures(&self) -> usize {
        self.record.lock().failures.len()
    }

    /// Waits (bounded by `limit`) until `n` more requests have succeeded; returns how long
    /// that took, or `None` if the limit passed first.
    pub async fn wait_successes(&self, n: u64, limit: Duration) -> Option<Duration> {
        let target = self.ok() + n;
        let t0 = Instant::now();
        while self.ok() < target {
            if t0.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(t0.elapsed())
    }

    /// Stops every task (each finishes its current request) and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut per_task = Vec::new();
        for t in self.tasks {
            per_task.push(t.await.unwrap_or(0));
        }
        let record = std::mem::take(&mut *self.record.lock());
        LoadReport {
            ok: self.ok.load(Ordering::Relaxed),
            failures: record.failures,
            hung: record.hung,
            per_task,
        }
    }
}

/// The pool's size bound in fault tests built by [`fault_test_pool`].
pub const FAULT_MAX_SIZE: usize = 8;
/// The pool's `min_idle` in fault tests built by [`fault_test_pool`]: warm-up and recovery
/// both wait for this many live connections.
pub const FAULT_MIN_IDLE: usize = 4;

/// The pool every outage test uses: [`FAULT_MAX_SIZE`] connections, [`FAULT_MIN_IDLE`] kept
/// warm, short connect/validation timeouts, a breaker that opens after 3 failures and backs
/// off 200 ms..1 s, and a 100 ms maintenance tick, so an outage is noticed and healed fast.
pub fn fault_test_pool<M: Manager>(manager: M, label: &str, acquire_timeout: Duration) -> Pool<M> {
    Pool::builder(manager)
        .name(label)
        .max_size(FAULT_MAX_SIZE)
        .min_idle(FAULT_MIN_IDLE)
        .acquire_timeout(acquire_timeout)
        .connect_timeout(Duration::from_secs(1))
        .validation_timeout(Duration::from_millis(500))
        .breaker_threshold(Some(3))
        .breaker_backoff(Duration::from_millis(200))
        .breaker_max_backoff(Duration::from_secs(1))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .expect("the fault-test pool configuration is valid")
}

/// The acquire timeout of [`blackhole_test_pool`].
pub const BLACKHOLE_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The pool every blackhole test uses: 4 connections, 2 kept warm, acquire timeout
/// [`BLACKHOLE_ACQUIRE_TIMEOUT`], connect 500 ms, validation 300 ms on every checkout from the
/// idle list (bypass 0), a breaker that opens after 3 failures and backs off 200..500 ms, and a
/// 100 ms maintenance tick; waits until the 2 idle connections are open.
pub async fn blackhole_test_pool<M: Manager>(manager: M, label: &str) -> Pool<M> {
    let pool = Pool::builder(manager)
        .name(label)
        .max_size(4)
        .min_idle(2)
        .acquire_timeout(BLACKHOLE_ACQUIRE_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .validation_timeout(Duration::from_millis(300))
        .validation_bypass(Duration::ZERO)
        .breaker_threshold(Some(3))
        .breaker_backoff(Duration::from_millis(200))
        .breaker_max_backoff(Duration::from_millis(500))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .expect("the blackhole-test pool configuration is valid");
    wait_for("min_idle warm", Duration::from_secs(10), || {
        pool.status().idle >= 2
    })
    .await;
    pool
}

/// After a fault is lifted: 2 tasks call `request` (5 s deadline each) until 10 succeed
/// (panicking, failing the test, if that takes over 10 s), then the load is stopped and
/// reported.
pub async fn serves_again<F, Fut>(request: F) -> LoadReport
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let load = Load::start(
        2,
        Duration::from_secs(5),
        Duration::from_millis(20),
        request,
    );
    load.wait_successes(10, Duration::from_secs(10))
        .await
        .expect("the pool recovers after the fault");
    load.stop().await
}

/// A server outage through `proxy`: new connections refused, every live one reset, for
/// `lasting`; then connections are accepted again. Returns how many connections were cut. Meant
/// as the `outage` of [`outage_under_load`].
pub async fn proxy_outage(proxy: &FaultProxy, lasting: Duration) -> usize {
    proxy.refuse().await;
    let cut = proxy.cut_all();
    tokio::time::sleep(lasting).await;
    proxy
        .accept()
        .expect("the proxy accepts again on the same port");
    cut
}

/// A short label for a pool error, used as the failure kind in a [`LoadReport`].
pub fn error_kind<E: std::error::Error + 'static>(e: &PoolError<E>) -> String {
    match e {
        PoolError::Timeout(_) => "timeout".into(),
        PoolError::PhaseTimeout { phase, .. } => format!("{phase}-timeout"),
        PoolError::Backend { phase, .. } => format!("{phase}-error"),
        PoolError::Unavailable { .. } => "unavailable".into(),
        PoolError::Overloaded { .. } => "overloaded".into(),
        PoolError::Closed => "closed".into(),
        _ => "other".into(),
    }
}

/// Asserts that every failure kind in `kinds` (from [`LoadReport::kinds`]) is an answer the
/// pool gives by itself (its acquire or phase deadline, its breaker, a backend error, or a
/// request cut by the fault), so no failure is a caller's deadline hiding a hung get.
pub fn assert_pool_answered<V: std::fmt::Debug>(kinds: &std::collections::BTreeMap<String, V>) {
    for k in kinds.keys() {
        assert!(
            k == "timeout"
                || k == "unavailable"
                || k == "query"
                || k == "command"
                || k.ends_with("-timeout")
                || k.ends_with("-error"),
            "a failure of kind {k:?} is not one the pool answers by itself: {kinds:?}"
        );
    }
}

/// Polls `f` every 5 ms until it holds and returns how long that took; panics (failing the
/// test, naming `what`) if `limit` passes first.
pub async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed()
}

/// How [`outage_under_load`] drives the load around the outage.
#[derive(Debug, Clone, Copy)]
pub struct OutagePlan {
    /// Concurrent request tasks.
    pub tasks: usize,
    /// Deadline of each request (a request cut off by it counts as hung).
    pub deadline: Duration,
    /// How long recovery may take: back to [`FAULT_MIN_IDLE`] with the breaker closed, and
    /// then 100 more requests served, each within this limit.
    pub recover_within: Duration,
}

/// What [`outage_under_load`] saw.
#[derive(Debug, Clone)]
pub struct OutageReport<T> {
    /// What the outage future returned (e.g. how many connections it cut).
    pub outage: T,
    /// Whether the breaker was seen open while the outage ran.
    pub saw_open: bool,
    /// Failures recorded by the time the outage future returned.
    pub failures_during: usize,
    /// From the end of the outage until the pool was back to `min_idle`, breaker closed.
    pub recovered: Duration,
    /// From then until 100 more requests had succeeded.
    pub served: Duration,
    /// The whole load run.
    pub load: LoadReport,
}

/// The outage scenario every backend's fault tests share: waits for `pool` to be warm
/// ([`FAULT_MIN_IDLE`] idle), runs `plan.tasks` tasks calling `request` until 200 succeed, runs
/// `outage` (which breaks and then heals the server) while watching the breaker, then waits for
/// the pool to be back to `min_idle` with the breaker closed and for 100 more successes, and
/// stops the load. Panics (failing the test) if any of those waits passes its limit.
pub async fn outage_under_load<M, F, Fut, O>(
    pool: &Pool<M>,
    plan: OutagePlan,
    request: F,
    outage: O,
) -> OutageReport<O::Output>
where
    M: Manager,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
    O: Future,
{
    wait_for("min_idle warm", Duration::from_secs(10), || {
        pool.status().idle >= FAULT_MIN_IDLE
    })
    .await;
    let load = Load::start(plan.tasks, plan.deadline, Duration::from_millis(5), request);
    load.wait_successes(200, Duration::from_secs(10))
        .await
        .expect("load runs");

    let mut saw_open = false;
    let outage = {
        tokio::pin!(outage);
        loop {
            saw_open |= pool.status().breaker == BreakerState::Open;
            tokio::select! {
                out = &mut outage => break out,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    };
    let failures_during = load.failures();
    let recovered = wait_for(
        "back to min_idle with the breaker closed",
        plan.recover_within,
        || {
            let s = pool.status();
            s.breaker == BreakerState::Closed && s.idle + s.in_use >= FAULT_MIN_IDLE
        },
    )
    .await;
    let served = load
        .wait_successes(100, plan.recover_within)
        .await
        .expect("requests succeed again");
    OutageReport {
        outage,
        saw_open,
        failures_during,
        recovered,
        served,
        load: load.stop().await,
    }
}
