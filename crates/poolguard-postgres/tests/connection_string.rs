//! Connection strings that do not parse: the error names the offending key and says what is
//! wrong, in `Display` itself (no server needed).

use poolguard_postgres::{BuildError, PostgresManager};

/// Builds a manager from `s`, expects a parse error and returns (key, Display).
fn refused(s: &str) -> (Option<String>, String) {
    match PostgresManager::new(s) {
        Err(e @ BuildError::ConnectionString { .. }) => {
            let shown = e.to_string();
            eprintln!("{s}\n  -> {shown}");
            let BuildError::ConnectionString { key, .. } = e else {
                unreachable!()
            };
            (key, shown)
        }
        Err(other) => panic!("{s}: expected a connection string error, got {other}"),
        Ok(_) => panic!("{s}: accepted"),
    }
}

#[test]
fn bad_port_names_port_and_the_value() {
    for s in [
        "host=127.0.0.1 port=54x32 user=postgres",
        "postgres://postgres@127.0.0.1:54x32/test",
        "postgres://postgres@127.0.0.1/test?port=54x32",
    ] {
        let (key, shown) = refused(s);
        assert_eq!(key.as_deref(), Some("port"), "{s}: {shown}");
        assert!(shown.contains("`port`"), "{s}: {shown}");
        assert!(shown.contains("`54x32`"), "the bad value is shown: {shown}");
        assert!(shown.contains("port number"), "what is expected: {shown}");
    }
}

#[test]
fn unknown_key_is_named() {
    for s in [
        "host=127.0.0.1 user=postgres dbnme=test",
        "postgres://postgres@127.0.0.1/test?dbnme=test",
    ] {
        let (key, shown) = refused(s);
        assert_eq!(key.as_deref(), Some("dbnme"), "{s}: {shown}");
        assert!(shown.contains("unknown option `dbnme`"), "{shown}");
        assert!(
            shown.contains("dbname"),
            "the supported keys are listed: {shown}"
        );
    }
}

#[test]
fn bad_sslmode_says_what_is_accepted() {
    let (key, shown) = refused("host=127.0.0.1 user=postgres sslmode=verify-full");
    assert_eq!(key.as_deref(), Some("sslmode"), "{shown}");
    assert!(shown.contains("`verify-full`"), "{shown}");
    assert!(shown.contains("disable, prefer or require"), "{shown}");
}

#[test]
fn garbage_names_the_word_that_is_not_a_pair() {
    let (key, shown) = refused("127.0.0.1:5432");
    assert_eq!(key.as_deref(), Some("127.0.0.1:5432"), "{shown}");
    assert!(shown.contains("not a `key=value` pair"), "{shown}");
    assert!(shown.contains("postgres://"), "a fix is suggested: {shown}");

    let (key, shown) = refused("host=127.0.0.1 user");
    assert_eq!(key.as_deref(), Some("user"), "{shown}");
    assert!(
        shown.contains("`user` is not a `key=value` pair"),
        "{shown}"
    );

    let (key, shown) = refused("host=127.0.0.1 application_name='unterminated");
    assert_eq!(key.as_deref(), Some("application_name"), "{shown}");
    assert!(shown.contains("closing `'`"), "{shown}");

    let (key, shown) = refused("postgres://postgres@[::1/test");
    assert_eq!(key.as_deref(), Some("host"), "{shown}");
    assert!(shown.contains("`]`"), "{shown}");
}

#[test]
fn other_bad_values_say_what_is_expected() {
    for (s, key, expect) in [
        (
            "host=h user=u connect_timeout=soon",
            "connect_timeout",
            "seconds",
        ),
        (
            "host=h user=u target_session_attrs=primary",
            "target_session_attrs",
            "read-write",
        ),
        ("host=h user=u hostaddr=localhost", "hostaddr", "IP address"),
        (
            "host=h user=u keepalives=yes",
            "keepalives",
            "0 (off) or 1 (on)",
        ),
    ] {
        let (k, shown) = refused(s);
        assert_eq!(k.as_deref(), Some(key), "{s}: {shown}");
        assert!(shown.contains(&format!("`{key}`")), "{shown}");
        assert!(shown.contains(expect), "{shown}");
    }
}
