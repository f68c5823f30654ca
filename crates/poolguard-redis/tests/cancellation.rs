//! Callers aborted at random points (seeded delays) inside MULTI/WATCH on the real server:
//! afterwards no pooled connection is left in a MULTI context or watching keys, and the pool
//! never exceeded `max_size`.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_redis::RedisManager;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_callers_leave_no_multi_or_watch_behind() {
    let mut admin = admin().await;
    let key = unique("pg:abort");
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
            let h = tokio::spawn(async move {
                let mut c = pool.get().await.map_err(|e| e.to_string())?;
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
    eprintln!(
        "redis cancellation: {aborted} callers aborted mid-request; max size seen {max_size}"
    );
    assert!(
        aborted > 0,
        "the seeded delays aborted nobody: the test proves nothing"
    );
    assert!(max_size <= 4);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
}
