//! The socket under a pooled Redis connection, watched for the server closing it.
//!
//! redis-rs's multiplexed connection does not say when its socket has died. The driver task
//! reads the socket continuously, so wrapping the socket is enough: end of stream or a read
//! error sets a flag that `is_broken` reads, and the pool evicts the connection at its next
//! return or checkout instead of handing a dead one to a caller (a `CLIENT KILL`, a server
//! restart, a reset by a middlebox).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket that records its own death in a shared flag.
#[derive(Debug)]
pub(crate) struct WatchedSocket {
    inner: Inner,
    closed: Arc<AtomicBool>,
}

impl WatchedSocket {
    pub(crate) fn tcp(s: TcpStream, closed: Arc<AtomicBool>) -> Self {
        let _ = s.set_nodelay(true);
        WatchedSocket {
            inner: Inner::Tcp(s),
            closed,
        }
    }

    pub(crate) fn unix(s: UnixStream, closed: Arc<AtomicBool>) -> Self {
        WatchedSocket {
            inner: Inner::Unix(s),
            closed,
        }
    }
}

impl AsyncRead for WatchedSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = match &mut this.inner {
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        match &res {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                this.closed.store(true, Ordering::Release)
            }
            Poll::Ready(Err(_)) => this.closed.store(true, Ordering::Release),
            _ => {}
        }
        res
    }
}

impl AsyncWrite for WatchedSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = match &mut this.inner {
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Err(_)) = &res {
            this.closed.store(true, Ordering::Release);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            Inner::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
