//! Through a real PgBouncer in transaction pooling mode (127.0.0.1:6432, started by
//! `scripts/services.sh`): unnamed statements work under load, named ones fail as documented,
//! session-scoped features become doctor findings, and `RECONNECT` / `PAUSE` + `RESUME` on
//! the admin console are survived under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::Pool;
use poolguard_postgres::tokio_postgres::types::Type;
use poolguard_postgres::{Error, PostgresManager, SessionChange, StatementMode};
use tokio::sync::Notify;

/// The proxy's database `test` (and `test_pause`, the one paused, so the other tests run on).
fn bouncer(db: &str) -> String {
    format!("host=127.0.0.1 port=6432 user=postgres dbname={db} connect_timeout=5")
}

/// The admin console; fails loudly when PgBouncer is not there.
async fn console() -> tokio_postgres::Client {
    match tokio_postgres::connect(
        "host=127.0.0.1 port=6432 user=postgres dbname=pgbouncer connect_timeout=5",
        tokio_postgres::NoTls,
    )
    .await
    {
        Ok((c, conn)) => {
            tokio::spawn(conn);
            c
        }
        Err(e) => panic!(
            "PgBouncer is not reachable on 127.0.0.1:6432: {e}.\n\
             These tests need it: run `scripts/services.sh` (as root) to install and start it."
        ),
    }
}

async fn pool(mode: StatementMode, size: usize) -> Pool<PostgresManager> {
    pool_on("test", mode, size).await
}

