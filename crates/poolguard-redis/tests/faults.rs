//! The pool with the Redis manager under faults, through the fault proxy, against the real
//! server: outage (cut + refuse + accept), blackhole, CLIENT KILL, connect errors.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, Error as PoolError, Phase, Pool};
use poolguard_redis::{Error, RedisManager};
use poolguard_testkit::outage::{
    assert_pool_answered, blackhole_test_pool, error_kind, fault_test_pool, outage_under_load,
    proxy_outage, serves_again, Load, OutagePlan, BLACKHOLE_ACQUIRE_TIMEOUT,
};
use poolguard_testkit::proxy::FaultProxy;
use tokio::time::Instant;

type RPool = Pool<RedisManager>;

async fn proxied() -> (FaultProxy, RedisManager) {
    drop(admin().await);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 6379)))
        .await
        .unwrap();
    let m =
        RedisManager::new(format!("redis://127.0.0.1:{}/0", proxy.addr().port()).as_str()).unwrap();
    (proxy, m)
}

async fn ping(pool: RPool) -> Result<(), String> {
    let mut c = pool.get().await.map_err(|e| error_kind(&e))?;
    match redis::cmd("PING").query_async::<String>(&mut *c).await {
        Ok(_) => Ok(()),
        Err(e) => {
            c.report(&Error::from(e));
            Err("command".into())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_under_load_fails_fast_and_recovers() {
    let (proxy, m) = proxied().await;
    let acquire_timeout = Duration::from_secs(2);
    let pool = fault_test_pool(m, "redis-outage", acquire_timeout);
    let p = pool.clone();
    let plan = OutagePlan {
        tasks: 16,
        deadline: acquire_timeout + Duration::from_secs(1),
        recover_within: Duration::from_secs(15),
    };
    let outage = proxy_outage(&proxy, Duration::from_secs(3));
    let o = outage_under_load(&pool, plan, move |_| ping(p.clone()), outage).await;
    let (cut, recovered, served, report) = (o.outage, o.recovered, o.served, &o.load);
    let stats = pool.stats();
    eprintln!(
        "redis outage: cut {cut}; {} ok, {} failed ({:?}), {} hung; max failure latency {:?}; unavailable p50 {:?} max {:?}; \
         breaker opened {}x; back to min_idle {recovered:?} after accept, 100 requests served within {served:?}",
        report.ok,
        report.failures.len(),
        report.kinds(),
        report.hung.len(),
        report.max_failure_latency(),
        report.failure_latency_quantile("unavailable", 0.5),
        report.failure_latency_quantile("unavailable", 1.0),
        stats.breaker_opened,
    );
    assert!(cut >= 4);
    assert!(report.hung.is_empty(), "requests hung: {:?}", report.hung);
    // Every failure was the pool's own answer, never a hung get cut off by the caller's
    // deadline (those are counted as hung, above).
    assert_pool_answered(&report.kinds());
    assert!(
        o.saw_open && stats.breaker_opened >= 1,
        "the breaker never opened"
    );
    assert!(pool.status().size <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_validation_times_out_and_nobody_waits_past_the_deadline() {
    let (proxy, m) = proxied().await;
    let acquire_timeout = BLACKHOLE_ACQUIRE_TIMEOUT;
    let pool = blackhole_test_pool(m, "redis-blackhole").await;
    proxy.blackhole(true);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = tokio::time::timeout(acquire_timeout + Duration::from_secs(2), async {
                // The command itself has no timeout of its own (BLPOP-friendly default), so
                // the caller bounds it, as a real caller would.
                let mut c = p.get().await.map_err(|e| error_kind(&e))?;
                match tokio::time::timeout(
                    Duration::from_millis(500),
                    redis::cmd("PING").query_async::<String>(&mut *c),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    _ => {
                        c.mark_broken();
                        Err("command".to_owned())
                    }
                }
            })
            .await;
            (t0.elapsed(), r)
        }));
    }
    let mut worst = Duration::ZERO;
    let mut kinds = Vec::new();
    for t in tasks {
        let (took, r) = t.await.unwrap();
        let r = r.unwrap_or_else(|_| panic!("a task hung past its deadline ({took:?})"));
        kinds.push(r.expect_err("nothing can succeed through a blackhole"));
        worst = worst.max(took);
    }
    let stats = pool.stats();
    eprintln!(
        "redis blackhole: slowest failure {worst:?} (acquire_timeout {acquire_timeout:?}); validation failures {}, closed by validation {}",
        stats.validation_failures,
        stats.closed_by(CloseReason::Validation)
    );
    // Each get was ended by the pool (its deadlines or breaker) or by the command's own
    // bound; the caller's outer deadline never had to cut one off (that panics above).
    for k in &kinds {
        assert!(
            [
                "timeout",
                "unavailable",
                "validate-timeout",
                "connect-timeout",
                "command"
            ]
            .contains(&k.as_str()),
            "a blackholed request ended as {k:?}"
        );
    }
    assert!(
        stats.closed_by(CloseReason::Validation) >= 1,
        "the silent connection was not evicted"
    );
    proxy.blackhole(false);
    let p = pool.clone();
    let report = serves_again(move |_| ping(p.clone())).await;
    assert!(report.hung.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_clients_are_replaced() {
    let mut admin = admin().await;
    let m = RedisManager::new(redis_url().as_str()).unwrap();
    let pool = Pool::builder(m)
        .name("redis-kill")
        .max_size(4)
        .min_idle(4)
        .acquire_timeout(Duration::from_secs(5))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    // Learn the pool's client ids by holding all four connections at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.unwrap());
    }
    let mut ids = Vec::new();
    for c in &mut held {
        ids.push(
            redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut **c)
                .await
                .unwrap(),
        );
    }
    drop(held);
    let p = pool.clone();
    let load = Load::start(4, Duration::from_secs(5), Duration::ZERO, move |_| {
        ping(p.clone())
    });
    load.wait_successes(200, Duration::from_secs(10))
        .await
        .expect("load runs");
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(*id)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let after = load
        .wait_successes(200, Duration::from_secs(10))
        .await
        .expect("the pool keeps serving");
    let report = load.stop().await;
    let stats = pool.stats();
    eprintln!(
        "redis kill: 4 clients killed; failures per caller {:?} ({:?}); 200 requests served {after:?} later; created {}, closed broken {}",
        report.failures_per_task(),
        report.kinds(),
        stats.created,
        stats.closed_by(CloseReason::Broken),
    );
    assert!(report.hung.is_empty());
    // Each killed connection costs at most the one command in flight on it.
    assert!(
        report.failures.len() <= ids.len(),
        "{} commands failed for {} killed connections",
        report.failures.len(),
        ids.len()
    );
    assert!(
        stats.created >= 5,
        "killed connections were replaced: created {}",
        stats.created
    );
}

#[tokio::test]
async fn connect_errors_surface_as_themselves_not_as_timeouts() {
    let mut admin = admin().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let user = unique("poolguard_pw").replace(':', "_");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">right")
        .arg("~*")
        .arg("+@all")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let cases = [
        (format!("redis://127.0.0.1:{port}"), "connection refused"),
        (
            format!("redis://{user}:wrong@127.0.0.1:6379"),
            "wrong user name or password",
        ),
    ];
    let mut outcomes = Vec::new();
    for (url, expect) in &cases {
        let pool = Pool::builder(RedisManager::new(url.as_str()).unwrap())
            .acquire_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let t0 = Instant::now();
        let e = pool.get().await.expect_err("must fail");
        eprintln!("redis connect error after {:?}: {e}", t0.elapsed());
        outcomes.push((expect, e));
    }
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    for (expect, e) in outcomes {
        match &e {
            PoolError::Backend {
                phase: Phase::Connect,
                source,
            } => assert!(source.to_string().contains(expect), "{source}"),
            other => panic!("expected the backend's connect error, got {other}"),
        }
    }
}
