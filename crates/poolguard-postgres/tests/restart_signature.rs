//! A server that is restarting answers the startup message with 57P03 "the database system
//! is starting up": the manager recognises it as a restart signature (so the pool's breaker
//! probes again soon), and other connect errors as not one. A fake server on a loopback
//! port plays the restarting PostgreSQL; the real one is never disturbed.

use poolguard::conn::Manager;
use poolguard_postgres::PostgresManager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Accepts one connection, reads the startup message (answering an SSLRequest with `N`),
/// and replies with a FATAL error response of `code` and `message`.
async fn fake_server(code: &'static str, message: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        loop {
            let len = s.read_i32().await.expect("length") as usize;
            let mut body = vec![0; len - 4];
            s.read_exact(&mut body).await.expect("body");
            if body[..4] == 80877103i32.to_be_bytes() {
                s.write_all(b"N").await.expect("no ssl");
                continue;
            }
            break;
        }
        let mut fields = Vec::new();
        for (tag, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', code),
            (b'M', message),
        ] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut msg = vec![b'E'];
        msg.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(&fields);
        s.write_all(&msg).await.expect("error response");
        let _ = s.shutdown().await;
    });
    port
}

async fn connect_error(code: &'static str, message: &'static str) -> poolguard_postgres::Error {
    let port = fake_server(code, message).await;
    let m = PostgresManager::new(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=test sslmode=disable"
    ))
    .expect("valid");
    match m.connect().await {
        Ok(_) => panic!("the fake server refuses every session"),
        Err(e) => {
            let restarting = m.is_restarting(&e);
            assert_eq!(restarting, e.is_restarting());
            e
        }
    }
}

#[tokio::test]
async fn starting_up_and_shutting_down_are_restart_signatures() {
    for (code, message) in [
        ("57P03", "the database system is starting up"),
        ("57P03", "the database system is shutting down"),
        (
            "57P01",
            "terminating connection due to administrator command",
        ),
    ] {
        let e = connect_error(code, message).await;
        assert!(e.is_restarting(), "{code}: {e}");
        assert!(e.to_string().contains(code), "{e}");
    }
}

#[tokio::test]
async fn other_connect_errors_are_not() {
    let e = connect_error(
        "28P01",
        "password authentication failed for user \"postgres\"",
    )
    .await;
    assert!(!e.is_restarting(), "{e}");
    let e = connect_error("53300", "sorry, too many clients already").await;
    assert!(!e.is_restarting(), "{e}");
    // A refused port: indistinguishable from an outage.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let m =
        PostgresManager::new(&format!("host=127.0.0.1 port={port} user=postgres")).expect("valid");
    let Err(e) = m.connect().await else {
        panic!("nothing listens there");
    };
    assert!(!m.is_restarting(&e), "{e}");
}
