//! `conn-leak`: a handler that never returns its connection. The pool names the site (a
//! leak report from maintenance, the doctor) and the acquire-timeout error names the holder.
//!
//! Generic over the backend ([`Workload`] + [`Faults`]); the run function uses the simulator.

use std::time::{Duration, Instant};

use poolguard::conn::{Manager, Pool, PooledConnection};
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Recorder, Table};

/// The buggy handler: takes a connection and keeps it (stored away, never dropped).
async fn leaky_handler<M: Manager>(
    pool: &Pool<M>,
    stash: &mut Vec<PooledConnection<M>>,
) -> Result<(), String> {
    let c = pool.get().await.map_err(|e| e.to_string())?;
    stash.push(c);
    Ok(())
}

/// A correct handler.
async fn good_handler<M: Manager + Workload>(pool: &Pool<M>, backend: &M) -> Result<(), String> {
    let mut c = pool.get().await.map_err(|e| e.to_string())?;
    backend.work(&mut c).await.map_err(|e| e.to_string())
}

/// Runs the leak and records its table (with a verdict) and the pool's counts over time.
pub(crate) async fn scenario<M>(out: &Recorder, backend: M) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = Pool::builder(backend.clone())
        .name("leaky-service")
        .max_size(4)
        .acquire_timeout(Duration::from_millis(500))
        .leak_threshold(Some(Duration::from_millis(300)))
        .maintenance_interval(Duration::from_millis(50))
        .build()
        .map_err(|e| e.to_string())?;
    let sampled = pool.clone();
    let sampler = Sampler::start(Duration::from_millis(10), 256, move || {
        let (status, stats) = (sampled.status(), sampled.stats());
        (status.in_use, status.waiters, stats.leaks, stats.unleaked)
    });
    let start = Instant::now();
    let mut stash = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut first_timeout: Option<(Duration, String)> = None;
    // Every 5th request goes through the leaky handler, until the pool is dry.
    for i in 0..200u64 {
        let r = if i % 5 == 4 {
            leaky_handler(&pool, &mut stash).await
        } else {
            good_handler(&pool, &backend).await
        };
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                if first_timeout.is_none() {
                    first_timeout = Some((start.elapsed(), e));
                    break;
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // let maintenance see the leaks
    let stats = pool.stats();
    let doctor = pool.doctor();
    let leak = doctor.iter().find(|f| f.code == "conn.leak");
    let mut t = Table::new(["measure", "value"]);
    t.row([
        "requests served before the pool ran dry".into(),
        ok.to_string(),
    ]);
    t.row(["requests failed".into(), failed.to_string()]);
    t.row([
        "connections leaked (held by the leaky handler)".into(),
        stash.len().to_string(),
    ]);
    t.row([
        "leaks reported by maintenance (once each)".into(),
        stats.leaks.to_string(),
    ]);
    if let Some((at, e)) = &first_timeout {
        t.row(["first acquire timeout after".into(), format!("{at:.1?}")]);
        out.say(format!("acquire-timeout error (one log line):\n  {e}"));
    }
    if let Some(f) = leak {
        out.say(format!("doctor:\n  {f}"));
    }
    let leaked = stash.len();
    drop(stash);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let unleaked = pool.stats().unleaked;
    t.row([
        "'unleaked' reports after the stash was dropped".into(),
        unleaked.to_string(),
    ]);
    let offset = start.duration_since(sampler.started()).as_secs_f64();
    let samples = sampler.stop();
    let verdict = format!(
        "{leaked} connection(s) leaked of {max}: the pool ran dry after {ok} requests{timeout}; maintenance reported {leaks} of the {leaked} leaks with their call site{doctor}, and {unleaked} late return(s) were reported as 'unleaked'",
        max = pool.status().max_size,
        timeout = first_timeout
            .as_ref()
            .map(|(at, _)| format!(", the first caller then timed out after {at:.1?} with the holders named"))
            .unwrap_or_default(),
        leaks = stats.leaks,
        doctor = if leak.is_some() {
            ", the doctor named them"
        } else {
            ", the doctor did not name them"
        },
    );
    out.table(&t, verdict);
    let x = || Axis::new("time since the first request", Unit::Seconds);
    let mut c = Chart::new(
        "connections in use, waiters and leak reports over time",
        x(),
        Axis::new("count", Unit::Count),
    );
    for (name, f) in [
        ("in use", 0usize),
        ("waiters", 1),
        ("leaks reported", 2),
        ("'unleaked' reports", 3),
    ] {
        c = c.series(Series::new(
            name,
            Role::Poolguard,
            report::points(&samples, offset, |s| match f {
                0 => s.0 as f64,
                1 => s.1 as f64,
                2 => s.2 as f64,
                _ => s.3 as f64,
            }),
        ));
    }
    out.chart(c);
    Ok(())
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let sim = SimManager::new();
    sim.latency(Op::Query, Duration::from_millis(1))
        .latency(Op::Connect, Duration::from_millis(5));
    rt.block_on(scenario(&ctx.out, sim))
}
