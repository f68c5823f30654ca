//! Connection pool: acquire + release with a no-op manager, poolguard vs bb8, deadpool,
//! mobc (2-worker tokio runtime) and r2d2 (one OS thread per task), pool 10 at 1/2/16/64
//! tasks and pool 16 at 256 tasks. Before the criterion groups, a fixed-time run per
//! configuration prints fairness (fewest / mean / most cycles per task) and the p50/p99
//! acquire latency (every 8th acquire timed).
//!
//! The `conn/held/w2s10t{16,64}` groups force exhaustion: each task yields to the scheduler
//! while it holds its connection (a hold that awaits), so with 16 or 64 tasks on 10
//! connections the pool is empty and callers queue; without that, two workers with
//! synchronous holds rarely have more than two connections out. Their fairness report lines
//! start with `held`.
//!
//! `poolguard-strict` is poolguard with `handoff_after(Duration::ZERO)`: strict FIFO handoff
//! from the first instant, the behaviour before the handoff budget.
//!
//! Checkout tests are off for the peers (`test_on_check_out(false)`), as poolguard skips
//! validation for connections idle less than `validation_bypass`.

use std::future::Future;
use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use poolguard::diag::Histogram;
use poolguard_testkit::sim::NoopManager;
use tokio::runtime::Runtime;

const CONFIGS: [(usize, usize); 5] = [(10, 1), (10, 2), (10, 16), (10, 64), (16, 256)];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- peers' no-op managers ----

