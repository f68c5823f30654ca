//! A Redis that is loading its dataset after a start answers `-LOADING`: the manager
//! recognises it as a restart signature (so the pool's breaker probes again soon), and other
//! errors as not one. A fake server on a loopback port plays the loading Redis; the real one
//! is never disturbed.

use poolguard::conn::Manager;
use poolguard_redis::RedisManager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every chunk the client sends with `reply` (a RESP error line).
async fn fake_server(reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // One error per command in the chunk (each RESP command starts with `*`).
            let commands = buf[..n].iter().filter(|b| **b == b'*').count().max(1);
            for _ in 0..commands {
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    port
}

/// The error of a connect, or of the first validation if the connect sent no command.
async fn first_error(reply: &'static str) -> (RedisManager, poolguard_redis::Error) {
    let port = fake_server(reply).await;
    let m = RedisManager::new(format!("redis://127.0.0.1:{port}/").as_str()).expect("valid");
    let e = match m.connect().await {
        Err(e) => e,
        Ok(mut c) => m.validate(&mut c).await.expect_err("the fake server errs"),
    };
    (m, e)
}

#[tokio::test]
async fn loading_is_a_restart_signature() {
    let (m, e) = first_error("-LOADING Redis is loading the dataset in memory\r\n").await;
    assert!(m.is_restarting(&e), "{e}");
    assert!(e.is_restarting());
}

#[tokio::test]
async fn other_errors_are_not() {
    let (m, e) = first_error("-ERR unknown command\r\n").await;
    assert!(!m.is_restarting(&e), "{e}");
}
