//! Where the backends bench's p99 comes from: `SELECT 1` at pool 16 with 64 tasks (the
//! bench's load) and at 16 tasks (no queue), interleaved rounds like the bench's summary,
//! with each request's latency split by the pool's own statistics into time waiting for a
//! connection and time holding it. Not a benchmark (it prints quantiles, not criterion
//! estimates); a probe for BENCHMARKS.md's "why the p99 target was missed".
//!
//! ```sh
//! scripts/services.sh
//! cargo run --release -p poolguard-bench --example backends_p99 [ROUNDS] [REQUESTS]
//! ```
//!
//! Variants: poolguard as in the bench; poolguard with its cooperative-budget yield disabled
//! (the request future runs under `tokio::task::unconstrained`, so `get`'s `consume_budget`
//! never yields); poolguard and deadpool-postgres with `query("SELECT 1", &[])` (a query by
//! SQL string, which sends poolguard's connection back through its reset task); deadpool-postgres and bb8-postgres as in the bench. For every pool: p50,
//! p99, p99.9, max of the request latency; for poolguard also the pool's `waited/gets`, `resets/gets` and its own wait-time and
//! hold-time quantiles.

use std::sync::Arc;

use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_bench::backends::{
    bb8_pg, deadpool_pg, drive, op, poolguard_pg, runtime, select1_bb8, select1_deadpool,
    select1_poolguard, Op, PgPool, POOL,
};

fn fmt(s: &HistogramSnapshot) -> String {
    format!(
        "p10 {:>9.3?}  p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  p99.9 {:>9.3?}  max {:>9.3?}",
        s.quantile(0.1),
        s.p50(),
        s.quantile(0.9),
        s.p99(),
        s.quantile(0.999),
        s.max()
    )
}

/// Fresh pools (so each section's pool statistics are its own) and their request functions.
fn contenders(rt: &tokio::runtime::Runtime) -> (Vec<(&'static str, Op)>, [PgPool; 3]) {
    let pg1 = poolguard_pg("poolguard");
    let pg2 = poolguard_pg("poolguard-unconstrained");
    let pg3 = poolguard_pg("poolguard-query-by-sql");
    let pools = [pg1.clone(), pg2.clone(), pg3.clone()];
    let dp = deadpool_pg();
    let dp2 = dp.clone();
    let bb = rt.block_on(bb8_pg());

    let contenders: Vec<(&'static str, Op)> = vec![
        ("poolguard", select1_poolguard(pg1)),
        (
            "poolguard, no coop yield",
            op(move || {
                let p = pg2.clone();
                tokio::task::unconstrained(async move {
                    let c = p.get().await.expect("get");
                    c.simple_query("SELECT 1").await.expect("query");
                })
            }),
        ),
        (
            // `query` by SQL string: tokio-postgres prepares an unnamed statement and sends
            // its `Close` when the statement drops, so the connection goes back unsettled and
            // through poolguard's reset task (which waits for that answer).
            "poolguard, query(sql)",
            op(move || {
                let p = pg3.clone();
                async move {
                    let c = p.get().await.expect("get");
                    c.query("SELECT 1", &[]).await.expect("query");
                }
            }),
        ),
        (
            "deadpool-postgres, query(sql)",
            op(move || {
                let p = dp2.clone();
                async move {
                    let c = p.get().await.expect("get");
                    c.query("SELECT 1", &[]).await.expect("query");
                }
            }),
        ),
        ("deadpool-postgres", select1_deadpool(dp)),
        ("bb8-postgres", select1_bb8(bb)),
    ];

    (contenders, pools)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let requests: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16_384);
    let rt = runtime();
    let _enter = rt.enter();

    for tasks in [64u64, 16] {
        let (contenders, pools) = contenders(&rt);
        // Warm every pool to its full size (64 tasks > 16 connections makes every pool open
        // all 16), then take poolguard's counters' baseline.
        for (_, o) in &contenders {
            rt.block_on(drive(4096, 64, &Arc::new(Histogram::new()), o));
        }
        for p in &pools {
            assert_eq!(p.status().size, POOL, "{} not warm", p.config().name);
        }
        let base: Vec<_> = pools.iter().map(|p| p.stats()).collect();
        let hists: Vec<Arc<Histogram>> = contenders
            .iter()
            .map(|_| Arc::new(Histogram::new()))
            .collect();
        let mut rates = vec![Vec::new(); contenders.len()];
        for round in 0..rounds {
            for k in 0..contenders.len() {
                let i = (k + round) % contenders.len();
                let took = rt.block_on(drive(requests, tasks, &hists[i], &contenders[i].1));
                rates[i].push(requests as f64 / took.as_secs_f64());
            }
        }
        println!(
            "\n{tasks} tasks, pool {POOL}, SELECT 1, {rounds} interleaved rounds x {requests} requests per pool:"
        );
        for (i, (name, _)) in contenders.iter().enumerate() {
            rates[i].sort_by(|a, b| a.total_cmp(b));
            let s = hists[i].snapshot();
            println!(
                "  {name:<26} {:>6.1} K req/s  {}",
                rates[i][rates[i].len() / 2] / 1000.0,
                fmt(&s)
            );
        }
        for (p, b) in pools.iter().zip(&base) {
            let s = p.stats();
            let gets = (s.gets - b.gets).max(1) as f64;
            println!(
                "  {:<26} waited/gets {:.2}  resets/gets {:.4}  validations/gets {:.4}",
                p.config().name,
                (s.waited - b.waited) as f64 / gets,
                (s.resets - b.resets) as f64 / gets,
                (s.validations - b.validations) as f64 / gets,
            );
            println!("  {:<26} pool wait  {}", "", fmt(&s.wait_time));
            println!("  {:<26} pool hold  {}", "", fmt(&s.hold_time));
        }
    }
}
