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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::Pool;
use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_postgres::{PostgresManager, RecyclingMethod};
use tokio::time::Instant;

const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const POOL: usize = 16;

type PgPool = Pool<PostgresManager>;

type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// `requests` requests over `tasks` tasks; each request's latency into `hist`. A deadline
/// bounds the whole round (a probe must not hang on a broken server).
async fn drive(requests: u64, tasks: u64, hist: &Arc<Histogram>, op: &Op) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let n = requests / tasks + u64::from(i < requests % tasks);
            let (op, hist) = (Arc::clone(op), Arc::clone(hist));
            tokio::spawn(async move {
                for _ in 0..n {
                    let t = Instant::now();
                    op().await;
                    hist.record(t.elapsed());
                }
            })
        })
        .collect();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("a round took over 60 s")
            .expect("probe task panicked");
    }
    start.elapsed()
}

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
    let pg_pool = |label: &str| {
        let m = PostgresManager::builder(PG_URL)
            .recycling(RecyclingMethod::Fast)
            .build()
            .expect("manager");
        Pool::builder(m)
            .label(label)
            .max_size(POOL)
            .min_idle(POOL)
            .build()
            .expect("pool")
    };
    let pg1 = pg_pool("poolguard");
    let pg2 = pg_pool("poolguard-unconstrained");
    let pg3 = pg_pool("poolguard-query-by-sql");
    let pools = [pg1.clone(), pg2.clone(), pg3.clone()];

    let pg: tokio_postgres::Config = PG_URL.parse().expect("config");
    let dp = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
        pg.clone(),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    ))
    .max_size(POOL)
    .build()
    .expect("deadpool");
    let dp2 = dp.clone();
    let bb = rt.block_on(async {
        bb8::Pool::builder()
            .max_size(POOL as u32)
            .min_idle(Some(POOL as u32))
            .test_on_check_out(false)
            .build(bb8_postgres::PostgresConnectionManager::new(
                pg,
                tokio_postgres::NoTls,
            ))
            .await
            .expect("bb8")
    });

    let contenders: Vec<(&'static str, Op)> = vec![
        (
            "poolguard",
            op(move || {
                let p = pg1.clone();
                async move {
                    let c = p.get().await.expect("get");
                    c.simple_query("SELECT 1").await.expect("query");
                }
            }),
        ),
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
        (
            "deadpool-postgres",
            op(move || {
                let p = dp.clone();
                async move {
                    let c = p.get().await.expect("get");
                    c.simple_query("SELECT 1").await.expect("query");
                }
            }),
        ),
        (
            "bb8-postgres",
            op(move || {
                let p = bb.clone();
                async move {
                    let c = p.get().await.expect("get");
                    c.simple_query("SELECT 1").await.expect("query");
                }
            }),
        ),
    ];

    (contenders, pools)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let requests: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16_384);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();

    for tasks in [64u64, 16] {
        let (contenders, pools) = contenders(&rt);
        // Warm every pool to its full size (64 tasks > 16 connections makes every pool open
        // all 16), then take poolguard's counters' baseline.
        for (_, o) in &contenders {
            rt.block_on(drive(4096, 64, &Arc::new(Histogram::new()), o));
        }
        for p in &pools {
            assert_eq!(p.status().size, POOL, "{} not warm", p.config().label);
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
                p.config().label,
                (s.waited - b.waited) as f64 / gets,
                (s.resets - b.resets) as f64 / gets,
                (s.validations - b.validations) as f64 / gets,
            );
            println!("  {:<26} pool wait  {}", "", fmt(&s.wait_time));
            println!("  {:<26} pool hold  {}", "", fmt(&s.hold_time));
        }
    }
}
