//! The Redis manager's builder takes any input without a panic or an abort: arbitrary URLs
//! (hostile ports, databases, options, plain noise) and any timeouts. What `build()`
//! refuses comes back as a typed error with a message that never shows the password.

use std::time::Duration;

use poolguard_redis::RedisManager;
use proptest::prelude::*;

const SECRET: &str = "Zq7-secret-pw";

fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just(u64::MAX.to_string()),
        Just("65536".to_owned()),
        Just("%00".to_owned()),
        Just("[::1]".to_owned()),
        "[a-z0-9.,:@/?=&%-]{0,24}",
        any::<String>(),
    ]
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec!["redis", "rediss", "redis+unix", "unix", "http", ""]),
            part(),
            part(),
            part(),
            part()
        )
            .prop_map(|(scheme, host, port, db, q)| format!(
                "{scheme}://user:{SECRET}@{host}:{port}/{db}?{q}"
            )),
        any::<String>().prop_map(|s| format!("redis://:{SECRET}@{s}")),
    ]
}

fn timeout() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::MAX)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Some(Duration::new(s, n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_input_builds_or_is_refused_with_a_message(
        u in url(),
        response in timeout(),
        query in timeout(),
    ) {
        let built = RedisManager::builder(u.as_str())
            .response_timeout(response)
            .query_timeout(query)
            .build();
        if let Err(e) = built {
            let text = e.to_string();
            prop_assert!(!text.is_empty());
            prop_assert!(!text.contains(SECRET), "a refusal shows the password: {text}");
            prop_assert!(!format!("{e:?}").contains(SECRET), "Debug shows the password: {e:?}");
        }
    }
}