struct Bb8Noop;
impl bb8::ManageConnection for Bb8Noop {
    type Connection = ();
    type Error = io::Error;
    async fn connect(&self) -> Result<(), io::Error> {
        Ok(())
    }
    async fn is_valid(&self, _: &mut ()) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

struct DeadpoolNoop;
impl deadpool::managed::Manager for DeadpoolNoop {
    type Type = ();
    type Error = io::Error;
    async fn create(&self) -> Result<(), io::Error> {
        Ok(())
    }
    async fn recycle(
        &self,
        _: &mut (),
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<io::Error> {
        Ok(())
    }
}

struct MobcNoop;
type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
impl mobc::Manager for MobcNoop {
    type Connection = ();
    type Error = io::Error;
    fn connect<'l, 'a>(&'l self) -> BoxFut<'a, Result<(), io::Error>>
    where
        'l: 'a,
        Self: 'a,
    {
        Box::pin(async { Ok(()) })
    }
    fn check<'l, 'a>(&'l self, conn: ()) -> BoxFut<'a, Result<(), io::Error>>
    where
        'l: 'a,
        Self: 'a,
    {
        Box::pin(async move { Ok(conn) })
    }
}

struct R2d2Noop;
impl r2d2::ManageConnection for R2d2Noop {
    type Connection = ();
    type Error = io::Error;
    fn connect(&self) -> Result<(), io::Error> {
        Ok(())
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

// ---- one acquire + release per pool kind ----

#[derive(Clone)]
enum AsyncPool {
    Poolguard(poolguard::conn::Pool<NoopManager>),
    Bb8(bb8::Pool<Bb8Noop>),
    Deadpool(deadpool::managed::Pool<DeadpoolNoop>),
    Mobc(mobc::Pool<MobcNoop>),
}

impl AsyncPool {
    fn build(rt: &Runtime, kind: &str, size: usize) -> Self {
        rt.block_on(async {
            match kind {
                "poolguard" | "poolguard-leak" | "poolguard-strict" => {
                    let leak = (kind == "poolguard-leak").then_some(Duration::from_secs(30));
                    let mut b = poolguard::conn::Pool::builder(NoopManager)
                        .max_size(size)
                        .max_waiters(4096)
                        .leak_threshold(leak);
                    if kind == "poolguard-strict" {
                        // No barging window: every return goes to the oldest waiter.
                        b = b.handoff_after(Duration::ZERO);
                    }
                    AsyncPool::Poolguard(b.build().expect("poolguard"))
                }
                "bb8" => AsyncPool::Bb8(
                    bb8::Pool::builder()
                        .max_size(size as u32)
                        .test_on_check_out(false)
                        .build(Bb8Noop)
                        .await
                        .expect("bb8"),
                ),
                "deadpool" => AsyncPool::Deadpool(
                    deadpool::managed::Pool::builder(DeadpoolNoop)
                        .max_size(size)
                        .runtime(deadpool::Runtime::Tokio1)
                        .build()
                        .expect("deadpool"),
                ),
                _ => AsyncPool::Mobc(
                    mobc::Pool::builder()
                        .max_open(size as u64)
                        .max_idle(size as u64)
                        .test_on_check_out(false)
                        .build(MobcNoop),
                ),
            }
        })
    }

    /// One acquire + release; `hold`: yield to the scheduler while holding the connection.
    async fn cycle(&self, hold: bool) {
        match self {
            AsyncPool::Poolguard(p) => held(black_box(p.get().await.expect("get")), hold).await,
            AsyncPool::Bb8(p) => held(black_box(p.get().await.expect("get")), hold).await,
            AsyncPool::Deadpool(p) => held(black_box(p.get().await.expect("get")), hold).await,
            AsyncPool::Mobc(p) => held(black_box(p.get().await.expect("get")), hold).await,
        }
    }

    /// [`cycle`](Self::cycle), returning how long the acquire took.
    async fn timed_cycle(&self, hold: bool) -> Duration {
        let t = Instant::now();
        match self {
            AsyncPool::Poolguard(p) => {
                let c = black_box(p.get().await.expect("get"));
                let took = t.elapsed();
                held(c, hold).await;
                took
            }
            AsyncPool::Bb8(p) => {
                let c = black_box(p.get().await.expect("get"));
                let took = t.elapsed();
                held(c, hold).await;
                took
            }
            AsyncPool::Deadpool(p) => {
                let c = black_box(p.get().await.expect("get"));
                let took = t.elapsed();
                held(c, hold).await;
                took
            }
            AsyncPool::Mobc(p) => {
                let c = black_box(p.get().await.expect("get"));
                let took = t.elapsed();
                held(c, hold).await;
                took
            }
        }
    }
}

/// Drops `conn`, after one yield to the scheduler when `hold`.
async fn held<T>(conn: T, hold: bool) {
    if hold {
        tokio::task::yield_now().await;
    }
    drop(conn);
}

/// (pool size, tasks) of the exhaustion groups.
const HELD: [(usize, usize); 2] = [(10, 16), (10, 64)];

const ASYNC: [&str; 6] = [
    "poolguard",
    "poolguard-leak",
    "poolguard-strict",
    "bb8",
    "deadpool",
    "mobc",
];

/// `iters` cycles split over `tasks` tasks; returns the wall time.
fn run_async(rt: &Runtime, pool: &AsyncPool, tasks: usize, iters: u64, hold: bool) -> Duration {
    rt.block_on(async {
        let per = iters.div_ceil(tasks as u64);
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let p = pool.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        p.cycle(hold).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        start.elapsed()
    })
}

fn run_r2d2(pool: &r2d2::Pool<R2d2Noop>, threads: usize, iters: u64, hold: bool) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per {
                    let c = black_box(pool.get().expect("get"));
                    if hold {
                        std::thread::yield_now();
                    }
                    drop(c);
                }
            });
        }
    });
    start.elapsed()
}

// ---- fairness and latency: a fixed-time run per configuration ----

struct Report {
    per_task: Vec<u64>,
    elapsed: Duration,
    lat: Histogram,
}

impl Report {
    fn print(&self, label: &str, name: &str, size: usize, tasks: usize) {
        let total: u64 = self.per_task.iter().sum();
        let mean = total as f64 / tasks as f64;
        let min = self.per_task.iter().min().copied().unwrap_or(0);
        let max = self.per_task.iter().max().copied().unwrap_or(0);
        let progressed = self.per_task.iter().filter(|&&c| c > 0).count();
        let s = self.lat.snapshot();
        println!(
            "fairness {label}s{size} t{tasks:<3} {name:<15} {:>7.1} ns/cycle  tasks progressing {progressed}/{tasks}  fewest {min} mean {mean:.0} most {max}  acquire p50 {:?} p99 {:?}",
            self.elapsed.as_nanos() as f64 / total.max(1) as f64,
            s.p50(),
            s.p99(),
        );
    }
}

