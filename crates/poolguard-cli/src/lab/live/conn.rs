//! The connection-pool scenarios, live, against the in-process database simulator. Each
//! driver builds its pools, registers them, drives load until aborted, and calls
//! [`Ready::set`] once the fault shows in the pools' own figures.
//!
//! The lines marked `// live-site: NAME` are the call sites the doctor must name (the tests
//! read their line numbers from this file).

use std::time::Duration;

use poolguard::conn::{Pool, PooledConnection};
use poolguard::diag::Registry;
use poolguard_faults::sim::{Faults, Op, SimManager, Workload};
use tokio::task::JoinSet;

use super::Ready;

fn sim(connect: Duration, query: Duration) -> SimManager {
    let s = SimManager::new();
    s.latency(Op::Connect, connect)
        .latency(Op::Query, query)
        .with_reset(false);
    s
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `done` every 10 ms (the pool's figures are the events here).
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(ms(10)).await;
    }
}

/// One request: a connection, one query (under a 1 s statement timeout: a query that hangs
/// marks its connection broken), back.
async fn request(pool: &Pool<SimManager>, db: &SimManager) -> Result<(), String> {
    let mut c = pool.get().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(1), db.work(&mut c)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            c.mark_broken();
            Err("query timed out".into())
        }
    }
}

/// `n` tasks doing requests back to back (each pausing `gap` between two).
fn workers(
    set: &mut JoinSet<()>,
    n: usize,
    pool: &Pool<SimManager>,
    db: &SimManager,
    gap: Duration,
) {
    for _ in 0..n {
        let (pool, db) = (pool.clone(), db.clone());
        set.spawn(async move {
            loop {
                let _ = request(&pool, &db).await;
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
        });
    }
}

/// The healthy control: 8 workers on a pool kept warm with 8 idle and room for 16; plus a
/// well-used object pool.
pub(crate) async fn healthy(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(5), ms(20));
    let pool = Pool::builder(db.clone())
        .name("healthy-db")
        .max_size(16)
        .min_idle(8)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let bufs = poolguard::object::Pool::builder(|| Vec::<u8>::with_capacity(4096))
        .name("healthy-bufs")
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    registry.register(&bufs);
    until(|| pool.status().idle >= 8).await;
    let mut set = JoinSet::new();
    workers(&mut set, 8, &pool, &db, Duration::ZERO);
    let mut round = 0u64;
    loop {
        {
            let mut b = bufs.get();
            b.extend_from_slice(b"a request body");
        }
        round += 1;
        if round == 50 {
            ready.set(format!(
                "{} gets served, {} waited",
                pool.stats().gets,
                pool.stats().waited
            ));
        }
        tokio::time::sleep(ms(5)).await;
    }
}

/// Where the buggy handler puts the connections it keeps (shared, outliving the handler).
type Stash = std::sync::Arc<parking_lot::Mutex<Vec<PooledConnection<SimManager>>>>;

/// The buggy handler: takes a connection and keeps it.
async fn leaky_handler(pool: &Pool<SimManager>, stash: &Stash) -> Result<(), String> {
    let c = pool.get().await.map_err(|e| e.to_string())?; // live-site: leak
    stash.lock().push(c);
    Ok(())
}

/// `conn-leak`: every 5th request leaks; the pool (4) runs dry, gets time out. Each request
/// runs on a task of its own, as a server's handlers do.
pub(crate) async fn leak(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(5), ms(1));
    let pool = Pool::builder(db.clone())
        .name("leaky-service")
        .max_size(4)
        .acquire_timeout(ms(500))
        .leak_threshold(Some(ms(300)))
        .maintenance_interval(ms(50))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    let stash = Stash::default();
    for i in 0u64.. {
        let (pool2, db2, stash2) = (pool.clone(), db.clone(), stash.clone());
        let handler = tokio::spawn(async move {
            if i % 5 == 4 {
                leaky_handler(&pool2, &stash2).await
            } else {
                request(&pool2, &db2).await
            }
        });
        let _ = handler.await;
        let t = pool.stats();
        if !ready.is_set() && t.leaks >= 4 && t.timed_out >= 1 {
            ready.set(format!(
                "{} connections leaked and reported, {} gets timed out",
                t.leaks, t.timed_out
            ));
        }
        tokio::time::sleep(ms(20)).await;
    }
    Ok(())
}

