//! The PostgreSQL manager's builder takes any input without a panic or an abort: arbitrary
//! connection strings (known keys with hostile values, URLs, plain noise), any statement
//! cache capacity, any query timeout, any application name. What `build()` refuses comes
//! back as a typed error with a message, and no message ever shows the password.

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{PostgresManager, RecyclingMethod, StatementMode};
use proptest::prelude::*;

const SECRET: &str = "Zq7-secret-pw";

const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "dbname",
    "sslmode",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "target_session_attrs",
    "options",
    "application_name",
    "channel_binding",
    "load_balance_hosts",
    "no_such_key",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("1e9".to_owned()),
        Just("127.0.0.1,127.0.0.1,127.0.0.1".to_owned()),
        Just("5432,5433".to_owned()),
        Just("'quoted \\' value'".to_owned()),
        Just("read-write".to_owned()),
        "[a-z0-9,.:/=' -]{0,24}",
        any::<String>(),
    ]
}

fn conninfo() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..8).prop_map(|kv| kv
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!("password={SECRET}")])
            .collect::<Vec<_>>()
            .join(" ")),
        ("[a-z0-9.,:@/?=&%-]{0,40}", value())
            .prop_map(|(rest, v)| format!("postgres://u:{SECRET}@{rest}?x={v}")),
        any::<String>().prop_map(|s| format!("{s} password={SECRET}")),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn recycling() -> impl Strategy<Value = RecyclingMethod> {
    prop_oneof![
        Just(RecyclingMethod::Fast),
        Just(RecyclingMethod::Verified),
        Just(RecyclingMethod::Clean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_input_builds_or_is_refused_with_a_message(
        s in conninfo(),
        capacity in prop_oneof![Just(0usize), Just(usize::MAX), any::<usize>()],
        timeout in duration(),
        app in any::<String>(),
        unnamed in any::<bool>(),
        method in recycling(),
    ) {
        let mode = if unnamed { StatementMode::Unnamed } else { StatementMode::Named };
        let built = PostgresManager::builder(&s)
            .statement_cache_capacity(capacity)
            .query_timeout(timeout)
            .application_name(&app)
            .statement_mode(mode)
            .recycling(method)
            .build();
        if let Err(e) = built {
            let text = e.to_string();
            prop_assert!(!text.is_empty());
            prop_assert!(!text.contains(SECRET), "a refusal shows the password: {text}");
            prop_assert!(!format!("{e:?}").contains(SECRET), "Debug shows the password: {e:?}");
        }
    }
}

/// The largest statement cache is accepted and allocates nothing up front: a connection
/// with it prepares and reuses statements as usual.
#[tokio::test]
async fn the_largest_statement_cache_allocates_nothing_up_front() {
    let (builder, _app) = manager_builder("pg_fuzz_cache").await;
    let m = builder
        .statement_cache_capacity(usize::MAX)
        .build()
        .unwrap();
    let pool = Pool::builder(m).max_size(1).build().unwrap();
    let c = pool.get().await.unwrap();
    for _ in 0..3 {
        let s = c.prepare_cached("SELECT 1::int4").await.unwrap();
        let v: i32 = c.query_one(&s, &[]).await.unwrap().get(0);
        assert_eq!(v, 1);
    }
}
