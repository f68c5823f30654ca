//! The `status_service` example's router, driven in-process against the real server:
//! `/now` answers through the pool, `/status` is the pool's report as JSON (poolguard's own serialization), `/metrics` is Prometheus text, and a refused server is a 503 with the
//! pool's explanation, never a hang.

#[path = "../examples/status_service/app.rs"]
#[allow(dead_code)]
mod app;
mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use poolguard_testkit::proxy::FaultProxy;
use serde_json::Value;
use tower::ServiceExt;

/// Sends `GET path` to the router; every await here has a deadline.
async fn get(app: &Router, path: &str) -> (StatusCode, String, Option<String>) {
    let req = Request::get(path).body(Body::empty()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("GET {path} did not answer within 10 s"))
        .expect("infallible router");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii content-type").to_owned());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        String::from_utf8(body.to_vec()).expect("utf-8"),
        ctype,
    )
}

#[tokio::test]
async fn status_is_the_pools_status_as_json_and_metrics_are_prometheus_text() {
    drop(common::admin().await);
    let pool = app::pool(&common::pg_url()).expect("example pool");
    let app = app::router(pool.clone());

    let (code, now, _) = get(&app, "/now").await;
    assert_eq!(code, StatusCode::OK, "/now: {now}");
    assert!(
        now.starts_with("20"),
        "/now answers the server's timestamp, got {now:?}"
    );

    let (code, body, ctype) = get(&app, "/status").await;
    assert_eq!(code, StatusCode::OK, "/status: {body}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    let r: Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!(r["name"], "example", "{r}");
    assert_eq!(r["kind"], "connection_pool", "{r}");
    assert!(r["findings"].is_array(), "{r}");
    let v = &r["snapshot"]["connection_pool"]["status"];
    // The example's configuration, as the pool reports it.
    assert_eq!(v["max_size"], 8, "{r}");
    // The /now connection is back: nothing in use, nobody waiting, the breaker closed.
    assert_eq!(v["in_use"], 0, "{r}");
    assert_eq!(v["waiters"], 0, "{r}");
    assert_eq!(v["breaker"], "closed", "{r}");
    let size = v["size"].as_u64().expect("size is a number");
    let idle = v["idle"].as_u64().expect("idle is a number");
    let opening = v["opening"].as_u64().expect("opening is a number");
    assert!((1..=8).contains(&size), "{r}");
    assert!(idle + opening <= size, "{r}");
    // The JSON agrees with the pool itself.
    let s = &r["snapshot"]["connection_pool"]["stats"];
    let st = pool.stats();
    assert_eq!(s["gets"], st.gets, "{r}");
    assert!(st.gets >= 1, "the /now request went through the pool");
    assert_eq!(s["created"], st.created, "{r}");
    assert!(st.created >= 1, "{r}");
    assert_eq!(s["timed_out"], 0, "{r}");
    assert_eq!(s["connect_failures"], 0, "{r}");
    for field in ["waited", "unavailable"] {
        assert!(s[field].is_u64(), "stats.{field} missing: {r}");
    }
    assert!(s["wait_time"]["p99"].is_f64(), "{r}");
    assert!(s["closed"].is_object(), "{r}");

    let (code, text, ctype) = get(&app, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        ctype.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.contains("# TYPE poolguard_conn_size gauge"), "{text}");
    assert!(
        text.contains("poolguard_conn_max_size{pool=\"example\"} 8"),
        "{text}"
    );
    // Every sample line is `name{labels} value` with a numeric value.
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!samples.is_empty(), "{text}");
    for line in samples {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        assert!(name.starts_with("poolguard_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "non-numeric sample: {line}");
    }
    let gets_line = format!("poolguard_conn_gets_total{{pool=\"example\"}} {}", st.gets);
    assert!(text.contains(&gets_line), "{gets_line} not in {text}");
    pool.close();
}

#[tokio::test]
async fn a_refused_server_is_a_503_with_the_pools_explanation() {
    let pg = {
        let c: tokio_postgres::Config = common::pg_url().parse().expect("url");
        let port = c.get_ports().first().copied().unwrap_or(5432);
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    };
    let proxy = FaultProxy::start(pg).await.expect("proxy");
    proxy.refuse().await;
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=test connect_timeout=5",
        proxy.addr().port()
    );
    let pool = app::pool(&url).expect("example pool");
    let app = app::router(pool.clone());

    let (code, body, _) = get(&app, "/now").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("refused"),
        "the 503 names the cause, not a timeout: {body}"
    );
    let (_, status, _) = get(&app, "/status").await;
    let v: Value = serde_json::from_str(&status).expect("/status is JSON");
    let pool_json = &v["snapshot"]["connection_pool"];
    assert!(
        pool_json["stats"]["connect_failures"]
            .as_u64()
            .expect("number")
            >= 1,
        "{v}"
    );
    assert_eq!(pool_json["status"]["in_use"], 0, "{v}");
    assert!(
        pool_json["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{v}"
    );

    pool.close();
}
