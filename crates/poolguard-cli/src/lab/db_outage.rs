//! `db-outage`: the backend dies under load (a dead node: connects hang, open connections go
//! silent) and comes back. With the circuit breaker vs without: how fast do failures come
//! back, how many requests hang, how long until the first success after recovery? Then a
//! planned restart (0.2 s): what the breaker's probe schedule adds to it.
//!
//! The outage is scaled from 10 s to 3 s (and the timeouts with it) to keep the lab short.
//! Generic over the backend ([`Workload`] + [`Faults`]); the run function uses the simulator.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use poolguard::conn::{Error, Manager, Pool};
use poolguard::diag::Histogram;
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::{LabCtx, Table};

const HEALTHY: Duration = Duration::from_secs(1);
const OUTAGE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(2);
const RESTART: Duration = Duration::from_millis(200);
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const CLIENTS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Outcome {
    start: Duration,
    took: Duration,
    ok: bool,
    /// Failed fast by the open breaker.
    unavailable: bool,
}

/// How the pool's breaker is set up for one row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Breaker {
    Off,
    /// Threshold 3, this first backoff doubling to `max`.
    On {
        backoff: Duration,
        max: Duration,
    },
}

/// The fault a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A dead node for [`OUTAGE`].
    Outage,
    /// A restart of [`RESTART`]: open connections end and connects are refused...
    RestartRefused,
    /// ... or answered with the server's "starting up" message.
    RestartSignature,
}

