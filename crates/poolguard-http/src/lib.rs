//! A diagnostics endpoint for the pools a service owns: a live dashboard, every pool's
//! figures and findings as JSON, and the Prometheus text, built on [axum].
//!
//! Register the service's pools in a [`Registry`] (it holds them weakly: a dropped pool
//! disappears from every answer), then either mount [`router`] into the service's own axum
//! router or run it on a port of its own with [`serve`] or [`Server`]:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use poolguard::diag::Registry;
//! use poolguard::object::Pool;
//!
//! let registry = Registry::new();
//! let buffers = Pool::builder(Vec::<u8>::new).name("buffers").build().expect("valid name");
//! registry.register(&buffers);
//!
//! // Either inside the service's router...
//! let app: axum::Router = axum::Router::new().merge(poolguard_http::router(registry.clone()));
//! # drop(app);
//! // ...or on its own port, on loopback.
//! let server = poolguard_http::Server::bind_loopback(9100, registry).await?;
//! println!("dashboard on http://{}/", server.local_addr());
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! Every route is `GET` only (the endpoint changes nothing), answers `Cache-Control:
//! no-store`, and is cut off after [`REQUEST_TIMEOUT`] with `408 Request Timeout`.
//!
//! * `GET /` — the live dashboard: one self-contained HTML page (inline CSS and script, no
//!   external asset) that reads `/pools` every second and draws its charts itself (inline
//!   SVG): per connection pool size, idle, in use, waiters and wait p99 over time, the
//!   breaker, the current holders with their call site and age, leaks; per object pool the
//!   retained bytes over time, the hit rate (by tier) and the trim traces as they happen;
//!   per reclaimer the backlog over time and the slow or stuck jobs while they run.
//! * `GET /pools` — every live pool as JSON (`application/json`), schema below.
//! * `GET /metrics` — [`Registry::prometheus`] with [`poolguard::diag::CONTENT_TYPE`].
//! * `GET /events` — server-sent events: an event `pools` with the `/pools` document, once a
//!   second, for [`EVENTS_LIFETIME`] (a browser's `EventSource` reconnects by itself).
//!
//! # The `/pools` document (schema version 1)
//!
//! ```text
//! {
//!   "schema_version": 1,                 // SCHEMA_VERSION; raised on an incompatible change
//!   "generated_at_unix_ms": 1764694800123,
//!   "pools": [                           // registration order; dropped pools are gone
//!     {
//!       "name": "db",                    // the name given to the pool's builder
//!       "kind": "connection_pool",       // or "object_pool", "reclaimer"
//!       "snapshot": { "connection_pool": {...} },   // keyed by kind, see below
//!       "findings": [ {"severity", "code", "pool", "message", "fix"} ]
//!     }
//!   ]
//! }
//! ```
//!
//! The snapshot is `poolguard::diag::Snapshot` serialized: field names are the Rust names,
//! durations are seconds (`f64`), histograms are `{count, sum, mean, max, p50, p95, p99}`,
//! call sites are `file:line:column`. What the dashboard reads:
//!
//! * `connection_pool.status`: `size`, `max_size`, `idle`, `in_use`, `waiters`, `breaker`
//!   (`closed`, `open` or `half-open`), `last_error`; `connection_pool.stats`: `leaks`,
//!   `unleaked`, `timed_out`, `wait_time.p99`; `connection_pool.holders`: the checked-out
//!   connections, oldest first, each `{site, held, leaked}`.
//! * `object_pool`: `retained_bytes`, `retained_objects`, `gets`, `hits_local`,
//!   `hits_shared`, `hits_victim`, `misses`, `recent_trims` (each `{pool, cycle, cause,
//!   before, after, freed, freed_bytes, deferred, max_pause, took}`), `held_now`.
//! * `reclaimer`: `queued`, `capacity`, `running`, `completed`, `slow`, `stuck`,
//!   `running_slow` (each `{label, worker, elapsed, stuck}`).
//!
//! # No secrets
//!
//! Every string in every answer passes through one filter before it leaves: a value after
//! `password=`, `pwd=`, `secret=`, `token=` (and the like, any case, `=` or `:`) and the
//! password of a URL's `user:password@` become `<redacted>`. poolguard's own managers never
//! print a password; the filter also covers a pool name or a custom manager's error text
//! that carries one.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::borrow::Cow;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::Stream;
use poolguard::diag::{Registry, Report};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The version of the `/pools` document's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// How long one request may take before it is answered `408 Request Timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one `/events` stream lasts before the server ends it (the browser reconnects).
pub const EVENTS_LIFETIME: Duration = Duration::from_secs(300);

/// How often `/events` sends the pools.
pub const EVENTS_EVERY: Duration = Duration::from_secs(1);

/// The dashboard page served at `/`.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The routes `/`, `/pools`, `/metrics` and `/events` over `registry`, ready to be merged into
/// a service's router (`app.merge(poolguard_http::router(registry))`) or nested under a
/// prefix (`app.nest("/debug/pools", ...)`; the dashboard finds `/pools` relative to itself).
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/pools", get(pools))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .with_state(registry)
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the diagnostics request took longer than {} s",
                            REQUEST_TIMEOUT.as_secs()
                        ),
                    )
                }))
                .timeout(REQUEST_TIMEOUT),
        )
        .layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Serves [`router`] on `listener` until the task running it is dropped or the listener
