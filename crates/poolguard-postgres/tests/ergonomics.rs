//! `prepare_cached` through `&self` and inside a transaction, and `report_pg`, against the
//! real server.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_postgres::{PostgresManager, ReportPg};
use poolguard_testkit::outage::wait_for;

const HANG: Duration = Duration::from_secs(10);

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn prepare_cached_takes_shared_references_and_works_inside_a_transaction() {
    let (builder, _app) = manager_builder("pg_ergo").await;
    let pool = pool(builder.build().unwrap());
    let mut c = pool.get().await.unwrap();

    // Two futures on the same connection at once (pipelined), both through `&PgConnection`.
    let conn = &*c;
    let (a, b) = tokio::join!(
        conn.prepare_cached("SELECT $1::int + 1"),
        conn.prepare_cached("SELECT $1::int * 2")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let x: i32 = conn.query_one(&a, &[&20]).await.unwrap().get(0);
    let y: i32 = conn.query_one(&b, &[&21]).await.unwrap().get(0);
    assert_eq!((x, y), (21, 42));
    assert_eq!(conn.cached_statements(), 2);

    // Inside a transaction: the first SQL comes from the cache, a new one joins it.
    let tx = c.transaction().await.unwrap();
    let again = tx.prepare_cached("SELECT $1::int + 1").await.unwrap();
    assert_eq!(again.columns().len(), 1);
    let t = tx.prepare_cached("SELECT $1::int - 1").await.unwrap();
    let z: i32 = tx.query_one(&t, &[&43]).await.unwrap().get(0);
    assert_eq!(z, 42);
    tx.rollback().await.unwrap();
    // Statements are session objects: the rollback does not undo them, so they stay cached
    // and usable.
    assert_eq!(c.cached_statements(), 3);
    let t = c.prepare_cached("SELECT $1::int - 1").await.unwrap();
    let z: i32 = c.query_one(&t, &[&1]).await.unwrap().get(0);
    assert_eq!(z, 0);
}

#[tokio::test]
async fn report_pg_keeps_the_error_and_closes_only_on_fatal_errors() {
    let (builder, app) = manager_builder("pg_report").await;
    let pool = pool(builder.build().unwrap());
    let admin = admin().await;

    let mut c = pool.get().await.unwrap();
    let first = c.id();
    let e = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(c.report_pg(&e), ErrorClass::Transient);
    // The error is still the caller's.
    assert_eq!(e.code().map(|c| c.code()), Some("22012"));
    assert!(!c.is_marked_broken());
    drop(c);

    let mut c = pool.get().await.unwrap();
    assert_eq!(c.id(), first, "a transient error keeps the connection");
    assert_eq!(terminate(&admin, &app).await, 1);
    let e = tokio::time::timeout(HANG, c.simple_query("SELECT 1"))
        .await
        .expect("the terminated session answers at once")
        .unwrap_err();
    assert_eq!(c.report_pg(&e), ErrorClass::Fatal, "{e}");
    assert!(c.is_marked_broken());
    drop(c);
    wait_for("the connection is closed as broken", HANG, || {
        pool.stats().closed_by(CloseReason::Broken) == 1
    })
    .await;
}