fn pool<M: Manager>(backend: M, label: &str, breaker: Breaker) -> Result<Pool<M>, String> {
    let b = Pool::builder(backend)
        .name(label)
        .max_size(8)
        .min_idle(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .validation_timeout(Duration::from_millis(250))
        .maintenance_interval(Duration::from_millis(100));
    let b = match breaker {
        Breaker::Off => b.breaker_threshold(None),
        Breaker::On { backoff, max } => b
            .breaker_threshold(Some(3))
            .breaker_backoff(backoff)
            .breaker_max_backoff(max),
    };
    b.build().map_err(|e| e.to_string())
}

/// Runs `fault` under load from [`CLIENTS`] clients; returns every request's outcome, when
/// the fault began and ended (from the load's start), and the pool.
async fn under_load<M>(
    backend: M,
    label: &str,
    breaker: Breaker,
    fault: Fault,
) -> Result<(Vec<Outcome>, Duration, Duration, Pool<M>), String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = pool(backend.clone(), label, breaker)?;
    tokio::time::sleep(Duration::from_millis(300)).await; // warm
    let t0 = Instant::now();
    let lasts = if fault == Fault::Outage {
        OUTAGE
    } else {
        RESTART
    };
    let end = HEALTHY + lasts + AFTER;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let pool = pool.clone();
        let backend = backend.clone();
        let outcomes = Arc::clone(&outcomes);
        clients.push(tokio::spawn(async move {
            while t0.elapsed() < end {
                let start = t0.elapsed();
                let mut unavailable = false;
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
                    Err(e) => {
                        unavailable = matches!(e, Error::Unavailable { .. });
                        false
                    }
                };
                let took = t0.elapsed() - start;
                outcomes.lock().push(Outcome {
                    start,
                    took,
                    ok,
                    unavailable,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(HEALTHY).await;
    let began = t0.elapsed();
    match fault {
        Fault::Outage => backend.set_outage(true),
        Fault::RestartRefused => {
            backend.set_restarting(true);
            backend.set_restarting(false);
            backend.set_refuse(true);
        }
        Fault::RestartSignature => backend.set_restarting(true),
    }
    tokio::time::sleep(lasts).await;
    match fault {
        Fault::Outage => backend.set_outage(false),
        Fault::RestartRefused => backend.set_refuse(false),
        Fault::RestartSignature => backend.set_restarting(false),
    }
    let back = t0.elapsed();
    for c in clients {
        let _ = c.await;
    }
    let all = outcomes.lock().clone();
    Ok((all, began, back, pool))
}

/// The first success after `back`, as a figure.
fn first_success(all: &[Outcome], back: Duration) -> String {
    all.iter()
        .filter(|o| o.ok && o.start + o.took >= back)
        .map(|o| o.start + o.took - back)
        .min()
        .map_or("never".to_owned(), |d| format!("{d:.1?}"))
}

/// One row of the dead-node table.
pub(crate) async fn scenario<M>(backend: M, breaker: Breaker) -> Result<Vec<String>, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let label = match breaker {
        Breaker::Off => "without breaker".to_owned(),
        Breaker::On { backoff, max } => {
            format!("breaker (3 failures), backoff {backoff:?} -> {max:?}")
        }
    };
    let (all, began, back, pool) = under_load(backend, &label, breaker, Fault::Outage).await?;
    let in_outage = |o: &Outcome| o.start >= began && o.start < back;
    let fail_lat = Histogram::new();
    let (mut failures, mut hung) = (0u64, 0u64);
    for o in all.iter().filter(|o| in_outage(o) && !o.ok) {
        failures += 1;
        fail_lat.record(o.took);
        if o.took >= QUERY_TIMEOUT {
            hung += 1;
        }
    }
    let s = fail_lat.snapshot();
    Ok(vec![
        label,
        failures.to_string(),
        format!("{:.1?}", s.p50()),
        format!("{:.1?}", s.p99()),
        hung.to_string(),
        pool.stats().unavailable.to_string(),
        first_success(&all, back),
    ])
}

/// One row of the restart table.
async fn restart<M>(
    backend: M,
    label: &str,
    breaker: Breaker,
    fault: Fault,
) -> Result<Vec<String>, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let (all, began, back, pool) = under_load(backend, label, breaker, fault).await?;
    let failed = all.iter().filter(|o| !o.ok && o.start >= began).count();
    let fast = all.iter().filter(|o| o.unavailable).count();
    let stats = pool.stats();
    Ok(vec![
        label.to_owned(),
        failed.to_string(),
        fast.to_string(),
        (stats.created + stats.connect_failures).to_string(),
        first_success(&all, back),
    ])
}

const OLD_LAB: Breaker = Breaker::On {
    backoff: Duration::from_millis(200),
    max: Duration::from_millis(800),
};
const NEW_LAB: Breaker = Breaker::On {
    backoff: Duration::from_millis(25),
    max: Duration::from_millis(800),
};

/// Both tables; every row gets its own backend from `backend`, so the rows run side by side.
/// `signature`: the backend can answer a restart with the server's restart message (the
/// simulator can; a TCP proxy in front of a real server cannot).
pub(crate) async fn tables<M, F, Fut>(backend: F, what: &str, signature: bool) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<M, String>>,
{
    let mut t = Table::new([
        format!("pool (16 clients, 3 s outage = {what})"),
        "failed requests during outage".into(),
        "failure p50".into(),
        "failure p99".into(),
        "hung >= 1 s".into(),
        "fast failures by breaker (whole run)".into(),
        "first success after recovery".into(),
    ]);
    let (a, b, c) = tokio::join!(
        async { scenario(backend().await?, Breaker::Off).await },
        async { scenario(backend().await?, OLD_LAB).await },
        async { scenario(backend().await?, NEW_LAB).await },
    );
    t.row(a?);
    t.row(b?);
    t.row(c?);
    t.print();

    let mut t = Table::new([
        "pool (16 clients, 0.2 s planned restart)",
        "failed requests",
        "fast failures by breaker",
        "connects tried",
        "first success after the server is back",
    ]);
    let former = Breaker::On {
        backoff: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };
    let default = Breaker::On {
        backoff: Duration::from_millis(25),
        max: Duration::from_secs(30),
    };
    let (a, b, c, d) = tokio::join!(
        async {
            restart(
                backend().await?,
                "without breaker",
                Breaker::Off,
                Fault::RestartRefused,
            )
            .await
        },
        async {
            restart(
                backend().await?,
                "breaker, 1 s backoff (former default), refused connects",
                former,
                Fault::RestartRefused,
            )
            .await
        },
        async {
            restart(
                backend().await?,
                "breaker, 25 ms backoff (default), refused connects",
                default,
                Fault::RestartRefused,
            )
            .await
        },
        async {
            if !signature {
                return Ok(None);
            }
            restart(
                backend().await?,
                "breaker, 25 ms backoff (default), \"starting up\" answers",
                default,
                Fault::RestartSignature,
            )
            .await
            .map(Some)
        },
    );
    t.row(a?);
    t.row(b?);
    t.row(c?);
    if let Some(d) = d? {
        t.row(d);
    }
    t.print();
    Ok(())
}

pub(crate) fn run(_ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let sim = || async {
        let sim = SimManager::new();
        sim.latency(Op::Query, Duration::from_millis(2))
            .latency(Op::Connect, Duration::from_millis(20))
            .with_reset(false);
        Ok::<_, String>(sim)
    };
    // Each row has its own simulated server: the rows run side by side, so the lab takes one
    // outage's time per table.
    rt.block_on(tables(sim, "dead node", true))
}
