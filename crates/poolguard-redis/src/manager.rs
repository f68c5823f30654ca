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
    /// A zero query timeout would fail every command.
    #[error("query_timeout must be positive; use None for no timeout")]
    ZeroQueryTimeout,
}

/// Builds a validated [`RedisManager`].
#[must_use = "a builder does nothing until build() is called"]
pub struct RedisManagerBuilder {
    client: Result<Client, BuildError>,
    response_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
}

impl RedisManagerBuilder {
    /// redis-rs's own per-reply timeout (default: none). It applies to every reply alike, so
    /// a value shorter than a blocking command's block time (`BLPOP k 5`) fails that
    /// command; prefer [`query_timeout`](Self::query_timeout), which allows for it. A
    /// timed-out connection is classified Fatal.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// A deadline for every command and pipeline sent through a pooled connection (default:
    /// none). When it passes, the command fails with a timeout error (`is_timeout()`,
    /// classified Fatal) and the connection is evicted when it goes back to the pool: its
    /// reply may still arrive, and a frozen server would stall the next borrower too.
    ///
    /// Blocking commands get their own block time on top: `BLPOP k 5` with a
    /// `query_timeout` of 1 s may take 6 s (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`,
    /// `BLMPOP`, `BZPOPMIN`/`BZPOPMAX`/`BZMPOP`, `XREAD`/`XREADGROUP ... BLOCK ms`, `WAIT`,
    /// `WAITAOF`; a pipeline gets the sum of its commands' block times). A command told to
    /// block for good (`BLPOP k 0`, `XREAD BLOCK 0`, `WAIT n 0`) has no deadline: bound it
    /// yourself as below. The pool's own `PING`s and resets are bounded by its
    /// `validation_timeout` and `reset_timeout`, not by this.
    ///
    /// Without it, or for a tighter bound on one call, wrap the call in
    /// `tokio::time::timeout`; a command abandoned that way also evicts its connection on
    /// return (its reply is still owed):
    ///
    /// ```no_run
    /// # async fn demo(pool: poolguard::conn::Pool<poolguard_redis::RedisManager>) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use poolguard_redis::redis::AsyncCommands;
    ///
    /// let mut conn = pool.get().await?;
    /// match tokio::time::timeout(Duration::from_millis(200), conn.get::<_, Option<String>>("k")).await {
    ///     Ok(reply) => println!("{:?}", reply?),
    ///     Err(_) => println!("no answer in 200 ms; this connection will not be reused"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn query_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<RedisManager, BuildError> {
        let client = self.client?;
        if self.response_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroResponseTimeout);
        }
        if self.query_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroQueryTimeout);
        }
        let db = client.get_connection_info().redis_settings().db();
        Ok(RedisManager {
            client,
            db,
            response_timeout: self.response_timeout,
            query_timeout: self.query_timeout,
            ping: AtomicU64::new(0),
        })
    }
}

/// Opens, checks, resets and closes Redis connections for a `poolguard::conn::Pool`.
///
/// Its `Debug` output names the server by [`address`](Self::address): the password is
/// masked.
pub struct RedisManager {
    client: Client,
    db: i64,
    response_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
    ping: AtomicU64,
}

impl RedisManager {
    /// A builder from a URL (`redis://127.0.0.1:6379/0`) or any redis-rs connection info.
    pub fn builder<T: IntoConnectionInfo>(info: T) -> RedisManagerBuilder {
        RedisManagerBuilder {
            client: Client::open(info).map_err(BuildError::Url),
            response_timeout: None,
            query_timeout: None,
        }
    }

    /// A manager with default settings.
    pub fn new<T: IntoConnectionInfo>(info: T) -> Result<Self, BuildError> {
        Self::builder(info).build()
    }

    /// The configured [`query_timeout`](RedisManagerBuilder::query_timeout).
    pub fn query_timeout(&self) -> Option<Duration> {
        self.query_timeout
    }

    /// The server's address as a URL with the password masked
    /// (`redis://user:***@host:6379/0`), for logs and status output.
    pub fn address(&self) -> String {
        crate::redact::address(self.client.get_connection_info())
    }

    /// The redis-rs client the connections are opened with.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for RedisManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = match &self.client {
            Ok(c) => Ok(crate::redact::address(c.get_connection_info())),
            Err(e) => Err(e),
        };
        f.debug_struct("RedisManagerBuilder")
            .field("address", &address)
            .field("response_timeout", &self.response_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

impl std::fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisManager")
            .field("address", &self.address())
            .field("db", &self.db)
            .field("response_timeout", &self.response_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
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
            // The address, not the `ConnectionAddr`: its TLS parameters may hold a key.
            _ => return Err(Error::Unsupported(crate::redact::address(info))),
        };
        let (inner, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), socket, config).await?;
        // The driver owns the socket; the connection owns the driver (aborted on drop).
        let driver = tokio::spawn(driver);
        Ok(RedisConnection::new(
            inner,
            closed,
            driver,
            self.query_timeout,
        ))
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
        if conn.session.reply_owed() {
            // Draining would mean waiting out a blocking command (`BLPOP k 0` never ends):
            // a fresh connection is cheaper and certain.
            tracing::debug!(
                unanswered = conn.session.unanswered,
                "redis connection evicted: a command was abandoned before its reply arrived"
            );
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
