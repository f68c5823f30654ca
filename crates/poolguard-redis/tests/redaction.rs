//! No password from a Redis URL reaches any output: the manager's and builder's `Debug`, its
//! address, connect and command errors (Display, Debug, every source), the pool's status,
//! stats, metrics and doctor output, and every tracing event at TRACE level. The URLs fail in
//! every way a password can matter: wrong password (WRONGPASS), unknown user, a password for
//! the password-less default user, an authenticated user without permissions (NOPERM), a
//! refused port, a missing Unix socket, and URLs that do not even parse.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_redis::{redact_url, Error, RedisManager};

/// Everything written by the tracing subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error's Display, Debug and those of every source below it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{e}\n{e:?}\n");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

async fn acl(admin: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query_async::<()>(admin).await.unwrap();
}

#[tokio::test]
async fn no_password_reaches_any_output() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut admin = admin().await;
    let tag = unique("pgpw").replace(':', "_");
    let pw = format!("{tag}-Secret");
    let (wrong_pw_user, unknown_user, noperm_user) = (
        format!("{tag}_a"),
        format!("{tag}_missing"),
        format!("{tag}_c"),
    );
    acl(
        &mut admin,
        &[
            "SETUSER",
            &wrong_pw_user,
            "on",
            ">not-the-one",
            "~*",
            "+@all",
        ],
    )
    .await;
    acl(
        &mut admin,
        &[
            "SETUSER",
            &noperm_user,
            "on",
            &format!(">{pw}"),
            "~*",
            "-@all",
        ],
    )
    .await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let urls = [
        format!("redis://{wrong_pw_user}:{pw}@127.0.0.1:6379/0"),
        format!("redis://{unknown_user}:{pw}@127.0.0.1:6379/0"),
        format!("redis://:{pw}@127.0.0.1:6379/0"),
        format!("redis://{noperm_user}:{pw}@127.0.0.1:6379/0"),
        format!("redis://{wrong_pw_user}:{pw}@127.0.0.1:{closed_port}/0"),
        format!("redis+unix:///nonexistent/{tag}.sock?db=0&pass={pw}"),
    ];
    let unparsable = [
        format!("redis://u:{pw}@127.0.0.1:99999/0"),
        format!("redis://u:{pw}@/0"),
        format!("redis://u:{pw}@127.0.0.1/not-a-db"),
        format!("rediss://u:{pw}@127.0.0.1:6379#insecure"),
        format!("http://u:{pw}@127.0.0.1:6379"),
    ];

    let mut out = String::new();
    let (mut connect_errors, mut command_errors) = (0, 0);
    for url in &urls {
        out.push_str(&format!("{}\n", redact_url(url)));
        out.push_str(&format!("{:?}\n", RedisManager::builder(url.as_str())));
        let m = RedisManager::new(url.as_str()).unwrap();
        out.push_str(&format!("{m:?}\n{}\n", m.address()));
        assert!(m.address().contains("***"), "{}", m.address());
        match poolguard::conn::Manager::connect(&m).await {
            Err(e) => {
                connect_errors += 1;
                out.push_str(&chain(&e));
            }
            Ok(c) => out.push_str(&format!("{c:?}\n")),
        }
        let pool = Pool::builder(m)
            .name("redis-redaction")
            .max_size(1)
            .acquire_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        for _ in 0..3 {
            match pool.get().await {
                Err(e) => out.push_str(&chain(&e)),
                Ok(mut c) => {
                    for cmd in [
                        redis::cmd("PING"),
                        redis::cmd("AUTH").arg(&wrong_pw_user).arg(&pw).clone(),
                    ] {
                        if let Err(e) = cmd.query_async::<redis::Value>(&mut *c).await {
                            command_errors += 1;
                            let e = Error::from(e);
                            c.report(&e);
                            out.push_str(&chain(&e));
                        }
                    }
                    out.push_str(&format!("{c:?}\n"));
                }
            }
        }
        out.push_str(&format!(
            "{pool:?}\n{:?}\n{:?}\n{:?}\n{}\n",
            pool.status(),
            pool.stats(),
            pool.doctor(),
            pool.prometheus()
        ));
        pool.close();
        pool.wait_closed(Duration::from_secs(5)).await;
    }
    // A TLS address built in code (not from a URL). Without the `tls` feature it is refused
    // at connect; with it, the TLS server's certificate is checked against an unrelated CA
    // and refused. Either way the error names the server without secrets.
    let info = redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::TcpTls {
        host: "127.0.0.1".into(),
        port: if cfg!(feature = "tls") { 6381 } else { 6379 },
        insecure: false,
        tls_params: None,
    })
    .unwrap()
    .set_redis_settings(
        redis::RedisConnectionInfo::default()
            .set_username(&wrong_pw_user)
            .set_password(&pw),
    );
    #[cfg(feature = "tls")]
    let m = RedisManager::builder(info)
        .tls_root_ca(tls_file("other-ca.crt"))
        .build()
        .unwrap();
    #[cfg(not(feature = "tls"))]
    let m = RedisManager::new(info).unwrap();
    out.push_str(&format!("{m:?}\n"));
    let e = poolguard::conn::Manager::connect(&m)
        .await
        .expect_err("TLS is refused");
    #[cfg(feature = "tls")]
    assert!(matches!(e, Error::Tls { .. }), "{e}");
    #[cfg(not(feature = "tls"))]
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("rediss://"), "{e}");
    out.push_str(&chain(&e));
    // The same as a URL: without the feature, refused by the builder.
    let url = format!("rediss://u:{pw}@127.0.0.1:6379");
    out.push_str(&format!("{:?}\n", RedisManager::builder(url.as_str())));
    #[cfg(not(feature = "tls"))]
    {
        let e = RedisManager::new(url.as_str()).expect_err("no TLS in this build");
        assert!(
            matches!(e, poolguard_redis::BuildError::TlsNotEnabled),
            "{e}"
        );
        assert!(e.to_string().contains("`tls` feature"), "{e}");
        out.push_str(&chain(&e));
    }
    for url in &unparsable {
        out.push_str(&format!("{}\n", redact_url(url)));
        out.push_str(&format!("{:?}\n", RedisManager::builder(url.as_str())));
        let e = RedisManager::new(url.as_str()).expect_err(url);
        out.push_str(&chain(&e));
    }
    acl(&mut admin, &["DELUSER", &wrong_pw_user, &noperm_user]).await;

    let events = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works and the failures were seen: connect errors for all but the
    // permission-less user, command errors (NOPERM, the AUTH sent by hand) for that one.
    assert_eq!(connect_errors, urls.len() - 1);
    assert!(command_errors >= 2, "{command_errors}");
    assert!(events.contains("connect failed"), "{events}");
    assert!(out.contains("WRONGPASS") || out.contains("wrong user name or password"));
    assert!(out.to_ascii_uppercase().contains("NOPERM"), "{out}");
    for (name, text) in [("outputs", &out), ("tracing events", &events)] {
        assert!(
            !text.contains(&pw),
            "the password appears in the {name}:\n{}",
            text.lines()
                .filter(|l| l.contains(&pw))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
