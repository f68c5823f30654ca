//! `rediss://` through the pool against the TLS Redis that `scripts/services.sh` starts on
//! 127.0.0.1:6381 with a certificate from a generated test CA.
#![cfg(feature = "tls")]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use poolguard::conn::{ErrorClass, Manager, Pool};
use poolguard_redis::{BuildError, Error, RedisManager};
use redis::AsyncCommands;

const BOUND: Duration = Duration::from_secs(10);

fn manager_trusting(ca: &str) -> RedisManager {
    require_tls_server();
    RedisManager::builder(tls_url().as_str())
        .tls_root_ca(tls_file(ca))
        .build()
        .unwrap()
}

#[tokio::test]
async fn ping_set_get_over_tls_through_the_pool() {
    let m = manager_trusting("ca.crt");
    assert!(format!("{m:?}").contains("tls: true"), "{m:?}");
    let pool = Pool::builder(m)
        .name("redis-tls")
        .max_size(2)
        .acquire_timeout(BOUND)
        .validation_bypass(Duration::ZERO)
        .build()
        .unwrap();
    let key = unique("pg:tls");
    for round in 0..3 {
        // Every checkout is validated (`PING n` echoed) over the same TLS connection.
        let mut c = pool.get().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
        assert_eq!(pong, "PONG");
        let _: () = c.set(&key, round).await.unwrap();
        let v: i64 = c.get(&key).await.unwrap();
        assert_eq!(v, round);
    }
    let mut c = pool.get().await.unwrap();
    let _: () = c.del(&key).await.unwrap();
    assert_eq!(pool.stats().created, 1, "one TLS connection, reused");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_typed_connect_error() {
    let m = manager_trusting("other-ca.crt");
    let e = tokio::time::timeout(BOUND, m.connect())
        .await
        .expect("refused at once, not timed out")
        .expect_err("the server's certificate is not trusted");
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    let text = e.to_string();
    assert!(
        text.contains("TLS handshake with rediss://127.0.0.1:6381"),
        "{text}"
    );
    assert!(text.contains("tls_root_ca"), "{text}");
    // Through the pool: the get fails with that error as its cause.
    let pool = Pool::builder(m)
        .name("redis-tls-wrong-ca")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let e = pool.get().await.expect_err("no connection");
    let mut chain = String::new();
    let mut s: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(x) = s {
        chain.push_str(&format!("{x}\n"));
        s = x.source();
    }
    assert!(chain.contains("TLS handshake"), "{chain}");
}

#[tokio::test]
async fn the_system_roots_do_not_trust_the_test_ca() {
    require_tls_server();
    let m = match RedisManager::new(tls_url().as_str()) {
        Ok(m) => m,
        // A machine without system CA certificates: refused when built, with the fix named.
        Err(e) => {
            assert!(matches!(e, BuildError::Tls(_)), "{e}");
            assert!(e.to_string().contains("tls_root_ca"), "{e}");
            return;
        }
    };
    let e = m.connect().await.expect_err("untrusted");
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
}

#[tokio::test]
async fn tls_settings_are_checked_when_built() {
    let e = RedisManager::builder(redis_url().as_str())
        .tls_root_ca(tls_file("ca.crt"))
        .build()
        .expect_err("TLS settings for redis://");
    assert!(matches!(e, BuildError::TlsWithoutRediss), "{e}");
    let e = RedisManager::new("rediss://127.0.0.1:6381/#insecure").expect_err("insecure");
    assert!(matches!(e, BuildError::InsecureTls), "{e}");
    for pem in [&b"not a certificate"[..], b""] {
        let e = RedisManager::builder(tls_url().as_str())
            .tls_root_ca(pem)
            .build()
            .expect_err("no CA");
        assert!(matches!(e, BuildError::Tls(_)), "{e}");
        assert!(e.to_string().contains("tls_root_ca"), "{e}");
    }
}

/// The Pub/Sub connection uses the manager's TLS settings too.
#[tokio::test]
async fn pubsub_over_tls() {
    let m = manager_trusting("ca.crt");
    let channel = unique("pg:tls-chan");
    let mut sub = m.pubsub(BOUND).await.unwrap();
    sub.subscribe(&channel).await.unwrap();
    let pool = Pool::builder(m)
        .name("redis-tls-pubsub")
        .max_size(1)
        .acquire_timeout(BOUND)
        .build()
        .unwrap();
    let mut c = pool.get().await.unwrap();
    let n: i64 = c.publish(&channel, "over tls").await.unwrap();
    assert_eq!(n, 1);
    let msg = tokio::time::timeout(BOUND, sub.on_message().next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "over tls");
}

/// A TLS connection the server kills is noticed without a command, as a plain one.
#[tokio::test]
async fn a_killed_tls_connection_is_noticed() {
    let m = manager_trusting("ca.crt");
    let mut admin = m.connect().await.unwrap();
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
    tokio::time::timeout(BOUND, c.closed())
        .await
        .expect("the kill is noticed");
    assert!(m.is_broken(&mut c));
}
