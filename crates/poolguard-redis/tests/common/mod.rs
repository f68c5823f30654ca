//! Shared helpers of the Redis tests: the real server on 127.0.0.1:6379.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use redis::aio::MultiplexedConnection;

/// URL of the test server (override with `POOLGUARD_REDIS`).
pub fn redis_url() -> String {
    std::env::var("POOLGUARD_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A name unique to this test process and call, for keys and ACL users.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection for checks; fails loudly when the server is not there.
pub async fn admin() -> MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("redis url");
    match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => panic!(
            "Redis is not reachable at `{}`: {e}.\n\
             These tests need the real server: run `scripts/services.sh` (as root) to start or install it.",
            redis_url()
        ),
    }
}
