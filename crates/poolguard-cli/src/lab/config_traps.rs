//! `config-traps`: the seed's table of pool settings that look harmless and hurt.
//!
//! 1. `min_idle = 0` vs kept warm, after an idle period (idle timeout scaled 10 min -> 0.5 s).
//! 2. Validation timeout 30 s vs 1 s against a dead node (scaled by 1/10: 3 s vs 100 ms).
//! 3. Abandoned connections reclaimed on borrow (modelled here, as DBCP's
//!    `removeAbandonedOnBorrow` does it: the borrower kills the long holder) vs poolguard's
//!    maintenance abandonment (the holder keeps its connection; its slot is replaced).
//!
//! Pool-side code is generic over the backend ([`Workload`] + [`Faults`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn::{Error, Manager, Pool};
use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Recorder, Table};

fn sim(connect_ms: u64) -> SimManager {
    let s = SimManager::new();
    s.latency(Op::Connect, Duration::from_millis(connect_ms))
        .latency(Op::Query, Duration::from_millis(2))
        .with_reset(false);
    s
}

/// Trap 1's figures for one pool.
pub(crate) struct ColdStart {
    cells: Vec<String>,
    min_idle: usize,
    connects: u64,
    lat: HistogramSnapshot,
    /// (seconds since the pool was built, idle connections).
    idle: Vec<(f64, usize)>,
}

/// Trap 1: a burst after an idle period.
pub(crate) async fn cold_start<M>(backend: M, min_idle: usize) -> Result<ColdStart, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = Pool::builder(backend.clone())
        .max_size(10)
        .min_idle(min_idle)
        .idle_timeout(Some(Duration::from_millis(500)))
        .keepalive_interval(None)
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .map_err(|e| e.to_string())?;
    let sampled = pool.clone();
    let sampler = Sampler::start(Duration::from_millis(20), 256, move || {
        sampled.status().idle
    });
    let burst = |pool: Pool<M>, backend: M| async move {
        let lat = Arc::new(Histogram::new());
        let mut ts = Vec::new();
        for _ in 0..10 {
            let (pool, backend, lat) = (pool.clone(), backend.clone(), Arc::clone(&lat));
            ts.push(tokio::spawn(async move {
                let t = Instant::now();
                if let Ok(mut c) = pool.get().await {
                    let _ = backend.work(&mut c).await;
                }
                lat.record(t.elapsed());
            }));
        }
        for t in ts {
            let _ = t.await;
        }
        lat.snapshot()
    };
    burst(pool.clone(), backend.clone()).await; // traffic opens connections
    tokio::time::sleep(Duration::from_millis(1200)).await; // quiet period
    let before = pool.stats().created;
    let idle_at_burst = pool.status().idle;
    let s = burst(pool.clone(), backend).await;
    let connects = pool.stats().created - before;
    Ok(ColdStart {
        cells: vec![
            format!("min_idle {min_idle}"),
            idle_at_burst.to_string(),
            connects.to_string(),
            format!("{:.1?}", s.p50()),
            format!("{:.1?}", s.p99()),
        ],
        min_idle,
        connects,
        lat: s,
        idle: sampler.stop(),
    })
}

/// Trap 2's figures for one pool.
pub(crate) struct DeadNode {
    cells: Vec<String>,
    validation: Duration,
    took: Duration,
    answer: String,
}

/// Trap 2: the first request after the node died.
pub(crate) async fn dead_node<M>(backend: M, validation: Duration) -> Result<DeadNode, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = Pool::builder(backend.clone())
        .max_size(4)
        .min_idle(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(1))
        .validation_timeout(validation)
        .keepalive_interval(None)
        .breaker_threshold(Some(3))
        .build()
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(300)).await; // warm
    backend.set_outage(true);
    tokio::time::sleep(Duration::from_millis(600)).await; // idle past the bypass window
    let t = Instant::now();
    let r = pool.get().await;
    let took = t.elapsed();
    backend.set_outage(false);
    let answer = match r {
        Ok(_) => "a connection (dead)".to_owned(),
        Err(Error::Timeout(_)) => "acquire timeout (caller hung)".to_owned(),
        Err(Error::Unavailable { .. }) => "unavailable (breaker open)".to_owned(),
        Err(e) => e.to_string(),
    };
    Ok(DeadNode {
        cells: vec![
            format!("validation_timeout {validation:?}"),
            format!("{took:.1?}"),
            answer.clone(),
        ],
        validation,
        took,
        answer,
    })
}

