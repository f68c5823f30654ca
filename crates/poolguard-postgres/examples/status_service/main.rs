//! A small HTTP service on poolguard-postgres that exposes its pool's status as JSON.
//!
//! ```sh
//! cargo run -p poolguard-postgres --example status_service -- 127.0.0.1:3000 \
//!     "host=127.0.0.1 user=postgres dbname=test"
//! curl localhost:3000/now      # a query through the pool
//! curl localhost:3000/status   # the pool as JSON (status, totals, doctor findings)
//! curl localhost:3000/metrics  # Prometheus text
//! ```
//!
//! When the database is down, `/now` answers 503 at once with the pool's own explanation
//! (breaker open, connection refused, wrong password...), never after a hang.

mod app;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let url = args
        .next()
        .unwrap_or_else(|| "host=127.0.0.1 user=postgres dbname=test".into());
    let pool = app::pool(&url)?;
    let app = app::router(pool);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr} (/now, /status, /metrics)");
    axum::serve(listener, app).await?;
    Ok(())
}
