//! Credentials that change, against the real server: an ACL user whose password a
//! provider gives; the password is rotated (`ACL SETUSER` adds the new one, the provider
//! switches, then the old one is removed) while the pool runs under load; one probe proves
//! it, the old connections retire, no get fails; a wrong password (`WRONGPASS`) opens the
//! breaker with the doctor's `conn.auth-failures` first. The ACL user is deleted at the
//! end. Needs `scripts/services.sh`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::admin;
use poolguard::conn::{CloseReason, Credentials, CredentialsError, Error, Pool};
use poolguard_redis::redis::{self, aio::MultiplexedConnection};
use poolguard_redis::RedisManager;

const USER: &str = "creds11_user";

async fn acl(admin: &mut MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    for a in args {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(admin).await.expect("ACL command");
}

fn provider(
    password: &Arc<Mutex<String>>,
) -> impl Fn() -> std::future::Ready<Result<Credentials, CredentialsError>> + Send + Sync + 'static
{
    let password = Arc::clone(password);
    move || {
        let p = password.lock().unwrap().clone();
        std::future::ready(Ok(Credentials::new(USER, p)))
    }
}

/// Polls (bounded) until `f` holds; panics with `what` otherwise.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn client_ids(pool: &Pool<RedisManager>, n: usize) -> HashSet<i64> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.expect("get"));
    }
    let mut out = HashSet::new();
    for c in &mut held {
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut **c)
            .await
            .expect("CLIENT ID");
        out.insert(id);
    }
    out
}

/// Ids of the clients connected as the test user.
async fn connected_ids(admin: &mut MultiplexedConnection) -> HashSet<i64> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("user={USER}")))
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_then_a_wrong_password() {
    let mut admin = admin().await;
    acl(&mut admin, &["DELUSER", USER]).await;
    acl(
        &mut admin,
        &["SETUSER", USER, "on", ">pw-A", "~creds11:*", "+@all"],
    )
    .await;
    // Whatever happens (a failed assertion included), the ACL user goes, and its
    // connections with it.
    let _cleanup = DelUser;
    run(&mut admin).await.unwrap_or_else(|e| panic!("{e}"));
}

struct DelUser;

impl Drop for DelUser {
    fn drop(&mut self) {
        let deleted = redis::Client::open(common::redis_url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| {
                redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(USER)
                    .query::<i64>(&mut c)
            });
        if let Err(e) = deleted {
            eprintln!("could not delete the ACL user {USER}: {e}");
        }
    }
}

async fn run(admin: &mut MultiplexedConnection) -> Result<(), String> {
    let password = Arc::new(Mutex::new("pw-A".to_owned()));
    let pool = Pool::builder(RedisManager::new(common::redis_url()).expect("manager"))
        .max_size(4)
        .min_idle(4)
        .max_concurrent_opens(1)
        .acquire_timeout(Duration::from_secs(10))
        .credentials(provider(&password))
        .build()
        .expect("pool");
    pool.ready(Duration::from_secs(10)).await.expect("warm");
    let old = client_ids(&pool, 4).await;
    assert_eq!(old.len(), 4);
    assert!(
        old.is_subset(&connected_ids(admin).await),
        "authenticated as {USER}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (pool, stop, ok, failures) = (pool.clone(), stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("creds11:load:{i}");
            while !stop.load(SeqCst) {
                match pool.get().await {
                    Ok(mut c) => {
                        let r: redis::RedisResult<i64> =
                            redis::cmd("INCR").arg(&key).query_async(&mut *c).await;
                        match r {
                            Ok(_) => {
                                ok.fetch_add(1, SeqCst);
                            }
                            Err(e) => failures.lock().unwrap().push(format!("INCR: {e}")),
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(format!("get: {e}")),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    eventually("load running", || ok.load(SeqCst) > 50).await;

    // The rotation: the server takes B too, the provider says B, one probe proves it,
    // then A is removed (connections authenticated with A stay until they retire).
    acl(admin, &["SETUSER", USER, ">pw-B"]).await;
    *password.lock().unwrap() = "pw-B".to_owned();
    assert!(pool
        .refresh_credentials()
        .await
        .expect("the probe with B succeeds"));
    acl(admin, &["SETUSER", USER, "<pw-A"]).await;
    eventually("every old connection retired", || {
        pool.stats().closed_by(CloseReason::Rotated) >= 4
    })
    .await;
    let before = ok.load(SeqCst);
    eventually("load served after the rotation", || {
        ok.load(SeqCst) > before + 50
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
    assert_eq!(
        (t.rotations, t.rotation_probe_failures, t.auth_failures),
        (1, 0, 0),
        "{t:?}"
    );
    let now = client_ids(&pool, 4).await;
    assert!(now.is_disjoint(&old), "old {old:?} now {now:?}");
    let connected = connected_ids(admin).await;
    assert!(
        connected.is_disjoint(&old),
        "old clients still connected: {connected:?}"
    );
    pool.close();
    assert!(pool.wait_closed(Duration::from_secs(10)).await);

    // A wrong password: WRONGPASS, an auth failure; the breaker opens; the doctor says so
    // first, without the password.
    let wrong = Arc::new(Mutex::new("pw-wrong".to_owned()));
    let pool = Pool::builder(RedisManager::new(common::redis_url()).expect("manager"))
        .max_size(2)
        .acquire_timeout(Duration::from_secs(10))
        .breaker_threshold(Some(2))
        .breaker_backoff(Duration::from_secs(5))
        .breaker_max_backoff(Duration::from_secs(10))
        .credentials(provider(&wrong))
        .build()
        .expect("pool");
    match pool.get().await {
        Err(Error::Backend { source, .. }) => {
            assert!(source.is_auth_failure(), "{source}");
        }
        other => return Err(format!("expected WRONGPASS, got {other:?}")),
    }
    let _ = pool.get().await.expect_err("wrong again");
    let third = pool.get().await.expect_err("breaker open");
    assert!(matches!(third, Error::Unavailable { .. }), "{third:?}");
    let f = pool.doctor();
    assert_eq!(f[0].code, "conn.auth-failures", "{f:#?}");
    let all = format!("{f:?}");
    assert!(!all.contains("pw-wrong") && !all.contains("pw-B"), "{all}");
    pool.close();
    let _: () = redis::cmd("DEL")
        .arg(
            (0..6)
                .map(|i| format!("creds11:load:{i}"))
                .collect::<Vec<_>>(),
        )
        .query_async(admin)
        .await
        .map(|_: i64| ())
        .expect("DEL");
    Ok(())
}
