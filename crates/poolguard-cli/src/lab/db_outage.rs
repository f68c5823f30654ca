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
use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Recorder, Table};

const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const CLIENTS: usize = 16;
/// How often the pool's size and waiters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The phases of a row: healthy load, the fault, load after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phases {
    healthy: Duration,
    outage: Duration,
    after: Duration,
    restart: Duration,
}

impl Phases {
    /// The lab's phases. `--quick`: a third of the healthy and recovery phases and a 2 s
    /// outage (long enough, against the 2 s acquire timeout, for the breaker to show); the
    /// 0.2 s restart is kept.
    pub(crate) fn new(quick: bool) -> Self {
        let d = if quick { 3 } else { 1 };
        Self {
            healthy: Duration::from_secs(1) / d,
            outage: Duration::from_secs(if quick { 2 } else { 3 }),
            after: Duration::from_secs(2) / d,
            restart: Duration::from_millis(200),
        }
    }
}

/// A pool status sample: (size, in use, waiters).
type Sample = (usize, usize, usize);

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
    /// A dead node for the outage window.
    Outage,
    /// A restart: open connections end and connects are refused...
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
    phases: Phases,
) -> Result<Run<M>, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = pool(backend.clone(), label, breaker)?;
    tokio::time::sleep(Duration::from_millis(300)).await; // warm
    let sampled = pool.clone();
    let sampler = Sampler::start(SAMPLE_EVERY, 1024, move || {
        let s = sampled.status();
        (s.size, s.in_use, s.waiters)
    });
    let t0 = Instant::now();
    let lasts = if fault == Fault::Outage {
        phases.outage
    } else {
        phases.restart
    };
    let end = phases.healthy + lasts + phases.after;
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
    tokio::time::sleep(phases.healthy).await;
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
    let offset = t0.duration_since(sampler.started()).as_secs_f64();
    let samples = sampler
        .stop()
        .into_iter()
        .map(|(t, v)| (t - offset, v))
        .collect();
    let all = outcomes.lock().clone();
    Ok(Run {
        all,
        began,
        back,
        pool,
        samples,
    })
}

/// What one row under load observed.
struct Run<M: Manager> {
    all: Vec<Outcome>,
    /// When the fault began and ended, from the load's start.
    began: Duration,
    back: Duration,
    pool: Pool<M>,
    /// (seconds from the load's start, pool status), every [`SAMPLE_EVERY`].
    samples: Vec<(f64, Sample)>,
}

/// The first success after `back`.
fn first_success(all: &[Outcome], back: Duration) -> Option<Duration> {
    all.iter()
        .filter(|o| o.ok && o.start + o.took >= back)
        .map(|o| o.start + o.took - back)
        .min()
}

fn show(d: Option<Duration>) -> String {
    d.map_or("never".to_owned(), |d| format!("{d:.1?}"))
}

/// Failed requests per 100 ms (by when they started) as chart points.
fn failures_per_100ms(all: &[Outcome]) -> Vec<[f64; 2]> {
    let Some(last) = all.iter().map(|o| o.start).max() else {
        return Vec::new();
    };
    let n = (last.as_millis() / 100) as usize + 1;
    let mut bins = vec![0u64; n];
    for o in all.iter().filter(|o| !o.ok) {
        bins[(o.start.as_millis() / 100) as usize] += 1;
    }
    bins.iter()
        .enumerate()
        .map(|(i, c)| [i as f64 * 0.1, *c as f64])
        .collect()
}

/// One row of the dead-node table, with the figures its verdict and charts use.
pub(crate) struct OutageRow {
    pub(crate) cells: Vec<String>,
    label: String,
    breaker: bool,
    hung: u64,
    fail_lat: HistogramSnapshot,
    first_success: Option<Duration>,
    began: Duration,
    back: Duration,
    samples: Vec<(f64, Sample)>,
    per_100ms: Vec<[f64; 2]>,
}

/// One row of the dead-node table.
pub(crate) async fn scenario<M>(
    backend: M,
    breaker: Breaker,
    phases: Phases,
) -> Result<OutageRow, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let label = match breaker {
        Breaker::Off => "without breaker".to_owned(),
        Breaker::On { backoff, max } => {
            format!("breaker (3 failures), backoff {backoff:?} -> {max:?}")
        }
    };
    let run = under_load(backend, &label, breaker, Fault::Outage, phases).await?;
    let (all, began, back) = (&run.all, run.began, run.back);
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
    let first = first_success(all, back);
    Ok(OutageRow {
        cells: vec![
            label.clone(),
            failures.to_string(),
            format!("{:.1?}", s.p50()),
            format!("{:.1?}", s.p99()),
            hung.to_string(),
            run.pool.stats().unavailable.to_string(),
            show(first),
        ],
        label,
        breaker: matches!(breaker, Breaker::On { .. }),
        hung,
        fail_lat: s,
        first_success: first,
        began,
        back,
        per_100ms: failures_per_100ms(all),
        samples: run.samples,
    })
}

