//! Callers aborted at random points (seeded delays) inside MULTI/WATCH or in blocking
//! commands (`BLPOP k 0`, `XREAD BLOCK 0`, `WAIT 1 0`) on the real server: afterwards no pooled
//! connection is left in a MULTI context, watching keys or blocked with a reply owed, and the
//! pool never exceeded `max_size`.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::{CloseReason, Pool};
use poolguard_redis::RedisManager;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_callers_leave_no_multi_or_watch_behind() {
    let mut admin = admin().await;
    let key = unique("pg:abort");
    let (list, stream) = (unique("pg:abort:list"), unique("pg:abort:stream"));
    let pool = Pool::builder(RedisManager::new(redis_url().as_str()).unwrap())
        .max_size(4)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut aborted, mut max_size) = (0, 0);
    for _ in 0..60 {
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (pool, key) = (pool.clone(), key.clone());
            // One caller in four blocks (for good: nothing is ever pushed) instead.
            let blocking = match rng.random_range(0..12) {
                0 => Some(redis::cmd("BLPOP").arg(&list).arg(0).clone()),
                1 => Some(
                    redis::cmd("XREAD")
                        .arg("BLOCK")
                        .arg(0)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg("$")
                        .clone(),
                ),
                2 => Some(redis::cmd("WAIT").arg(1).arg(0).clone()),
                _ => None,
            };
            let h = tokio::spawn(async move {
                let mut c = pool.get().await.map_err(|e| e.to_string())?;
                if let Some(cmd) = blocking {
                    cmd.query_async::<redis::Value>(&mut *c)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
                redis::cmd("WATCH")
                    .arg(&key)
                    .query_async::<()>(&mut *c)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("MULTI")
                    .query_async::<()>(&mut *c)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("INCR")
                    .arg(&key)
                    .query_async::<()>(&mut *c)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("EXEC")
                    .query_async::<redis::Value>(&mut *c)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            });
            tasks.push((h, Duration::from_micros(rng.random_range(0..400))));
        }
        for (h, delay) in tasks {
            tokio::time::sleep(delay).await;
            max_size = max_size.max(pool.status().size);
            if !h.is_finished() {
                aborted += 1;
            }
            h.abort();
            let _ = h.await;
        }
    }
    for _ in 0..500 {
        let s = pool.status();
        if s.in_use == 0 && s.opening == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Hold every pooled connection and ask the server about each.
    let mut held = Vec::new();
    while held.len() < pool.status().size.max(1) {
        held.push(pool.get().await.unwrap());
    }
    for c in &mut held {
        let echo = unique("echo");
        let got: String = tokio::time::timeout(
            Duration::from_secs(5),
            redis::cmd("PING").arg(&echo).query_async(&mut **c),
        )
        .await
        .expect("PING queued behind an abandoned blocking command")
        .unwrap();
        assert_eq!(got, echo, "replies out of step");
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut **c)
            .await
            .expect("a command runs at once, not QUEUED");
        let info: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        let flags = info
            .split_whitespace()
            .find_map(|f| f.strip_prefix("flags="))
            .unwrap_or("");
        assert!(
            !flags.contains('x'),
            "a connection was handed out inside MULTI: {info}"
        );
        // A stale WATCH would abort this EXEC after the admin's write.
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(0)
            .query_async(&mut admin)
            .await
            .unwrap();
        let r: redis::Value = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .query_async(&mut **c)
            .await
            .unwrap();
        assert_ne!(
            r,
            redis::Value::Nil,
            "a stale WATCH aborted the next borrower's transaction: {info}"
        );
    }
    drop(held);
    let stats = pool.stats();
    eprintln!(
        "redis cancellation: {aborted} callers aborted mid-request; max size seen {max_size}; \
         evicted with a reply owed or broken {}, resets failed {}",
        stats.closed_by(CloseReason::Broken),
        stats.closed_by(CloseReason::Reset),
    );
    // A connection abandoned inside a blocking command is evicted at once; handed on, its next
    // borrower's commands would queue behind it, and its reset would wait out reset_timeout.
    assert_eq!(
        stats.closed_by(CloseReason::Reset),
        0,
        "a reset got stuck behind an abandoned command"
    );
    assert!(
        aborted > 0,
        "the seeded delays aborted nobody: the test proves nothing"
    );
    assert!(max_size <= 4);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(&list)
        .arg(&stream)
        .query_async(&mut admin)
        .await
        .unwrap();
}
