//! A statement dropped just before its connection is returned (what `query("...", ..)` does
//! with the statement it prepares) leaves a `Close` + `Sync` unanswered. Such a connection is
//! reusable without waiting for that answer: the test makes the answer never come (blackhole)
//! and the next borrower still gets the connection, then sees the right session.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{PostgresManager, RecyclingMethod};
use poolguard_testkit::proxy::FaultProxy;

async fn proxied_pool(tag: &str) -> (FaultProxy, Pool<PostgresManager>) {
    drop(admin().await);
    let pg: tokio_postgres::Config = pg_url().parse().expect("url");
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("proxy");
    let m = PostgresManager::builder(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=test",
        proxy.addr().port()
    ))
    .application_name(&unique(tag))
    .recycling(RecyclingMethod::Fast)
    .build()
    .expect("manager");
    let pool = Pool::builder(m)
        .max_size(1)
        // Long enough that a reset waiting for the blackholed answer would outlast the
        // acquire deadline below: only a reset that does not wait lets the get succeed.
        .reset_timeout(Duration::from_secs(30))
        .acquire_timeout(Duration::from_secs(3))
        .build()
        .expect("pool");
    (proxy, pool)
}

/// Inside a transaction block, `now()` is the block's start, earlier than the statement's; in
/// a simple query's implicit transaction the two are the same instant.
async fn in_transaction_block(conn: &tokio_postgres::Client) -> bool {
    let msgs = conn
        .simple_query("SELECT now() <> statement_timestamp()")
        .await
        .expect("query");
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
            _ => None,
        })
        .expect("one row")
}

#[tokio::test]
async fn a_pending_statement_close_does_not_hold_the_connection_back() {
    let (proxy, pool) = proxied_pool("stmt_close").await;
    let conn = pool.get().await.expect("first get");
    let stmt = conn.prepare("SELECT 1").await.expect("prepare");
    let row = conn.query_one(&stmt, &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 1);
    drop(row); // a row holds its statement too
               // From here the server's answers are held back: the Close sent by the drop below is
               // never answered while the blackhole lasts.
    proxy.blackhole(true);
    drop(stmt);
    drop(conn);
    let conn = pool
        .get()
        .await
        .expect("the connection comes back without the Close's answer");
    assert_eq!(
        pool.stats().created,
        1,
        "the same connection, not a new one"
    );
    assert_eq!(
        pool.stats().closed.iter().sum::<u64>(),
        0,
        "nothing evicted"
    );
    proxy.blackhole(false);
    // The held answers arrive in order; the session is idle, not inside a transaction.
    let in_tx = tokio::time::timeout(Duration::from_secs(10), in_transaction_block(&conn))
        .await
        .expect("answer after the blackhole lifts");
    assert!(!in_tx, "no transaction block is open");
}

#[tokio::test]
async fn a_pending_close_inside_a_transaction_still_rolls_back() {
    let (proxy, pool) = proxied_pool("stmt_close_tx").await;
    let conn = pool.get().await.expect("get");
    conn.batch_execute("BEGIN").await.expect("begin");
    let stmt = conn.prepare("SELECT 1").await.expect("prepare");
    drop(stmt); // Close + Sync sent inside the transaction block
    drop(conn);
    // The reset waits for the answers (status T), rolls back, and only then lends it again.
    let conn = pool.get().await.expect("get after reset");
    assert!(
        !in_transaction_block(&conn).await,
        "the transaction was rolled back"
    );
    assert_eq!(pool.stats().resets, 1);
    drop(proxy);
}

/// A query by SQL string prepares a statement and closes it as the statement drops, so the
/// connection comes back with that `Close` unanswered (or not yet written); inside a
/// transaction block it always goes through the reset, which waits for every answer before
/// rolling back. Each checkout after such a return gets the same connection, idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_after_a_query_by_sql_string_gets_the_connection_idle() {
    let (builder, _app) = manager_builder("sql_string").await;
    let m = builder
        .recycling(RecyclingMethod::Fast)
        .build()
        .expect("manager");
    let pool = Pool::builder(m)
        .max_size(1)
        .reset_timeout(Duration::from_secs(30))
        .build()
        .expect("pool");
    const ROUNDS: i64 = 200;
    for round in 0..ROUNDS {
        let conn = pool.get().await.expect("get");
        assert!(
            !in_transaction_block(&conn).await,
            "round {round}: idle at checkout"
        );
        let in_block = round % 2 == 1;
        if in_block {
            conn.batch_execute("BEGIN").await.expect("begin");
        }
        let row = conn
            .query_one("SELECT $1::int8", &[&round])
            .await
            .expect("query by SQL string");
        assert_eq!(row.get::<_, i64>(0), round);
        drop(row);
        drop(conn);
    }
    let conn = pool.get().await.expect("last get");
    assert!(
        !in_transaction_block(&conn).await,
        "idle after the last return"
    );
    let stats = pool.stats();
    assert_eq!(stats.created, 1, "the same connection every time");
    assert_eq!(stats.closed.iter().sum::<u64>(), 0, "nothing evicted");
    assert!(
        stats.resets >= ROUNDS as u64 / 2,
        "every return inside a block is reset: {stats:?}"
    );
}
