//! A migration under load, poolguard-postgres against deadpool-postgres: 16 tasks on a pool
//! of 4 run a cached `SELECT * FROM t` while `ALTER TABLE t ADD COLUMN` and then
//! `ALTER TABLE t ALTER COLUMN a TYPE bigint` run; each phase is a fixed number of requests.
//! poolguard uses `query_cached` (re-prepare and retry once on a stale statement);
//! deadpool-postgres uses its `prepare_cached` + `query`, the documented way. Not a
//! benchmark: it counts failed requests per phase.
//!
//! ```sh
//! scripts/services.sh
//! cargo run -p poolguard-bench --example pg_alter_under_load [REQUESTS_PER_PHASE]
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::Pool;
use poolguard_bench::backends::PG_URL;
use poolguard_postgres::PostgresManager;

const TASKS: u64 = 16;
const POOL: usize = 4;

type Query =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Runs `requests` requests over [`TASKS`] tasks; returns the failures.
async fn phase(requests: u64, sql: &str, query: &Query) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let (next, failed, query, sql) =
                (next.clone(), failed.clone(), query.clone(), sql.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let r = tokio::time::timeout(Duration::from_secs(30), query(sql.clone()))
                        .await
                        .unwrap_or_else(|_| Err("timed out".into()));
                    if r.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    failed.load(Ordering::Relaxed)
}

async fn run(name: &str, requests: u64, admin: &tokio_postgres::Client, query: Query) {
    let table = format!("pg_alter_bench_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int, b text); INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 10) g"
        ))
        .await
        .expect("create table");
    let sql = format!("SELECT * FROM {table}");
    let before = phase(requests, &sql, &query).await;
    admin
        .batch_execute(&format!("ALTER TABLE {table} ADD COLUMN c int"))
        .await
        .expect("alter");
    let added = phase(requests, &sql, &query).await;
    admin
        .batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN a TYPE bigint"))
        .await
        .expect("alter");
    let retyped = phase(requests, &sql, &query).await;
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop");
    println!(
        "{name:<18} failed requests of {requests} per phase: before {before}, after ADD COLUMN {added}, after ALTER TYPE {retyped}"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let (admin, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/services.sh)");
    tokio::spawn(conn);

    let m = PostgresManager::builder(PG_URL).build().expect("manager");
    let pool = Pool::builder(m).max_size(POOL).build().expect("pool");
    let p = pool.clone();
    let q: Query = Arc::new(move |sql| {
        let p = p.clone();
        Box::pin(async move {
            let c = p.get().await.map_err(|e| e.to_string())?;
            c.query_cached(&sql, &[]).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    });
    run("poolguard", requests, &admin, q).await;
    println!(
        "{:<18} statements re-prepared: {}",
        "",
        pool.manager().stats().statements_reprepared
    );

    let pg: tokio_postgres::Config = PG_URL.parse().expect("config");
    let mgr = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let dp = deadpool_postgres::Pool::builder(mgr)
        .max_size(POOL)
        .build()
        .expect("deadpool");
    let q: Query = Arc::new(move |sql| {
        let dp = dp.clone();
        Box::pin(async move {
            let c = dp.get().await.map_err(|e| e.to_string())?;
            let st = c.prepare_cached(&sql).await.map_err(|e| e.to_string())?;
            c.query(&st, &[]).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    });
    run("deadpool-postgres", requests, &admin, q).await;
}
