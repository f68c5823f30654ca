//! Multi-host connection strings and `target_session_attrs`, as tokio-postgres honours them:
//! hosts are tried in order, and a host whose session does not match is skipped. The
//! read-only server is the shared one behind a small proxy that adds
//! `-c default_transaction_read_only=on` to every startup packet.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use poolguard::conn::{Error as PoolError, Phase, Pool};
use poolguard_postgres::{BuildError, Error, PostgresManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Makes every session through it read-only. Dropping it ends every relay.
struct ReadOnlyProxy {
    port: u16,
    accepted: Arc<AtomicU64>,
    _tasks: JoinSet<()>,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;
const PROTOCOL_3: u32 = 196_608;

impl ReadOnlyProxy {
    async fn start() -> ReadOnlyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                relays.spawn(async move {
                    let _ = relay(client).await;
                });
            }
        });
        ReadOnlyProxy {
            port,
            accepted,
            _tasks: tasks,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn relay(mut client: TcpStream) -> io::Result<()> {
    let mut server = TcpStream::connect("127.0.0.1:5432").await?;
    loop {
        let len = client.read_u32().await? as usize;
        if !(8..=10_000).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad startup length",
            ));
        }
        let mut body = vec![0; len - 4];
        client.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSS_REQUEST {
            client.write_all(b"N").await?;
            continue;
        }
        if code == PROTOCOL_3 {
            let mut fields: Vec<String> = body[4..]
                .split(|b| *b == 0)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            fields.retain(|f| !f.is_empty());
            let extra = "-c default_transaction_read_only=on";
            match fields.iter().position(|f| f == "options") {
                Some(i) => fields[i + 1] = format!("{} {extra}", fields[i + 1]),
                None => fields.extend(["options".to_owned(), extra.to_owned()]),
            }
            body.truncate(4);
            for f in fields {
                body.extend_from_slice(f.as_bytes());
                body.push(0);
            }
            body.push(0);
        }
        server.write_u32(body.len() as u32 + 4).await?;
        server.write_all(&body).await?;
        break;
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

fn pool(m: PostgresManager) -> Pool<PostgresManager> {
    Pool::builder(m)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn manager(hosts: &str, ports: &str, attrs: &str) -> PostgresManager {
    drop(admin().await);
    PostgresManager::builder(&format!(
        "host={hosts} port={ports} user=postgres dbname=test target_session_attrs={attrs}"
    ))
    .application_name(&unique("pg_failover"))
    .build()
    .unwrap()
}

async fn read_only(c: &tokio_postgres::Client) -> String {
    let rows = c.simple_query("SHOW transaction_read_only").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test]
async fn the_proxy_really_makes_sessions_read_only() {
    let ro = ReadOnlyProxy::start().await;
    let m = manager("127.0.0.1", &ro.port.to_string(), "any").await;
    let pool = pool(m);
    let c = pool.get().await.unwrap();
    assert_eq!(read_only(&c).await, "on");
}

#[tokio::test]
async fn read_write_skips_a_read_only_first_host() {
    let ro = ReadOnlyProxy::start().await;
    let m = manager(
        "127.0.0.1,127.0.0.1",
        &format!("{},5432", ro.port),
        "read-write",
    )
    .await;
    let pool = pool(m);
    for _ in 0..2 {
        let c = pool.get().await.expect("the second host is read-write");
        assert_eq!(read_only(&c).await, "off");
        assert_eq!(c.addr(), "127.0.0.1:5432");
        drop(c);
    }
    assert!(ro.accepted() >= 1, "the read-only host was tried first");
}

#[tokio::test]
async fn any_takes_the_first_host_and_read_only_skips_a_writable_one() {
    let ro = ReadOnlyProxy::start().await;
    let m = manager("127.0.0.1,127.0.0.1", &format!("{},5432", ro.port), "any").await;
    let c = pool(m).get().await.unwrap();
    assert_eq!(c.addr(), format!("127.0.0.1:{}", ro.port));
    assert_eq!(read_only(&c).await, "on");

    let m = manager(
        "127.0.0.1,127.0.0.1",
        &format!("5432,{}", ro.port),
        "read-only",
    )
    .await;
    let c = pool(m).get().await.unwrap();
    assert_eq!(c.addr(), format!("127.0.0.1:{}", ro.port));
    assert_eq!(read_only(&c).await, "on");
}

#[tokio::test]
async fn only_read_only_hosts_is_a_typed_error_not_a_timeout() {
    let ro = ReadOnlyProxy::start().await;
    let m = manager("127.0.0.1", &ro.port.to_string(), "read-write").await;
    match pool(m).get().await {
        Err(PoolError::Backend {
            phase: Phase::Connect,
            source,
        }) => match &*source {
            Error::ReadOnly { addr } => assert_eq!(*addr, format!("127.0.0.1:{}", ro.port)),
            other => panic!("expected Error::ReadOnly, got {other}"),
        },
        Err(other) => panic!("expected Error::ReadOnly, got {other}"),
        Ok(_) => panic!("a read-only host was accepted for read-write"),
    }

    // Two read-only hosts: both attempts are reported, in order.
    let m = manager(
        "127.0.0.1,127.0.0.1",
        &format!("{0},{0}", ro.port),
        "read-write",
    )
    .await;
    match pool(m).get().await {
        Err(PoolError::Backend {
            phase: Phase::Connect,
            source: e,
        }) => {
            let Error::AllHostsFailed { attempts } = &*e else {
                panic!("expected Error::AllHostsFailed, got {e}")
            };
            assert_eq!(attempts.len(), 2, "{e}");
            assert!(
                attempts
                    .iter()
                    .all(|(_, a)| matches!(a, Error::ReadOnly { .. })),
                "{e}"
            );
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        Err(other) => panic!("expected Error::AllHostsFailed, got {other}"),
        Ok(_) => panic!("a read-only host was accepted for read-write"),
    }
}

#[tokio::test]
async fn a_refused_first_host_is_skipped_and_hostaddr_is_used() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().port();
    drop(listener);
    let m = manager("127.0.0.1,127.0.0.1", &format!("{dead},5432"), "read-write").await;
    let c = pool(m).get().await.unwrap();
    assert_eq!(c.addr(), "127.0.0.1:5432");

    // A Unix socket directory without a server, then TCP.
    let m = manager("/nonexistent-poolguard-dir,127.0.0.1", "5432,5432", "any").await;
    let c = pool(m).get().await.unwrap();
    assert_eq!(c.addr(), "127.0.0.1:5432");
    assert!(c.tcp_options().is_some());

    // hostaddr is what is dialled; host is only a name (here one that does not resolve).
    drop(admin().await);
    let m = PostgresManager::new(
        "host=db.invalid hostaddr=127.0.0.1 port=5432 user=postgres dbname=test",
    )
    .unwrap();
    let c = pool(m).get().await.unwrap();
    assert_eq!(c.addr(), "127.0.0.1:5432");
}

#[test]
fn host_and_port_lists_must_line_up() {
    let e = PostgresManager::new("host=a,b,c port=1,2 user=u").unwrap_err();
    assert!(
        matches!(e, BuildError::PortCount { hosts: 3, ports: 2 }),
        "{e}"
    );
    assert!(e.to_string().contains("one per host"), "{e}");
    let e = PostgresManager::new("host=a,b hostaddr=127.0.0.1 user=u").unwrap_err();
    assert!(matches!(e, BuildError::HostAddrCount { .. }), "{e}");
    PostgresManager::new("host=a,b port=1 user=u").expect("one port for all hosts");
}
