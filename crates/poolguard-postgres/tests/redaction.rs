//! No password reaches a Debug, Display, error chain or tracing event of the manager, its
//! builder or its config, whatever the position of the password in the connection string.

mod common;

use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{redact_connection_string, PostgresManager};

/// Every line written by the subscriber, kept.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The error, its Debug and every cause below it.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = format!("{e} / {e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(&format!(" / {c} / {c:?}"));
        cur = c.source();
    }
    out
}

fn assert_hidden(what: &str, text: &str, secret: &str) {
    assert!(
        !text.contains(secret),
        "the password leaked into {what}: {text}"
    );
}

#[test]
fn redaction_covers_every_position_and_form() {
    let cases = [
        (
            "postgres://app:s3cret@db:5432/app",
            "postgres://app:***@db:5432/app",
        ),
        (
            "postgresql://app:s3cret@db/app?sslmode=disable&password=s3cret",
            "postgresql://app:***@db/app?sslmode=disable&password=***",
        ),
        (
            "postgres://app@db/app?password=s3cret&application_name=x",
            "postgres://app@db/app?password=***&application_name=x",
        ),
        // A password with an unencoded `@`, `/` or `?` still disappears whole.
        (
            "postgres://app:s3@c/ret@db/app",
            "postgres://app:***@db/app",
        ),
        ("postgres://app:s3?c@db/app", "postgres://app:***@db/app"),
        ("postgres://db/app", "postgres://db/app"),
        (
            "host=db password=s3cret user=app",
            "host=db password=*** user=app",
        ),
        (
            "host=db password = 's3 c\\'ret' user=app",
            "host=db password = *** user=app",
        ),
        ("host=db PASSWORD=s3cret", "host=db PASSWORD=***"),
        // Malformed: the rest of an unquoted password with a space, an unterminated quote.
        (
            "host=db password=s3 cret user=app",
            "host=db password=*** ***",
        ),
        ("host=db password='s3cret user=app", "host=db password=***"),
        ("host=db password s3cret", "host=db password***"),
        ("host=db user=app", "host=db user=app"),
    ];
    for (input, expected) in cases {
        assert_eq!(redact_connection_string(input), expected, "{input}");
    }
}

#[test]
fn display_is_a_connection_string_without_the_password() {
    let m = PostgresManager::builder(
        "postgres://app:s3cret@127.0.0.1:5433/billing?target_session_attrs=read-write&options=-c%20a%3Db",
    )
    .application_name("my app")
    .build()
    .unwrap();
    let shown = m.to_string();
    assert_eq!(
        shown,
        "host=127.0.0.1 port=5433 user=app password=*** dbname=billing application_name='my app' \
         options='-c a=b' target_session_attrs=read-write"
    );
    // It parses back into the same settings, the password aside.
    let back = PostgresManager::new(&shown).unwrap();
    assert_eq!(back.to_string(), shown);
    assert_eq!(back.config().pg.get_password(), Some(&b"***"[..]));
}

/// Connection strings with `secret` in every position, for the role with password auth (so
/// the connect fails with 28P01 after sending it).
fn strings(secret: &str) -> Vec<String> {
    vec![
        format!("postgres://poolguard_pw:{secret}@127.0.0.1:5432/test"),
        format!("postgresql://poolguard_pw@127.0.0.1:5432/test?password={secret}"),
        format!("host=127.0.0.1 port=5432 user=poolguard_pw password={secret} dbname=test"),
        format!("host=127.0.0.1 port=5432 user=poolguard_pw password='{secret} x' dbname=test"),
    ]
}

/// Strings with `secret` in them that do not parse.
fn bad_strings(secret: &str) -> Vec<String> {
    vec![
        format!("host=127.0.0.1 user=u password={secret} port=5x"),
        format!("host=127.0.0.1 user=u password={secret} x=y"),
        format!("host=127.0.0.1 user=u password={secret} rest"),
        format!("host=127.0.0.1 user=u password=half  {secret}"),
        format!("host=127.0.0.1 user=u password='{secret}"),
        format!("host=127.0.0.1 user=u password {secret}"),
        format!("postgres://u:{secret}@127.0.0.1:5x/test"),
        format!("postgres://u@127.0.0.1/test?password={secret}&sslmode=verify"),
        format!("postgres://u@127.0.0.1/test?password={secret}&bogus=1"),
    ]
}

