// The router of the `status_service` example, in its own file so that
// its test (and the README's doctest) can drive it in-process (`tower::ServiceExt::oneshot`).
// Plain comments, not `//!`: the README's doctest `include!`s this file.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use poolguard::conn::{CloseReason, Pool};
use poolguard_postgres::PostgresManager;
use serde_json::{json, Value};

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

async fn status(State(pool): State<PgPool>) -> Json<Value> {
    let s = pool.status();
    let st = pool.stats();
    let closed: serde_json::Map<String, Value> = CloseReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(st.closed_by(*r))))
        .collect();
    Json(json!({
        "size": s.size,
        "max_size": s.max_size,
        "idle": s.idle,
        "in_use": s.in_use,
        "opening": s.opening,
        "waiters": s.waiters,
        "breaker": s.breaker.to_string(),
        "closed": s.closed,
        "stats": {
            "gets": st.gets,
            "waited": st.waited,
            "timed_out": st.timed_out,
            "unavailable": st.unavailable,
            "created": st.created,
            "connect_failures": st.connect_failures,
            "validation_failures": st.validation_failures,
            "closed_by": closed,
            "wait_p99_us": st.wait_time.p99().as_micros() as u64,
            "hold_p99_us": st.hold_time.p99().as_micros() as u64,
        },
        "doctor": pool.doctor().iter().map(|f| f.to_string()).collect::<Vec<_>>(),
    }))
}

async fn metrics(State(pool): State<PgPool>) -> String {
    pool.prometheus()
}

/// The service's routes: `/now` (a query through the pool), `/status` (the pool as JSON) and
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
