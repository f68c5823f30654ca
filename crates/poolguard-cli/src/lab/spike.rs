//! `spike`: HikariCP's spike test. 50 simultaneous requests, 150 ms per connect, 2 ms per
//! query, max 50, min idle 5: how many connections does the pool open?
//!
//! The pool-side code is generic over the backend ([`Workload`] + [`Faults`]); the run
//! function picks the in-process simulator (latencies set on it).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn::{Manager, Pool};
use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Recorder, Table};

/// How often the pool's size and waiters are sampled during the spike.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);

/// One spike's figures.
pub(crate) struct SpikeRow {
    cells: Vec<String>,
    label: String,
    /// Opens one connection per waiter (the naive side).
    per_waiter: bool,
    opened: u64,
    at_end: u64,
    lat: HistogramSnapshot,
    /// (seconds since the spike, (size, waiters)).
    samples: Vec<(f64, (usize, usize))>,
}

/// One spike against a fresh pool.
pub(crate) async fn spike<M>(backend: M, label: &str, concurrent_opens: usize) -> SpikeRow
where
    M: Manager + Workload + Faults + Clone,
{
    let mut row = SpikeRow {
        cells: vec![label.to_owned()],
        label: label.to_owned(),
        per_waiter: concurrent_opens >= 50,
        opened: 0,
        at_end: 0,
        lat: Histogram::new().snapshot(),
        samples: Vec::new(),
    };
    let pool = match Pool::builder(backend.clone())
        .name(label)
        .max_size(50)
        .min_idle(5)
        .max_concurrent_opens(concurrent_opens)
        .acquire_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            row.cells.push(format!("config error: {e}"));
            return row;
        }
    };
    let warm_deadline = Instant::now() + Duration::from_secs(5);
    while pool.status().idle < 5 && Instant::now() < warm_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = pool.stats().created;
    let sampled = pool.clone();
    let sampler = Sampler::start(SAMPLE_EVERY, 512, move || {
        let s = sampled.status();
        (s.size, s.waiters)
    });
    let lat = Arc::new(Histogram::new());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let pool = pool.clone();
        let backend = backend.clone();
        let lat = Arc::clone(&lat);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut c = pool.get().await.map_err(|e| e.to_string())?;
            backend.work(&mut c).await.map_err(|e| e.to_string())?;
            lat.record(t.elapsed());
            Ok::<(), String>(())
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let took = start.elapsed();
    // Let opens started by the spike finish, then count.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let offset = start.duration_since(sampler.started()).as_secs_f64();
    row.samples = sampler
        .stop()
        .into_iter()
        .map(|(t, v)| (t - offset, v))
        .collect();
    let s = lat.snapshot();
    let opened = pool.stats().created - before;
    row.opened = opened;
    row.at_end = before + opened;
    row.cells.extend([
        format!("{}", before + opened),
        format!("{opened}"),
        format!("{:.1?}", s.p50()),
        format!("{:.1?}", s.p99()),
        format!("{took:.1?}"),
        format!("{failed}"),
    ]);
    row.lat = s;
    row
}

/// The verdict: the default pool (first row) against opening one per waiter.
fn verdict(rows: &[SpikeRow]) -> String {
    let (Some(pg), Some(naive)) = (rows.first(), rows.iter().find(|r| r.per_waiter)) else {
        return "no row opening one connection per waiter to compare".into();
    };
    format!(
        "poolguard opened {} connection(s) for the spike (ending with {}) where opening one per \
         waiter opened {} (ending with {}), {} fewer; request p99 {:.1?} vs {:.1?}",
        pg.opened,
        pg.at_end,
        naive.opened,
        naive.at_end,
        report::times(naive.opened as f64, pg.opened.max(1) as f64),
        pg.lat.p99(),
        naive.lat.p99()
    )
}

/// Runs one spike per `(label, max_concurrent_opens)`, one after the other (side by side
/// would share the backend's connect path and skew what the table compares), and records the
/// table, its verdict and charts.
pub(crate) async fn table<M, F, Fut>(
    out: &Recorder,
    title: &str,
    backend: F,
    rows: &[(&str, usize)],
) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<M, String>>,
{
    let mut t = Table::new([
        title,
        "connections at end",
        "opened by spike",
        "request p50",
        "request p99",
        "all served in",
        "failed",
    ]);
    let mut done = Vec::new();
    for (label, opens) in rows {
        out.step(format!("spike: {label}"));
        let r = spike(backend().await?, label, *opens).await;
        t.row(r.cells.clone());
        done.push(r);
    }
    out.table(&t, verdict(&done));
    let role = |r: &SpikeRow| {
        if r.per_waiter {
            Role::Naive
        } else {
            Role::Poolguard
        }
    };
    let x = || Axis::new("time since the spike", Unit::Seconds);
    let mut size = Chart::new(
        "connections (size) during the spike",
        x(),
        Axis::new("connections", Unit::Count),
    );
    let mut waiters = Chart::new(
        "callers waiting during the spike",
        x(),
        Axis::new("waiters", Unit::Count),
    );
    for r in &done {
        size = size.series(Series::new(
            &r.label,
            role(r),
            report::points(&r.samples, 0.0, |s| s.0 as f64),
        ));
        waiters = waiters.series(Series::new(
            &r.label,
            role(r),
            report::points(&r.samples, 0.0, |s| s.1 as f64),
        ));
    }
    out.chart(size);
    out.chart(waiters);
    let dists: Vec<(&str, Role, &HistogramSnapshot)> = done
        .iter()
        .map(|r| (r.label.as_str(), role(r), &r.lat))
        .collect();
    out.chart(report::latency_chart(
        "request latency in the spike",
        &dists,
    ));
    Ok(())
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let sim = || async {
        let sim = SimManager::new();
        sim.latency(Op::Connect, Duration::from_millis(150))
            .latency(Op::Query, Duration::from_millis(2))
            .with_reset(false);
        Ok::<_, String>(sim)
    };
    rt.block_on(table(
        &ctx.out,
        "pool (simulated db: connect 150 ms, query 2 ms)",
        sim,
        &[
            ("poolguard (max_concurrent_opens 1, default)", 1),
            ("poolguard, max_concurrent_opens 2", 2),
            ("open one per waiter (max_concurrent_opens 50)", 50),
        ],
    ))?;
    ctx.out.say(
        "HikariCP's yardstick: 5-6 connections at the end; pools that open per waiter: 40-45.",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, opens: usize, opened: u64, p99_ms: u64) -> SpikeRow {
        let h = Histogram::new();
        h.record(Duration::from_millis(p99_ms));
        SpikeRow {
            cells: Vec::new(),
            label: label.into(),
            per_waiter: opens >= 50,
            opened,
            at_end: 5 + opened,
            lat: h.snapshot(),
            samples: Vec::new(),
        }
    }

    /// The verdict is computed from the rows: the default pool against one per waiter.
    #[test]
    fn the_spike_verdict_compares_the_default_with_one_open_per_waiter() {
        let v = verdict(&[row("pg", 1, 2, 30), row("naive", 50, 40, 31)]);
        assert!(v.starts_with("poolguard opened 2 connection(s)"), "{v}");
        assert!(
            v.contains("(ending with 7)") && v.contains("opened 40 (ending with 45)"),
            "{v}"
        );
        assert!(v.contains("20x fewer"), "{v}");
        let v = verdict(&[row("pg", 1, 2, 30)]);
        assert!(v.starts_with("no row"), "{v}");
    }
}
