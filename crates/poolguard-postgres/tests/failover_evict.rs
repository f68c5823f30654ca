//! The PostgreSQL failover classes feed the pool's automatic soft-evict (`failover_burst`),
//! against the shared server, each test in its own sessions only: `read_only`
//! (25006, "cannot execute ... in a read-only transaction", provoked by
//! `default_transaction_read_only = on` in the pool's own sessions) and `admin_shutdown`
//! (57P01, the pool's own backends terminated mid-query, found by a unique application_name).

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_postgres::{failover_class, ReportPg};
use tokio_postgres::error::SqlState;

fn failover_finding(pool: &Pool<poolguard_postgres::PostgresManager>) -> String {
    pool.doctor()
        .into_iter()
        .find(|f| f.code == "conn.failover")
        .map(|f| f.message)
        .expect("the doctor reports the failover")
}

#[tokio::test]
async fn read_only_errors_in_a_burst_soft_evict_the_pool() {
    let (b, _app) = manager_builder("failover11_ro").await;
    let m = b
        .init_sql(["SET default_transaction_read_only = on"])
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(10))
        .failover_burst(Some(3))
        .failover_window(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.get().await.unwrap());
    }
    drop(pool.get().await.unwrap()); // a fourth, idle
    for (i, c) in held.iter_mut().enumerate() {
        // Refused before anything is created: no table to clean up.
        let e = c
            .batch_execute("CREATE TABLE failover11_never_created (i int)")
            .await
            .expect_err("a read-only session refuses writes");
        assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION), "{e}");
        assert_eq!(failover_class(&e), Some("read_only"));
        assert_eq!(c.report_pg(&e), ErrorClass::Fatal);
        assert_eq!(pool.stats().auto_soft_evicts, u64::from(i == 2));
    }
    assert_eq!(
        pool.stats().closed_by(CloseReason::Evicted),
        1,
        "the idle one"
    );
    let msg = failover_finding(&pool);
    assert!(msg.contains("3 `read_only` errors"), "{msg}");
    drop(held);
}

#[tokio::test]
async fn terminated_backends_are_an_admin_shutdown_burst() {
    let admin = admin().await;
    let (b, app) = manager_builder("failover11_term").await;
    let pool = Pool::builder(b.build().unwrap())
        .max_size(2)
        .acquire_timeout(Duration::from_secs(10))
        .failover_burst(Some(2))
        .build()
        .unwrap();
    let mut c1 = pool.get().await.unwrap();
    let mut c2 = pool.get().await.unwrap();
    let sleep = "SELECT pg_sleep(30)";
    let (r1, r2, killed) = tokio::join!(c1.simple_query(sleep), c2.simple_query(sleep), async {
        eventually("both queries running", || async {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                    &[&app],
                )
                .await
                .unwrap()
                .get(0);
            n == 2
        })
        .await;
        terminate(&admin, &app).await
    });
    assert_eq!(killed, 2);
    for (c, r) in [(&mut c1, r1), (&mut c2, r2)] {
        let e = r.expect_err("terminated mid-query");
        assert_eq!(e.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{e}");
        assert_eq!(failover_class(&e), Some("admin_shutdown"));
        assert_eq!(c.report_pg(&e), ErrorClass::Fatal);
    }
    assert_eq!(pool.stats().auto_soft_evicts, 1);
    let msg = failover_finding(&pool);
    assert!(msg.contains("2 `admin_shutdown` errors"), "{msg}");
    drop((c1, c2));
    // Served again by new backends.
    let c = pool.get().await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}
