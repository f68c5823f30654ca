//! `query_timeout`: a request that waits too long is cancelled on the server and its
//! connection closed, against the real server and through a silent network.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, Pool};
use poolguard_postgres::{BuildError, PostgresManager};
use poolguard_testkit::outage::wait_for;
use poolguard_testkit::proxy::FaultProxy;

/// A deadline for the test itself, far above any expected duration: reaching it is a hang.
const HANG: Duration = Duration::from_secs(10);

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_long_query_is_cancelled_on_the_server_and_its_connection_evicted() {
    let (builder, app) = manager_builder("pg_qtimeout").await;
    // Generous for the setup queries on a loaded machine; pg_sleep(30) is far beyond it.
    let pool = pool(
        builder
            .query_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let admin = admin().await;

    let c = pool.get().await.unwrap();
    let first = c.id();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let r = tokio::time::timeout(HANG, c.simple_query("SELECT pg_sleep(30)"))
        .await
        .expect("the query_timeout ended the query, not the test's deadline");
    let e = r.expect_err("pg_sleep(30) cannot finish within 1 s");
    assert!(e.is_closed(), "the connection was closed under it: {e}");
    assert!(c.timed_out(), "the connection says why");
    drop(c);

    wait_for("the connection is evicted", HANG, || {
        pool.stats().closed_by(CloseReason::Broken) >= 1
    })
    .await;
    let c = pool.get().await.unwrap();
    assert_ne!(
        c.id(),
        first,
        "the timed-out connection is never handed out again"
    );
    c.simple_query("SELECT 1").await.unwrap();
    assert!(!c.timed_out());

    // The server stopped the sleep (the cancel request) and the backend is gone.
    eventually("the backend left pg_sleep and exited", || async {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 \
                 OR (application_name = $2 AND query LIKE 'SELECT pg_sleep%' AND state = 'active')",
                &[&pid, &app],
            )
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
}

#[tokio::test]
async fn a_fast_query_is_not_affected() {
    let (builder, _app) = manager_builder("pg_qtimeout_fast").await;
    let pool = pool(
        builder
            .query_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let c = pool.get().await.unwrap();
    let id = c.id();
    for _ in 0..20 {
        c.simple_query("SELECT pg_sleep(0.001)").await.unwrap();
    }
    drop(c);
    let c = pool.get().await.unwrap();
    assert_eq!(c.id(), id, "a healthy connection is reused");
    assert!(!c.timed_out());
}

#[tokio::test]
async fn a_frozen_server_fails_the_query_after_the_deadline_instead_of_hanging() {
    drop(admin().await);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 5432)))
        .await
        .unwrap();
    let m = PostgresManager::builder(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=test connect_timeout=2",
        proxy.addr().port()
    ))
    .application_name(&unique("pg_qtimeout_frozen"))
    .query_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let pool = pool(m);
    let c = pool.get().await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();

    proxy.blackhole(true);
    let r = tokio::time::timeout(HANG, c.simple_query("SELECT 1"))
        .await
        .expect("the query_timeout ended the query, not the test's deadline");
    let e = r.expect_err("no answer can come through a blackhole");
    assert!(e.is_closed(), "{e}");
    assert!(c.timed_out());
    drop(c);
    wait_for("the connection is evicted", HANG, || {
        pool.stats().closed_by(CloseReason::Broken) >= 1
    })
    .await;
    assert_eq!(pool.status().size, 0, "nothing silent is kept");
}

#[test]
fn a_zero_query_timeout_is_refused() {
    let e = PostgresManager::builder("host=127.0.0.1 user=postgres")
        .query_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::ZeroQueryTimeout), "{e}");
}

#[tokio::test]
async fn the_timeout_pattern_with_cancel_query_stops_the_server_and_keeps_the_connection() {
    let (builder, _app) = manager_builder("pg_qtimeout_pattern").await;
    // One connection, so the next get waits for the reset of the one given back.
    let pool = Pool::builder(builder.build().unwrap())
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let admin = admin().await;
    let c = pool.get().await.unwrap();
    let id = c.id();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // The documented pattern: the caller's own deadline, then a cancel.
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        c.simple_query("SELECT pg_sleep(30)"),
    )
    .await;
    assert!(r.is_err(), "pg_sleep(30) is still running");
    tokio::time::timeout(HANG, c.cancel_query())
        .await
        .expect("the cancel request has a deadline")
        .expect("the cancel request reaches the server");
    drop(c);

    // The server answered the cancelled request (57014), so the pool could reset the
    // connection and hands the same one out again, idle.
    let c = tokio::time::timeout(HANG, pool.get())
        .await
        .expect("the reset waited for the cancelled answer, not for pg_sleep")
        .unwrap();
    assert_eq!(c.id(), id, "a cancelled query leaves the connection usable");
    c.simple_query("SELECT 1").await.unwrap();
    let running: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%'",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "the backend is on to the next query");
}
