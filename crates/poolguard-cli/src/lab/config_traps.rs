//! `config-traps`: the seed's table of pool settings that look harmless and hurt.
//!
//! 1. `min_idle = 0` vs kept warm, after an idle period (idle timeout scaled 10 min -> 0.5 s).
//! 2. Validation timeout 30 s vs 1 s against a dead node (scaled by 1/10: 3 s vs 100 ms).
//! 3. Abandoned connections reclaimed on borrow (modelled here, as DBCP's
//!    `removeAbandonedOnBorrow` does it: the borrower kills the long holder) vs poolguard's
//!    maintenance abandonment (the holder keeps its connection; its slot is replaced).
//!
//! Pool-side code is generic over the backend ([`Workload`] + [`Faults`]).

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn::{Error, Manager, Pool};
use poolguard::diag::Histogram;
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};

use super::{LabCtx, Table};

fn sim(connect_ms: u64) -> SimManager {
    let s = SimManager::new();
    s.latency(Op::Connect, Duration::from_millis(connect_ms))
        .latency(Op::Query, Duration::from_millis(2))
        .with_reset(false);
    s
}

/// Trap 1: a burst after an idle period.
pub(crate) async fn cold_start<M>(backend: M, min_idle: usize) -> Result<Vec<String>, String>
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
    Ok(vec![
        format!("min_idle {min_idle}"),
        idle_at_burst.to_string(),
        (pool.stats().created - before).to_string(),
        format!("{:.1?}", s.p50()),
        format!("{:.1?}", s.p99()),
    ])
}

/// Trap 2: the first request after the node died.
pub(crate) async fn dead_node<M>(backend: M, validation: Duration) -> Result<Vec<String>, String>
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
    Ok(vec![
        format!("validation_timeout {validation:?}"),
        format!("{took:.1?}"),
        answer,
    ])
}

/// Trap 3: a legitimate 1.5 s transaction with abandonment at 0.5 s, pool of 2, while other
/// requests keep coming. `on_borrow`: the model of reclaim-on-borrow.
pub(crate) async fn long_transaction<M>(backend: M, on_borrow: bool) -> Result<Vec<String>, String>
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
    Ok(vec![
        if on_borrow {
            "reclaim on borrow (modelled)"
        } else {
            "poolguard: abandon by maintenance"
        }
        .to_owned(),
        outcome,
        served.to_string(),
        pool.stats().abandoned.to_string(),
    ])
}

pub(crate) fn run(_ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut t = Table::new([
            "1. burst of 10 after 1.2 s idle (connect 150 ms)",
            "idle at burst",
            "connects in burst",
            "request p50",
            "request p99",
        ]);
        // Each pair of pools is independent (each its own simulated server): they run side
        // by side so the lab takes one row's time per table, not two.
        let (a, b) = tokio::join!(cold_start(sim(150), 0), cold_start(sim(150), 5));
        t.row(a?);
        t.row(b?);
        t.print();
        let mut t = Table::new([
            "2. first get after the node died (scaled 1/10)",
            "caller got an answer after",
            "answer",
        ]);
        let (a, b) = tokio::join!(
            dead_node(sim(5), Duration::from_secs(3)),
            dead_node(sim(5), Duration::from_millis(100))
        );
        t.row(a?);
        t.row(b?);
        t.print();
        let mut t = Table::new([
            "3. 1.5 s transaction, abandon at 0.5 s, pool of 2",
            "long transaction",
            "other requests served",
            "abandoned by maintenance",
        ]);
        let (a, b) = tokio::join!(
            long_transaction(sim(5), true),
            long_transaction(sim(5), false)
        );
        t.row(a?);
        t.row(b?);
        t.print();
        Ok::<(), String>(())
    })
}
