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

mod common;
use common::{Scene, BILLING, BUFFERS, DROPS, ORDERS, SECRET, SLOW_JOB};

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

fn pool<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {doc}"))
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = match k.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[k],
        };
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

/// Every field the dashboard reads, with the values the pools' state implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_carries_every_field_the_dashboard_reads() {
    let scene = Scene::build().await;
    let doc = pools(&scene.registry).await;
    assert_eq!(doc["schema_version"], poolguard_http::SCHEMA_VERSION);

    // An exhausted pool with a waiter and two leaking holders.
    let orders = pool(&doc, ORDERS);
    assert_eq!(orders["kind"], "connection_pool");
    let c = &orders["snapshot"]["connection_pool"];
    assert_eq!(num(c, "status.size"), 2.0);
    assert_eq!(num(c, "status.max_size"), 2.0);
    assert_eq!(num(c, "status.idle"), 0.0);
    assert_eq!(num(c, "status.in_use"), 2.0);
    assert_eq!(num(c, "status.waiters"), 1.0);
    assert_eq!(c["status"]["breaker"], "closed");
    assert!(c["status"]["last_error"].is_null());
    assert!(num(c, "stats.leaks") >= 2.0);
    assert_eq!(num(c, "stats.unleaked"), 0.0);
    assert!(num(c, "stats.timed_out") >= 0.0);
    assert!(num(c, "stats.wait_time.p99") >= 0.0);
    let holders = c["holders"].as_array().expect("holders");
    assert_eq!(holders.len(), 2);
    for h in holders {
        let site = h["site"].as_str().expect("site");
        assert!(
            site.contains("common/mod.rs:"),
            "the get's call site: {site}"
        );
        assert!(h["held"].as_f64().expect("seconds") >= 0.2, "{h}");
        assert_eq!(h["leaked"], true, "{h}");
    }
    assert!(
        num(&holders[0], "held") >= num(&holders[1], "held"),
        "oldest first"
    );
    let codes: Vec<&str> = orders["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().expect("code"))
        .collect();
    assert!(!codes.is_empty(), "an exhausted, leaking pool has findings");
    for f in orders["findings"].as_array().expect("findings") {
        for k in ["severity", "code", "pool", "message", "fix"] {
            assert!(f.get(k).is_some(), "finding without {k}: {f}");
        }
    }

    // The pool whose backend is down: the breaker is open, the error kept (redacted).
    let billing = pool(&doc, &poolguard_http::redact(BILLING));
    let b = &billing["snapshot"]["connection_pool"];
    assert_eq!(b["status"]["breaker"], "open");
    let err = b["status"]["last_error"]
        .as_str()
        .expect("the backend's error");
    assert!(err.contains("connection") || err.contains("reach"), "{err}");

    // An object pool after trims.
    let o = &pool(&doc, BUFFERS)["snapshot"]["object_pool"];
    for f in [
        "retained_bytes",
        "retained_objects",
        "gets",
        "hits_local",
        "hits_shared",
        "hits_victim",
        "misses",
        "trims",
    ] {
        num(o, f);
    }
    assert_eq!(num(o, "gets"), 30.0);
    assert_eq!(num(o, "trims"), 2.0);
    let trims = o["recent_trims"].as_array().expect("recent_trims");
    assert_eq!(trims.len(), 2);
    for t in trims {
        for f in [
            "cycle",
            "freed",
            "freed_bytes",
            "deferred",
            "max_pause",
            "took",
        ] {
            num(t, f);
        }
        assert!(t["cause"].is_string(), "{t}");
        assert_eq!(
            t["before"].as_array().map(Vec::len),
            Some(2),
            "(objects, bytes): {t}"
        );
        assert_eq!(
            t["after"].as_array().map(Vec::len),
            Some(2),
            "(objects, bytes): {t}"
        );
    }
    assert!(o["held_now"].is_array());

    // A reclaimer running a slow job, named while it runs.
    let r = &pool(&doc, DROPS)["snapshot"]["reclaimer"];
    for f in [
        "queued",
        "capacity",
        "running",
        "completed",
        "slow",
        "stuck",
        "panicked",
    ] {
        num(r, f);
    }
    assert_eq!(num(r, "running"), 1.0);
    assert!(
        num(r, "queued") >= 1.0,
        "the jobs behind the slow one wait: {r}"
    );
    assert!(num(r, "slow") >= 1.0);
    let slow = r["running_slow"].as_array().expect("running_slow");
    assert_eq!(slow.len(), 1, "{r}");
    assert_eq!(slow[0]["label"], SLOW_JOB);
    assert_eq!(slow[0]["stuck"], false);
    num(&slow[0], "worker");
    assert!(num(&slow[0], "elapsed") >= 0.02);
}

/// A name or a backend error carrying a password never shows it: not in /pools, /metrics,
/// /events nor the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_carries_a_password() {
    let scene = Scene::build().await;
    // The core keeps what it was given: the filter is what protects the answers.
    assert!(scene
        .billing
        .status()
        .last_error
        .expect("error")
        .contains(SECRET));
    for path in ["/", "/pools", "/metrics"] {
        let (status, _, body) = get(&scene.registry, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains(SECRET), "{path} shows the password:\n{body}");
    }
    let (_, _, body) = get(&scene.registry, "/pools").await;
    assert!(body.contains("billing password=<redacted>"), "{body}");
    assert!(
        body.contains("postgres://billing:<redacted>@10.0.0.7"),
        "{body}"
    );
    let (_, _, metrics) = get(&scene.registry, "/metrics").await;
    assert!(
        metrics.contains("pool=\"billing password=<redacted>\""),
        "{metrics}"
    );

    // The first server-sent event.
    let resp = poolguard_http::router(scene.registry.clone())
        .oneshot(
            Request::get("/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).expect("type"),
        "text/event-stream"
    );
    let mut body = resp.into_body().into_data_stream();
    use futures_util::StreamExt as _;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a chunk");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(text.starts_with("event: pools\ndata: {"), "{text}");
    assert!(text.contains(ORDERS), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

/// The metrics text passes `promtool check metrics` (installed by scripts/services.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let scene = Scene::build().await;
    let (_, _, text) = get(&scene.registry, "/metrics").await;
    for name in [ORDERS, BUFFERS, DROPS] {
        assert!(text.contains(&format!("\"{name}\"")), "{name} missing");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed: run `scripts/services.sh prometheus`");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool ran");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics rejected the text ({}): {report}\n--- text ---\n{text}",
        out.status
    );
}

/// The standalone server: loopback by default, answers, and shuts down within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_binds_loopback_answers_and_shuts_down() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let registry = Registry::new();
    let object = object::Pool::builder(String::new)
        .name("served")
        .build()
        .expect("pool");
    registry.register(&object);
    let server = poolguard_http::Server::bind_loopback(0, registry)
        .await
        .expect("bind");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /pools HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut resp),
    )
    .await
    .expect("answered within 10 s")
    .expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{resp}"
    );
    assert!(resp.contains("\"name\":\"served\""), "{resp}");
    server.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn dashboard_is_one_self_contained_page_under_200_kib() {
    let (status, ct, body) = get(&Registry::new(), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(body.len() < 200 * 1024, "{} bytes", body.len());
    let lower = body.to_ascii_lowercase();
    for external in [
        "src=\"http",
        "href=\"http",
        "<link",
        "@import",
        "src=\"//",
        "url(http",
    ] {
        assert!(
            !lower.contains(external),
            "the page loads an external asset: {external}"
        );
    }
    assert!(
        lower.contains("<svg") || lower.contains("createelementns"),
        "draws SVG itself"
    );
}
