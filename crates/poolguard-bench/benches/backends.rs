//! Real-server benchmarks: `SELECT 1` on PostgreSQL and `PING` on Redis through poolguard and
//! its peers, pool size 16, 64 concurrent tasks, on a 2-worker tokio runtime, all in one run.
//!
//! Validation settings, the same for every pool of a tier:
//! - **no checkout round trip**: poolguard (`validation_bypass` 500 ms, never reached under
//!   this load; Postgres `RecyclingMethod::Fast`), deadpool-postgres (`RecyclingMethod::Fast`),
//!   bb8 (`test_on_check_out(false)`);
//! - **checkout validation** (Redis only, because deadpool-redis always sends
//!   `UNWATCH`+`PING n` when it recycles an idle connection): deadpool-redis, bb8-redis
//!   (`test_on_check_out(true)`: `PING` on every checkout) and poolguard with
//!   `validation_bypass` 0 (`PING n` on every connection taken from the idle list; a
//!   connection handed straight from a returning task to a waiting one is not re-checked,
//!   which under 64 tasks on 16 connections is most of them; that is poolguard's design, so
//!   this tier is not round-trip-for-round-trip identical).
//!
//! Criterion reports the time per request (throughput = 1 / time); p50/p99 of the per-request
//! latency (get + query + return) are printed on stderr after each pool's run. Because the
//! machine is shared and load drifts between back-to-back measurements, each group ends with
//! an interleaved summary (stderr, `interleaved ...`): the pools take turns for several rounds
//! and the median throughput of each, its ratio to poolguard and its p50/p99 are printed.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (user postgres, db test) and Redis on 127.0.0.1:6379:
//! `scripts/services.sh` starts them.

use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use poolguard::conn::Pool;
use poolguard::diag::Histogram;
use poolguard_bench::backends::{
    bb8_pg, deadpool_pg, drive, op, poolguard_pg, runtime, select1_bb8, select1_deadpool,
    select1_poolguard, Op, POOL, REDIS_URL,
};
use poolguard_redis::RedisManager;
use tokio::runtime::Runtime;

const TASKS: u64 = 64;

/// The criterion measurement of one pool; the pool is also kept for the interleaved rounds.
fn bench_one(
    g: &mut BenchmarkGroup<'_, WallTime>,
    contenders: &mut Vec<(String, Op)>,
    group: &str,
    rt: &Runtime,
    name: &str,
    op: Op,
) {
    // Warm every pool to its full size first.
    let hist = Arc::new(Histogram::new());
    rt.block_on(drive(TASKS * 4, TASKS, &hist, &op));
    let hist = Arc::new(Histogram::new());
    g.bench_function(name, |b| {
        b.iter_custom(|iters| rt.block_on(drive(iters, TASKS, &hist, &op)));
    });
    let s = hist.snapshot();
    eprintln!(
        "latency {group}/{name}: {} requests, p50 {:?}, p99 {:?}, max {:?}",
        s.count(),
        s.p50(),
        s.p99(),
        s.max()
    );
    contenders.push((name.to_owned(), op));
}

