//! `init_commands`: run once per new connection inside the connect; a failing command
//! fails the connect, naming the command without its arguments. Needs the real server on
//! 127.0.0.1:6379 (fails loudly without it).

mod common;

use std::time::Duration;

use poolguard::conn::{Error as PoolError, Phase, Pool};
use poolguard_redis::{redis, Error, RedisManager};

fn url() -> String {
    common::redis_url()
}

#[tokio::test]
async fn init_commands_run_once_per_new_connection() {
    drop(common::admin().await);
    let name = format!("init-{}", std::process::id());
    let mut setname = redis::cmd("CLIENT");
    setname.arg("SETNAME").arg(&name);
    let m = RedisManager::builder(url())
        .init_commands([setname])
        .build()
        .unwrap();
    let p = Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut c = p.get().await.unwrap();
        let got: String = redis::cmd("CLIENT")
            .arg("GETNAME")
            .query_async(&mut *c)
            .await
            .unwrap();
        assert_eq!(got, name);
    }
    assert_eq!(p.stats().created, 1, "one connection, named once");
}

#[tokio::test]
async fn a_failing_init_command_fails_the_connect_naming_it_without_its_arguments() {
    drop(common::admin().await);
    // The test server has no password: AUTH fails, and its argument must not show.
    let mut bad = redis::cmd("AUTH");
    bad.arg("hunter2");
    let m = RedisManager::builder(url())
        .init_commands([redis::cmd("PING"), bad])
        .build()
        .unwrap();
    let p = Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = p.get().await.expect_err("the second command fails");
    assert_eq!(e.phase(), Some(Phase::Connect));
    match &e {
        PoolError::Backend { source, .. } => match &**source {
            Error::InitCommand { index, name, .. } => {
                assert_eq!((*index, name.as_str()), (2, "AUTH"));
            }
            other => panic!("expected InitCommand, got {other:?}"),
        },
        other => panic!("expected a backend error, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("init command #2 (AUTH)"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(p.stats().connect_failures, 1);
}
