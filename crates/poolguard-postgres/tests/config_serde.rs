//! Feature `serde`: `PostgresSettings` from a file or the environment, the password never
//! shown, validated by the manager's and the pool's builders, and usable against the local
//! server.
#![cfg(feature = "serde")]

use std::time::Duration;

use poolguard::conn::{Builder, Config};
use poolguard_postgres::{BuildError, PostgresSettings, RecyclingMethod, StatementMode};

const FILE: &str = r#"{
    "host": "127.0.0.1",
    "port": 5432,
    "user": "postgres",
    "password": "hunter2-secret",
    "dbname": "test",
    "application_name": "serde-test",
    "connect_timeout": "5s",
    "recycling": "verified",
    "statement_mode": "unnamed",
    "query_timeout": "30s",
    "pool": { "max_size": 3, "acquire_timeout": "2s", "idle_timeout": "off" }
}"#;

#[test]
fn settings_deserialize_with_human_durations_and_hide_the_password() {
    let s: PostgresSettings = serde_json::from_str(FILE).expect("valid");
    assert_eq!(s.port, Some(5432));
    assert_eq!(s.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(s.query_timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.recycling, RecyclingMethod::Verified);
    assert_eq!(s.statement_mode, StatementMode::Unnamed);
    assert_eq!(s.pool.max_size, 3);
    assert_eq!(s.pool.idle_timeout, None);
    assert_eq!(
        s.password.as_ref().map(|p| p.expose()),
        Some("hunter2-secret")
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
    let m = s.manager().expect("valid manager");
    let shown = format!("{m:?} {}", m.config());
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn unknown_keys_are_refused_by_name_in_both_sections() {
    let e = serde_json::from_str::<PostgresSettings>(r#"{"hots": "db"}"#).expect_err("typo");
    assert!(e.to_string().contains("unknown field `hots`"), "{e}");
    let e = serde_json::from_str::<PostgresSettings>(r#"{"pool": {"max_sise": 1}}"#)
        .expect_err("typo in the pool section");
    assert!(e.to_string().contains("unknown field `max_sise`"), "{e}");
    let e = serde_json::from_str::<PostgresSettings>(r#"{"recycling": "sometimes"}"#)
        .expect_err("bad variant");
    assert!(e.to_string().contains("sometimes"), "{e}");
}

#[test]
fn validation_is_the_builders_and_errors_never_show_the_password() {
    let s: PostgresSettings =
        serde_json::from_str(r#"{"user": "u", "password": "hunter2-secret"}"#).expect("parses");
    let e = s.manager().expect_err("no host");
    assert!(matches!(e, BuildError::NoHost), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("hunter2"));
    let s: PostgresSettings = serde_json::from_str(
        r#"{"host": "h", "password": "hunter2-secret", "query_timeout": "0s"}"#,
    )
    .expect("parses");
    let e = s.manager().expect_err("zero query timeout");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

#[tokio::test]
async fn a_pool_from_the_settings_serves_the_local_server() {
    let mut s: PostgresSettings = serde_json::from_str(FILE).expect("valid");
    s.statement_mode = StatementMode::Named; // plain `query_one` below
    let pool_config: Config = s.pool.clone();
    let pool = Builder::from_config(s.manager().expect("manager"), pool_config)
        .build()
        .expect("valid pool");
    assert_eq!(pool.config().acquire_timeout, Duration::from_secs(2));
    let conn = pool.get().await.expect("connects to 127.0.0.1:5432");
    let row = conn
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "serde-test");
}
