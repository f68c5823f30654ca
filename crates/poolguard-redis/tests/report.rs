//! `conn.report(&e)` takes the `redis::RedisError` a command returned: the caller keeps the
//! error, and a fatal one evicts the connection.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_redis::RedisManager;
use redis::AsyncCommands;

fn pool() -> Pool<RedisManager> {
    Pool::builder(RedisManager::new(redis_url().as_str()).unwrap())
        .name("redis-report")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A command's error, reported and then handed back to the caller's caller.
async fn lpush_on_a_string(pool: &Pool<RedisManager>, key: &str) -> Result<i64, redis::RedisError> {
    let mut c = pool.get().await.unwrap();
    let _: () = c.set(key, "a string").await?;
    match c.lpush::<_, _, i64>(key, "x").await {
        Ok(n) => Ok(n),
        Err(e) => {
            assert_eq!(c.report(&e), ErrorClass::Transient);
            assert!(!c.is_marked_broken());
            Err(e)
        }
    }
}

#[tokio::test]
async fn a_reported_transient_error_stays_with_the_caller() {
    drop(admin().await);
    let key = unique("pg:report");
    let pool = pool();
    let e = lpush_on_a_string(&pool, &key).await.expect_err("WRONGTYPE");
    assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
    assert_eq!(pool.stats().closed_total(), 0, "the connection is kept");
    let mut c = pool.get().await.unwrap();
    let _: () = c.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_reported_fatal_error_evicts() {
    drop(admin().await);
    let pool = pool();
    let mut c = pool.get().await.unwrap();
    // An error the connection did not see itself (from elsewhere in the caller's code).
    let e = redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset while streaming the reply",
    ));
    assert_eq!(c.report(&e), ErrorClass::Fatal);
    assert!(c.is_marked_broken());
    assert!(e.is_io_error(), "still the caller's: {e}");
    // The manager's own error type is reported as before.
    assert_eq!(
        c.report(&poolguard_redis::Error::from(e)),
        ErrorClass::Fatal
    );
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
}
