//! `poolguard::conn::Manager` for redis-rs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use poolguard::conn::{ErrorClass, Manager};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, Value};
use tokio::net::{TcpStream, UnixStream};

use crate::socket::WatchedSocket;

use crate::connection::RedisConnection;
use crate::error::Error;

/// Why a [`RedisManagerBuilder`] refused its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL did not parse.
    #[error("invalid Redis URL: {0}; use `redis://[user:password@]host:port[/db]`")]
    Url(#[source] redis::RedisError),
    /// A zero response timeout would fail every command.
    #[error("response_timeout must be positive; use None for no timeout")]
    ZeroResponseTimeout,
}

/// Builds a validated [`RedisManager`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct RedisManagerBuilder {
    client: Result<Client, BuildError>,
    response_timeout: Option<Duration>,
}

impl RedisManagerBuilder {
    /// Per-command response timeout of every connection (default: none, so blocking
    /// commands such as `BLPOP` work; the pool bounds its own PINGs and resets with
    /// `validation_timeout`/`reset_timeout`). A timed-out connection is classified Fatal.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<RedisManager, BuildError> {
        let client = self.client?;
        if self.response_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroResponseTimeout);
        }
        let db = client.get_connection_info().redis_settings().db();
        Ok(RedisManager {
            client,
            db,
            response_timeout: self.response_timeout,
            ping: AtomicU64::new(0),
        })
    }
}

/// Opens, checks, resets and closes Redis connections for a `poolguard::conn::Pool`.
#[derive(Debug)]
pub struct RedisManager {
    client: Client,
    db: i64,
    response_timeout: Option<Duration>,
    ping: AtomicU64,
}

impl RedisManager {
    /// A builder from a URL (`redis://127.0.0.1:6379/0`) or any redis-rs connection info.
    pub fn builder<T: IntoConnectionInfo>(info: T) -> RedisManagerBuilder {
        RedisManagerBuilder {
            client: Client::open(info).map_err(BuildError::Url),
            response_timeout: None,
        }
    }

    /// A manager with default settings.
    pub fn new<T: IntoConnectionInfo>(info: T) -> Result<Self, BuildError> {
        Self::builder(info).build()
    }

    /// The redis-rs client the connections are opened with.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Manager for RedisManager {
    type Connection = RedisConnection;
    type Error = Error;

    async fn connect(&self) -> Result<RedisConnection, Error> {
        // The pool bounds the connect with its connect_timeout; redis-rs's own 1 s default
        // would turn a slow network into a confusing second deadline.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(self.response_timeout);
        let info = self.client.get_connection_info();
        let closed = Arc::new(AtomicBool::new(false));
        let socket = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(RedisError::from)?;
                WatchedSocket::tcp(s, Arc::clone(&closed))
            }
            ConnectionAddr::Unix(path) => {
                let s = UnixStream::connect(path).await.map_err(RedisError::from)?;
                WatchedSocket::unix(s, Arc::clone(&closed))
            }
            other => return Err(Error::Unsupported(format!("{other:?}"))),
        };
        let (inner, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), socket, config).await?;
        // The driver owns the socket; the connection owns the driver (aborted on drop).
        let driver = tokio::spawn(driver);
        Ok(RedisConnection::new(inner, closed, driver))
    }

    /// `PING n` with a counter: the reply must echo `n`, which proves the replies are in step
    /// with the requests, not merely that some bytes came back.
    async fn validate(&self, conn: &mut RedisConnection) -> Result<(), Error> {
        let n = self.ping.fetch_add(1, Ordering::Relaxed);
        // A server error (`LOADING`...) is that error, not replies out of step.
        let reply = conn.raw(redis::cmd("PING").arg(n)).await?.extract_error()?;
        let got = match &reply {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            other => format!("{other:?}"),
        };
        if got == n.to_string() {
            Ok(())
        } else {
            Err(Error::PingMismatch { sent: n, got })
        }
    }

    /// Undoes what the borrower left: `DISCARD` an open `MULTI` (which also unwatches),
    /// `UNWATCH` watched keys, `SELECT` the configured database again. A clean connection
    /// costs no round trip.
    async fn reset(&self, conn: &mut RedisConnection) -> Result<(), Error> {
        if !conn.session.is_dirty() {
            return Ok(());
        }
        if conn.session.multi {
            if let Err(e) = conn.raw(&redis::cmd("DISCARD")).await {
                // "DISCARD without MULTI": the EXEC did run, only its answer was not awaited.
                if classify_fatal(&e) {
                    return Err(e.into());
                }
            }
        } else if conn.session.watching {
            conn.raw(&redis::cmd("UNWATCH")).await?;
        }
        conn.session.multi = false;
        conn.session.watching = false;
        if conn.session.selected {
            conn.raw(redis::cmd("SELECT").arg(self.db)).await?;
            conn.session.selected = false;
        }
        Ok(())
    }

    /// Only a connection left with `MULTI`, `WATCH` or `SELECT` state goes through the
    /// reset task; a clean one goes straight back.
    fn needs_reset(&self, conn: &mut RedisConnection) -> bool {
        conn.session.is_dirty()
    }

    fn is_broken(&self, conn: &mut RedisConnection) -> bool {
        if conn.is_closed() {
            return true;
        }
        if let Some(what) = conn.session.tainted {
            tracing::debug!(
                command = what,
                "redis connection evicted: session state cannot be undone"
            );
            return true;
        }
        conn.session.failed
    }

    fn classify(&self, error: &Error) -> ErrorClass {
        error.class()
    }

    fn is_restarting(&self, error: &Error) -> bool {
        error.is_restarting()
    }
}

fn classify_fatal(e: &redis::RedisError) -> bool {
    crate::error::classify(e) == ErrorClass::Fatal
}
