//! Opening the socket under a connection: TCP (with the connection info's TCP settings), TLS
//! (feature `tls`) or a Unix socket.
//!
//! redis-rs's own `Client` opens sockets the same way, but it spawns the connection's driver
//! task itself and keeps the task's handle private, and its `MultiplexedConnection` cannot
//! say whether that task is still running. The driver reads the socket continuously, so its
//! end is the earliest sign that the server closed the connection (`CLIENT KILL`, a restart,
//! an idle `timeout`); the manager therefore opens the socket here and spawns the driver
//! itself, keeping the handle (see `RedisConnection::is_closed`). Nothing wraps the socket.

use std::pin::Pin;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, ConnectionInfo, RedisError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::Error;

/// Any socket the driver can own.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Send + Sync> Socket for T {}

/// The socket handed to redis-rs.
pub(crate) type Stream = Pin<Box<dyn Socket>>;

/// Opens the socket `info` names. `tls` is the manager's TLS setup (present exactly when the
/// address is `rediss://` and the `tls` feature is on).
pub(crate) async fn open(
    info: &ConnectionInfo,
    tls: Option<&crate::tls::Tls>,
) -> Result<Stream, Error> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            Ok(Box::pin(tcp(host, *port, info.tcp_settings()).await?))
        }
        #[cfg(feature = "tls")]
        ConnectionAddr::TcpTls { host, port, .. } => {
            let tcp = tcp(host, *port, info.tcp_settings()).await?;
            match tls {
                Some(tls) => Ok(Box::pin(tls.handshake(tcp, info).await?)),
                None => Err(Error::Unsupported(crate::redact::address(info))),
            }
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Ok(Box::pin(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(RedisError::from)?,
        )),
        // The address, not the `ConnectionAddr`: its TLS parameters may hold a key.
        _ => {
            let _ = tls;
            Err(Error::Unsupported(crate::redact::address(info)))
        }
    }
}

/// Connects to `host:port` (every address it resolves to, in order) and applies the TCP
/// settings of the connection info: keepalive and (Linux) `TCP_USER_TIMEOUT` as given,
/// `TCP_NODELAY` always on.
async fn tcp(host: &str, port: u16, settings: &TcpSettings) -> Result<TcpStream, RedisError> {
    let stream = TcpStream::connect((host, port)).await?;
    // A pooled connection carries one request at a time and waits for its reply: Nagle's
    // algorithm could only delay it.
    stream.set_nodelay(true)?;
    let socket = redis::io::tcp::socket2::SockRef::from(&stream);
    if let Some(keepalive) = settings.keepalive() {
        socket.set_tcp_keepalive(keepalive)?;
    }
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    if let Some(timeout) = settings.user_timeout() {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(stream)
}
