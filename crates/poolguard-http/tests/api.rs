//! `/pools`, `/metrics` and `/` over real pools of every kind, driven in-process.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use poolguard::conn;
use poolguard::diag::Registry;
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;
use serde_json::Value;
use tower::ServiceExt;

async fn get(registry: &Registry, path: &str) -> (StatusCode, String, String) {
    let resp = poolguard_http::router(registry.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .expect("body");
    (status, ct, String::from_utf8(body.to_vec()).expect("utf-8"))
}

async fn pools(registry: &Registry) -> Value {
    let (status, ct, body) = get(registry, "/pools").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/json");
    serde_json::from_str(&body).expect("/pools is JSON")
}

#[tokio::test]
async fn pools_lists_every_kind_with_schema_and_a_dropped_pool_leaves() {
    let registry = Registry::new();
    let object = object::Pool::builder(Vec::<u8>::new)
        .name("http-object")
        .build()
        .expect("object pool");
    let reclaimer = Reclaimer::builder()
        .name("http-reclaim")
        .build()
        .expect("reclaimer");
    let conn = conn::Pool::builder(NoopManager)
        .name("http-conn")
        .build()
        .expect("conn pool");
    registry.register(&object);
    registry.register(&reclaimer);
    registry.register(&conn);
    drop(object.get());

    let doc = pools(&registry).await;
    assert_eq!(doc["schema_version"], 1);
    assert!(doc["generated_at_unix_ms"].as_u64().expect("a number") > 1_600_000_000_000);
    let list = doc["pools"].as_array().expect("pools is a list");
    let names: Vec<&str> = list
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["http-object", "http-reclaim", "http-conn"]);
    let kinds: Vec<&str> = list
        .iter()
        .map(|p| p["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["object_pool", "reclaimer", "connection_pool"]);
    assert_eq!(list[0]["snapshot"]["object_pool"]["gets"], 1);
    assert_eq!(
        list[2]["snapshot"]["connection_pool"]["status"]["breaker"],
        "closed"
    );
    for p in list {
        assert!(p["findings"].is_array(), "{p}");
    }

    drop(object);
    let doc = pools(&registry).await;
    let names: Vec<&str> = doc["pools"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["http-reclaim", "http-conn"],
        "the dropped pool is gone"
    );
}

#[tokio::test]
async fn metrics_is_the_registry_prometheus_text() {
    let registry = Registry::new();
    let object = object::Pool::builder(String::new)
        .name("metrics-object")
        .build()
        .expect("object pool");
    registry.register(&object);
    let (status, ct, body) = get(&registry, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, poolguard::diag::CONTENT_TYPE);
    assert_eq!(body, registry.prometheus());
    assert!(body.contains("pool=\"metrics-object\""), "{body}");
}

#[tokio::test]
async fn the_endpoint_is_read_only() {
    let registry = Registry::new();
    for path in ["/", "/pools", "/metrics"] {
        let resp = poolguard_http::router(registry.clone())
            .oneshot(Request::post(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "POST {path}");
    }
}
