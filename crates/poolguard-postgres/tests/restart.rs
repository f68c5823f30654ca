//! A real restart of the local PostgreSQL (`pg_ctlcluster <version> main restart`) under load.
//!
//! It restarts the shared server, so it is `#[ignore]`d in the main suite and run alone by
//! `scripts/test.sh` afterwards (`--run-ignored only`). It needs root and the Debian
//! `pg_ctlcluster` wrapper; without them it FAILS, saying so, rather than passing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use poolguard_postgres::{Error, PostgresManager};
use poolguard_testkit::outage::{
    assert_pool_answered, error_kind, fault_test_pool, outage_under_load, OutagePlan,
};
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
    let pool = fault_test_pool(m, "pg-restart", acquire_timeout);
    let p = pool.clone();
    let plan = OutagePlan {
        tasks: 8,
        deadline: acquire_timeout + Duration::from_secs(2),
        recover_within: Duration::from_secs(20),
    };
    let request = move |_| {
        let p = p.clone();
        async move {
            let mut c = p.get().await.map_err(|e| error_kind(&e))?;
            match c.simple_query("SELECT 1").await {
                Ok(_) => Ok(()),
                Err(e) => {
                    c.report(&Error::from(e));
                    Err("query".to_owned())
                }
            }
        }
    };
    let restart = async move {
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
        t0.elapsed()
    };
    let o = outage_under_load(&pool, plan, request, restart).await;
    let (restart_took, warm, served, report) = (o.outage, o.recovered, o.served, &o.load);
    eprintln!(
        "pg restart: pg_ctlcluster took {restart_took:?}; {} ok, {} failed ({:?}), {} hung; max failure latency {:?}; \
         min_idle back {warm:?} after it returned, then 100 requests served within {served:?}",
        report.ok,
        report.failures.len(),
        report.kinds(),
        report.hung.len(),
        report.max_failure_latency()
    );
    assert!(report.hung.is_empty(), "requests hung: {:?}", report.hung);
    // Every failure is an answer the pool gave by itself (a timeout, the open breaker, a
    // query error); a request that waited past its own deadline is in `hung` above.
    assert_pool_answered(&report.kinds());
}
