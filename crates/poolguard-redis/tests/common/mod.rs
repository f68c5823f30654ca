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

/// URL of the TLS test server (override with `POOLGUARD_REDIS_TLS`), started by
/// `scripts/services.sh` with a certificate from a test CA.
pub fn tls_url() -> String {
    std::env::var("POOLGUARD_REDIS_TLS").unwrap_or_else(|_| "rediss://127.0.0.1:6381/0".into())
}

/// Where `scripts/services.sh` keeps the TLS test certificates (override with
/// `POOLGUARD_REDIS_TLS_DIR`).
pub fn tls_dir() -> std::path::PathBuf {
    std::env::var("POOLGUARD_REDIS_TLS_DIR")
        .unwrap_or_else(|_| "/var/lib/redis-tls".into())
        .into()
}

/// The test CA that signed the TLS server's certificate.
pub fn tls_ca() -> std::path::PathBuf {
    tls_dir().join("ca.crt")
}

/// Reads a file of the TLS test setup; fails loudly when it is not there.
pub fn tls_file(name: &str) -> Vec<u8> {
    let path = tls_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}.\n\
             The TLS tests need the TLS Redis and its test CA: run `scripts/services.sh` (as root).",
            path.display()
        )
    })
}

/// Fails loudly when the TLS test server is not listening.
pub fn require_tls_server() {
    let addr = tls_url()
        .trim_start_matches("rediss://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Err(e) = std::net::TcpStream::connect(&addr) {
        panic!(
            "the TLS Redis is not reachable at `{addr}`: {e}.\n\
             These tests need it: run `scripts/services.sh` (as root) to start it."
        );
    }
}