/// The machine is shared, so load drifts between criterion's back-to-back measurements. This
/// summary interleaves the pools instead: `ROUNDS` rounds, each running `REQUESTS` requests on
/// every pool in turn; it prints each pool's median throughput, its ratio to the first pool,
/// and the latency quantiles over all its rounds.
fn interleaved(rt: &Runtime, group: &str, contenders: &[(String, Op)]) {
    const ROUNDS: usize = 7;
    const REQUESTS: u64 = 16_384;
    let hists: Vec<Arc<Histogram>> = contenders
        .iter()
        .map(|_| Arc::new(Histogram::new()))
        .collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..ROUNDS {
        for k in 0..contenders.len() {
            // Rotate the order so no pool always runs right after the same other one.
            let i = (k + round) % contenders.len();
            let took = rt.block_on(drive(REQUESTS, TASKS, &hists[i], &contenders[i].1));
            rates[i].push(REQUESTS as f64 / took.as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median(&mut rates[0].clone());
    eprintln!("interleaved {group} ({ROUNDS} rounds x {REQUESTS} requests per pool):");
    for (i, (name, _)) in contenders.iter().enumerate() {
        let m = median(&mut rates[i]);
        let s = hists[i].snapshot();
        eprintln!(
            "  {name:<38} median {:>6.1} K req/s  ratio {:.2}  p50 {:>9.3?}  p99 {:>9.3?}  p99.9 {:>9.3?}  max {:>9.3?}",
            m / 1000.0,
            m / base,
            s.p50(),
            s.p99(),
            s.quantile(0.999),
            s.max()
        );
    }
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(1));
}

fn postgres(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    const GROUP: &str = "postgres_select1_pool16_tasks64";
    let mut g = c.benchmark_group(GROUP);
    configure(&mut g);
    let mut contenders = Vec::new();

    let pool = poolguard_pg("poolguard");
    rt.block_on(async {
        if let Err(e) = pool.get().await {
            panic!("PostgreSQL is not reachable ({e}); run scripts/services.sh");
        }
    });
    bench_one(
        &mut g,
        &mut contenders,
        GROUP,
        &rt,
        "poolguard",
        select1_poolguard(pool),
    );
    bench_one(
        &mut g,
        &mut contenders,
        GROUP,
        &rt,
        "deadpool-postgres",
        select1_deadpool(deadpool_pg()),
    );
    let bb = rt.block_on(bb8_pg());
    bench_one(
        &mut g,
        &mut contenders,
        GROUP,
        &rt,
        "bb8-postgres",
        select1_bb8(bb),
    );
    g.finish();
    interleaved(&rt, GROUP, &contenders);
}

async fn ping<C: redis::aio::ConnectionLike + Send>(c: &mut C) {
    let _: String = redis::cmd("PING").query_async(c).await.expect("PING");
}

fn redis_group(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    const GROUP: &str = "redis_ping_pool16_tasks64";
    let mut g = c.benchmark_group(GROUP);
    configure(&mut g);
    let mut contenders = Vec::new();

    for (name, bypass, test_on_checkout) in [
        ("no-checkout-check", Duration::from_millis(500), false),
        ("checkout-validation", Duration::ZERO, true),
    ] {
        let pool = Pool::builder(RedisManager::new(REDIS_URL).expect("manager"))
            .max_size(POOL)
            .min_idle(POOL)
            .validation_bypass(bypass)
            .build()
            .expect("pool");
        rt.block_on(async {
            if let Err(e) = pool.get().await {
                panic!("Redis is not reachable ({e}); run scripts/services.sh");
            }
        });
        bench_one(
            &mut g,
            &mut contenders,
            GROUP,
            &rt,
            &format!("poolguard/{name}"),
            op(move || {
                let pool = pool.clone();
                async move {
                    let mut c = pool.get().await.expect("get");
                    ping(&mut *c).await;
                }
            }),
        );

        let bb = rt.block_on(async {
            bb8::Pool::builder()
                .max_size(POOL as u32)
                .min_idle(Some(POOL as u32))
                .test_on_check_out(test_on_checkout)
                .build(
                    bb8_redis::RedisConnectionManager::new(REDIS_URL).expect("bb8-redis manager"),
                )
                .await
                .expect("bb8")
        });
        bench_one(
            &mut g,
            &mut contenders,
            GROUP,
            &rt,
            &format!("bb8-redis/{name}"),
            op(move || {
                let bb = bb.clone();
                async move {
                    let mut c = bb.get().await.expect("get");
                    ping(&mut *c).await;
                }
            }),
        );
    }

    let mut cfg = deadpool_redis::Config::from_url(REDIS_URL);
    cfg.pool = Some(deadpool_redis::PoolConfig::new(POOL));
    let dp = cfg
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("deadpool-redis");
    bench_one(
        &mut g,
        &mut contenders,
        GROUP,
        &rt,
        "deadpool-redis/checkout-validation",
        op(move || {
            let dp = dp.clone();
            async move {
                let mut c = dp.get().await.expect("get");
                ping(&mut *c).await;
            }
        }),
    );
    g.finish();
    interleaved(&rt, GROUP, &contenders);
}

criterion_group!(benches, postgres, redis_group);
criterion_main!(benches);
