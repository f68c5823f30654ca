//! Feature `serde`: the connection pool's `Config` from a file (JSON here; any serde format)
//! or the environment: human durations, defaults for missing keys, unknown keys refused by
//! name, and the same validation as the builder (`Builder::from_config` + `build()`).
#![cfg(feature = "serde")]

use std::time::Duration;

use poolguard::conn::{Builder, Config, IdleOrder, Pool};
use poolguard_testkit::sim::SimManager;

#[test]
fn a_json_file_with_human_durations_fills_the_config() {
    let c: Config = serde_json::from_str(
        r#"{
            "name": "pg-main",
            "max_size": 20,
            "min_idle": 2,
            "acquire_timeout": "5s",
            "validation_bypass": "250ms",
            "idle_timeout": "off",
            "max_lifetime": "1h 30m",
            "leak_threshold": null,
            "abandon_timeout": "10m",
            "breaker_threshold": 3,
            "jitter": 0.1,
            "timeout_log_level": "warn",
            "idle_order": "fifo"
        }"#,
    )
    .expect("valid file");
    assert_eq!(c.name, "pg-main");
    assert_eq!((c.max_size, c.min_idle), (20, 2));
    assert_eq!(c.acquire_timeout, Duration::from_secs(5));
    assert_eq!(c.validation_bypass, Duration::from_millis(250));
    assert_eq!(c.idle_timeout, None);
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(5400)));
    assert_eq!(c.leak_threshold, None);
    assert_eq!(c.abandon_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.breaker_threshold, Some(3));
    assert_eq!(c.jitter, 0.1);
    assert_eq!(c.timeout_log_level, Some(tracing::Level::WARN));
    assert_eq!(c.idle_order, IdleOrder::Fifo);
    // Keys left out keep their defaults.
    let d = Config::default();
    assert_eq!(c.connect_timeout, d.connect_timeout);
    assert_eq!(c.max_waiters, d.max_waiters);
}

#[test]
fn an_empty_file_is_the_default_config() {
    let c: Config = serde_json::from_str("{}").expect("valid");
    assert_eq!(c, Config::default());
}

#[test]
fn an_unknown_key_is_refused_by_its_name() {
    let e = serde_json::from_str::<Config>(r#"{"max_sise": 4}"#).expect_err("typo");
    let text = e.to_string();
    assert!(text.contains("unknown field `max_sise`"), "{text}");
    assert!(
        text.contains("max_size"),
        "the expected keys are listed: {text}"
    );
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let e = serde_json::from_str::<Config>(r#"{"acquire_timeout": "5 parsecs"}"#)
        .expect_err("bad unit");
    let text = e.to_string();
    assert!(
        text.contains("\"5 parsecs\"") && text.contains("\"30s\""),
        "{text}"
    );
    let e = serde_json::from_str::<Config>(r#"{"acquire_timeout": 5}"#).expect_err("a number");
    assert!(e.to_string().contains("string"), "{e}");
}

#[tokio::test]
async fn a_deserialized_config_is_validated_by_build_with_the_builders_error() {
    let c: Config = serde_json::from_str(r#"{"max_size": 2, "min_idle": 3}"#).expect("parses");
    let from_file = Builder::from_config(SimManager::new(), c)
        .build()
        .expect_err("min_idle above max_size");
    let from_setters = Pool::builder(SimManager::new())
        .max_size(2)
        .min_idle(3)
        .build()
        .expect_err("same rule");
    assert_eq!(from_file, from_setters);
    let c: Config =
        serde_json::from_str(r#"{"max_size": 3, "acquire_timeout": "2s"}"#).expect("parses");
    let p = Builder::from_config(SimManager::new(), c)
        .name("from-file")
        .build()
        .expect("valid");
    assert_eq!(p.config().max_size, 3);
    assert_eq!(p.config().acquire_timeout, Duration::from_secs(2));
    assert_eq!(p.config().name, "from-file", "setters still apply");
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_environment_uses_the_same_keys_and_rules() {
    let c = Config::from_vars(
        "POOL_",
        vars(&[
            ("POOL_MAX_SIZE", "12"),
            ("POOL_ACQUIRE_TIMEOUT", "750ms"),
            ("POOL_IDLE_TIMEOUT", "off"),
            ("POOL_BREAKER_THRESHOLD", "4"),
            ("POOL_JITTER", "0.2"),
            ("POOL_IDLE_ORDER", "FIFO"),
            ("POOL_TIMEOUT_LOG_LEVEL", "off"),
            ("OTHER_MAX_SIZE", "99"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.max_size, 12);
    assert_eq!(c.acquire_timeout, Duration::from_millis(750));
    assert_eq!(c.idle_timeout, None);
    assert_eq!(c.breaker_threshold, Some(4));
    assert_eq!(c.jitter, 0.2);
    assert_eq!(c.idle_order, IdleOrder::Fifo);
    assert_eq!(c.timeout_log_level, None);
    let e = Config::from_vars("POOL_", vars(&[("POOL_MAX_SISE", "3")])).expect_err("typo");
    assert!(e.to_string().contains("unknown field `max_sise`"), "{e}");
    let e = Config::from_vars("POOL_", vars(&[("POOL_MAX_SIZE", "many")])).expect_err("nan");
    assert!(e.to_string().contains("\"many\""), "{e}");
    let e = Config::from_vars("POOL_", vars(&[("POOL_CONNECT_TIMEOUT", "soon")])).expect_err("bad");
    assert!(e.to_string().contains("\"soon\""), "{e}");
}

#[tokio::test]
async fn the_failover_policy_reads_like_the_other_settings() {
    let c: Config = serde_json::from_str(
        r#"{ "failover_burst": 5, "failover_window": "15s", "failover_cooldown": "2m" }"#,
    )
    .expect("valid file");
    assert_eq!(c.failover_burst, Some(5));
    assert_eq!(c.failover_window, Duration::from_secs(15));
    assert_eq!(c.failover_cooldown, Duration::from_secs(120));
    assert_eq!(Config::default().failover_burst, None, "off unless set");
    let p = Builder::from_config(SimManager::new(), c)
        .build()
        .expect("valid");
    assert_eq!(p.config().failover_burst, Some(5));
    // Validated by build(), as the setters are.
    let c: Config = serde_json::from_str(r#"{ "failover_burst": 0 }"#).expect("parses");
    let e = Builder::from_config(SimManager::new(), c)
        .build()
        .expect_err("refused");
    assert_eq!(e.field, "failover_burst");
}

/// Every duration key takes the human form, the hooks' and the provider's timeouts too.
#[test]
fn every_duration_key_takes_a_human_string() {
    let keys = [
        "acquire_timeout",
        "connect_timeout",
        "validation_timeout",
        "reset_timeout",
        "close_timeout",
        "after_connect_timeout",
        "before_acquire_timeout",
        "after_release_timeout",
        "credentials_timeout",
        "failover_window",
        "failover_cooldown",
    ];
    for key in keys {
        let c: Config = serde_json::from_str(&format!(r#"{{"{key}": "7s"}}"#))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let text = format!("{c:?}");
        assert!(
            text.contains(&format!("{key}: 7s")),
            "{key} not set: {text}"
        );
    }
}
