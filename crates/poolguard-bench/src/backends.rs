//! Setup shared by the real-server backends bench (`benches/backends.rs`) and its p99 probe
//! (`examples/backends_p99.rs`): server addresses, the pools under test configured the same way
//! in both, the type-erased request and the driver that spreads requests over tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::Pool;
use poolguard::diag::Histogram;
use poolguard_postgres::{PostgresManager, RecyclingMethod};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// The local PostgreSQL (`scripts/services.sh` starts it).
pub const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
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

/// poolguard on PostgreSQL with no checkout round trip (`RecyclingMethod::Fast`), [`POOL`]
/// connections kept warm.
pub fn poolguard_pg(label: &str) -> PgPool {
    let m = PostgresManager::builder(PG_URL)
        .recycling(RecyclingMethod::Fast)
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
    let pg: tokio_postgres::Config = PG_URL.parse().expect("config");
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
    let pg: tokio_postgres::Config = PG_URL.parse().expect("config");
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
