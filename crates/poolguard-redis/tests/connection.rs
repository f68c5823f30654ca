//! The connection under a pooled Redis connection is redis-rs's own multiplexed connection
//! on a plain socket: a server-side kill is noticed without a command, the connection info's
//! options apply, and Pub/Sub has a dedicated connection outside the pool.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_redis::{classify, RedisManager};
use redis::AsyncCommands;

const BOUND: Duration = Duration::from_secs(10);

async fn client_id(c: &mut (impl redis::aio::ConnectionLike + Send)) -> i64 {
    redis::cmd("CLIENT").arg("ID").query_async(c).await.unwrap()
}

async fn kill(admin: &mut redis::aio::MultiplexedConnection, id: i64) {
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "client {id} was killed");
}

fn pool(m: RedisManager) -> Pool<RedisManager> {
    Pool::builder(m)
        .name("redis-conn")
        .max_size(1)
        .acquire_timeout(BOUND)
        .build()
        .unwrap()
}

/// A connection the server kills is seen closed without a command being sent: its return
/// evicts it, and the next borrower gets a fresh one. No request fails.
#[tokio::test]
async fn a_killed_connection_is_noticed_without_a_command() {
    let mut admin = admin().await;
    let pool = pool(RedisManager::new(redis_url().as_str()).unwrap());
    let mut c = pool.get().await.unwrap();
    let id = client_id(&mut *c).await;
    assert!(!c.is_closed());
    kill(&mut admin, id).await;
    tokio::time::timeout(BOUND, c.closed())
        .await
        .expect("the connection saw the server close it");
    assert!(c.is_closed());
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
    let mut c = pool.get().await.unwrap();
    assert_ne!(client_id(&mut *c).await, id, "a new connection");
    let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A kill while a command is in flight fails that command only, at once and as fatal (not a
/// timeout); the connection is evicted and the next borrower's commands work.
#[tokio::test]
async fn a_kill_mid_command_fails_only_that_command() {
    let mut admin = admin().await;
    let key = unique("pg:kill");
    let pool = pool(RedisManager::new(redis_url().as_str()).unwrap());
    let mut c = pool.get().await.unwrap();
    let id = client_id(&mut *c).await;
    // Sent before or after the kill, the BLPOP cannot get an answer: it fails.
    let blpop = redis::cmd("BLPOP").arg(&key).arg(30).clone();
    let (r, ()) = tokio::time::timeout(BOUND, async {
        tokio::join!(
            blpop.query_async::<redis::Value>(&mut *c),
            kill(&mut admin, id)
        )
    })
    .await
    .expect("the BLPOP ended with the kill, not after its 30 s");
    let e = r.expect_err("the killed BLPOP fails");
    assert_eq!(classify(&e), ErrorClass::Fatal, "{e}");
    assert!(!e.is_timeout(), "{e}");
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
    let mut c = pool.get().await.unwrap();
    let _: () = c.set(&key, "after").await.unwrap();
    let v: String = c.get(&key).await.unwrap();
    assert_eq!(v, "after");
    let _: () = c.del(&key).await.unwrap();
}

/// With validation on every checkout, an idle connection killed by the server is replaced
/// before anyone gets it: the caller's command works.
#[tokio::test]
async fn a_connection_killed_while_idle_never_reaches_a_borrower() {
    let mut admin = admin().await;
    let pool = Pool::builder(RedisManager::new(redis_url().as_str()).unwrap())
        .name("redis-conn-idle")
        .max_size(1)
        .acquire_timeout(BOUND)
        .validation_bypass(Duration::ZERO)
        .build()
        .unwrap();
    let id = client_id(&mut *pool.get().await.unwrap()).await;
    kill(&mut admin, id).await;
    let mut c = pool.get().await.expect("a working connection");
    assert_ne!(client_id(&mut *c).await, id);
    assert_eq!(pool.stats().closed_total(), 1);
}

/// What the URL sets beyond host, port and credentials applies: `protocol=resp3` makes the
/// pooled connections speak RESP3 (`HELLO 3` at connect), which the server reports.
#[tokio::test]
async fn url_protocol_option_applies() {
    drop(admin().await);
    for (query, resp) in [("", "resp=2"), ("?protocol=resp3", "resp=3")] {
        let url = format!("{}{query}", redis_url().trim_end_matches('/'));
        let pool = pool(RedisManager::new(url.as_str()).unwrap());
        let mut c = pool.get().await.unwrap();
        let info: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query_async(&mut *c)
            .await
            .unwrap();
        assert!(info.split_whitespace().any(|f| f == resp), "{url}: {info}");
    }
}

/// TCP settings given in the connection info reach the socket: with a 37 s keepalive the
/// kernel arms a keepalive timer on the pooled connection's socket (read from outside it,
/// in `/proc/net/tcp`, found by the client address the server reports); without one, none.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_settings_of_the_connection_info_reach_the_socket() {
    drop(admin().await);
    for keepalive in [true, false] {
        let mut info =
            redis::IntoConnectionInfo::into_connection_info(redis_url().as_str()).unwrap();
        if keepalive {
            info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_keepalive(
                redis::io::tcp::socket2::TcpKeepalive::new().with_time(Duration::from_secs(37)),
            ));
        }
        let pool = pool(RedisManager::new(info).unwrap());
        let mut c = pool.get().await.unwrap();
        let me: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query_async(&mut *c)
            .await
            .unwrap();
        let addr = me
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in CLIENT INFO: {me}"));
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        // The reply has been read, so nothing is in flight: the only timer left is the
        // keepalive one.
        let poolguard_testkit::tcp::KernelTimer { kind, ticks } =
            poolguard_testkit::tcp::idle_kernel_timer(port).await;
        if keepalive {
            assert_eq!(kind, 2, "a keepalive timer is armed");
            assert!(
                ticks <= 37 * 100,
                "it fires within the keepalive time: {ticks} ticks"
            );
        } else {
            assert_eq!(kind, 0, "no keepalive asked, no timer");
        }
    }
}

/// The dedicated Pub/Sub connection receives what a pooled connection publishes; the pooled
/// connection stays in the pool.
#[tokio::test]
async fn pubsub_receives_what_the_pool_publishes() {
    drop(admin().await);
    let channel = unique("pg:chan");
    let pool = pool(RedisManager::new(redis_url().as_str()).unwrap());
    let mut sub = pool.manager().pubsub(BOUND).await.unwrap();
    sub.subscribe(&channel).await.unwrap();
    {
        let mut c = pool.get().await.unwrap();
        let receivers: i64 = c.publish(&channel, "hello").await.unwrap();
        assert_eq!(receivers, 1);
    }
    let msg = tokio::time::timeout(BOUND, sub.on_message().next())
        .await
        .expect("the message arrives")
        .expect("the subscription is open");
    assert_eq!(msg.get_channel_name(), channel);
    assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
    assert_eq!(pool.stats().closed_total(), 0, "publishing does not evict");
}
