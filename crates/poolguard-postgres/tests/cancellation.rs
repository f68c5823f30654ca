//! Callers aborted at random points (seeded delays) while they run transactions on the real
//! server: nothing leaks. Afterwards no backend of the pool is left inside a transaction, the
//! pool never exceeded `max_size`, and dropping the pool closes every backend.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::PostgresManager;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

async fn in_transaction(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_callers_leak_no_transaction_and_no_connection() {
    let admin = admin().await;
    let table = unique("pg_abort");
    admin
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    let app = unique("pg_abort");
    let m = PostgresManager::builder(&pg_url())
        .application_name(&app)
        .build()
        .unwrap();
    let pool = Pool::builder(m)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(5))
        .reset_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut max_size = 0;
    let mut aborted = 0;
    for round in 0..60 {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (pool, table) = (pool.clone(), table.clone());
            let h = tokio::spawn(async move {
                let c = pool.get().await.map_err(|e| e.to_string())?;
                c.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES ({i})"))
                    .await
                    .map_err(|e| e.to_string())?;
                c.simple_query("SELECT pg_sleep(0.001)")
                    .await
                    .map_err(|e| e.to_string())?;
                if round % 2 == 0 {
                    c.batch_execute("COMMIT").await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            });
            tasks.push((h, Duration::from_micros(rng.random_range(0..3000))));
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
    eventually("every connection back and reset", || async {
        let s = pool.status();
        s.in_use == 0 && s.opening == 0
    })
    .await;
    eventually("no backend left inside a transaction", || async {
        in_transaction(&admin, &app).await == 0
    })
    .await;
    // The next borrowers see no transaction either.
    for _ in 0..4 {
        let c = pool.get().await.unwrap();
        let rows = c
            .simple_query("SELECT txid_current_if_assigned()")
            .await
            .unwrap();
        let assigned = rows
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0).is_some()));
        assert!(!assigned, "a borrower inherited a transaction");
    }
    eprintln!("pg cancellation: {aborted} callers aborted mid-request; max size seen {max_size}; stats {:?}", pool.status());
    assert!(
        aborted > 0,
        "the seeded delays aborted nobody: the test proves nothing"
    );
    assert!(max_size <= 4);
    drop(pool);
    eventually("every backend closed after the pool is dropped", || async {
        backends(&admin, &app).await == 0
    })
    .await;
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