/// Trap 3: a legitimate 1.5 s transaction with abandonment at 0.5 s, pool of 2, while other
/// requests keep coming. `on_borrow`: the model of reclaim-on-borrow.
pub(crate) async fn long_transaction<M>(
    backend: M,
    on_borrow: bool,
) -> Result<LongTransaction, String>
where
    M: Manager + Workload + Faults + Clone,
{
    let abandon = Duration::from_millis(500);
    let pool = Pool::builder(backend.clone())
        .max_size(2)
        .acquire_timeout(Duration::from_secs(3))
        .leak_threshold(Some(abandon))
        .abandon_timeout((!on_borrow).then_some(abandon))
        .maintenance_interval(Duration::from_millis(50))
        .build()
        .map_err(|e| e.to_string())?;
    let killed = Arc::new(AtomicBool::new(false));
    let tx = {
        let (pool, backend, killed) = (pool.clone(), backend.clone(), Arc::clone(&killed));
        tokio::spawn(async move {
            let mut c = pool.get().await.map_err(|e| e.to_string())?;
            for _ in 0..15 {
                if killed.load(SeqCst) {
                    return Err("connection closed under the transaction".to_owned());
                }
                backend.work(&mut c).await.map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        })
    };
    // A second holder keeps the pool exhausted; other requests queue behind it.
    let hog = pool.get().await.map_err(|e| e.to_string())?;
    let lat = Histogram::new();
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_millis(1200) {
        let t = Instant::now();
        let got = if on_borrow {
            match tokio::time::timeout(Duration::from_millis(50), pool.get()).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    // Reclaim on borrow: kill whoever held a connection past the timeout.
                    if start.elapsed() >= abandon {
                        killed.store(true, SeqCst);
                    }
                    None
                }
            }
        } else {
            tokio::time::timeout(Duration::from_millis(50), pool.get())
                .await
                .ok()
                .and_then(Result::ok)
        };
        if let Some(mut c) = got {
            let _ = backend.work(&mut c).await;
            served += 1;
            lat.record(t.elapsed());
        }
    }
    drop(hog);
    let outcome = match tx.await {
        Ok(Ok(())) => "completed".to_owned(),
        Ok(Err(e)) => format!("FAILED: {e}"),
        Err(e) => format!("FAILED: {e}"),
    };
    let abandoned = pool.stats().abandoned;
    Ok(LongTransaction {
        cells: vec![
            if on_borrow {
                "reclaim on borrow (modelled)"
            } else {
                "poolguard: abandon by maintenance"
            }
            .to_owned(),
            outcome.clone(),
            served.to_string(),
            abandoned.to_string(),
        ],
        on_borrow,
        completed: outcome == "completed",
        served,
        abandoned,
    })
}

/// Trap 3's figures for one pool.
pub(crate) struct LongTransaction {
    cells: Vec<String>,
    on_borrow: bool,
    completed: bool,
    served: u64,
    abandoned: u64,
}

fn cold_verdict(rows: &[ColdStart]) -> String {
    let (Some(cold), Some(warm)) = (
        rows.iter().find(|r| r.min_idle == 0),
        rows.iter().find(|r| r.min_idle > 0),
    ) else {
        return "no cold and warm pool to compare".into();
    };
    format!(
        "min_idle {} answered the burst at p99 {:.1?}, min_idle 0 at {:.1?} ({} slower), opening {} connection(s) in the burst instead of {}",
        warm.min_idle,
        warm.lat.p99(),
        cold.lat.p99(),
        report::times(
            cold.lat.p99().as_secs_f64(),
            warm.lat.p99().as_secs_f64()
        ),
        cold.connects,
        warm.connects
    )
}

fn dead_node_verdict(rows: &[DeadNode]) -> String {
    let (Some(long), Some(short)) = (
        rows.iter().max_by_key(|r| r.validation),
        rows.iter().min_by_key(|r| r.validation),
    ) else {
        return "no rows".into();
    };
    format!(
        "validation_timeout {:?} gave the caller an answer after {:.1?} ({}) where {:?} kept it waiting {:.1?} ({})",
        short.validation, short.took, short.answer, long.validation, long.took, long.answer
    )
}

fn transaction_verdict(rows: &[LongTransaction]) -> String {
    let (Some(borrow), Some(pg)) = (
        rows.iter().find(|r| r.on_borrow),
        rows.iter().find(|r| !r.on_borrow),
    ) else {
        return "no rows to compare".into();
    };
    let fate = |r: &LongTransaction| {
        if r.completed {
            "completed"
        } else {
            "was killed"
        }
    };
    format!(
        "with reclaim on borrow the legitimate long transaction {}; with poolguard's maintenance abandonment it {} ({} connection(s) abandoned and replaced), while {} vs {} other requests were served",
        fate(borrow),
        fate(pg),
        pg.abandoned,
        borrow.served,
        pg.served
    )
}

