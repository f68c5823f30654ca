//! The manager against the real PostgreSQL: connect, validate, reset, close, classification.

mod common;

use std::future::Future;

use common::*;
use poolguard::conn::{ErrorClass, Manager};
use poolguard_postgres::{Error, PostgresManager, RecyclingMethod};

async fn count_rows(admin: &tokio_postgres::Client, table: &str) -> i64 {
    admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn last_query(admin: &tokio_postgres::Client, app: &str) -> String {
    admin
        .query_one(
            "SELECT query FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connect_validate_and_close_stop_the_backend() {
    let admin = admin().await;
    let (b, app) = manager_builder("pg_close").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    m.validate(&mut c).await.unwrap();
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(backends(&admin, &app).await, 1);
    assert!(!m.is_broken(&mut c));
    m.close(c).await;
    eventually("backend gone after close", || async {
        backends(&admin, &app).await == 0
    })
    .await;
}

#[tokio::test]
async fn dropping_a_connection_stops_its_task_and_backend() {
    let admin = admin().await;
    let (b, app) = manager_builder("pg_drop").await;
    let m = b.build().unwrap();
    let c = m.connect().await.unwrap();
    assert_eq!(backends(&admin, &app).await, 1);
    drop(c);
    eventually("backend gone after drop", || async {
        backends(&admin, &app).await == 0
    })
    .await;
}

/// The test: BEGIN, insert, give the connection back; the next borrower neither
/// sees nor commits the row.
#[tokio::test]
async fn open_transaction_is_rolled_back_on_return() {
    let admin = admin().await;
    let table = unique("pg_tx");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    for method in [
        RecyclingMethod::Fast,
        RecyclingMethod::Verified,
        RecyclingMethod::Clean,
    ] {
        let (b, _app) = manager_builder("pg_tx").await;
        let m = b.recycling(method).build().unwrap();
        let mut c = m.connect().await.unwrap();
        c.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .await
            .unwrap();
        m.reset(&mut c).await.unwrap();
        // The next borrower: its own view and its COMMIT must not include the row.
        let seen: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            seen, 0,
            "{method:?}: next borrower sees the uncommitted row"
        );
        c.batch_execute("COMMIT").await.unwrap();
        assert_eq!(
            count_rows(&admin, &table).await,
            0,
            "{method:?}: the row was committed"
        );
    }
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_transaction_is_rolled_back_on_return() {
    let (b, _app) = manager_builder("pg_failed_tx").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let err = c.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(m.classify(&Error::from(err)), ErrorClass::Transient);
    m.reset(&mut c).await.unwrap();
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(
        one, 1,
        "connection usable after reset of an aborted transaction"
    );
}

#[tokio::test]
async fn transaction_guard_dropped_without_commit_is_rolled_back() {
    let admin = admin().await;
    let table = unique("pg_txguard");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    let (b, _app) = manager_builder("pg_txguard").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    {
        let tx = c.transaction().await.unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
            .await
            .unwrap();
    }
    m.reset(&mut c).await.unwrap();
    c.batch_execute("COMMIT").await.ok();
    assert_eq!(count_rows(&admin, &table).await, 0);
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// A caller cancelled while its `BEGIN; INSERT` was in flight: the request may reach the
/// server after the connection came back. Reset must not trust a stale "idle".
#[tokio::test]
async fn request_cancelled_in_flight_is_rolled_back_on_return() {
    let admin = admin().await;
    let table = unique("pg_cancel");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    let (b, _app) = manager_builder("pg_cancel").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    // Poll the query once (which queues the request), then drop it: a cancellation right
    // after the send, before the connection task has even written it.
    let sql = format!("BEGIN; INSERT INTO {table} VALUES (1)");
    // A completed query first, so the connection task is parked on its channel.
    c.batch_execute("SELECT 1").await.unwrap();
    {
        let mut fut = Box::pin(c.batch_execute(&sql));
        let pending =
            std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_pending()))
                .await;
        assert!(pending, "the query should still be in flight");
    }
    m.reset(&mut c).await.unwrap();
    c.batch_execute("COMMIT").await.ok();
    assert_eq!(
        count_rows(&admin, &table).await,
        0,
        "the cancelled transaction leaked"
    );
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn fast_reset_of_a_clean_connection_sends_nothing() {
    let admin = admin().await;
    let (b, app) = manager_builder("pg_fast").await;
    let m = b.recycling(RecyclingMethod::Fast).build().unwrap();
    let mut c = m.connect().await.unwrap();
    c.batch_execute("SELECT 42").await.unwrap();
    m.reset(&mut c).await.unwrap();
    assert_eq!(
        last_query(&admin, &app).await,
        "SELECT 42",
        "Fast reset sent a query"
    );

    let (b, app) = manager_builder("pg_clean").await;
    let m = b.recycling(RecyclingMethod::Clean).build().unwrap();
    let mut c = m.connect().await.unwrap();
    let s = c.prepare_cached("SELECT 7").await.unwrap();
    c.query_one(&s, &[]).await.unwrap();
    assert_eq!(c.cached_statements(), 1);
    c.batch_execute("SET work_mem = '7MB'").await.unwrap();
    m.reset(&mut c).await.unwrap();
    assert_eq!(last_query(&admin, &app).await, "DISCARD ALL");
    assert_eq!(
        c.cached_statements(),
        0,
        "Clean empties the statement cache"
    );
    let wm: String = c.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_ne!(wm, "7MB", "Clean resets session settings");
}

#[tokio::test]
async fn statement_cache_survives_borrows() {
    let (b, _app) = manager_builder("pg_stmt").await;
    let m = b.statement_cache_capacity(2).build().unwrap();
    let mut c = m.connect().await.unwrap();
    async fn server_side(c: &poolguard_postgres::PgConnection) -> String {
        let rows = c
            .simple_query("SELECT count(*) FROM pg_prepared_statements")
            .await
            .unwrap();
        match &rows[1] {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }
    let _s1 = c.prepare_cached("SELECT 1").await.unwrap();
    assert_eq!(server_side(&c).await, "1");
    m.reset(&mut c).await.unwrap();
    let _s1b = c.prepare_cached("SELECT 1").await.unwrap();
    assert_eq!(
        server_side(&c).await,
        "1",
        "same statement reused across borrows"
    );
    c.prepare_cached("SELECT 2").await.unwrap();
    c.prepare_cached("SELECT 3").await.unwrap();
    assert!(c.cached_statements() <= 2, "cache bounded");
}

#[tokio::test]
async fn terminated_backend_is_fatal_and_broken() {
    let admin = admin().await;
    let (b, app) = manager_builder("pg_term").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    assert_eq!(terminate(&admin, &app).await, 1);
    let err = Error::from(c.query_one("SELECT 1", &[]).await.unwrap_err());
    assert_eq!(m.classify(&err), ErrorClass::Fatal, "{err}");
    // The server says 57P01 when the message arrives before the socket closes.
    if let Some(code) = err.code() {
        assert_eq!(code.code(), "57P01", "{err}");
    }
    assert!(
        m.is_broken(&mut c),
        "a terminated connection must be reported broken"
    );
    assert!(m.validate(&mut c).await.is_err());
}

#[tokio::test]
async fn query_errors_are_transient() {
    let (b, _app) = manager_builder("pg_transient").await;
    let m = b.build().unwrap();
    let mut c = m.connect().await.unwrap();
    for sql in [
        "SELEC 1",
        "SELECT 1/0",
        "SELECT * FROM no_such_table_poolguard",
    ] {
        let err = Error::from(c.batch_execute(sql).await.unwrap_err());
        assert_eq!(m.classify(&err), ErrorClass::Transient, "{sql}: {err}");
    }
    let err = Error::from(c.query_one("SELECT 1 WHERE false", &[]).await.unwrap_err());
    assert_eq!(m.classify(&err), ErrorClass::Transient, "row count: {err}");
    m.validate(&mut c).await.unwrap();
    assert!(!m.is_broken(&mut c));
}

#[tokio::test]
async fn refused_port_is_a_connect_error() {
    drop(admin().await);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let m = PostgresManager::new(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=test"
    ))
    .unwrap();
    let err = m.connect().await.unwrap_err();
    match &err {
        Error::Connect { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert_eq!(m.classify(&err), ErrorClass::Fatal);
}

#[tokio::test]
async fn unknown_database_and_role_say_so() {
    drop(admin().await);
    let m =
        PostgresManager::new("host=127.0.0.1 user=postgres dbname=poolguard_no_such_db").unwrap();
    let err = m.connect().await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");
    assert!(err.to_string().contains("unknown database"), "{err}");

    let m = PostgresManager::new("host=127.0.0.1 user=poolguard_no_such_role dbname=test").unwrap();
    let err = m.connect().await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("28000"), "{err}");
}

#[tokio::test]
async fn wrong_password_says_so() {
    drop(admin().await);
    let ok = PostgresManager::new(
        "host=127.0.0.1 user=poolguard_pw password=poolguard-secret dbname=test",
    )
    .unwrap();
    if let Err(e) = ok.connect().await {
        panic!("role poolguard_pw with password auth is missing ({e}); run `scripts/services.sh` to set it up");
    }
    let m = PostgresManager::new("host=127.0.0.1 user=poolguard_pw password=wrong dbname=test")
        .unwrap();
    let err = match m.connect().await {
        Ok(_) => panic!(
            "a wrong password was accepted: pg_hba.conf trusts poolguard_pw; run `scripts/services.sh` to add its scram line"
        ),
        Err(e) => e,
    };
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    assert!(err.to_string().contains("wrong password"), "{err}");
}

#[test]
fn builder_explains_bad_settings() {
    let e = PostgresManager::new("user=postgres").unwrap_err();
    assert!(e.to_string().contains("no host"), "{e}");
    let e = PostgresManager::new("host=127.0.0.1").unwrap_err();
    assert!(e.to_string().contains("no user"), "{e}");
    let e = PostgresManager::new("host=127.0.0.1 user=x sslmode=require").unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    let e = PostgresManager::new("host=127.0.0.1 user=x bogus=1").unwrap_err();
    assert!(e.to_string().contains("connection string"), "{e}");
}
