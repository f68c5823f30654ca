//! Every duration a Redis user can set, at `Duration::MAX` and `Duration::ZERO`: each either
//! builds and then works against the real server, or is refused with a typed error that
//! names it. Nothing panics, nothing overflows.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_redis::redis::AsyncCommands;
use poolguard_redis::RedisManager;

/// A deadline for the test itself: reaching it is a hang.
const HANG: Duration = Duration::from_secs(20);

async fn round_trip(m: RedisManager) {
    let pool = Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let key = unique("dur");
    let mut c = tokio::time::timeout(HANG, pool.get())
        .await
        .expect("get hung")
        .expect("get");
    let () = tokio::time::timeout(HANG, c.set(&key, "v"))
        .await
        .expect("SET hung")
        .expect("SET");
    let v: String = tokio::time::timeout(HANG, c.get(&key))
        .await
        .expect("GET hung")
        .expect("GET");
    assert_eq!(v, "v");
    let _: i64 = c.del(&key).await.unwrap();
}

#[tokio::test]
async fn query_and_response_timeouts_at_the_extremes() {
    drop(admin().await);
    for d in [Duration::MAX, Duration::ZERO] {
        for (which, b) in [
            (
                "query_timeout",
                RedisManager::builder(redis_url()).query_timeout(Some(d)),
            ),
            (
                "response_timeout",
                RedisManager::builder(redis_url()).response_timeout(Some(d)),
            ),
        ] {
            match b.build() {
                Ok(m) if d == Duration::MAX => round_trip(m).await,
                Ok(_) => panic!("{which}({d:?}) built: a zero deadline fails every command"),
                Err(e) => {
                    assert_eq!(d, Duration::ZERO, "{which}({d:?}) refused: {e}");
                    assert!(e.to_string().contains(which), "names {which}: {e}");
                }
            }
        }
    }
}
