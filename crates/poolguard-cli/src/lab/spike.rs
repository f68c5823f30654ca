//! `spike`: HikariCP's spike test. 50 simultaneous requests, 150 ms per connect, 2 ms per
//! query, max 50, min idle 5: how many connections does the pool open?
//!
//! The pool-side code is generic over the backend ([`Workload`] + [`Faults`]); the run
//! function picks the in-process simulator (latencies set on it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn::{Manager, Pool};
use poolguard::diag::Histogram;
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::{LabCtx, Table};

/// One spike against a fresh pool; returns a table row.
pub(crate) async fn spike<M>(backend: M, label: &str, concurrent_opens: usize) -> Vec<String>
where
    M: Manager + Workload + Faults + Clone,
{
    let pool = match Pool::builder(backend.clone())
        .name(label)
        .max_size(50)
        .min_idle(5)
        .max_concurrent_opens(concurrent_opens)
        .acquire_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(p) => p,
        Err(e) => return vec![label.to_owned(), format!("config error: {e}")],
    };
    let warm_deadline = Instant::now() + Duration::from_secs(5);
    while pool.status().idle < 5 && Instant::now() < warm_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = pool.stats().created;
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
    let s = lat.snapshot();
    let opened = pool.stats().created - before;
    vec![
        label.to_owned(),
        format!("{}", before + opened),
        format!("{opened}"),
        format!("{:.1?}", s.p50()),
        format!("{:.1?}", s.p99()),
        format!("{took:.1?}"),
        format!("{failed}"),
    ]
}

pub(crate) fn run(_ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let mut t = Table::new([
        "pool (simulated db: connect 150 ms, query 2 ms)",
        "connections at end",
        "opened by spike",
        "request p50",
        "request p99",
        "all served in",
        "failed",
    ]);
    rt.block_on(async {
        for (label, opens) in [
            ("poolguard (max_concurrent_opens 1, default)", 1),
            ("poolguard, max_concurrent_opens 2", 2),
            ("open one per waiter (max_concurrent_opens 50)", 50),
        ] {
            let sim = SimManager::new();
            sim.latency(Op::Connect, Duration::from_millis(150))
                .latency(Op::Query, Duration::from_millis(2))
                .with_reset(false);
            t.row(spike(sim, label, opens).await);
        }
    });
    t.print();
    println!(
        "HikariCP's yardstick: 5-6 connections at the end; pools that open per waiter: 40-45."
    );
    Ok(())
}