/// The dead-node table's verdict: the default breaker (the last row with one) against none.
fn outage_verdict(rows: &[&OutageRow]) -> String {
    let (Some(off), Some(on)) = (
        rows.iter().find(|r| !r.breaker),
        rows.iter().rev().find(|r| r.breaker),
    ) else {
        return "no row with and without a breaker to compare".into();
    };
    let recovery = match (on.first_success, off.first_success) {
        (Some(a), Some(b)) if a >= b => format!("{:.1?} later than without", a - b),
        (Some(a), Some(b)) => format!("{:.1?} sooner than without", b - a),
        (a, b) => format!("{} with, {} without", show(a), show(b)),
    };
    format!(
        "breaker: failures answered in {:.1?} (p50) instead of {:.1?}, {} hung >= 1 s instead of {}; \
         first success after recovery {recovery}",
        on.fail_lat.p50(),
        off.fail_lat.p50(),
        on.hung,
        off.hung
    )
}

/// One row of the restart table.
struct RestartRow {
    cells: Vec<String>,
    label: String,
    breaker: bool,
    connects: u64,
    first_success: Option<Duration>,
    per_100ms: Vec<[f64; 2]>,
    began: Duration,
    back: Duration,
}

async fn restart<M>(
    backend: M,
    label: &str,
    breaker: Breaker,
    fault: Fault,
    phases: Phases,
) -> Result<RestartRow, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let run = under_load(backend, label, breaker, fault, phases).await?;
    let all = &run.all;
    let failed = all.iter().filter(|o| !o.ok && o.start >= run.began).count();
    let fast = all.iter().filter(|o| o.unavailable).count();
    let stats = run.pool.stats();
    let connects = stats.created + stats.connect_failures;
    let first = first_success(all, run.back);
    Ok(RestartRow {
        cells: vec![
            label.to_owned(),
            failed.to_string(),
            fast.to_string(),
            connects.to_string(),
            show(first),
        ],
        label: label.to_owned(),
        breaker: matches!(breaker, Breaker::On { .. }),
        connects,
        first_success: first,
        per_100ms: failures_per_100ms(all),
        began: run.began,
        back: run.back,
    })
}

/// The restart table's verdict: today's default (row 3) against the former default (row 2)
/// and no breaker (row 1).
fn restart_verdict(rows: &[&RestartRow]) -> String {
    let off = rows.iter().find(|r| !r.breaker);
    let breakers: Vec<&&RestartRow> = rows.iter().filter(|r| r.breaker).collect();
    let (Some(off), [former, today, ..]) = (off, breakers.as_slice()) else {
        return "not enough rows to compare".into();
    };
    format!(
        "planned restart: first success {} after the server is back with the default backoff \
         vs {} with the former 1 s backoff and {} without a breaker, with {} connects tried \
         instead of {} without",
        show(today.first_success),
        show(former.first_success),
        show(off.first_success),
        today.connects,
        off.connects
    )
}

fn role(breaker: bool) -> Role {
    if breaker {
        Role::Poolguard
    } else {
        Role::Naive
    }
}

