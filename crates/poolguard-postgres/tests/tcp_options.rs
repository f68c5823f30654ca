//! The TCP options of the connection string reach the socket (read back with getsockopt), and
//! `connect_timeout` bounds each host's whole connect, handshake included.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use poolguard::conn::{Error as PoolError, Phase, Pool};
use poolguard_postgres::{Error, PostgresManager};
use poolguard_testkit::proxy::FaultProxy;

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// The options of a pooled connection, after checking that they describe this session's
/// live socket (the server sees the same client port).
async fn options_of(extra: &str) -> poolguard_postgres::TcpOptions {
    drop(admin().await);
    let m = PostgresManager::builder(&format!("{} {extra}", pg_url()))
        .application_name(&unique("pg_tcp"))
        .build()
        .unwrap();
    let c = pool(m).get().await.unwrap();
    let port: i32 = c
        .query_one(
            "SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let o = *c.tcp_options().expect("a TCP connection");
    assert_eq!(c.local_addr(), Some(o.local_addr));
    assert_eq!(
        i32::from(o.local_addr.port()),
        port,
        "the session's own socket"
    );
    o
}

/// Cross-check with the kernel, read live from outside the socket: the idle connection has
/// a keepalive timer armed within `idle`, or no timer at all.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_kernel_arms_a_keepalive_timer_only_when_asked() {
    drop(admin().await);
    for (extra, keepalive) in [("keepalives_idle=37", true), ("keepalives=0", false)] {
        let m = PostgresManager::builder(&format!("{} {extra}", pg_url()))
            .application_name(&unique("pg_tcp_kernel"))
            .build()
            .unwrap();
        let pool = pool(m);
        let c = pool.get().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        let port = c.local_addr().unwrap().port();
        // The answer has been read, so nothing is in flight: the only timer left is the
        // keepalive one.
        let poolguard_testkit::tcp::KernelTimer { kind, ticks } =
            poolguard_testkit::tcp::idle_kernel_timer(port).await;
        if keepalive {
            assert_eq!(kind, 2, "{extra}: a keepalive timer is armed");
            assert!(
                ticks <= 37 * 100,
                "{extra}: it fires within keepalives_idle: {ticks} ticks"
            );
        } else {
            assert_eq!(kind, 0, "{extra}: no timer");
        }
    }
}

#[tokio::test]
async fn keepalive_and_user_timeout_reach_the_socket() {
    let o = options_of(
        "keepalives_idle=37 keepalives_interval=5 keepalives_retries=4 tcp_user_timeout=9",
    )
    .await;
    assert!(o.nodelay, "{o:?}");
    assert!(o.keepalive, "{o:?}");
    assert_eq!(o.keepalive_idle, Some(Duration::from_secs(37)), "{o:?}");
    assert_eq!(o.keepalive_interval, Some(Duration::from_secs(5)), "{o:?}");
    assert_eq!(o.keepalive_retries, Some(4), "{o:?}");
    assert_eq!(o.user_timeout, Some(Duration::from_secs(9)), "{o:?}");
}

#[tokio::test]
async fn keepalives_are_on_by_default_as_in_tokio_postgres() {
    let o = options_of("").await;
    assert!(o.keepalive, "{o:?}");
    assert_eq!(
        o.keepalive_idle,
        Some(Duration::from_secs(2 * 60 * 60)),
        "{o:?}"
    );
    assert_eq!(o.user_timeout, None, "{o:?}");

    let o = options_of("keepalives=0").await;
    assert!(!o.keepalive, "keepalives=0 turns them off: {o:?}");
}

fn assert_connect_timeout(e: &PoolError<Error>, addr: &str) {
    match e {
        PoolError::Backend {
            phase: Phase::Connect,
            source,
        } => match &**source {
            Error::ConnectTimeout {
                addr: a, during, ..
            } => {
                assert_eq!(a, addr, "{e}");
                assert!(during.contains("startup"), "{e}");
                assert!(e.to_string().contains("connect_timeout"), "{e}");
            }
            other => panic!("expected Error::ConnectTimeout, got {other}"),
        },
        other => panic!("expected the manager's connect timeout, got {other}"),
    }
}

#[tokio::test]
async fn connect_timeout_bounds_a_silent_handshake_and_moves_on_to_the_next_host() {
    drop(admin().await);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 5432)))
        .await
        .unwrap();
    proxy.blackhole(true);
    let silent = proxy.addr().to_string();

    // connect_timeout (1 s, from the string) fires long before the pool's own 15 s.
    let m = PostgresManager::new(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=test connect_timeout=1",
        proxy.addr().port()
    ))
    .unwrap();
    let e = pool(m)
        .get()
        .await
        .expect_err("the handshake never completes");
    assert_connect_timeout(&e, &silent);

    // Sub-second, through a tokio_postgres::Config.
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.addr().port())
        .user("postgres")
        .dbname("test")
        .connect_timeout(Duration::from_millis(200));
    let m = PostgresManager::builder_from_config(config)
        .build()
        .unwrap();
    let e = pool(m)
        .get()
        .await
        .expect_err("the handshake never completes");
    assert_connect_timeout(&e, &silent);

    // The silent host first, the real server second: the timeout moves on.
    let m = PostgresManager::builder(&format!(
        "host=127.0.0.1,127.0.0.1 port={},5432 user=postgres dbname=test connect_timeout=3",
        proxy.addr().port()
    ))
    .application_name(&unique("pg_tcp_next"))
    .build()
    .unwrap();
    let c = pool(m).get().await.expect("the second host answers");
    assert_eq!(c.addr(), "127.0.0.1:5432");
    assert!(proxy.accepted() >= 3, "the silent host was tried each time");
}
