//! Credentials that change, against the real server: a provider gives the pool the role's
//! password; the password is rotated with `ALTER ROLE ... PASSWORD` while the pool runs
//! under load, the provider switches, one probe proves the new password, the old
//! connections retire (no get fails meanwhile), and a wrong password opens the breaker
//! with the doctor's `conn.auth-failures` first. Needs `scripts/services.sh` (the role's
//! scram line in pg_hba.conf).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{admin, eventually};
use poolguard::conn::{CloseReason, Credentials, CredentialsError, Error, Pool};
use poolguard_postgres::PostgresManager;

const ROLE: &str = "creds11_rot";

/// Creates the role with password `rot-A`; checks that pg_hba makes it authenticate.
async fn setup_role(admin: &tokio_postgres::Client) {
    // A run that failed half-way may have left the role (and sessions) behind.
    drop_role(admin).await;
    admin
        .batch_execute(&format!("CREATE ROLE {ROLE} LOGIN PASSWORD 'rot-A'"))
        .await
        .expect("create the test role");
    let wrong = PostgresManager::new(&format!(
        "host=127.0.0.1 port=5432 user={ROLE} password=not-it dbname=test"
    ))
    .expect("manager");
    use poolguard::conn::Manager as _;
    if wrong.connect().await.is_ok() {
        panic!(
            "a wrong password was accepted for role {ROLE}: pg_hba.conf trusts it; run `scripts/services.sh` to add its scram line"
        );
    }
}

async fn drop_role(admin: &tokio_postgres::Client) {
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ROLE}'; DROP ROLE IF EXISTS {ROLE}"
        ))
        .await
        .expect("drop the test role");
}

fn provider(
    password: &Arc<Mutex<String>>,
) -> impl Fn() -> std::future::Ready<Result<Credentials, CredentialsError>> + Send + Sync + 'static
{
    let password = Arc::clone(password);
    move || {
        let p = password.lock().unwrap().clone();
        std::future::ready(Ok(Credentials::new(ROLE, p)))
    }
}

async fn pids(pool: &Pool<PostgresManager>, n: usize) -> HashSet<i32> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.expect("get"));
    }
    let mut out = HashSet::new();
    for c in &held {
        let row = c
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid");
        out.insert(row.get::<_, i32>(0));
    }
    out
}

/// One test, two parts: both need the one role that pg_hba.conf authenticates by password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_then_a_wrong_password() {
    a_password_rotated_under_load_is_proven_then_old_connections_retire().await;
    a_wrong_password_opens_the_breaker_and_the_doctor_names_auth_first().await;
}

async fn a_password_rotated_under_load_is_proven_then_old_connections_retire() {
    let admin = admin().await;
    setup_role(&admin).await;
    let password = Arc::new(Mutex::new("rot-A".to_owned()));
    // No password in the connection string: the provider gives it.
    let manager =
        PostgresManager::new(&format!("host=127.0.0.1 port=5432 user={ROLE} dbname=test"))
            .expect("manager");
    let pool = Pool::builder(manager)
        .max_size(4)
        .min_idle(4)
        .max_concurrent_opens(1)
        .acquire_timeout(Duration::from_secs(10))
        .credentials(provider(&password))
        .build()
        .expect("pool");
    pool.ready(Duration::from_secs(10)).await.expect("warm");
    let old = pids(&pool, 4).await;
    assert_eq!(old.len(), 4);

    // Load: 6 tasks querying in a loop; every failure is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (pool, stop, ok, failures) = (pool.clone(), stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(SeqCst) {
                match pool.get().await {
                    Ok(c) => match c.query_one("SELECT current_user::text", &[]).await {
                        Ok(row) => {
                            assert_eq!(row.get::<_, String>(0), ROLE);
                            ok.fetch_add(1, SeqCst);
                        }
                        Err(e) => failures.lock().unwrap().push(format!("query: {e}")),
                    },
                    Err(e) => failures.lock().unwrap().push(format!("get: {e}")),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    eventually("load running", || {
        let n = ok.load(SeqCst);
        async move { n > 50 }
    })
    .await;

    // The rotation: the server takes B (sessions opened with A stay), then the provider
    // says B; the next check proves it with one probe connect.
    admin
        .batch_execute(&format!("ALTER ROLE {ROLE} PASSWORD 'rot-B'"))
        .await
        .expect("rotate");
    *password.lock().unwrap() = "rot-B".to_owned();
    assert!(
        pool.refresh_credentials()
            .await
            .expect("the probe with B succeeds"),
        "a rotation was proven"
    );
    eventually("every old connection retired", || {
        let n = pool.stats().closed_by(CloseReason::Rotated);
        async move { n >= 4 }
    })
    .await;
    let before = ok.load(SeqCst);
    eventually("load still served after the rotation", || {
        let n = ok.load(SeqCst);
        async move { n > before + 50 }
    })
    .await;
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.expect("load task");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "gets failed during the rotation: {failures:?}"
    );
    let t = pool.stats();
    assert_eq!(t.rotations, 1, "{t:?}");
    assert_eq!(t.rotation_probe_failures, 0, "{t:?}");
    assert_eq!(
        t.auth_failures, 0,
        "no connect used the old password after the change: {t:?}"
    );
    // None of the connections opened with A is left on the server.
    let now = pids(&pool, 4).await;
    assert!(now.is_disjoint(&old), "old {old:?} now {now:?}");
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND pid = ANY($2)",
            &[&ROLE, &old.iter().copied().collect::<Vec<i32>>()],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 0, "old backends still connected");
    pool.close();
    assert!(pool.wait_closed(Duration::from_secs(10)).await);
    drop_role(&admin).await;
}

async fn a_wrong_password_opens_the_breaker_and_the_doctor_names_auth_first() {
    let admin = admin().await;
    setup_role(&admin).await;
    // The provider's answer is not the role's password.
    let password = Arc::new(Mutex::new("rot-wrong".to_owned()));
    let manager =
        PostgresManager::new(&format!("host=127.0.0.1 port=5432 user={ROLE} dbname=test"))
            .expect("manager");
    let pool = Pool::builder(manager)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(10))
        .breaker_threshold(Some(2))
        .breaker_backoff(Duration::from_secs(5))
        .breaker_max_backoff(Duration::from_secs(10))
        .credentials(provider(&password))
        .build()
        .expect("pool");
    let first = pool.get().await.expect_err("wrong password");
    match &first {
        Error::Backend { source, .. } => {
            assert!(source.is_auth_failure(), "{source}");
            assert_eq!(source.code().map(|c| c.code()), Some("28P01"));
        }
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    let _ = pool.get().await.expect_err("wrong password again");
    let third = pool.get().await.expect_err("breaker open");
    assert!(matches!(third, Error::Unavailable { .. }), "{third:?}");
    let f = pool.doctor();
    assert_eq!(f[0].code, "conn.auth-failures", "{f:#?}");
    assert!(f[0].fix.contains("credentials provider"), "{}", f[0].fix);
    let all = format!("{f:?}");
    assert!(
        !all.contains("rot-wrong") && !all.contains("rot-A"),
        "{all}"
    );
    assert!(pool.stats().auth_failures >= 2);
    pool.close();
    drop_role(&admin).await;
}
