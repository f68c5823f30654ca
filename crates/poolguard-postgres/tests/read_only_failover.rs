//! The failover signatures. `25006 read_only_sql_transaction`: a server turned read-only under
//! load (what a demoted primary does) fails writes, the error is classified fatal with a
//! failover hint, the connection is evicted, and the pool serves writes again once the server
//! accepts them. `57P01 admin_shutdown`: the server shuts down with a query in flight.
//!
//! This changes a server-wide setting, so it runs against a PRIVATE cluster on 127.0.0.1:5440
//! that the test creates (`scripts/services.sh pg-private 5440`) and drops at the end; the
//! shared server is never touched.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_postgres::{Error, PostgresManager};
use tokio::sync::Notify;

const PORT: u16 = 5440;

fn services() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh")
}

/// The private cluster, dropped (`pg-private-drop`) when this is dropped, test failure included.
struct PrivateCluster;

impl PrivateCluster {
    fn start() -> Self {
        script("pg-private");
        PrivateCluster
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(services())
            .args(["pg-private-drop", &PORT.to_string()])
            .output();
    }
}

fn script(cmd: &str) {
    let out = Command::new(services())
        .args([cmd, &PORT.to_string()])
        .output()
        .expect("run scripts/services.sh");
    assert!(
        out.status.success(),
        "`scripts/services.sh {cmd} {PORT}` failed (it needs root and the postgresql \
         package; run `scripts/services.sh` first):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url() -> String {
    format!("host=127.0.0.1 port={PORT} user=postgres dbname=postgres connect_timeout=5")
}

async fn admin() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("private cluster");
    tokio::spawn(conn);
    c
}

/// `default_transaction_read_only` server-wide, applied by a reload (each statement on its own:
/// `ALTER SYSTEM` refuses to run in the implicit transaction of a multi-statement query).
async fn read_only(admin: &tokio_postgres::Client, on: bool) {
    let set = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    admin.batch_execute(set).await.unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_turned_read_only_under_load_fails_writes_fatally_and_is_recovered_from() {
    let _cluster = PrivateCluster::start();
    let admin = admin().await;
    read_only(&admin, false).await;
    admin
        .batch_execute("DROP TABLE IF EXISTS failover_t; CREATE TABLE failover_t (v int)")
        .await
        .unwrap();
    let m = PostgresManager::builder(&url())
        .application_name("pg_read_only_failover")
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Workers insert until each has seen one read-only error (reported to the pool).
    let inserted = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (pool, inserted, progress) = (pool.clone(), inserted.clone(), progress.clone());
        workers.spawn(async move {
            loop {
                let mut c = pool.get().await.expect("get");
                match c.execute("INSERT INTO failover_t VALUES (1)", &[]).await {
                    Ok(_) => {
                        inserted.fetch_add(1, Ordering::Relaxed);
                        progress.notify_waiters();
                    }
                    Err(e) => {
                        let e = Error::from(e);
                        let class = c.report(&e);
                        return (e, class);
                    }
                }
            }
        });
    }
    // Under load: wait for writes to flow, then turn the server read-only.
    tokio::time::timeout(Duration::from_secs(30), async {
        while inserted.load(Ordering::Relaxed) < 50 {
            let n = progress.notified();
            if inserted.load(Ordering::Relaxed) >= 50 {
                break;
            }
            n.await;
        }
    })
    .await
    .expect("writes flow before the switch");
    read_only(&admin, true).await;

    let mut failures = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(30), workers.join_next())
        .await
        .expect("every writer sees the read-only error: none hangs")
    {
        let (e, class) = r.unwrap();
        assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
        assert_eq!(class, ErrorClass::Fatal, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("failover") && text.contains("target_session_attrs=read-write"),
            "the error says what happened and what to do: {text}"
        );
        failures += 1;
    }
    assert_eq!(failures, 8);
    // Each reported connection was evicted, not handed out again.
    drop(pool.get().await.unwrap());
    assert_eq!(
        pool.stats().closed_by(CloseReason::Broken),
        8,
        "{:?}",
        pool.stats()
    );

    // The server accepts writes again (a new primary): the pool serves them.
    read_only(&admin, false).await;
    let mut served = false;
    for _ in 0..100 {
        let mut c = pool.get().await.unwrap();
        match c.execute("INSERT INTO failover_t VALUES (2)", &[]).await {
            Ok(_) => {
                served = true;
                break;
            }
            // The reload reaches each session at its next command: retry on a new connection.
            Err(e) => {
                let e = Error::from(e);
                assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
                c.report(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(
        served,
        "writes served again after the server became writable"
    );

    // The other failover signature: the old primary shuts down (fast mode) with a query in
    // flight, which ends with FATAL 57P01: fatal, the connection broken and evicted.
    let mut c = pool.get().await.unwrap();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeper = tokio::spawn(async move {
        let r = c.batch_execute("SELECT pg_sleep(60)").await;
        let e = Error::from(r.expect_err("the shutdown ends the query"));
        let class = c.report(&e);
        (e, class, c.is_marked_broken())
    });
    let mut running = false;
    for _ in 0..500 {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%' \
                 AND state = 'active'",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running, "the query is running before the shutdown");
    drop(admin);
    script("pg-private-stop");
    let (e, class, broken) = tokio::time::timeout(Duration::from_secs(30), sleeper)
        .await
        .expect("the in-flight query ends with the shutdown")
        .unwrap();
    assert_eq!(e.code().map(|c| c.code()), Some("57P01"), "{e}");
    assert_eq!(class, ErrorClass::Fatal, "{e}");
    assert!(broken, "a 57P01 connection is not reused");
    assert!(e.to_string().contains("terminated"), "{e}");
    pool.close();
}
