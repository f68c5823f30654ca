//! The fault proxy in front of a local echo server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poolguard_faults::proxy::FaultProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server; returns its address and a count of accepted connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn forwards_both_ways() {
    let (up, _) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"hello").await, b"hello");
    let big = vec![7u8; 200_000];
    assert_eq!(roundtrip(&mut s, &big).await, big);
    assert_eq!(p.accepted(), 1);
    assert_eq!(p.live_connections(), 1);
}

#[tokio::test]
async fn cut_all_resets_live_connections() {
    let (up, _) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let mut a = TcpStream::connect(p.addr()).await.unwrap();
    let mut b = TcpStream::connect(p.addr()).await.unwrap();
    roundtrip(&mut a, b"x").await;
    roundtrip(&mut b, b"y").await;
    assert_eq!(p.cut_all(), 2);
    for s in [&mut a, &mut b] {
        let mut buf = [0u8; 8];
        let r = s.read(&mut buf).await;
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "expected a reset, got {r:?}"
        );
    }
    assert_eq!(p.live_connections(), 0);
    // New connections still work.
    let mut c = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut c, b"z").await, b"z");
}

#[tokio::test]
async fn refuse_then_accept_on_the_same_port() {
    let (up, _) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let mut live = TcpStream::connect(p.addr()).await.unwrap();
    roundtrip(&mut live, b"a").await;
    p.refuse().await;
    let err = TcpStream::connect(p.addr()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!p.is_accepting());
    assert_eq!(
        roundtrip(&mut live, b"still").await,
        b"still",
        "refuse leaves live connections alone"
    );
    p.accept().unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"back").await, b"back");
}

#[tokio::test]
async fn upstream_refusal_resets_the_client() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let p = FaultProxy::start(dead).await.unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let r = s.read(&mut buf).await;
    assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
}

/// Paused clock: the runtime advances time only when every task is idle, so a timeout that
/// fires proves nothing was forwarded, without a wall-clock wait.
#[tokio::test(start_paused = true)]
async fn blackhole_swallows_live_and_new_connections_until_lifted() {
    let (up, accepted) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let mut live = TcpStream::connect(p.addr()).await.unwrap();
    roundtrip(&mut live, b"1").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    p.blackhole(true);
    live.write_all(b"lost?").await.unwrap();
    let mut buf = [0u8; 5];
    let r = tokio::time::timeout(Duration::from_secs(30), live.read_exact(&mut buf)).await;
    assert!(r.is_err(), "a blackholed connection answered");
    let mut fresh = TcpStream::connect(p.addr())
        .await
        .expect("a blackhole still accepts");
    fresh.write_all(b"hi").await.unwrap();
    let mut two = [0u8; 2];
    let r = tokio::time::timeout(Duration::from_secs(30), fresh.read_exact(&mut two)).await;
    assert!(
        r.is_err(),
        "a new connection through the blackhole answered"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the server was contacted during the blackhole"
    );

    p.blackhole(false);
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"lost?",
        "bytes held during the blackhole are delivered after it"
    );
    fresh.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"hi");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_each_direction() {
    let (up, _) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    roundtrip(&mut s, b"warm").await;
    p.set_latency(Duration::from_millis(200));
    let t = tokio::time::Instant::now();
    roundtrip(&mut s, b"slow").await;
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "took {:?}",
        t.elapsed()
    );
    p.heal().unwrap();
    let t = tokio::time::Instant::now();
    roundtrip(&mut s, b"fast").await;
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "virtual time advanced: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let (up, _) = echo().await;
    let p = FaultProxy::start(up).await.unwrap();
    let addr = p.addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    roundtrip(&mut s, b"a").await;
    drop(p);
    let mut buf = [0u8; 1];
    let r = s.read(&mut buf).await;
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}