/// fails. Binds nothing itself: the caller chose the address (see [`Server`] for a handle
/// with a graceful shutdown).
pub async fn serve(listener: TcpListener, registry: Registry) -> io::Result<()> {
    axum::serve(listener, router(registry)).await
}

/// The endpoint running on its own port, in a task of the current tokio runtime.
///
/// [`Server::bind_loopback`] listens on `127.0.0.1` only, the safe default;
/// [`Server::bind`] takes any address, so exposing the endpoint beyond the machine is always
/// an explicit choice. Dropping the handle stops the server at once;
/// [`Server::shutdown`] lets the requests in flight finish first.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Listens on `addr` (any address: `0.0.0.0` exposes the endpoint to the network) and
    /// serves [`router`] over `registry`. Port 0 picks a free port: see
    /// [`Server::local_addr`].
    pub async fn bind(addr: SocketAddr, registry: Registry) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {addr} for the pool diagnostics: {e}; pick a free port (0 picks one)"
                ),
            )
        })?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router(registry))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Listens on `127.0.0.1:port` (0 picks a free port).
    pub async fn bind_loopback(port: u16, registry: Registry) -> io::Result<Server> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), registry).await
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits up to `timeout` for the requests in flight
    /// (an open `/events` stream included); what is still running then is cut off.
    pub async fn shutdown(mut self, timeout: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(timeout, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "pool diagnostics server failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "pool diagnostics server task ended"),
                Err(_) => {
                    task.abort();
                    let _ = task.await;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Serialize)]
struct Document {
    schema_version: u32,
    generated_at_unix_ms: u64,
    pools: Vec<Report>,
}

/// The `/pools` document over `registry` now, as JSON text (secrets redacted). What `GET
/// /pools` answers; a program that embeds poolguard can log or store it the same way.
pub fn pools_json(registry: &Registry) -> String {
    let pools: Vec<Report> = registry
        .entries()
        .iter()
        .map(|e| Report::of(&**e))
        .collect();
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        generated_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        pools,
    };
    let mut value = match serde_json::to_value(&doc) {
        Ok(v) => v,
        // Serializing poolguard's snapshots cannot fail (no map with non-string keys, no
        // custom error): answer an empty document rather than panic if it ever did.
        Err(e) => {
            tracing::warn!(error = %e, "cannot serialize the pools");
            serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "generated_at_unix_ms": doc.generated_at_unix_ms,
                "pools": [],
            })
        }
    };
    redact_value(&mut value);
    value.to_string()
}

async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
            ),
        ],
        DASHBOARD_HTML,
    )
}

async fn pools(axum::extract::State(registry): axum::extract::State<Registry>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        pools_json(&registry),
    )
        .into_response()
}

async fn metrics(axum::extract::State(registry): axum::extract::State<Registry>) -> Response {
    let text = registry.prometheus();
    (
        [(header::CONTENT_TYPE, poolguard::diag::CONTENT_TYPE)],
        redact(&text).into_owned(),
    )
        .into_response()
}

async fn events(
    axum::extract::State(registry): axum::extract::State<Registry>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = tokio::time::Instant::now();
    let ticks = tokio::time::interval(EVENTS_EVERY);
    let stream = futures_util::stream::unfold(ticks, move |mut ticks| {
        let registry = registry.clone();
        async move {
            ticks.tick().await;
            if start.elapsed() >= EVENTS_LIFETIME {
                return None;
            }
            let e = Event::default().event("pools").data(pools_json(&registry));
            Some((Ok(e), ticks))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `key=value` / `key: value` with a secret-looking key, and `scheme://user:password@`.
static SECRET: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r#"(?i)(?P<k>\b(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|authorization|credentials?)\s*[=:]\s*)(?P<v>[^\s"'&;,}{)\]]+)|(?P<u>[a-z][a-z0-9+.-]*://[^\s/:@"']*:)(?P<p>[^\s/@"']+)@"#,
    )
    .expect("the secret pattern is valid")
});

/// `text` with every secret-looking value replaced by `<redacted>` (borrowed when there is
/// none).
pub fn redact(text: &str) -> Cow<'_, str> {
    SECRET.replace_all(text, |c: &regex::Captures<'_>| {
        if let Some(k) = c.name("k") {
            format!("{}<redacted>", k.as_str())
        } else {
            format!("{}<redacted>@", c.name("u").map_or("", |u| u.as_str()))
        }
    })
}

fn redact_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_value),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_secret_values_and_url_passwords() {
        for (input, want) in [
            ("password=hunter2 host=db", "password=<redacted> host=db"),
            ("PWD: hunter2", "PWD: <redacted>"),
            ("token=abc&x=1", "token=<redacted>&x=1"),
            (
                "postgres://app:hunter2@db:5432/x",
                "postgres://app:<redacted>@db:5432/x",
            ),
            (
                "pool=\"db password=hunter2\"",
                "pool=\"db password=<redacted>\"",
            ),
            ("nothing to hide: 16/16", "nothing to hide: 16/16"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }
}
