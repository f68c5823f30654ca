//! `db-outage`: the backend dies under load (a dead node: connects hang, open connections go
//! silent) and comes back. With the circuit breaker vs without: how fast do failures come
//! back, how many requests hang, how long until the first success after recovery?
//!
//! The outage is scaled from 10 s to 3 s (and the timeouts with it) to keep the lab short.
//! Generic over the backend ([`Workload`] + [`Faults`]); the run function uses the simulator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use poolguard::conn::{Manager, Pool};
use poolguard::diag::Histogram;
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::{LabCtx, Table};

const HEALTHY: Duration = Duration::from_secs(1);
const OUTAGE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(2);
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const CLIENTS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Outcome {
    start: Duration,
    took: Duration,
    ok: bool,
}

pub(crate) async fn scenario<M>(backend: M, breaker: bool) -> Result<Vec<String>, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = Pool::builder(backend.clone())
        .label(if breaker {
            "with-breaker"
        } else {
            "no-breaker"
        })
        .max_size(8)
        .min_idle(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .validation_timeout(Duration::from_millis(250))
        .breaker_threshold(breaker.then_some(3))
        .breaker_backoff(Duration::from_millis(200))
        .breaker_max_backoff(Duration::from_millis(800))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(300)).await; // warm
    let t0 = Instant::now();
    let end = HEALTHY + OUTAGE + AFTER;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let pool = pool.clone();
        let backend = backend.clone();
        let outcomes = Arc::clone(&outcomes);
        clients.push(tokio::spawn(async move {
            while t0.elapsed() < end {
                let start = t0.elapsed();
                let ok = match pool.get().await {
                    Ok(mut c) => {
                        match tokio::time::timeout(QUERY_TIMEOUT, backend.work(&mut c)).await {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                c.report(&e);
                                false
                            }
                            Err(_) => {
                                c.mark_broken();
                                false
                            }
                        }
                    }
                    Err(_) => false,
                };
                let took = t0.elapsed() - start;
                outcomes.lock().push(Outcome { start, took, ok });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(HEALTHY).await;
    backend.set_outage(true);
    tokio::time::sleep(OUTAGE).await;
    backend.set_outage(false);
    for c in clients {
        let _ = c.await;
    }
    let all = outcomes.lock().clone();
    let in_outage = |o: &Outcome| o.start >= HEALTHY && o.start < HEALTHY + OUTAGE;
    let fail_lat = Histogram::new();
    let (mut failures, mut hung) = (0u64, 0u64);
    for o in all.iter().filter(|o| in_outage(o) && !o.ok) {
        failures += 1;
        fail_lat.record(o.took);
        if o.took >= QUERY_TIMEOUT {
            hung += 1;
        }
    }
    let back = HEALTHY + OUTAGE;
    let recovered = all
        .iter()
        .filter(|o| o.ok && o.start + o.took >= back)
        .map(|o| o.start + o.took - back)
        .min();
    let s = fail_lat.snapshot();
    let stats = pool.stats();
    Ok(vec![
        if breaker {
            "with breaker (3 failures)"
        } else {
            "without breaker"
        }
        .to_owned(),
        failures.to_string(),
        format!("{:.1?}", s.p50()),
        format!("{:.1?}", s.p99()),
        hung.to_string(),
        stats.unavailable.to_string(),
        recovered.map_or("never".to_owned(), |d| format!("{d:.1?}")),
    ])
}

pub(crate) fn run(_ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let mut t = Table::new([
        "pool (16 clients, 3 s outage)",
        "failed requests during outage",
        "failure p50",
        "failure p99",
        "hung >= 1 s",
        "fast failures by breaker (whole run)",
        "first success after recovery",
    ]);
    let sim = || {
        let sim = SimManager::new();
        sim.latency(Op::Query, Duration::from_millis(2))
            .latency(Op::Connect, Duration::from_millis(20))
            .with_reset(false);
        sim
    };
    rt.block_on(async {
        // The two pools are independent (each its own simulated server): run them side by
        // side so the lab takes one outage's time, not two.
        let (without, with) = tokio::join!(scenario(sim(), false), scenario(sim(), true));
        t.row(without?);
        t.row(with?);
        Ok::<(), String>(())
    })?;
    t.print();
    Ok(())
}