/// The three traps' tables, verdicts and charts. `cold`: trap 1's backends (a slow connect
/// shows the cost); `other`: traps 2 and 3's. `what`: the title suffixes of tables 1 and 2.
pub(crate) async fn tables<M, N, F, G, Fut, Gut>(
    out: &Recorder,
    cold: F,
    other: G,
    what: [&str; 2],
) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    N: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<M, String>>,
    G: Fn() -> Gut,
    Gut: Future<Output = Result<N, String>>,
{
    let mut t = Table::new([
        format!("1. burst of 10 after 1.2 s idle{}", what[0]),
        "idle at burst".into(),
        "connects in burst".into(),
        "request p50".into(),
        "request p99".into(),
    ]);
    // Each pair of pools is independent (each its own backend): they run side by side so the
    // lab takes one row's time per table, not two.
    out.step("1. min_idle 0 vs 5 after an idle period");
    let (a, b) = tokio::join!(async { cold_start(cold().await?, 0).await }, async {
        cold_start(cold().await?, 5).await
    });
    let rows = [a?, b?];
    for r in &rows {
        t.row(r.cells.clone());
    }
    out.table(&t, cold_verdict(&rows));
    let role = |r: &ColdStart| {
        if r.min_idle == 0 {
            Role::Naive
        } else {
            Role::Poolguard
        }
    };
    let mut idle = Chart::new(
        "idle connections through the quiet period and the burst",
        Axis::new("time since the pool was built", Unit::Seconds),
        Axis::new("idle connections", Unit::Count),
    );
    for r in &rows {
        idle = idle.series(Series::new(
            format!("min_idle {}", r.min_idle),
            role(r),
            report::points(&r.idle, 0.0, |v| *v as f64),
        ));
    }
    out.chart(idle);
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("min_idle {}", r.min_idle))
        .collect();
    let dists: Vec<(&str, Role, &HistogramSnapshot)> = rows
        .iter()
        .zip(&names)
        .map(|(r, n)| (n.as_str(), role(r), &r.lat))
        .collect();
    out.chart(report::latency_chart(
        "request latency in the burst after the idle period",
        &dists,
    ));

    let mut t = Table::new([
        format!("2. first get after the node died{}", what[1]),
        "caller got an answer after".into(),
        "answer".into(),
    ]);
    out.step("2. validation timeout 3 s vs 100 ms on a dead node");
    let (a, b) = tokio::join!(
        async { dead_node(other().await?, Duration::from_secs(3)).await },
        async { dead_node(other().await?, Duration::from_millis(100)).await }
    );
    let rows = [a?, b?];
    for r in &rows {
        t.row(r.cells.clone());
    }
    out.table(&t, dead_node_verdict(&rows));

    let mut t = Table::new([
        "3. 1.5 s transaction, abandon at 0.5 s, pool of 2",
        "long transaction",
        "other requests served",
        "abandoned by maintenance",
    ]);
    out.step("3. reclaim on borrow vs abandonment by maintenance");
    let (a, b) = tokio::join!(
        async { long_transaction(other().await?, true).await },
        async { long_transaction(other().await?, false).await }
    );
    let rows = [a?, b?];
    for r in &rows {
        t.row(r.cells.clone());
    }
    out.table(&t, transaction_verdict(&rows));
    Ok(())
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    rt.block_on(tables(
        &ctx.out,
        || async { Ok::<_, String>(sim(150)) },
        || async { Ok::<_, String>(sim(5)) },
        [" (connect 150 ms)", " (scaled 1/10)"],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(on_borrow: bool, completed: bool, served: u64, abandoned: u64) -> LongTransaction {
        LongTransaction {
            cells: Vec::new(),
            on_borrow,
            completed,
            served,
            abandoned,
        }
    }

    #[test]
    fn the_trap_verdicts_follow_the_figures() {
        let v = transaction_verdict(&[tx(true, false, 214, 0), tx(false, true, 207, 2)]);
        assert!(v.contains("long transaction was killed;"), "{v}");
        assert!(v.contains("it completed (2 connection(s) abandoned"), "{v}");
        assert!(v.contains("214 vs 207 other requests"), "{v}");
        let v = transaction_verdict(&[tx(true, true, 1, 0), tx(false, false, 1, 0)]);
        assert!(
            v.contains("long transaction completed;") && v.contains("it was killed"),
            "{v}"
        );

        let node = |ms: u64, took_ms: u64, answer: &str| DeadNode {
            cells: Vec::new(),
            validation: Duration::from_millis(ms),
            took: Duration::from_millis(took_ms),
            answer: answer.into(),
        };
        let v = dead_node_verdict(&[node(3000, 3000, "hung"), node(100, 1100, "timed out")]);
        assert_eq!(
            v,
            "validation_timeout 100ms gave the caller an answer after 1.1s (timed out) where 3s \
             kept it waiting 3.0s (hung)"
        );
    }
}
