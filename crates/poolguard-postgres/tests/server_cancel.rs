//! Server-side cancel on return: a query abandoned by its caller (a request timeout) is
//! cancelled on the server, the backend is idle again long before `reset_timeout`, and the
//! next borrower gets the same backend; a per-borrow `statement_timeout` is undone on return.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{Error, PostgresManager};
use tokio::time::{timeout, Instant};

/// The pool's reset_timeout in these tests: waiting it out would be caught by [`OUTER`].
const RESET_TIMEOUT: Duration = Duration::from_secs(30);
/// The tests' own deadline, a third of `RESET_TIMEOUT`: reaching it means the abandoned
/// query was waited for instead of cancelled.
const OUTER: Duration = Duration::from_secs(10);

async fn show(c: &poolguard_postgres::PgConnection) -> String {
    c.query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0)
}

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(60))
        .reset_timeout(RESET_TIMEOUT)
        .build()
        .unwrap()
}

async fn state_of(admin: &tokio_postgres::Client, pid: i32) -> String {
    admin
        .query_one(
            "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

/// Polls `pg_stat_activity` until the backend is `idle`, within [`OUTER`].
async fn until_idle(admin: &tokio_postgres::Client, pid: i32) {
    timeout(OUTER, async {
        while state_of(admin, pid).await != "idle" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the backend went idle before the test's deadline (a third of reset_timeout)");
}

async fn abandoned_query_is_cancelled(in_transaction: bool) {
    let (builder, _app) = manager_builder("pg_srvcancel").await;
    let pool = pool(builder.build().unwrap());
    let admin = admin().await;

    let c = pool.get().await.unwrap();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    if in_transaction {
        c.batch_execute("BEGIN").await.unwrap();
    }
    // The caller's request timeout: the future is dropped with the query running.
    let r = timeout(
        Duration::from_millis(100),
        c.simple_query("SELECT pg_sleep(30)"),
    )
    .await;
    assert!(r.is_err(), "pg_sleep(30) cannot finish in 100 ms");
    let dropped = Instant::now();
    drop(c);

    until_idle(&admin, pid).await;
    let to_idle = dropped.elapsed();
    let c = timeout(OUTER, pool.get())
        .await
        .expect("the next borrower did not wait for reset_timeout")
        .unwrap();
    let served = dropped.elapsed();
    let again: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, pid, "the same backend, reused");
    // Not inside the abandoned transaction: a new one can start and nothing is pending.
    c.batch_execute("BEGIN; COMMIT").await.unwrap();
    assert_eq!(state_of(&admin, pid).await, "idle");
    let stats = pool.manager().stats();
    assert!(stats.cancels_on_return >= 1, "{stats:?}");
    assert!(stats.cancels_sent >= 1, "{stats:?}");
    assert_eq!(stats.cancel_failures, 0, "{stats:?}");
    println!(
        "abandoned pg_sleep(30) (in_transaction={in_transaction}): backend idle {to_idle:?} after the drop, next borrower served after {served:?} (reset_timeout {RESET_TIMEOUT:?}), cancels sent {}",
        stats.cancels_sent
    );
}

#[tokio::test]
async fn an_abandoned_query_is_cancelled_and_its_backend_reused() {
    abandoned_query_is_cancelled(false).await;
}

#[tokio::test]
async fn an_abandoned_query_in_a_transaction_is_cancelled_and_rolled_back() {
    abandoned_query_is_cancelled(true).await;
}

#[tokio::test]
async fn a_per_borrow_statement_timeout_applies_and_is_undone_on_return() {
    let (builder, _app) = manager_builder("pg_stmt_timeout").await;
    let pool = pool(builder.build().unwrap());
    let c = pool.get().await.unwrap();
    let default = show(&c).await;
    c.set_statement_timeout(Some(Duration::from_micros(300)))
        .await
        .unwrap();
    assert_eq!(show(&c).await, "1ms", "rounded up, never 0 (no limit)");
    c.set_statement_timeout(Some(Duration::from_millis(50)))
        .await
        .unwrap();
    let e = timeout(OUTER, c.simple_query("SELECT pg_sleep(30)"))
        .await
        .expect("the server's statement_timeout ended the query")
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    let e = c
        .set_statement_timeout(Some(Duration::from_secs(30 * 24 * 3600)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::StatementTimeoutTooLong { .. }),
        "typed error: {e}"
    );
    let id = c.id();
    drop(c);

    let c = timeout(OUTER, pool.get()).await.unwrap().unwrap();
    assert_eq!(c.id(), id, "the same connection");
    assert_eq!(show(&c).await, default, "the reset undid the SET");
}