/// `db-outage` / `db-outage-no-breaker`: 8 clients; the database goes down and stays down.
pub(crate) async fn outage(
    registry: Registry,
    mut ready: Ready,
    breaker: bool,
) -> Result<(), String> {
    let db = sim(ms(5), ms(2));
    let b = Pool::builder(db.clone())
        .name(if breaker {
            "orders-db (breaker)"
        } else {
            "orders-db (no breaker)"
        })
        .max_size(8)
        .min_idle(4)
        .acquire_timeout(ms(400))
        .connect_timeout(ms(200))
        .validation_timeout(ms(100))
        .maintenance_interval(ms(100));
    let b = if breaker {
        b.breaker_threshold(Some(3))
            .breaker_backoff(ms(200))
            .breaker_max_backoff(Duration::from_secs(1))
    } else {
        b.breaker_threshold(None)
    };
    let pool = b.build().map_err(|e| e.to_string())?;
    registry.register(&pool);
    until(|| pool.status().idle >= 4).await;
    let mut set = JoinSet::new();
    workers(&mut set, 8, &pool, &db, ms(5));
    until(|| pool.stats().gets >= 100).await;
    db.set_outage(true);
    loop {
        let (s, t) = (pool.status(), pool.stats());
        let down = if breaker {
            s.breaker != poolguard::conn::BreakerState::Closed
        } else {
            t.connect_failures >= 3 && s.idle + s.in_use == 0
        };
        if down && !ready.is_set() {
            ready.set(format!(
                "database down: breaker {}, {} connects failed",
                s.breaker, t.connect_failures
            ));
        }
        tokio::time::sleep(ms(10)).await;
    }
}

/// `spike`: bursts of 16 requests (300 ms queries) after 1.5 s of quiet, on a pool of 20
/// that keeps 2 warm and closes the rest after 300 ms idle.
pub(crate) async fn spike(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(50), ms(300));
    let pool = Pool::builder(db.clone())
        .name("spiky-service")
        .max_size(20)
        .min_idle(2)
        .max_concurrent_opens(4)
        .idle_timeout(Some(ms(300)))
        .keepalive_interval(None)
        .acquire_timeout(Duration::from_secs(5))
        .maintenance_interval(ms(100))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    until(|| pool.status().idle >= 2).await;
    loop {
        let mut burst = JoinSet::new();
        for _ in 0..16 {
            let (pool, db) = (pool.clone(), db.clone());
            burst.spawn(async move { request(&pool, &db).await });
        }
        while burst.join_next().await.is_some() {}
        if !ready.is_set() {
            let t = pool.stats();
            ready.set(format!(
                "a burst of 16 served; {} gets waited for a connect",
                t.waited_growing + t.waited_cold
            ));
        }
        tokio::time::sleep(ms(1500)).await;
    }
}

/// `trap-min-idle-0`: bursts of 2 after 700 ms pauses; connections close after 300 ms idle.
pub(crate) async fn min_idle_zero(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(100), ms(2));
    let pool = Pool::builder(db.clone())
        .name("cold-service")
        .max_size(10)
        .min_idle(0)
        .idle_timeout(Some(ms(300)))
        .keepalive_interval(None)
        .maintenance_interval(ms(100))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    loop {
        let mut burst = JoinSet::new();
        for _ in 0..2 {
            let (pool, db) = (pool.clone(), db.clone());
            burst.spawn(async move { request(&pool, &db).await });
        }
        while burst.join_next().await.is_some() {}
        let t = pool.stats();
        if !ready.is_set()
            && t.waited_cold >= 4
            && t.closed_by(poolguard::conn::CloseReason::Idle) >= 1
        {
            ready.set(format!(
                "{} gets waited for a connect on an empty pool, {} connections closed idle",
                t.waited_cold,
                t.closed_by(poolguard::conn::CloseReason::Idle)
            ));
        }
        tokio::time::sleep(ms(700)).await;
    }
}

