//! A load driver for fault tests against real servers: N tasks issue requests in a loop while
//! the test injects faults (through [`FaultProxy`](crate::proxy::FaultProxy)), and every
//! request's outcome and latency is recorded, so the test can assert that no task hung and
//! report how fast failures were and how soon the pool recovered.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
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
