//! `query_timeout`: with the server frozen (a blackholed proxy), a command fails once its
//! deadline passes and its connection is evicted; blocking commands get their own block time
//! on top, and a command told to block for good gets no deadline.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, ErrorClass, Manager, Pool};
use poolguard_redis::{BuildError, Error, RedisManager};
use poolguard_testkit::proxy::FaultProxy;
use redis::{AsyncCommands, Value};

/// Far beyond any deadline below: only a hung command reaches it.
const HUNG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_the_command_and_evicts_the_connection() {
    drop(admin().await);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 6379)))
        .await
        .unwrap();
    let query_timeout = Duration::from_millis(300);
    let m = RedisManager::builder(format!("redis://127.0.0.1:{}/0", proxy.addr().port()).as_str())
        .query_timeout(Some(query_timeout))
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .name("redis-query-timeout")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let key = unique("pg:qt");
    for pipeline in [false, true] {
        let mut c = pool.get().await.unwrap();
        let _: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
        proxy.blackhole(true);
        let request = async {
            if pipeline {
                redis::pipe()
                    .get(&key)
                    .get(&key)
                    .query_async::<Value>(&mut *c)
                    .await
            } else {
                c.get::<_, Value>(&key).await
            }
        };
        let err = tokio::time::timeout(HUNG, request)
            .await
            .expect("the command hung: query_timeout did not bound it")
            .expect_err("nothing can answer through a blackhole");
        assert!(err.is_timeout(), "{err}");
        assert!(err.to_string().contains("query_timeout"), "{err}");
        let err = Error::from(err);
        assert_eq!(pool.manager().classify(&err), ErrorClass::Fatal, "{err}");
        // The borrower does not even report it: the connection is evicted anyway.
        drop(c);
        assert_eq!(
            pool.stats().closed_by(CloseReason::Broken),
            1 + u64::from(pipeline),
            "the timed-out connection went back to the pool"
        );
        proxy.blackhole(false);
        let mut c = pool.get().await.unwrap();
        let echo = unique("echo");
        let got: String =
            tokio::time::timeout(HUNG, redis::cmd("PING").arg(&echo).query_async(&mut *c))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(got, echo);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_get_their_block_time_on_top() {
    let mut admin = admin().await;
    let m = RedisManager::builder(redis_url().as_str())
        .query_timeout(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (list, stream) = (unique("pg:qt:list"), unique("pg:qt:stream"));
    let mut c = pool.get().await.unwrap();
    // Three times query_timeout each, on keys nobody writes: they end by their own timeout.
    let popped: Option<(String, String)> = tokio::time::timeout(HUNG, c.blpop(&list, 1.5))
        .await
        .unwrap()
        .expect("BLPOP k 1.5 must be allowed its 1.5 s");
    assert_eq!(popped, None);
    let read: Value = tokio::time::timeout(
        HUNG,
        redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(1500)
            .arg("STREAMS")
            .arg(&stream)
            .arg("$")
            .query_async(&mut *c),
    )
    .await
    .unwrap()
    .expect("XREAD BLOCK 1500 must be allowed its 1.5 s");
    assert_eq!(read, Value::Nil);
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 0);
    let _: () = admin.del(&[&list, &stream]).await.unwrap();
}

/// Paused clock, connection opened first: while the command waits for the server the runtime
/// is idle, so any timer would fire at once. `BLPOP k 0` must outlive a virtual second
/// (five query timeouts) and still return the value pushed after that.
#[tokio::test]
async fn blocking_for_good_has_no_deadline() {
    let plain = RedisManager::new(redis_url().as_str()).unwrap();
    let mut admin = plain.connect().await.unwrap();
    let m = RedisManager::builder(redis_url().as_str())
        .query_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let mut c = m.connect().await.unwrap();
    let list = unique("pg:qt:forever");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    tokio::time::pause();
    let blpop = c.blpop::<_, Option<(String, String)>>(&list, 0.0);
    let push = async {
        loop {
            let info: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("ID")
                .arg(id)
                .query_async(&mut admin)
                .await
                .unwrap();
            if info.contains("cmd=blpop") && info.contains("flags=b") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _: () = admin.rpush(&list, "late").await.unwrap();
    };
    let (popped, ()) = tokio::join!(blpop, push);
    assert_eq!(
        popped.expect("BLPOP k 0 was cut off by query_timeout"),
        Some((list.clone(), "late".to_owned()))
    );
    assert!(!m.is_broken(&mut c));
}

#[test]
fn a_zero_query_timeout_is_refused() {
    let e = RedisManager::builder("redis://127.0.0.1")
        .query_timeout(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::ZeroQueryTimeout), "{e}");
    assert!(e.to_string().contains("query_timeout"), "{e}");
}
