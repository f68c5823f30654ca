//! The pool with the PostgreSQL manager under faults, through the fault proxy, against the
//! real server: outage (cut + refuse + accept), blackhole, pg_terminate_backend, connect
//! errors. Figures are printed (`--nocapture`) for the report.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, Error as PoolError, Phase, Pool};
use poolguard_postgres::{Error, PostgresManager};
use poolguard_testkit::outage::{
    assert_pool_answered, blackhole_test_pool, error_kind, fault_test_pool, outage_under_load,
    proxy_outage, serves_again, wait_for, Load, OutagePlan, BLACKHOLE_ACQUIRE_TIMEOUT,
};
use poolguard_testkit::proxy::FaultProxy;
use tokio::time::Instant;

type PgPool = Pool<PostgresManager>;

const PG: ([u8; 4], u16) = ([127, 0, 0, 1], 5432);

async fn proxied(tag: &str) -> (FaultProxy, PostgresManager, String) {
    drop(admin().await);
    let proxy = FaultProxy::start(SocketAddr::from(PG)).await.unwrap();
    let app = unique(tag);
    let m = PostgresManager::builder(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=test",
        proxy.addr().port()
    ))
    .application_name(&app)
    .build()
    .unwrap();
    (proxy, m, app)
}

/// One request: get, `SELECT 1`, report a query error to the pool.
async fn select_one(pool: PgPool) -> Result<(), String> {
    let mut c = pool.get().await.map_err(|e| error_kind(&e))?;
    match c.simple_query("SELECT 1").await {
        Ok(_) => Ok(()),
        Err(e) => {
            c.report(&Error::from(e));
            Err("query".into())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_under_load_fails_fast_and_recovers() {
    let (proxy, m, _app) = proxied("pg_outage").await;
    let acquire_timeout = Duration::from_secs(2);
    let pool = fault_test_pool(m, "pg-outage", acquire_timeout);
    let p = pool.clone();
    let plan = OutagePlan {
        tasks: 16,
        // Deadline per request: acquire_timeout plus a generous bound for SELECT 1 itself.
        deadline: acquire_timeout + Duration::from_secs(1),
        recover_within: Duration::from_secs(15),
    };
    // The server goes away: every connection reset, new ones refused, for 5 s.
    let outage = proxy_outage(&proxy, Duration::from_secs(5));
    let o = outage_under_load(&pool, plan, move |_| select_one(p.clone()), outage).await;
    let (cut, report) = (o.outage, &o.load);
    let stats = pool.stats();

    eprintln!(
        "pg outage: cut {cut} connections; {} ok, {} failed ({:?}), {} hung; max failure latency {:?}; \
         unavailable p50 {:?} max {:?}; breaker opened {}x; back to min_idle {:?} after accept, 100 requests served within {:?}",
        report.ok,
        report.failures.len(),
        report.kinds(),
        report.hung.len(),
        report.max_failure_latency(),
        report.failure_latency_quantile("unavailable", 0.5),
        report.failure_latency_quantile("unavailable", 1.0),
        stats.breaker_opened,
        o.recovered,
        o.served,
    );
    assert!(cut >= 4, "the pool had connections to cut: {cut}");
    assert!(
        report.hung.is_empty(),
        "requests hung past their deadline: {:?}",
        report.hung
    );
    // Every failure was the pool's own answer (its deadline, its breaker, a backend error
    // or a query cut by the outage), never a caller's deadline cutting off a hung get: the
    // deadline above counts those as hung.
    assert_pool_answered(&report.kinds());
    assert!(o.failures_during > 0, "the outage was not noticed");
    assert!(
        o.saw_open && stats.breaker_opened >= 1,
        "the breaker never opened"
    );
    assert!(
        report.kinds().contains_key("unavailable"),
        "no fast failures: {:?}",
        report.kinds()
    );
    assert!(pool.status().size <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_validation_times_out_and_nobody_waits_past_the_deadline() {
    let (proxy, m, _app) = proxied("pg_blackhole").await;
    let acquire_timeout = BLACKHOLE_ACQUIRE_TIMEOUT;
    let pool = blackhole_test_pool(m, "pg-blackhole").await;

    // The network goes silent: sockets stay open, nothing comes back.
    proxy.blackhole(true);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r =
                tokio::time::timeout(acquire_timeout + Duration::from_secs(2), select_one(p)).await;
            (t0.elapsed(), r)
        }));
    }
    let mut worst = Duration::ZERO;
    let mut kinds = Vec::new();
    for t in tasks {
        let (took, r) = t.await.unwrap();
        let r = r.unwrap_or_else(|_| panic!("a task hung past its deadline ({took:?})"));
        worst = worst.max(took);
        kinds.push(r.expect_err("nothing can succeed through a blackhole"));
    }
    let stats = pool.stats();
    eprintln!(
        "pg blackhole: 8 gets failed as {kinds:?}; slowest {worst:?} (acquire_timeout {acquire_timeout:?}); \
         validation failures {}, closed by validation {}",
        stats.validation_failures,
        stats.closed_by(CloseReason::Validation)
    );
    // Each get was ended by the pool itself (acquire deadline, validation deadline or the
    // breaker), not by the caller's outer deadline, which would have failed above.
    for k in &kinds {
        assert!(
            [
                "timeout",
                "unavailable",
                "validate-timeout",
                "connect-timeout"
            ]
            .contains(&k.as_str()),
            "a blackholed get ended as {k:?}, not by the pool's deadline or breaker"
        );
    }
    assert!(stats.validation_failures >= 1, "validation never timed out");
    assert!(
        stats.closed_by(CloseReason::Validation) >= 1,
        "the silent connection was not evicted"
    );

    proxy.blackhole(false);
    let p = pool.clone();
    let report = serves_again(move |_| select_one(p.clone())).await;
    assert!(report.hung.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced_and_each_costs_at_most_its_in_flight_query() {
    let admin = admin().await;
    drop(admin);
    let app = unique("pg_terminate");
    let m = PostgresManager::builder(&pg_url())
        .application_name(&app)
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .name("pg-terminate")
        .max_size(6)
        .min_idle(6)
        .acquire_timeout(Duration::from_secs(5))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    wait_for("min_idle warm", Duration::from_secs(10), || {
        pool.status().idle >= 6
    })
    .await;
    let p = pool.clone();
    // Four callers, each with a query in flight most of the time (server-side 5 ms sleep).
    let load = Load::start(4, Duration::from_secs(10), Duration::ZERO, move |_| {
        let p = p.clone();
        async move {
            let mut c = p.get().await.map_err(|e| error_kind(&e))?;
            match c.simple_query("SELECT pg_sleep(0.005)").await {
                Ok(_) => Ok(()),
                Err(e) => {
                    c.report(&Error::from(e));
                    Err("query".into())
                }
            }
        }
    });
    load.wait_successes(40, Duration::from_secs(10))
        .await
        .expect("load runs");
    let admin = common::admin().await;
    let killed = terminate(&admin, &app).await;
    let after = load
        .wait_successes(100, Duration::from_secs(10))
        .await
        .expect("the pool keeps serving");
    let report = load.stop().await;
    eventually("six backends again", || async {
        backends(&admin, &app).await >= 6
    })
    .await;
    let stats = pool.stats();
    eprintln!(
        "pg terminate: {killed} backends terminated; failures per caller {:?} ({:?}); 100 requests served {after:?} later; \
         closed broken {}, validation {}; created {}",
        report.failures_per_task(),
        report.kinds(),
        stats.closed_by(CloseReason::Broken),
        stats.closed_by(CloseReason::Validation),
        stats.created
    );
    assert_eq!(killed, 6);
    assert!(report.hung.is_empty());
    // Each terminated backend costs at most one query: the one in flight on it when it died
    // (a query sent to a backend still processing its SIGTERM counts as in flight:
    // pg_terminate_backend only signals). A dead connection is never handed out twice.
    assert!(
        report.failures.len() as i64 <= killed,
        "{} queries failed for {killed} terminated backends",
        report.failures.len()
    );
    assert!(
        report.kinds().keys().all(|k| k == "query"),
        "only in-flight queries may fail: {:?}",
        report.kinds()
    );
    assert!(
        stats.created >= 12,
        "the terminated connections were replaced: created {}",
        stats.created
    );
}

async fn first_get_error(conn: &str) -> (PoolError<Error>, Duration) {
    let m = PostgresManager::new(conn).unwrap();
    let pool = Pool::builder(m)
        .acquire_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let e = pool.get().await.expect_err("must fail");
    (e, t0.elapsed())
}

#[tokio::test]
async fn connect_errors_surface_as_themselves_not_as_timeouts() {
    drop(admin().await);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cases = [
        (
            format!("host=127.0.0.1 port={port} user=postgres dbname=test"),
            "cannot connect",
        ),
        (
            "host=127.0.0.1 user=poolguard_pw password=wrong dbname=test".to_owned(),
            "28P01",
        ),
        (
            "host=127.0.0.1 user=postgres dbname=poolguard_no_such_db".to_owned(),
            "3D000",
        ),
    ];
    for (conn, expect) in cases {
        let (e, took) = first_get_error(&conn).await;
        eprintln!("pg connect error after {took:?}: {e}");
        match &e {
            PoolError::Backend {
                phase: Phase::Connect,
                source,
            } => {
                assert!(source.to_string().contains(expect), "{conn}: {source}")
            }
            other => panic!("{conn}: expected the backend's connect error, got {other}"),
        }
    }
}
