//! Every duration a PostgreSQL user can set, at `Duration::MAX` and `Duration::ZERO`: each
//! either builds and then works against the real server, or is refused with a typed error
//! that names it. Nothing panics, nothing overflows.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{BuildError, Error, PostgresManager};

/// A deadline for the test itself: reaching it is a hang.
const HANG: Duration = Duration::from_secs(20);

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn select_1(pool: &Pool<PostgresManager>) -> i32 {
    let c = tokio::time::timeout(HANG, pool.get())
        .await
        .expect("get hung")
        .expect("get");
    tokio::time::timeout(HANG, c.query_one("SELECT 1", &[]))
        .await
        .expect("query hung")
        .expect("SELECT 1")
        .get(0)
}

#[tokio::test]
async fn query_timeout_max_builds_and_serves_zero_is_refused() {
    let (builder, _app) = manager_builder("pg_dur_max").await;
    let pool = pool(builder.query_timeout(Duration::MAX).build().unwrap());
    assert_eq!(
        select_1(&pool).await,
        1,
        "Duration::MAX means no practical limit"
    );

    let (builder, _app) = manager_builder("pg_dur_zero").await;
    let err = builder.query_timeout(Duration::ZERO).build().unwrap_err();
    assert!(matches!(err, BuildError::ZeroQueryTimeout), "{err:?}");
    assert!(err.to_string().contains("query_timeout"), "names it: {err}");
}

#[tokio::test]
async fn huge_connection_string_durations_build_and_serve() {
    // The largest seconds value the connection string can carry, for every duration key.
    let huge = u64::MAX;
    for key in [
        "connect_timeout",
        "keepalives_idle",
        "keepalives_interval",
        "tcp_user_timeout",
    ] {
        drop(admin().await);
        let url = format!("{} {key}={huge}", pg_url());
        match PostgresManager::builder(&url).build() {
            Ok(m) => assert_eq!(select_1(&pool(m)).await, 1, "{key}={huge}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(key), "a refusal names {key}: {text}");
            }
        }
    }
    for key in ["connect_timeout", "keepalives_idle", "tcp_user_timeout"] {
        let url = format!("{} {key}=0", pg_url());
        match PostgresManager::builder(&url).build() {
            // Zero means "none" for connect_timeout and tcp_user_timeout (as in libpq).
            Ok(m) => assert_eq!(select_1(&pool(m)).await, 1, "{key}=0"),
            Err(e) => assert!(e.to_string().contains(key), "names {key}: {e}"),
        }
    }
}

#[tokio::test]
async fn statement_timeout_at_the_extremes() {
    let (builder, _app) = manager_builder("pg_dur_stmt").await;
    let pool = pool(builder.build().unwrap());
    let c = pool.get().await.unwrap();
    let err = c
        .set_statement_timeout(Some(Duration::MAX))
        .await
        .expect_err("beyond PostgreSQL's limit");
    assert!(
        matches!(err, Error::StatementTimeoutTooLong { .. }),
        "typed: {err:?}"
    );
    // Zero is rounded up to the smallest real limit, never "no limit".
    c.set_statement_timeout(Some(Duration::ZERO)).await.unwrap();
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(shown, "0", "a zero timeout must not switch the limit off");
    c.set_statement_timeout(None).await.unwrap();
}
