// The router of the `status_service` example, in its own file so that
// its test (and the README's doctest) can drive it in-process (`tower::ServiceExt::oneshot`).
// Plain comments, not `//!`: the README's doctest `include!`s this file.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use poolguard::conn::Pool;
use poolguard::diag::{Report, CONTENT_TYPE};
use poolguard_postgres::PostgresManager;

/// The pool the service shares between its handlers.
pub(crate) type PgPool = Pool<PostgresManager>;

async fn now(State(pool): State<PgPool>) -> Result<String, (StatusCode, String)> {
    let unavailable = |e: String| (StatusCode::SERVICE_UNAVAILABLE, e);
    let mut conn = pool.get().await.map_err(|e| unavailable(e.to_string()))?;
    // Every await has a deadline: the query too.
    let query = conn.query_one("SELECT now()::text", &[]);
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(Ok(row)) => Ok(row.get::<_, String>(0)),
        Ok(Err(e)) => {
            let e = poolguard_postgres::Error::from(e);
            conn.report(&e);
            Err(unavailable(e.to_string()))
        }
        Err(_) => {
            conn.mark_broken();
            Err(unavailable("query timed out after 5 s".into()))
        }
    }
}

async fn status(State(pool): State<PgPool>) -> Json<Report> {
    // Name, kind, status, totals and the doctor's findings, serialized by poolguard itself.
    Json(Report::of(&pool))
}

async fn metrics(State(pool): State<PgPool>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], pool.prometheus())
}

/// The service's routes: `/now` (a query through the pool), `/status` (the pool's report as JSON: status, totals, findings) and
/// `/metrics` (Prometheus text).
pub(crate) fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/now", get(now))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(pool)
}

/// The example's pool over the server at `url` (a tokio-postgres connection string): 8
/// connections at most, 2 kept warm, callers wait 2 s at most.
pub(crate) fn pool(url: &str) -> Result<PgPool, Box<dyn std::error::Error>> {
    let manager = PostgresManager::builder(url)
        .application_name("poolguard-example")
        .build()?;
    Ok(Pool::builder(manager)
        .name("example")
        .max_size(8)
        .min_idle(2)
        .acquire_timeout(Duration::from_secs(2))
        .build()?)
}