const REPORT_TIME: Duration = Duration::from_millis(300);

fn report_async(rt: &Runtime, pool: &AsyncPool, tasks: usize, hold: bool) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Histogram::new());
    let (per_task, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let p = pool.clone();
                let stop = Arc::clone(&stop);
                let lat = Arc::clone(&lat);
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Relaxed) {
                        if n.is_multiple_of(8) {
                            lat.record(p.timed_cycle(hold).await);
                        } else {
                            p.cycle(hold).await;
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // A plain thread flips the flag: a runtime whose workers never yield (a pool that
        // never makes its tasks wait) would never fire a tokio timer.
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(REPORT_TIME);
            flag.store(true, Relaxed);
        });
        let mut v = Vec::new();
        for h in handles {
            v.push(h.await.expect("task"));
        }
        (v, start.elapsed())
    });
    Report {
        per_task,
        elapsed,
        lat: Arc::try_unwrap(lat).unwrap_or_default(),
    }
}

fn report_r2d2(pool: &r2d2::Pool<R2d2Noop>, threads: usize, hold: bool) -> Report {
    let stop = AtomicBool::new(false);
    let lat = Histogram::new();
    let start = Instant::now();
    let per_task = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Relaxed) {
                        let t = Instant::now();
                        let c = black_box(pool.get().expect("get"));
                        let took = t.elapsed();
                        if hold {
                            std::thread::yield_now();
                        }
                        drop(c);
                        if n.is_multiple_of(8) {
                            lat.record(took);
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(REPORT_TIME);
        stop.store(true, Relaxed);
        hs.into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    Report {
        per_task,
        elapsed: start.elapsed(),
        lat,
    }
}

fn r2d2_pool(size: usize) -> r2d2::Pool<R2d2Noop> {
    r2d2::Pool::builder()
        .max_size(size as u32)
        .min_idle(Some(size as u32))
        .test_on_check_out(false)
        .build(R2d2Noop)
        .expect("r2d2")
}

fn conn_pool(c: &mut Criterion) {
    let rt = runtime();
    let only = std::env::var("POOLGUARD_BENCH_ONLY").ok();
    if std::env::var_os("POOLGUARD_BENCH_NO_REPORT").is_none() {
        let all = CONFIGS.iter().map(|&c| (c, false));
        for ((size, tasks), hold) in all.chain(HELD.iter().map(|&c| (c, true))) {
            let label = if hold { "held " } else { "" };
            for kind in ASYNC {
                let pool = AsyncPool::build(&rt, kind, size);
                run_async(&rt, &pool, tasks, 10_000, hold); // warm
                report_async(&rt, &pool, tasks, hold).print(label, kind, size, tasks);
            }
            report_r2d2(&r2d2_pool(size), tasks, hold).print(label, "r2d2 (threads)", size, tasks);
        }
    }
    let all = CONFIGS.iter().map(|&c| (c, false));
    for ((size, tasks), hold) in all.chain(HELD.iter().map(|&c| (c, true))) {
        let name = if hold { "conn/held/w2s" } else { "conn/w2s" };
        let mut g = c.benchmark_group(format!("{name}{size}t{tasks}"));
        g.sample_size(20)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for kind in ASYNC {
            if only.as_deref().is_some_and(|o| o != kind) {
                continue;
            }
            let pool = AsyncPool::build(&rt, kind, size);
            g.bench_function(BenchmarkId::from_parameter(kind), |b| {
                b.iter_custom(|iters| run_async(&rt, &pool, tasks, iters, hold))
            });
        }
        if only.as_deref().is_none_or(|o| o == "r2d2") {
            let pool = r2d2_pool(size);
            g.bench_function(BenchmarkId::from_parameter("r2d2"), |b| {
                b.iter_custom(|iters| run_r2d2(&pool, tasks, iters, hold))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, conn_pool);
criterion_main!(benches);