async fn pool_on(db: &str, mode: StatementMode, size: usize) -> Pool<PostgresManager> {
    drop(console().await);
    let m = PostgresManager::builder(&bouncer(db))
        .application_name(&common::unique("pg_bouncer"))
        .statement_mode(mode)
        .build()
        .unwrap();
    Pool::builder(m)
        .max_size(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .reset_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One parameterised query with an unnamed statement, bounded.
async fn one(pool: &Pool<PostgresManager>, i: i32) -> Result<(), String> {
    let req = async {
        let c = pool.get().await.map_err(|e| e.to_string())?;
        let row = c
            .query_typed_one("SELECT $1::int4 + 1", &[(&i, Type::INT4)])
            .await
            .map_err(|e| Error::from(e).to_string())?;
        let v: i32 = row.get(0);
        if v != i + 1 {
            return Err(format!("{i} + 1 = {v}?"));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(20), req)
        .await
        .unwrap_or_else(|_| Err("hung: no answer in 20 s".into()))
}

#[tokio::test]
async fn the_mode_is_detected_from_the_admin_console() {
    drop(console().await);
    let cfg = |s: &str| s.parse::<tokio_postgres::Config>().unwrap();
    assert_eq!(
        StatementMode::detect(&cfg(&bouncer("test"))).await.unwrap(),
        StatementMode::Unnamed,
        "PgBouncer in transaction pooling mode"
    );
    drop(common::admin().await);
    assert_eq!(
        StatementMode::detect(&cfg(&common::pg_url()))
            .await
            .unwrap(),
        StatementMode::Named,
        "PostgreSQL itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_work_under_load() {
    let p = pool(StatementMode::Unnamed, 16).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let p = p.clone();
        tasks.spawn(async move {
            let mut failures = Vec::new();
            for i in 0..50 {
                if let Err(e) = one(&p, t * 1000 + i).await {
                    failures.push(e);
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        failures.extend(r.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    let stats = p.manager().session_stats();
    assert_eq!(stats.named_statements, 0, "{stats:?}");
    assert!(p.manager().findings("bouncer").is_empty());
    assert_eq!(p.manager().config().statement_cache_capacity, 0);
}

/// tokio-postgres's `query("..", ..)` prepares a named statement in one transaction and binds
/// it in the next, which a transaction-pooling proxy may route to another server session:
/// 26000 `prepared statement "sN" does not exist`.
#[tokio::test]
async fn named_statements_fail_as_documented() {
    let p = pool(StatementMode::Named, 4).await;
    for i in 0..4 {
        let c = p.get().await.unwrap();
        let err = c
            .query_one("SELECT $1::int4", &[&i])
            .await
            .expect_err("a named statement cannot survive transaction pooling");
        let err = Error::from(err);
        assert_eq!(err.code().map(|c| c.code()), Some("26000"), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
    // The same query as an unnamed statement works on the same pool.
    assert_eq!(one(&p, 1).await, Ok(()));
    // Named mode counts nothing and reports nothing: it is the proxy-free mode.
    assert!(p.manager().findings("bouncer").is_empty());
}

#[tokio::test]
async fn session_scoped_features_become_findings() {
    let p = pool(StatementMode::Unnamed, 1).await;
    let c = p.get().await.unwrap();
    c.batch_execute("SET search_path = public").await.unwrap();
    c.batch_execute("LISTEN pg_bouncer_finding").await.unwrap();
    c.batch_execute("BEGIN; SET LOCAL statement_timeout = '1s'; COMMIT")
        .await
        .unwrap();
    let _ = c.prepare("SELECT 1").await;
    drop(c);
    drop(p.get().await.unwrap());
    let stats = p.manager().session_stats();
    assert_eq!(stats.count(SessionChange::Setting), 1, "{stats:?}");
    assert_eq!(stats.count(SessionChange::Listen), 1, "{stats:?}");
    assert!(stats.named_statements >= 1, "{stats:?}");
    assert_eq!(
        stats.resets, 0,
        "no reset can reach the right server session"
    );
    let findings = p.manager().findings("bouncer");
    let codes: Vec<&str> = findings.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        [
            "postgres.named-statements-on-transaction-pool",
            "postgres.session-state-on-transaction-pool"
        ],
        "{findings:?}"
    );
    let doctor: Vec<&str> = p.doctor().iter().map(|f| f.code).collect();
    assert!(
        codes.iter().all(|c| doctor.contains(c)),
        "pool.doctor() lacks the manager's findings: {doctor:?}"
    );
    let text = &findings[1].message;
    assert!(
        text.contains("SET without LOCAL x1") && text.contains("LISTEN x1"),
        "{text}"
    );
}

/// The other session-scoped features a transaction pool breaks: a session advisory lock, a
/// temporary table and SQL `PREPARE` each become part of the finding, while their
/// transaction-scoped forms (`pg_advisory_xact_lock`, `ON COMMIT DROP`) do not.
#[tokio::test]
async fn advisory_locks_temp_tables_and_prepare_become_findings() {
    let p = pool(StatementMode::Unnamed, 1).await;
    let c = p.get().await.unwrap();
    // Transaction-scoped: fine behind a transaction pool, no finding.
    c.batch_execute(
        "BEGIN; SELECT pg_advisory_xact_lock(7301); \
         CREATE TEMP TABLE pg_bouncer_ok (x int) ON COMMIT DROP; COMMIT",
    )
    .await
    .unwrap();
    assert!(
        p.manager().findings("bouncer").is_empty(),
        "{:?}",
        p.manager().findings("bouncer")
    );
    // Session-scoped: each one is named.
    c.batch_execute("SELECT pg_advisory_lock(7302); SELECT pg_advisory_unlock(7302)")
        .await
        .unwrap();
    c.batch_execute("CREATE TEMP TABLE pg_bouncer_tmp (x int); DROP TABLE pg_bouncer_tmp")
        .await
        .unwrap();
    c.batch_execute("PREPARE pg_bouncer_stmt AS SELECT 1; DEALLOCATE pg_bouncer_stmt")
        .await
        .unwrap();
    drop(c);
    drop(p.get().await.unwrap());
    let stats = p.manager().session_stats();
    assert_eq!(stats.count(SessionChange::AdvisoryLock), 1, "{stats:?}");
    assert_eq!(stats.count(SessionChange::TempTable), 1, "{stats:?}");
    assert_eq!(
        stats.count(SessionChange::PreparedStatement),
        1,
        "{stats:?}"
    );
    let findings = p.manager().findings("bouncer");
    let f = findings
        .iter()
        .find(|f| f.code == "postgres.session-state-on-transaction-pool")
        .unwrap_or_else(|| panic!("{findings:?}"));
    for named in [
        "session advisory lock x1",
        "temporary table x1",
        "PREPARE x1",
    ] {
        assert!(f.message.contains(named), "{named}: {}", f.message);
    }
}

/// Load from 16 tasks while the admin console runs `RECONNECT test_pause`, then `PAUSE test_pause` and
/// `RESUME test_pause`: no request fails (but for the proxy's own login refusals) or hangs,
/// and the pool serves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_pause_on_the_proxy_are_survived_under_load() {
    let admin = console().await;
    let p = pool_on("test_pause", StatementMode::Unnamed, 16).await;
    // Every connection opened first: PgBouncer rejects a client logging in while RECONNECT
    // closes the server sessions ("server login has been failing", then delays new logins
    // for server_login_retry), which is a proxy-side refusal of new clients, not the subject.
    let mut warm = Vec::new();
    for _ in 0..16 {
        let c = p.get().await.unwrap();
        c.simple_query("").await.unwrap();
        warm.push(c);
    }
    drop(warm);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let (p, stop, served, progress) =
            (p.clone(), stop.clone(), served.clone(), progress.clone());
        tasks.spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                match one(&p, t * 100_000 + i).await {
                    Ok(()) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        progress.notify_waiters();
                    }
                    Err(e) => failures.push(e),
                }
                i += 1;
            }
            failures
        });
    }
    // Waits (bounded) until `n` more requests were served.
    let more = |n: u64| {
        let (served, progress) = (served.clone(), progress.clone());
        async move {
            let target = served.load(Ordering::Relaxed) + n;
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let notified = progress.notified();
                    if served.load(Ordering::Relaxed) >= target {
                        return;
                    }
                    notified.await;
                }
            })
            .await
            .expect("the pool keeps serving");
        }
    };
    more(200).await;
    admin.simple_query("RECONNECT test_pause").await.unwrap();
    more(200).await;
    admin.simple_query("PAUSE test_pause").await.unwrap();
    // Paused: clients queue inside the proxy. Wait until it says so.
    let mut waiting = false;
    for _ in 0..200 {
        let rows = admin.simple_query("SHOW POOLS").await.unwrap();
        waiting = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get("database") == Some("test_pause")
                    && r.get("cl_waiting").and_then(|v| v.parse::<u32>().ok()) > Some(0)
            }
            _ => false,
        });
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "requests wait while the proxy is paused");
    admin.simple_query("RESUME test_pause").await.unwrap();
    more(200).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        failures.extend(r.unwrap());
    }
    eprintln!(
        "pgbouncer: {} served across RECONNECT and PAUSE/RESUME; stats {:?}",
        served.load(Ordering::Relaxed),
        p.stats()
    );
    // PgBouncer itself may refuse a request while RECONNECT's new server logins are being
    // retried ("server login has been failing", 08P01, for server_login_retry): a proxy-side
    // refusal the pool cannot prevent, which also ends that client connection. At most one
    // per connection; anything else is a failure of the pool.
    let (refused, other): (Vec<_>, Vec<_>) = failures
        .iter()
        .partition(|e| e.contains("08P01") && e.contains("server login has been failing"));
    assert!(other.is_empty(), "{} failures: {other:?}", other.len());
    assert!(
        refused.len() <= 16,
        "{} proxy refusals: {refused:?}",
        refused.len()
    );
    assert_eq!(one(&p, 7).await, Ok(()), "serves afterwards");
}
