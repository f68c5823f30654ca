//! Feature `serde`: `RedisSettings` from a file, the password (field or URL) never shown,
//! validated by the manager's and the pool's builders, and usable against the local server.
#![cfg(feature = "serde")]

use std::time::Duration;

use poolguard::conn::Builder;
use poolguard_redis::RedisSettings;

#[test]
fn settings_deserialize_and_never_show_a_password() {
    let s: RedisSettings = serde_json::from_str(
        r#"{
            "url": "redis://app:url-secret@127.0.0.1:6379/0",
            "password": "field-secret",
            "db": 2,
            "query_timeout": "2s",
            "response_timeout": "off",
            "pool": { "max_size": 4, "acquire_timeout": "1s" }
        }"#,
    )
    .expect("valid");
    assert_eq!(s.db, Some(2));
    assert_eq!(s.query_timeout, Some(Duration::from_secs(2)));
    assert_eq!(s.response_timeout, None);
    assert_eq!(s.pool.max_size, 4);
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("url-secret") && !debug.contains("field-secret"),
        "{debug}"
    );
    let m = s.manager().expect("valid");
    let shown = format!("{m:?} {}", m.address());
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("/2"), "the db override applies: {shown}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let e = serde_json::from_str::<RedisSettings>(r#"{"uri": "redis://h"}"#).expect_err("typo");
    assert!(e.to_string().contains("unknown field `uri`"), "{e}");
    let e = serde_json::from_str::<RedisSettings>(r#"{"query_timeout": "fast"}"#)
        .expect_err("bad duration");
    assert!(e.to_string().contains("\"fast\""), "{e}");
    let s: RedisSettings =
        serde_json::from_str(r#"{"password": "field-secret", "query_timeout": "0s"}"#)
            .expect("parses");
    let e = s.manager().expect_err("zero timeout: the builder's rule");
    assert!(!format!("{e} {e:?}").contains("field-secret"));
}

#[tokio::test]
async fn a_pool_from_the_settings_serves_the_local_server() {
    let s: RedisSettings = serde_json::from_str(
        r#"{"url": "redis://127.0.0.1:6379", "db": 3, "pool": {"max_size": 2}}"#,
    )
    .expect("valid");
    let pool = Builder::from_config(s.manager().expect("manager"), s.pool.clone())
        .build()
        .expect("valid pool");
    let mut conn = pool.get().await.expect("connects to 127.0.0.1:6379");
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(&mut *conn)
        .await
        .expect("CLIENT INFO");
    assert!(info.contains(" db=3 "), "{info}");
}
