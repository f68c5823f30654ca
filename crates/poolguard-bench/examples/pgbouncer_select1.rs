//! `SELECT 1` through PgBouncer in transaction pooling mode (127.0.0.1:6432), pool 16, 64
//! tasks, on a 2-worker runtime, with PostgreSQL itself (127.0.0.1:5432) as the reference, all
//! in one interleaved run: the contenders take turns for `ROUNDS` rounds of `REQUESTS`
//! requests each. Each request (get, query, return) is bounded by 5 s; a failed or timed-out
//! request is counted, not timed.
//!
//! Through PgBouncer:
//! - poolguard with `StatementMode::Unnamed`, `query_typed` (the reference of the ratios) and
//!   `simple_query`;
//! - deadpool-postgres with `query_typed` (unnamed statements, the fair comparison) and with
//!   its documented `prepare_cached` + `query` (named statements, which PgBouncer's
//!   per-transaction `DISCARD ALL` removes before their next use: expected to fail with 26000);
//! - bb8-postgres with `query_typed`;
//! - poolguard left in its default `StatementMode::Named` with `query_cached`, the same
//!   misconfiguration on poolguard's side (also expected to fail).
//!
//! Directly on PostgreSQL: poolguard (same configuration) and deadpool-postgres with
//! `query_typed`, and deadpool-postgres with `prepare_cached` + `query`.
//!
//! ```sh
//! scripts/services.sh
//! cargo run -p poolguard-bench --example pgbouncer_select1 [ROUNDS] [REQUESTS]
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use poolguard::diag::Histogram;
use poolguard_bench::backends::{
    bb8_pg_on, deadpool_pg_on, drive_counted, pg_error, poolguard_pg_on, runtime, try_op, TryOp,
    PGBOUNCER_URL, PG_URL, POOL,
};
use poolguard_postgres::StatementMode;

const TASKS: u64 = 64;
const PER_REQUEST: Duration = Duration::from_secs(5);

fn poolguard_typed(url: &str, label: &str) -> TryOp {
    let pool = poolguard_pg_on(url, StatementMode::Unnamed, label);
    try_op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.map_err(|e| format!("get: {e}"))?;
            c.query_typed("SELECT 1", &[])
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(())
        }
    })
}

fn deadpool_typed(url: &str) -> TryOp {
    let pool = deadpool_pg_on(url);
    try_op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.map_err(|e| format!("get: {e}"))?;
            c.query_typed("SELECT 1", &[])
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(())
        }
    })
}

fn deadpool_cached(url: &str) -> TryOp {
    let pool = deadpool_pg_on(url);
    try_op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.map_err(|e| format!("get: {e}"))?;
            let st = c
                .prepare_cached("SELECT 1")
                .await
                .map_err(|e| pg_error(&e))?;
            c.query(&st, &[]).await.map_err(|e| pg_error(&e))?;
            Ok(())
        }
    })
}

fn contenders(rt: &tokio::runtime::Runtime) -> Vec<(&'static str, TryOp)> {
    let pg_simple = poolguard_pg_on(PGBOUNCER_URL, StatementMode::Unnamed, "pgb-simple");
    let pg_named = poolguard_pg_on(PGBOUNCER_URL, StatementMode::Named, "pgb-named");
    let bb = rt.block_on(bb8_pg_on(PGBOUNCER_URL));
    vec![
        (
            "pgbouncer  poolguard Unnamed query_typed",
            poolguard_typed(PGBOUNCER_URL, "pgb-typed"),
        ),
        (
            "pgbouncer  poolguard Unnamed simple_query",
            try_op(move || {
                let p = pg_simple.clone();
                async move {
                    let c = p.get().await.map_err(|e| format!("get: {e}"))?;
                    c.simple_query("SELECT 1").await.map_err(|e| pg_error(&e))?;
                    Ok(())
                }
            }),
        ),
        (
            "pgbouncer  deadpool query_typed",
            deadpool_typed(PGBOUNCER_URL),
        ),
        (
            "pgbouncer  deadpool prepare_cached+query",
            deadpool_cached(PGBOUNCER_URL),
        ),
        (
            "pgbouncer  bb8 query_typed",
            try_op(move || {
                let p = bb.clone();
                async move {
                    let c = p.get().await.map_err(|e| format!("get: {e}"))?;
                    c.query_typed("SELECT 1", &[])
                        .await
                        .map_err(|e| pg_error(&e))?;
                    Ok(())
                }
            }),
        ),
        (
            "pgbouncer  poolguard Named query_cached",
            try_op(move || {
                let p = pg_named.clone();
                async move {
                    let c = p.get().await.map_err(|e| format!("get: {e}"))?;
                    c.query_cached("SELECT 1", &[])
                        .await
                        .map_err(|e| pg_error(&e))?;
                    Ok(())
                }
            }),
        ),
        (
            "postgres   poolguard Unnamed query_typed",
            poolguard_typed(PG_URL, "pg-typed"),
        ),
        ("postgres   deadpool query_typed", deadpool_typed(PG_URL)),
        (
            "postgres   deadpool prepare_cached+query",
            deadpool_cached(PG_URL),
        ),
    ]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let requests: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let rt = runtime();
    let _enter = rt.enter();
    let contenders = contenders(&rt);
    println!("load average before: {}", loadavg());

    // Warm every pool to its full size (64 tasks on 16 connections open all 16).
    for (name, o) in &contenders {
        let r = rt.block_on(drive_counted(
            1024,
            TASKS,
            PER_REQUEST,
            &Arc::new(Histogram::new()),
            o,
        ));
        if r.ok == 0 {
            println!("  warm-up {name}: every request failed {:?}", r.errors);
        }
    }

    let hists: Vec<Arc<Histogram>> = contenders
        .iter()
        .map(|_| Arc::new(Histogram::new()))
        .collect();
    let mut rates = vec![Vec::new(); contenders.len()];
    let mut errors = vec![BTreeMap::<String, u64>::new(); contenders.len()];
    for round in 0..rounds {
        for k in 0..contenders.len() {
            // Rotate the order so no contender always runs right after the same other one.
            let i = (k + round) % contenders.len();
            let r = rt.block_on(drive_counted(
                requests,
                TASKS,
                PER_REQUEST,
                &hists[i],
                &contenders[i].1,
            ));
            rates[i].push(r.ok as f64 / r.took.as_secs_f64());
            for (e, n) in r.errors {
                *errors[i].entry(e).or_default() += n;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median(&mut rates[0].clone());
    let total = rounds as u64 * requests;
    println!(
        "\nSELECT 1, pool {POOL}, {TASKS} tasks, {rounds} interleaved rounds x {requests} requests per contender; ratio = successful req/s over the first line's"
    );
    for (i, (name, _)) in contenders.iter().enumerate() {
        let m = median(&mut rates[i]);
        let s = hists[i].snapshot();
        let failed: u64 = errors[i].values().sum();
        if s.count() == 0 {
            println!(
                "  {name:<42} failed {failed}/{total} ({:.1}%) {:?}",
                100.0 * failed as f64 / total as f64,
                errors[i]
            );
            continue;
        }
        println!(
            "  {name:<42} {:>6.1} K req/s  ratio {:.2}  p50 {:>9.3?}  p99 {:>9.3?}  p99.9 {:>9.3?}  max {:>9.3?}  failed {failed}/{total} {:?}",
            m / 1000.0,
            m / base,
            s.p50(),
            s.p99(),
            s.quantile(0.999),
            s.max(),
            errors[i]
        );
    }
    println!("load average after: {}", loadavg());
}
