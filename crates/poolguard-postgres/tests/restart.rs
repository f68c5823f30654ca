//! A real restart of the local PostgreSQL (`pg_ctlcluster <version> main restart`) under load.
//!
//! It restarts the shared server, so it is `#[ignore]`d in the main suite and run alone by
//! `scripts/test.sh` afterwards (`--run-ignored only`). It needs root and the Debian
//! `pg_ctlcluster` wrapper; without them it FAILS, saying so, rather than passing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use poolguard::conn::{BreakerState, Error as PoolError, Pool};
use poolguard_postgres::{Error, PostgresManager};
use poolguard_testkit::outage::Load;
use tokio::time::Instant;

fn cluster_version() -> String {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the restart test must run as root (it calls pg_ctlcluster); run scripts/test.sh as root"
    );
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("no /etc/postgresql: the restart test needs the Debian PostgreSQL cluster that scripts/services.sh installs")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no cluster under /etc/postgresql; run scripts/services.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server: run alone (scripts/test.sh does, after the main suite)"]
async fn real_restart_under_load() {
    let version = cluster_version();
    drop(admin().await);
    let app = unique("pg_restart");
    let m = PostgresManager::builder(&pg_url())
        .application_name(&app)
        .build()
        .unwrap();
    let acquire_timeout = Duration::from_secs(3);
    let pool = Pool::builder(m)
        .label("pg-restart")
        .max_size(8)
        .min_idle(4)
        .acquire_timeout(acquire_timeout)
        .connect_timeout(Duration::from_secs(1))
        .validation_timeout(Duration::from_millis(500))
        .breaker_threshold(Some(3))
        .breaker_backoff(Duration::from_millis(200))
        .breaker_max_backoff(Duration::from_secs(1))
        .maintenance_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let p = pool.clone();
    let load = Load::start(
        8,
        acquire_timeout + Duration::from_secs(2),
        Duration::from_millis(5),
        move |_| {
            let p = p.clone();
            async move {
                let mut c = p.get().await.map_err(|e| match e {
                    PoolError::Unavailable { .. } => "unavailable".to_owned(),
                    PoolError::Timeout(_) => "timeout".to_owned(),
                    other => format!("{:?}", other.phase()),
                })?;
                match c.simple_query("SELECT 1").await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        c.report(&Error::from(e));
                        Err("query".to_owned())
                    }
                }
            }
        },
    );
    load.wait_successes(200, Duration::from_secs(10))
        .await
        .expect("load runs");

    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .output()
    })
    .await
    .unwrap()
    .expect("pg_ctlcluster could not be run (is postgresql-common installed?)");
    assert!(
        out.status.success(),
        "pg_ctlcluster restart failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let restart_took = t0.elapsed();
    let back = Instant::now();
    let served = load
        .wait_successes(100, Duration::from_secs(20))
        .await
        .expect("requests succeed after the restart");
    while !(pool.status().breaker == BreakerState::Closed
        && pool.status().idle + pool.status().in_use >= 4)
    {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "pool not back to min_idle: {:?}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let warm = back.elapsed();
    let report = load.stop().await;
    eprintln!(
        "pg restart: pg_ctlcluster took {restart_took:?}; {} ok, {} failed ({:?}), {} hung; max failure latency {:?}; \
         100 requests served {served:?} after it returned, min_idle back after {warm:?}",
        report.ok,
        report.failures.len(),
        report.kinds(),
        report.hung.len(),
        report.max_failure_latency()
    );
    assert!(report.hung.is_empty(), "requests hung: {:?}", report.hung);
    assert!(report.max_failure_latency() <= acquire_timeout + Duration::from_millis(500));
}
