//! Setup shared by the real-server backends bench (`benches/backends.rs`), its p99 probe
//! (`examples/backends_p99.rs`) and the PgBouncer comparison (`examples/pgbouncer_select1.rs`):
//! server addresses, the pools under test configured the same way in all, the type-erased
//! requests and the drivers that spread requests over tasks ([`drive`], which expects every
//! request to succeed, and [`drive_counted`], which bounds each request and counts failures).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::Pool;
use poolguard::diag::Histogram;
use poolguard_postgres::{PostgresManager, RecyclingMethod, StatementMode};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// The local PostgreSQL (`scripts/services.sh` starts it).
pub const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
/// The local PgBouncer in transaction pooling mode in front of [`PG_URL`]'s server
/// (`scripts/services.sh` starts it; every server session is reset with `DISCARD ALL` when a
/// transaction releases it, so a named prepared statement never survives to its next use).
pub const PGBOUNCER_URL: &str =
    "host=127.0.0.1 port=6432 user=postgres dbname=test connect_timeout=5";
/// The local Redis (`scripts/services.sh` starts it).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// Size of every pool under test (each is also kept warm at this size).
pub const POOL: usize = 16;

/// poolguard's pool of PostgreSQL connections.
pub type PgPool = Pool<PostgresManager>;
/// bb8's pool of PostgreSQL connections.
pub type Bb8PgPool = bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>;

/// The runtime of every backends measurement: multi-threaded, 2 workers.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One request of one pool (get, query, return), type-erased so pools can be interleaved.
pub type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Erases a request closure into an [`Op`].
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// Runs `requests` requests spread over `tasks` tasks, records each request's latency into
/// `hist` and returns the wall time of the whole round. Each task is bounded by 60 s (a
/// measurement must not hang on a broken server).
pub async fn drive(requests: u64, tasks: u64, hist: &Arc<Histogram>, op: &Op) -> Duration {
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
            .expect("bench task panicked");
    }
    start.elapsed()
}

/// One request that may fail (get, query, return); the error is a short label for tallying,
/// such as the SQLSTATE.
pub type TryOp =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Erases a fallible request closure into a [`TryOp`].
pub fn try_op<F, Fut>(f: F) -> TryOp
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// The label of a PostgreSQL error for tallying: its SQLSTATE when the server sent one.
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => code.code().to_owned(),
        None => e.to_string(),
    }
}

/// What one [`drive_counted`] round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Wall time of the whole round.
    pub took: Duration,
    /// Requests that succeeded (their latencies are in the histogram).
    pub ok: u64,
    /// Failed requests by error label (`"timeout"` for one that hit the per-request bound).
    pub errors: BTreeMap<String, u64>,
}

impl Round {
    /// Failed requests of every kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs exactly `requests` requests spread over `tasks` tasks, each request bounded by
/// `per_request` (one that takes longer is dropped and counted as `"timeout"`). Records the
/// latency of each successful request into `hist` and counts the failures by label.
pub async fn drive_counted(
    requests: u64,
    tasks: u64,
    per_request: Duration,
    hist: &Arc<Histogram>,
    op: &TryOp,
) -> Round {
    let start = Instant::now();
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let n = requests / tasks + u64::from(i < requests % tasks);
            let (op, hist, ok, errors) = (
                Arc::clone(op),
                Arc::clone(hist),
                Arc::clone(&ok),
                Arc::clone(&errors),
            );
            tokio::spawn(async move {
                for _ in 0..n {
                    let t = Instant::now();
                    match tokio::time::timeout(per_request, op()).await {
                        Ok(Ok(())) => {
                            hist.record(t.elapsed());
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => *errors.lock().entry(e).or_default() += 1,
                        Err(_) => *errors.lock().entry("timeout".into()).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    // Each task's requests are bounded one by one; this bounds the join as well.
    let deadline = per_request * u32::try_from(requests / tasks + 2).unwrap_or(u32::MAX);
    for h in handles {
        tokio::time::timeout(deadline, h)
            .await
            .expect("a task outlived its requests' deadlines")
            .expect("bench task panicked");
    }
    let errors = std::mem::take(&mut *errors.lock());
    Round {
        took: start.elapsed(),
        ok: ok.load(Ordering::Relaxed),
        errors,
    }
}

/// poolguard on PostgreSQL with no checkout round trip (`RecyclingMethod::Fast`), [`POOL`]
/// connections kept warm.
pub fn poolguard_pg(label: &str) -> PgPool {
    poolguard_pg_on(PG_URL, StatementMode::Named, label)
}

/// [`poolguard_pg`] on the server or proxy at `url`, sending statements the `mode` way.
pub fn poolguard_pg_on(url: &str, mode: StatementMode, label: &str) -> PgPool {
    let m = PostgresManager::builder(url)
        .recycling(RecyclingMethod::Fast)
        .statement_mode(mode)
        .build()
        .expect("manager");
    Pool::builder(m)
        .name(label)
        .max_size(POOL)
        .min_idle(POOL)
        .build()
        .expect("pool")
}

/// deadpool-postgres with `RecyclingMethod::Fast`, [`POOL`] connections.
pub fn deadpool_pg() -> deadpool_postgres::Pool {
    deadpool_pg_on(PG_URL)
}

/// [`deadpool_pg`] on the server or proxy at `url`.
pub fn deadpool_pg_on(url: &str) -> deadpool_postgres::Pool {
    let pg: tokio_postgres::Config = url.parse().expect("config");
    let mgr = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(POOL)
        .build()
        .expect("deadpool")
}

/// bb8-postgres without checkout test, [`POOL`] connections kept warm.
pub async fn bb8_pg() -> Bb8PgPool {
    bb8_pg_on(PG_URL).await
}

/// [`bb8_pg`] on the server or proxy at `url`.
pub async fn bb8_pg_on(url: &str) -> Bb8PgPool {
    let pg: tokio_postgres::Config = url.parse().expect("config");
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
}

/// `SELECT 1` (simple query) through poolguard.
pub fn select1_poolguard(pool: PgPool) -> Op {
    op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.expect("get");
            c.simple_query("SELECT 1").await.expect("query");
        }
    })
}

/// `SELECT 1` (simple query) through deadpool-postgres.
pub fn select1_deadpool(pool: deadpool_postgres::Pool) -> Op {
    op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.expect("get");
            c.simple_query("SELECT 1").await.expect("query");
        }
    })
}

/// `SELECT 1` (simple query) through bb8-postgres.
pub fn select1_bb8(pool: Bb8PgPool) -> Op {
    op(move || {
        let p = pool.clone();
        async move {
            let c = p.get().await.expect("get");
            c.simple_query("SELECT 1").await.expect("query");
        }
    })
}
