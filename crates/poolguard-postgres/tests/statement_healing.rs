//! Statement-cache self-healing against the real server: a migration under load fails no
//! request, a deallocated statement is prepared again, and `invalidate_statements` empties
//! every connection's cache.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{invalidate_statements, PostgresManager};
use poolguard_testkit::outage::wait_for;

/// A deadline for the test itself, far above any expected duration: reaching it is a hang.
const HANG: Duration = Duration::from_secs(20);

fn pool(m: PostgresManager, max: usize) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(max)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_under_load_fails_no_request() {
    let (builder, _app) = manager_builder("pg_heal_load").await;
    let pool = pool(builder.build().unwrap(), 4);
    let admin = admin().await;
    let table = unique("pg_heal_t");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (a int, b text); INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 10) g"
        ))
        .await
        .unwrap();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let sql = format!("SELECT * FROM {table}");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (pool, ok, failed, stop, errors, sql) = (
            pool.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
            errors.clone(),
            sql.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let c = match pool.get().await {
                    Ok(c) => c,
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.lock().push(e.to_string());
                        continue;
                    }
                };
                match c.query_cached(&sql, &[]).await {
                    Ok(rows) if rows.len() == 10 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(rows) => {
                        errors.lock().push(format!("{} rows", rows.len()));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        errors.lock().push(e.to_string());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let more_requests = |n: u64| {
        let start = ok.load(Ordering::Relaxed);
        let ok = ok.clone();
        async move {
            wait_for("the load makes progress", HANG, || {
                ok.load(Ordering::Relaxed) >= start + n
            })
            .await;
        }
    };
    // Every connection has its statement cached before the first migration.
    more_requests(200).await;
    let status = pool.status();
    assert_eq!(status.size, 4, "all connections in use: {status:?}");
    admin
        .batch_execute(&format!("ALTER TABLE {table} ADD COLUMN c int"))
        .await
        .unwrap();
    more_requests(200).await;
    admin
        .batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN a TYPE bigint"))
        .await
        .unwrap();
    more_requests(200).await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        tokio::time::timeout(HANG, t).await.unwrap().unwrap();
    }

    let stats = pool.manager().stats();
    println!(
        "ALTER TABLE under load: {} requests, {} failed, {} statements re-prepared",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        stats.statements_reprepared
    );
    let first_errors: Vec<String> = errors.lock().iter().take(5).cloned().collect();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {first_errors:?}"
    );
    assert!(
        stats.statements_reprepared > 0,
        "the migrations made cached statements stale: {stats:?}"
    );
    let c = pool.get().await.unwrap();
    let rows = c.query_cached(&sql, &[]).await.unwrap();
    assert_eq!(rows[0].columns().len(), 3, "the new column is seen");
    let a: i64 = rows[0].get("a");
    assert!(a >= 1, "the changed type is seen");
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deallocated_statement_is_prepared_again() {
    let (builder, _app) = manager_builder("pg_heal_dealloc").await;
    let pool = pool(builder.build().unwrap(), 1);
    let c = pool.get().await.unwrap();
    let sql = "SELECT $1::int + 1";

    let n: i32 = c.query_cached(sql, &[&1]).await.unwrap()[0].get(0);
    assert_eq!(n, 2);
    assert_eq!(c.cached_statements(), 1);
    for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
        c.batch_execute(reset).await.unwrap();
        let n: u64 = c.execute_cached(sql, &[&1]).await.unwrap();
        assert_eq!(n, 1, "after {reset}");
    }
    assert_eq!(pool.manager().stats().statements_reprepared, 2);

    // A cached statement used directly: the error is the caller's, and the tap saw it, so
    // the next prepare_cached prepares afresh instead of handing out the dead statement.
    let st = c.prepare_cached(sql).await.unwrap();
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    let e = c.query(&st, &[&1]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("26000"), "{e}");
    drop(st);
    let st = c.prepare_cached(sql).await.unwrap();
    let n: i32 = c.query_one(&st, &[&41]).await.unwrap().get(0);
    assert_eq!(n, 42);
}

#[tokio::test]
async fn inside_a_transaction_a_stale_statement_is_not_retried() {
    let (builder, _app) = manager_builder("pg_heal_tx").await;
    let pool = pool(builder.build().unwrap(), 1);
    let admin = admin().await;
    let table = unique("pg_heal_tx_t");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (1)"
        ))
        .await
        .unwrap();
    let sql = format!("SELECT * FROM {table}");
    let mut c = pool.get().await.unwrap();
    c.query_cached(&sql, &[]).await.unwrap();
    admin
        .batch_execute(&format!("ALTER TABLE {table} ADD COLUMN b int"))
        .await
        .unwrap();

    let tx = c.transaction().await.unwrap();
    let e = tx.query_cached(&sql, &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e}");
    tx.rollback().await.unwrap();
    assert_eq!(pool.manager().stats().statements_reprepared, 0);
    // The entry was dropped: the next call prepares afresh.
    let rows = c.query_cached(&sql, &[]).await.unwrap();
    assert_eq!(rows[0].columns().len(), 2);
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalidate_statements_empties_idle_and_held_connections() {
    let (builder, _app) = manager_builder("pg_heal_inval").await;
    let pool = pool(builder.build().unwrap(), 2);
    let held = pool.get().await.unwrap();
    let idle = pool.get().await.unwrap();
    for c in [&held, &idle] {
        c.prepare_cached("SELECT 1").await.unwrap();
        c.prepare_cached("SELECT 2").await.unwrap();
        assert_eq!(c.cached_statements(), 2);
    }
    let idle_id = idle.id();
    drop(idle);

    invalidate_statements(&pool);
    assert_eq!(held.cached_statements(), 0, "held connection emptied");
    let idle = pool.get().await.unwrap();
    assert_eq!(idle.id(), idle_id);
    assert_eq!(idle.cached_statements(), 0, "idle connection emptied");
    let stats = pool.manager().stats();
    assert_eq!(stats.invalidations, 1);
    assert_eq!(stats.statement_caches_cleared, 2);
    // The caches fill again.
    let st = held.prepare_cached("SELECT 1").await.unwrap();
    held.query(&st, &[]).await.unwrap();
    assert_eq!(held.cached_statements(), 1);
}