/// `trap-abandon`: transactions of 1.2 s on a pool that abandons holds after 500 ms.
pub(crate) async fn abandon(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(5), ms(2));
    let pool = Pool::builder(db.clone())
        .name("batch-service")
        .max_size(4)
        .min_idle(2)
        .abandon_timeout(Some(ms(500)))
        .maintenance_interval(ms(50))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    until(|| pool.status().idle >= 2).await;
    let mut set = JoinSet::new();
    for _ in 0..2 {
        let (pool, db) = (pool.clone(), db.clone());
        set.spawn(async move {
            loop {
                if let Ok(mut c) = pool.get().await {
                    // A legitimate long transaction: several statements over 1.2 s.
                    for _ in 0..4 {
                        let _ = db.work(&mut c).await;
                        tokio::time::sleep(ms(300)).await;
                    }
                }
                tokio::time::sleep(ms(50)).await;
            }
        });
    }
    until(|| pool.stats().abandoned >= 2).await;
    ready.set(format!(
        "{} transactions lost their slot to abandonment",
        pool.stats().abandoned
    ));
    std::future::pending::<()>().await;
    Ok(())
}

/// `trap-validation-timeout`: 4 clients on a pool whose `validation_timeout` (3 s) equals its
/// `acquire_timeout`; the node dies (every validation and connect hangs) and stays dead.
pub(crate) async fn slow_validation(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(5), ms(2));
    let pool = Pool::builder(db.clone())
        .name("legacy-service")
        .max_size(4)
        .min_idle(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(1))
        .validation_timeout(Duration::from_secs(3))
        .keepalive_interval(None)
        .maintenance_interval(ms(100))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    until(|| pool.status().idle >= 4).await;
    let mut set = JoinSet::new();
    // Pauses longer than the validation bypass (500 ms): every checkout validates.
    workers(&mut set, 4, &pool, &db, ms(600));
    until(|| pool.stats().validations >= 8).await;
    db.set_outage(true);
    until(|| pool.stats().validation_timeouts >= 1).await;
    let t = pool.stats();
    ready.set(format!(
        "the node is dead: {} validations ran into the 3 s validation_timeout, {} gets timed out",
        t.validation_timeouts, t.timed_out
    ));
    std::future::pending::<()>().await;
    Ok(())
}

/// `nested-acquire`: 3 tasks, a pool of 3; each holds a connection ("cached per task") and
/// then takes another from the same pool ("a new transaction").
pub(crate) async fn nested(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let db = sim(ms(5), ms(2));
    let pool = Pool::builder(db.clone())
        .name("per-task-cache")
        .max_size(3)
        .min_idle(3)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    until(|| pool.status().idle >= 3).await;
    let mut set = JoinSet::new();
    for _ in 0..3 {
        let (pool, db) = (pool.clone(), db.clone());
        set.spawn(async move {
            loop {
                let outer = pool.get().await; // live-site: nested-outer
                if let Ok(mut outer) = outer {
                    let _ = db.work(&mut outer).await;
                    tokio::time::sleep(ms(20)).await;
                    let inner = pool.get().await; // live-site: nested-inner
                    if let Ok(mut inner) = inner {
                        let _ = db.work(&mut inner).await;
                    }
                }
                tokio::time::sleep(ms(10)).await;
            }
        });
    }
    until(|| {
        let t = pool.stats();
        t.nested_acquires >= 3 && t.timed_out >= 1
    })
    .await;
    let t = pool.stats();
    ready.set(format!(
        "{} nested acquires, {} gets timed out",
        t.nested_acquires, t.timed_out
    ));
    std::future::pending::<()>().await;
    Ok(())
}