#[tokio::test]
async fn no_output_of_a_failed_connect_shows_the_password() {
    drop(admin().await);
    let secret = unique("Pw-9f3b-leak");
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for s in strings(&secret) {
        let redacted = redact_connection_string(&s);
        assert_hidden("redact_connection_string", &redacted, &secret);
        assert!(redacted.contains("***"), "{redacted}");

        let builder = PostgresManager::builder(&s).application_name(&unique("pg_redact"));
        assert_hidden("the builder's Debug", &format!("{builder:?}"), &secret);
        let m = builder.build().unwrap();
        let shown = format!("{m} / {m:?} / {m:#?} / {} / {:?}", m.config(), m.config());
        assert_hidden("the manager's Display/Debug", &shown, &secret);
        assert!(shown.contains("password=***"), "{shown}");

        let pool = Pool::builder(m)
            .acquire_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let e = pool.get().await.expect_err("the password is wrong");
        let text = chain(&e);
        assert!(text.contains("28P01"), "the connect really failed: {text}");
        assert_hidden("the pool error chain", &text, &secret);
        assert_hidden("the pool's Debug", &format!("{pool:?}"), &secret);
        pool.close();
    }

    // A refused port, with the password given.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let m = PostgresManager::new(&format!(
        "postgres://postgres:{secret}@127.0.0.1:{port}/test"
    ))
    .unwrap();
    let pool = Pool::builder(m)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = pool.get().await.expect_err("nothing listens there");
    assert_hidden("the refused-port error chain", &chain(&e), &secret);
    pool.close();

    for s in bad_strings(&secret) {
        let builder = PostgresManager::builder(&s);
        assert_hidden("the builder's Debug", &format!("{builder:?}"), &secret);
        let e = builder.build().expect_err("does not parse");
        let text = chain(&e);
        assert_hidden(
            &format!("the parse error of a string like {s:?}"),
            &text,
            &secret,
        );
        assert!(
            text.contains("connection string"),
            "it is still a useful error: {text}"
        );
        assert_hidden(
            "redact_connection_string",
            &redact_connection_string(&s),
            &secret,
        );
    }

    let events = capture.text();
    assert!(
        events.contains("28P01") || events.contains("password"),
        "the failed connects were traced (the test watches the right place): {events}"
    );
    assert_hidden("tracing events", &events, &secret);
}

proptest::proptest! {
    /// Whatever surrounds it, and whether or not the string parses, a password given after
    /// `password=` (plain, quoted, in a URL's user info or query) appears in neither the
    /// redacted string nor the parse error. The password's alphabet (upper case, digits) is
    /// disjoint from the noise's, so a match can only be a leak.
    #[test]
    fn a_password_never_survives_redaction_or_a_parse_error(
        pw in "[A-Z0-9]{6,12}",
        before in "[a-z =',@:/?&%\t\\\\é]{0,12}",
        after in "[a-z =',@:/?&%\t\\\\é]{0,12}",
        form in 0..6usize,
    ) {
        let s = match form {
            0 => format!("{before}password={pw}{after}"),
            1 => format!("{before} password = '{pw}'{after}"),
            2 => format!("host=h {before} password={pw} {after}"),
            3 => format!("postgres://u:{pw}@h{after}"),
            4 => format!("postgres://u@h/db?{before}&password={pw}&{after}"),
            _ => format!("postgresql://u:{pw}{after}@h/{before}"),
        };
        let redacted = redact_connection_string(&s);
        proptest::prop_assert!(!redacted.contains(&pw), "{s:?} -> {redacted:?}");
        let shown = match PostgresManager::new(&s) {
            Ok(m) => format!("{m} {m:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        proptest::prop_assert!(!shown.contains(&pw), "{s:?} -> {shown:?}");
    }
}
