//! A write to a node that became a replica (what a failover leaves behind) is refused with
//! `READONLY`: classified fatal, the connection is evicted, and the error says what happened.
//! Against two private redis-server processes this test starts (a primary and its replica).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, ErrorClass, Pool};
use poolguard_redis::{classify, Error, RedisManager};
use redis::AsyncCommands;

/// A redis-server child process on a free port, killed when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .args(["--dbfilename", &format!("poolguard-{port}.rdb")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server: {e}.\n\
                     This test needs the redis-server binary: run `scripts/services.sh` (as root) to install it."
                )
            });
        // Ready when it says so (its log goes to stdout); a server that exits first fails.
        let out = child.stdout.take().unwrap();
        let ready = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("Ready to accept connections"))
        });
        assert!(
            ready.join().unwrap(),
            "redis-server on port {port} did not start"
        );
        PrivateRedis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_write_to_a_replica_is_fatal_and_evicts() {
    let primary = PrivateRedis::start(&[]);
    let replica = PrivateRedis::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let key = unique("pg:failover");
    let pool = Pool::builder(RedisManager::new(replica.url().as_str()).unwrap())
        .name("redis-replica")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Reads are fine on a replica: no eviction.
    {
        let mut c = pool.get().await.unwrap();
        let v: Option<String> = c.get(&key).await.unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(pool.stats().closed_total(), 0);

    let mut c = pool.get().await.unwrap();
    let e = c
        .set::<_, _, ()>(&key, "x")
        .await
        .expect_err("a replica refuses writes");
    assert_eq!(e.code(), Some("READONLY"), "{e}");
    assert_eq!(classify(&e), ErrorClass::Fatal, "{e}");
    // What the caller can show: the server's words and what they mean.
    let shown = Error::from(e).to_string();
    assert!(shown.contains("read only replica"), "{shown}");
    assert!(
        shown.contains("replica") && shown.contains("failover"),
        "{shown}"
    );
    // Not reported by hand: the connection marked itself, and its return evicts it.
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
    let mut c = pool.get().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
    assert_eq!(pong, "PONG", "a fresh connection");
    assert_eq!(pool.stats().created, 2);

    // The same for a write inside a pipeline.
    let r: redis::RedisResult<(Option<String>, ())> = redis::pipe()
        .get(&key)
        .set(&key, "x")
        .query_async(&mut *c)
        .await;
    assert_eq!(r.expect_err("refused").code(), Some("READONLY"));
    drop(c);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 2);
}

/// `READONLY` is the Redis failover class: with `failover_burst` on, two reported writes
/// refused by a replica soft-evict the pool once, and the doctor names the class.
#[tokio::test]
async fn a_burst_of_readonly_reports_soft_evicts_the_pool() {
    let primary = PrivateRedis::start(&[]);
    let replica = PrivateRedis::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let key = unique("pg:failover-burst");
    let pool = Pool::builder(RedisManager::new(replica.url().as_str()).unwrap())
        .name("redis-failover-burst")
        .max_size(3)
        .acquire_timeout(Duration::from_secs(10))
        .failover_burst(Some(2))
        .failover_window(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut held = vec![pool.get().await.unwrap(), pool.get().await.unwrap()];
    drop(pool.get().await.unwrap()); // a third one, idle
    assert_eq!(pool.status().idle, 1);
    for c in &mut held {
        let e = c
            .set::<_, _, ()>(&key, "x")
            .await
            .expect_err("a replica refuses writes");
        assert_eq!(poolguard_redis::failover_class(&e), Some("READONLY"));
        assert_eq!(c.report(&e), ErrorClass::Fatal);
    }
    let t = pool.stats();
    assert_eq!((t.auto_soft_evicts, t.soft_evictions), (1, 1));
    assert_eq!(
        t.closed_by(CloseReason::Evicted),
        1,
        "the idle one, at once"
    );
    let doctor = pool.doctor();
    let f = doctor
        .iter()
        .find(|f| f.code == "conn.failover")
        .expect("reported");
    assert!(f.message.contains("2 `READONLY` errors"), "{}", f.message);
    // A read error of another kind is no signature.
    let other = redis::RedisError::from((redis::ErrorKind::Io, "reset"));
    assert_eq!(poolguard_redis::failover_class(&other), None);
}
