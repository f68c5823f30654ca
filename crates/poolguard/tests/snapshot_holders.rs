//! A connection pool's diagnostics snapshot names who holds its connections: the call site
//! of each `get`, how long it has been held, and whether it was reported as a leak.
#![cfg(feature = "conn")]

use std::time::Duration;

use poolguard::conn;
use poolguard::diag::{Diagnose, Snapshot};
use poolguard_testkit::sim::NoopManager;

#[tokio::test(start_paused = true)]
async fn holders_are_listed_oldest_first_with_site_and_age() {
    let pool = conn::Pool::builder(NoopManager)
        .name("holders")
        .max_size(4)
        .build()
        .expect("pool");
    let first = pool.get().await.expect("first");
    let first_line = line!() - 1;
    tokio::time::advance(Duration::from_secs(3)).await;
    let second = pool.get().await.expect("second");

    let Snapshot::ConnectionPool { holders, .. } = pool.snapshot() else {
        panic!("a connection pool's snapshot");
    };
    assert_eq!(holders.len(), 2);
    assert!(
        holders[0].site.file().ends_with("snapshot_holders.rs"),
        "{}",
        holders[0].site
    );
    assert_eq!(holders[0].site.line(), first_line);
    assert!(
        holders[0].held >= Duration::from_secs(3),
        "{:?}",
        holders[0].held
    );
    assert!(holders[1].held < holders[0].held, "oldest first");
    assert!(!holders[0].leaked);
    assert_eq!(pool.holders(), holders);

    #[cfg(feature = "serde")]
    {
        let json = serde_json::to_value(pool.snapshot()).expect("json");
        let h = &json["connection_pool"]["holders"][0];
        let site = h["site"].as_str().expect("site is text");
        assert!(
            site.contains(&format!("snapshot_holders.rs:{first_line}:")),
            "{site}"
        );
        assert!(h["held"].as_f64().expect("seconds") >= 3.0);
        assert_eq!(h["leaked"], false);
    }

    drop(first);
    drop(second);
    assert!(
        pool.holders().is_empty(),
        "returned connections are no longer held"
    );
}
