//! Shared helpers of the PostgreSQL tests: the real server on 127.0.0.1:5432.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use poolguard_postgres::{PostgresManager, PostgresManagerBuilder};

/// Connection string of the test server (override with `POOLGUARD_PG`).
pub fn pg_url() -> String {
    std::env::var("POOLGUARD_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A name unique to this test process and call, for application_name, tables and roles.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails loudly when the server is not there.
pub async fn admin() -> tokio_postgres::Client {
    match tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at `{}`: {e}.\n\
             These tests need the real server: run `scripts/services.sh` (as root) to start or install it.",
            pg_url()
        ),
    }
}

/// A builder for the test server tagged with a unique application_name (returned too).
pub async fn manager_builder(tag: &str) -> (PostgresManagerBuilder, String) {
    drop(admin().await);
    let app = unique(tag);
    (
        PostgresManager::builder(&pg_url()).application_name(&app),
        app,
    )
}

/// Backends currently connected with this application_name.
pub async fn backends(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("count backends")
        .get(0)
}

/// Terminates every backend with this application_name; returns how many.
pub async fn terminate(admin: &tokio_postgres::Client, app: &str) -> i64 {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminate backends");
    rows.len() as i64
}

/// Waits (polling the server, bounded) until `f` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if f().await {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
