//! `init_sql`: statements run once per new connection, inside the connect; their settings
//! are the connection's baseline (kept across borrows, restored after a reset that undid
//! them); a failing statement fails the connect, naming the statement without its text.
//! Needs the real server on 127.0.0.1:5432 (fails loudly without it).

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::{Error as PoolError, Phase, Pool};
use poolguard_postgres::{Error, PostgresManager, RecyclingMethod, SessionChange};

async fn one(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

async fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .reset_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn init_sql_is_the_baseline_of_every_new_connection() {
    for method in [RecyclingMethod::Fast, RecyclingMethod::Clean] {
        let (b, _app) = manager_builder("init_sql").await;
        let m = b
            .recycling(method)
            .init_sql([
                "SET search_path TO pg_catalog, public",
                "SET statement_timeout = '7s'",
            ])
            .build()
            .unwrap();
        let p = pool(m).await;
        let c = p.get().await.unwrap();
        let pid = one(&c, "SELECT pg_backend_pid()").await;
        assert_eq!(one(&c, "SHOW search_path").await, "pg_catalog, public");
        assert_eq!(one(&c, "SHOW statement_timeout").await, "7s");
        // A borrower changes a setting: the reset undoes it and the baseline comes back.
        c.batch_execute("SET search_path TO public").await.unwrap();
        drop(c);
        let c = p.get().await.unwrap();
        assert_eq!(
            one(&c, "SELECT pg_backend_pid()").await,
            pid,
            "same backend"
        );
        assert_eq!(
            one(&c, "SHOW search_path").await,
            "pg_catalog, public",
            "{method:?}: the baseline is restored after the reset"
        );
        assert_eq!(one(&c, "SHOW statement_timeout").await, "7s");
        drop(c);
        // The init statements themselves are not state left behind: only the borrower's
        // `SET` was counted (and reset).
        if method == RecyclingMethod::Fast {
            let stats = p.manager().session_stats();
            assert_eq!(stats.count(SessionChange::Setting), 1, "{stats:?}");
        }
    }
}

#[tokio::test]
async fn a_failing_init_statement_fails_the_connect_naming_it_without_its_text() {
    let (b, _app) = manager_builder("init_sql_bad").await;
    let m = b
        .init_sql(["SET search_path TO public", "SELEC 'hunter2' AS secret"])
        .build()
        .unwrap();
    let p = pool(m).await;
    let e = p.get().await.expect_err("the second statement is invalid");
    assert_eq!(e.phase(), Some(Phase::Connect));
    match &e {
        PoolError::Backend { source, .. } => match &**source {
            Error::InitSql {
                index,
                head,
                source,
            } => {
                assert_eq!(*index, 2);
                assert_eq!(head, "SELEC ...");
                assert_eq!(
                    source.code().map(|c| c.code()),
                    Some("42601"),
                    "syntax error"
                );
            }
            other => panic!("expected InitSql, got {other:?}"),
        },
        other => panic!("expected a backend error, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("init_sql statement #2"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(p.stats().connect_failures, 1);

    // An empty statement is refused at build time.
    let (b, _app) = manager_builder("init_sql_empty").await;
    let err = b
        .init_sql(["SET search_path TO public", " "])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("#2 is empty"), "{err}");
}