/// The dead-node table's charts: pool size and waiters over time, failures per 100 ms, the
/// failure latency distribution.
fn outage_charts(out: &Recorder, rows: &[&OutageRow]) {
    let Some(first) = rows.first() else { return };
    let (began, back) = (first.began.as_secs_f64(), first.back.as_secs_f64());
    let timeline = |title: &str, y: Axis| {
        Chart::new(
            title,
            Axis::new("time since the load started", Unit::Seconds),
            y,
        )
        .mark(began, "outage")
        .mark(back, "back")
    };
    let mut size = timeline(
        "connections (size) during the outage",
        Axis::new("connections", Unit::Count),
    );
    let mut waiters = timeline(
        "callers waiting for a connection during the outage",
        Axis::new("waiters", Unit::Count),
    );
    let mut failures = timeline(
        "failed requests per 100 ms",
        Axis::new("failures", Unit::Count),
    );
    for r in rows {
        let role = role(r.breaker);
        size = size.series(Series::new(
            &r.label,
            role,
            report::points(&r.samples, 0.0, |s| s.0 as f64),
        ));
        waiters = waiters.series(Series::new(
            &r.label,
            role,
            report::points(&r.samples, 0.0, |s| s.2 as f64),
        ));
        failures = failures.series(Series::new(&r.label, role, r.per_100ms.clone()));
    }
    out.chart(size);
    out.chart(waiters);
    out.chart(failures);
    let dists: Vec<(&str, Role, &HistogramSnapshot)> = rows
        .iter()
        .map(|r| (r.label.as_str(), role(r.breaker), &r.fail_lat))
        .collect();
    out.chart(report::latency_chart(
        "how long a failed request took during the outage",
        &dists,
    ));
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
pub(crate) async fn tables<M, F, Fut>(
    out: &Recorder,
    quick: bool,
    backend: F,
    what: &str,
    signature: bool,
) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<M, String>>,
{
    let phases = Phases::new(quick);
    let mut t = Table::new([
        format!("pool (16 clients, {:.1?} outage = {what})", phases.outage),
        "failed requests during outage".into(),
        "failure p50".into(),
        "failure p99".into(),
        "hung >= 1 s".into(),
        "fast failures by breaker (whole run)".into(),
        "first success after recovery".into(),
    ]);
    out.step("dead node: without breaker and two breakers, side by side");
    let (a, b, c) = tokio::join!(
        async { scenario(backend().await?, Breaker::Off, phases).await },
        async { scenario(backend().await?, OLD_LAB, phases).await },
        async { scenario(backend().await?, NEW_LAB, phases).await },
    );
    let rows = [a?, b?, c?];
    for r in &rows {
        t.row(r.cells.clone());
    }
    let refs: Vec<&OutageRow> = rows.iter().collect();
    out.table(&t, outage_verdict(&refs));
    outage_charts(out, &refs);

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
    out.step("planned restart: four pools side by side");
    let (a, b, c, d) = tokio::join!(
        async {
            restart(
                backend().await?,
                "without breaker",
                Breaker::Off,
                Fault::RestartRefused,
                phases,
            )
            .await
        },
        async {
            restart(
                backend().await?,
                "breaker, 1 s backoff (former default), refused connects",
                former,
                Fault::RestartRefused,
                phases,
            )
            .await
        },
        async {
            restart(
                backend().await?,
                "breaker, 25 ms backoff (default), refused connects",
                default,
                Fault::RestartRefused,
                phases,
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
                phases,
            )
            .await
            .map(Some)
        },
    );
    let mut rows = vec![a?, b?, c?];
    rows.extend(d?);
    for r in &rows {
        t.row(r.cells.clone());
    }
    let refs: Vec<&RestartRow> = rows.iter().collect();
    out.table(&t, restart_verdict(&refs));
    if let Some(first) = rows.first() {
        let mut c = Chart::new(
            "failed requests per 100 ms around the planned restart",
            Axis::new("time since the load started", Unit::Seconds),
            Axis::new("failures", Unit::Count),
        )
        .mark(first.began.as_secs_f64(), "restart")
        .mark(first.back.as_secs_f64(), "back");
        for r in &rows {
            c = c.series(Series::new(&r.label, role(r.breaker), r.per_100ms.clone()));
        }
        out.chart(c);
    }
    Ok(())
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
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
    rt.block_on(tables(&ctx.out, ctx.quick, sim, "dead node", true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(breaker: bool, p50_ms: u64, hung: u64, first_ms: Option<u64>) -> OutageRow {
        let h = Histogram::new();
        h.record(Duration::from_millis(p50_ms));
        OutageRow {
            cells: Vec::new(),
            label: String::new(),
            breaker,
            hung,
            fail_lat: h.snapshot(),
            first_success: first_ms.map(Duration::from_millis),
            began: Duration::ZERO,
            back: Duration::ZERO,
            samples: Vec::new(),
            per_100ms: Vec::new(),
        }
    }

    /// The verdict is computed from the rows: change a figure and the sentence changes.
    #[test]
    fn the_outage_verdict_compares_the_default_breaker_with_none() {
        let off = row(false, 2000, 24, Some(30));
        let old = row(true, 1, 20, Some(400));
        let new = row(true, 1, 12, Some(90));
        let v = outage_verdict(&[&off, &old, &new]);
        assert!(v.starts_with("breaker: failures answered in"), "{v}");
        assert!(v.contains("instead of 2.0s"), "{v}");
        assert!(v.contains("12 hung >= 1 s instead of 24"), "{v}");
        assert!(v.contains("60.0ms later than without"), "{v}");
        let never = row(true, 1, 0, None);
        let v = outage_verdict(&[&off, &never]);
        assert!(v.contains("never with, 30.0ms without"), "{v}");
    }

    #[test]
    fn failures_are_binned_by_start_time() {
        let o = |ms: u64, ok: bool| Outcome {
            start: Duration::from_millis(ms),
            took: Duration::ZERO,
            ok,
            unavailable: false,
        };
        let p = failures_per_100ms(&[o(10, false), o(50, false), o(150, true), o(250, false)]);
        assert_eq!(p, [[0.0, 2.0], [0.1, 0.0], [0.2, 1.0]]);
    }
}
