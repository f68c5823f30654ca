//! A command whose caller gave up before its reply arrived (a cancelled `BLPOP`, `XREAD BLOCK`,
//! `WAIT`, a `GET` cut off mid-reply) must not reach the next borrower: with one pooled
//! connection, the next borrower's `PING` would queue behind the blocked command. Each command
//! is cut at several points; the next borrower must get a connection whose `PING` answers its
//! own echo, and the poisoned one must have been evicted.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, Pool};
use poolguard_redis::RedisManager;
use poolguard_testkit::proxy::FaultProxy;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};

type RPool = Pool<RedisManager>;

/// Where the caller gives up.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// After the first poll: the request may not even be written yet.
    FirstPoll,
    /// Once the server shows the command blocked (flags `b`).
    Blocked,
    /// Once the server has run the command (its reply is on the way).
    Ran,
    /// Some time into a slow reply.
    MidReply,
}

fn pool(url: &str) -> RPool {
    Pool::builder(RedisManager::new(url).unwrap())
        .name("redis-owed")
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The server's view of a client: `(cmd, flags)`.
async fn client_state(admin: &mut MultiplexedConnection, id: i64) -> (String, String) {
    let info: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query_async(admin)
        .await
        .unwrap();
    let field = |name: &str| {
        info.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or("")
            .to_owned()
    };
    (field("cmd="), field("flags="))
}

/// Runs `cmd` on the pool's only connection and abandons it at `cut`; then checks that the
/// next borrower is served and that the poisoned connection was evicted.
async fn cut_and_reuse(
    pool: &RPool,
    admin: &mut MultiplexedConnection,
    cmd: &Cmd,
    cut: Cut,
    on_cut: impl FnOnce(),
) {
    let name = String::from_utf8_lossy(cmd.args_iter().next().map_or(&b""[..], |a| match a {
        redis::Arg::Simple(b) => b,
        _ => b"",
    }))
    .to_ascii_lowercase();
    let evicted_before = pool.stats().closed_by(CloseReason::Broken);
    {
        let mut c = pool.get().await.unwrap();
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut *c)
            .await
            .unwrap();
        let mut fut = pin!(cmd.query_async::<Value>(&mut *c));
        let pending = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending()));
        assert!(pending.await, "{name} answered on its first poll");
        let reached = async {
            match cut {
                Cut::FirstPoll => {}
                Cut::Blocked | Cut::Ran | Cut::MidReply => loop {
                    let (last, flags) = client_state(admin, id).await;
                    let blocked = flags.contains('b');
                    if last == name && (blocked || !matches!(cut, Cut::Blocked)) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                },
            }
            if let Cut::MidReply = cut {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        tokio::select! {
            r = &mut fut => panic!("{name} ({cut:?}) finished before it was cut: {r:?}"),
            () = reached => {}
        }
        // The caller gives up here: the future and the connection are dropped.
    }
    on_cut();
    let echo = unique("echo");
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = pool.get().await.unwrap();
        redis::cmd("PING")
            .arg(&echo)
            .query_async::<String>(&mut *c)
            .await
    })
    .await;
    match reply {
        Ok(Ok(got)) => assert_eq!(got, echo, "{name} ({cut:?}): PING answered out of step"),
        Ok(Err(e)) => panic!("{name} ({cut:?}): the next borrower's PING failed: {e}"),
        Err(_) => panic!(
            "{name} ({cut:?}): the next borrower's PING got no answer in 5 s: \
             the connection with a reply owed was handed on"
        ),
    }
    assert_eq!(
        pool.stats().closed_by(CloseReason::Broken),
        evicted_before + 1,
        "{name} ({cut:?}): the connection with a reply owed was not evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_blocking_commands_never_reach_the_next_borrower() {
    let mut admin = admin().await;
    let pool = pool(&redis_url());
    let (list, dst, stream) = (unique("pg:owed"), unique("pg:owed"), unique("pg:owed"));
    let mut blpop = redis::cmd("BLPOP");
    blpop.arg(&list).arg(0);
    let mut blpop_finite = redis::cmd("BLPOP");
    blpop_finite.arg(&list).arg(3);
    let mut brpop = redis::cmd("BRPOP");
    brpop.arg(&list).arg(0);
    let mut blmove = redis::cmd("BLMOVE");
    blmove.arg(&list).arg(&dst).arg("LEFT").arg("RIGHT").arg(0);
    let mut xread = redis::cmd("XREAD");
    xread
        .arg("BLOCK")
        .arg(0)
        .arg("STREAMS")
        .arg(&stream)
        .arg("$");
    // With no replica, WAIT 1 0 blocks for good.
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(0);
    for cmd in [&blpop, &blpop_finite, &brpop, &blmove, &xread, &wait] {
        for cut in [Cut::Blocked, Cut::FirstPoll] {
            cut_and_reuse(&pool, &mut admin, cmd, cut, || {}).await;
        }
    }
    let _: () = redis::cmd("DEL")
        .arg(&list)
        .arg(&dst)
        .arg(&stream)
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_cut_off_mid_reply_never_reaches_the_next_borrower() {
    let mut admin = admin().await;
    let key = unique("pg:owed:big");
    // 2 MiB: through the proxy below, about 130 chunks of 16 KiB, 20 ms each.
    let big = vec![b'x'; 2 << 20];
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&big)
        .query_async(&mut admin)
        .await
        .unwrap();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 6379)))
        .await
        .unwrap();
    let pool = pool(&format!("redis://127.0.0.1:{}/0", proxy.addr().port()));
    let mut get = redis::cmd("GET");
    get.arg(&key);
    for cut in [Cut::MidReply, Cut::Ran, Cut::FirstPoll] {
        // Slow the traffic for the GET only; the next borrower gets a fast proxy again.
        proxy.set_latency(Duration::from_millis(20));
        cut_and_reuse(&pool, &mut admin, &get, cut, || {
            proxy.set_latency(Duration::ZERO)
        })
        .await;
    }
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
}
