//! The manager against the real Redis: validate, reset of MULTI/WATCH/SELECT, classification.

mod common;

use common::*;
use poolguard::conn::{ErrorClass, Manager};
use poolguard_redis::{Error, RedisManager};
use redis::AsyncCommands;

fn manager() -> RedisManager {
    RedisManager::new(redis_url().as_str()).unwrap()
}

#[tokio::test]
async fn validate_echoes_a_counter() {
    drop(admin().await);
    let m = manager();
    let mut c = m.connect().await.unwrap();
    for _ in 0..3 {
        m.validate(&mut c).await.unwrap();
    }
    assert!(!m.is_broken(&mut c));
}

#[tokio::test]
async fn open_multi_never_reaches_the_next_borrower() {
    let mut admin = admin().await;
    let key = unique("pg:multi");
    let m = manager();
    let mut c = m.connect().await.unwrap();
    redis::cmd("MULTI").query_async::<()>(&mut c).await.unwrap();
    redis::cmd("SET")
        .arg(&key)
        .arg("leaked")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    m.reset(&mut c).await.unwrap();
    // The next borrower: its EXEC must not run the queued SET.
    let r: redis::RedisResult<Value> = redis::cmd("EXEC").query_async(&mut c).await;
    assert!(
        r.is_err(),
        "EXEC found a transaction left by the previous borrower: {r:?}"
    );
    let v: Option<String> = admin.get(&key).await.unwrap();
    assert_eq!(v, None);
    let _: () = c.set(&key, "fine").await.unwrap();
    let v: Option<String> = admin.get(&key).await.unwrap();
    assert_eq!(v.as_deref(), Some("fine"), "commands run at once again");
    let _: () = admin.del(&key).await.unwrap();
}

use redis::Value;

#[tokio::test]
async fn watch_is_undone_on_return() {
    let mut admin = admin().await;
    let key = unique("pg:watch");
    let m = manager();
    let mut c = m.connect().await.unwrap();
    redis::cmd("WATCH")
        .arg(&key)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    m.reset(&mut c).await.unwrap();
    // Someone else changes the key; the next borrower's transaction must still commit.
    let _: () = admin.set(&key, "changed").await.unwrap();
    let r: Option<(String,)> = redis::pipe()
        .atomic()
        .set(&key, "mine")
        .ignore()
        .get(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        r,
        Some(("mine".to_owned(),)),
        "the stale WATCH aborted the next borrower's EXEC"
    );
    let _: () = admin.del(&key).await.unwrap();
}

#[tokio::test]
async fn cancelled_exec_counts_as_open() {
    let mut admin = admin().await;
    let key = unique("pg:cancel");
    let m = manager();
    let mut c = m.connect().await.unwrap();
    redis::cmd("MULTI").query_async::<()>(&mut c).await.unwrap();
    redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    {
        let exec = redis::cmd("EXEC");
        let fut = exec.query_async::<Value>(&mut c);
        let mut fut = Box::pin(fut);
        let _ = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(fut.as_mut(), cx).is_pending())
        })
        .await;
    }
    m.reset(&mut c).await.unwrap();
    m.validate(&mut c).await.unwrap();
    let _: () = admin.del(&key).await.unwrap();
}

#[tokio::test]
async fn select_is_undone_and_subscribe_evicts() {
    drop(admin().await);
    let m = manager();
    let mut c = m.connect().await.unwrap();
    redis::cmd("SELECT")
        .arg(3)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    m.reset(&mut c).await.unwrap();
    let key = unique("pg:select");
    let _: () = c.set(&key, 1).await.unwrap();
    let mut admin = admin().await; // db 0
    let v: Option<i64> = admin.get(&key).await.unwrap();
    assert_eq!(v, Some(1), "the next borrower was left in db 3");
    let _: () = admin.del(&key).await.unwrap();

    redis::cmd("CLIENT")
        .arg("REPLY")
        .arg("ON")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    assert!(
        m.is_broken(&mut c),
        "CLIENT REPLY must evict the connection"
    );
}

#[tokio::test]
async fn command_errors_are_transient() {
    let mut admin = admin().await;
    let key = unique("pg:wrongtype");
    let _: () = admin.lpush(&key, 1).await.unwrap();
    let m = manager();
    let mut c = m.connect().await.unwrap();
    let err: redis::RedisError = c.get::<_, String>(&key).await.unwrap_err();
    assert_eq!(m.classify(&Error::from(err)), ErrorClass::Transient);
    let err: redis::RedisError = redis::cmd("NOSUCHCOMMAND")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert_eq!(m.classify(&Error::from(err)), ErrorClass::Transient);
    m.validate(&mut c).await.unwrap();
    let _: () = admin.del(&key).await.unwrap();
}

#[tokio::test]
async fn killed_connection_is_fatal() {
    let mut admin = admin().await;
    let m = manager();
    let mut c = m.connect().await.unwrap();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    let err = m.validate(&mut c).await.unwrap_err();
    assert_eq!(m.classify(&err), ErrorClass::Fatal, "{err}");
}

#[tokio::test]
async fn dropped_connection_leaves_the_server() {
    let mut admin = admin().await;
    let m = manager();
    let mut c = m.connect().await.unwrap();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    drop(c);
    for _ in 0..500 {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        if list.trim().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the connection's driver kept the socket open after the drop");
}

#[tokio::test]
async fn refused_port_and_wrong_password_say_so() {
    let mut admin = admin().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let m = RedisManager::new(format!("redis://127.0.0.1:{port}").as_str()).unwrap();
    let err = m.connect().await.unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(m.classify(&err), ErrorClass::Fatal);

    let user = unique("poolguard_pw").replace(':', "_");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">right-secret")
        .arg("~*")
        .arg("+@all")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let m = RedisManager::new(format!("redis://{user}:wrong@127.0.0.1:6379").as_str()).unwrap();
    let err = m.connect().await.unwrap_err();
    let good =
        RedisManager::new(format!("redis://{user}:right-secret@127.0.0.1:6379").as_str()).unwrap();
    let good = good.connect().await.map(|_| ());
    redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    good.unwrap();
    assert!(
        err.to_string().contains("wrong user name or password"),
        "{err}"
    );
    assert_eq!(m.classify(&err), ErrorClass::Fatal);
}

#[test]
fn builder_explains_bad_settings() {
    let e = RedisManager::new("http://nope").unwrap_err();
    assert!(e.to_string().contains("redis://"), "{e}");
    let e = RedisManager::builder("redis://127.0.0.1")
        .response_timeout(Some(std::time::Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
}
