//! `poolguard::conn::Manager` for redis-rs.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{Classify, Credentials, ErrorClass, Manager};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, Value};

use crate::connection::RedisConnection;
use crate::error::Error;
use crate::tls::Tls;

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
    /// A `rediss://` address, but this build has no TLS.
    #[error("rediss:// (TLS) needs the `tls` feature of poolguard-redis; enable it, or use redis:// for a server without TLS")]
    TlsNotEnabled,
    /// `rediss://...#insecure` asks for no certificate check, which is not offered.
    #[error("rediss://...#insecure (TLS without a certificate check) is not supported; trust the server's CA with tls_root_ca instead")]
    InsecureTls,
    /// TLS settings were given for an address without TLS.
    #[error("tls_root_ca/tls_config were given but the address is not rediss://; use rediss://host:port for TLS")]
    TlsWithoutRediss,
    /// The TLS settings are unusable (a bad CA file, no trusted CA, an invalid host name).
    #[error("{0}")]
    Tls(String),
}

/// Builds a validated [`RedisManager`].
#[must_use = "a builder does nothing until build() is called"]
pub struct RedisManagerBuilder {
    client: Result<Client, BuildError>,
    response_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
    init_commands: Vec<redis::Cmd>,
    #[cfg(feature = "tls")]
    tls: Option<TlsRoots>,
}

/// What `rediss://` connections trust, when not the system's CA certificates.
#[cfg(feature = "tls")]
enum TlsRoots {
    Pem(Vec<u8>),
    Config(Arc<rustls::ClientConfig>),
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

    /// Commands run once on every new connection, in order, inside the connect (so under
    /// the pool's `connect_timeout`), before the pool hands it out: `CLIENT SETNAME`,
    /// `CLIENT NO-EVICT on`, `READONLY` on a replica... Use the URL's `/db` for the
    /// database, not `SELECT` here (the reset selects the URL's database again after a
    /// borrower's `SELECT`).
    ///
    /// An error reply fails the connect with [`Error::InitCommand`], which names the
    /// command by position and name only (never its arguments, which may hold a secret);
    /// the pool counts it as a connect failure.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard_redis::{redis, RedisManager};
    /// let mut setname = redis::cmd("CLIENT");
    /// setname.arg("SETNAME").arg("checkout-service");
    /// let manager = RedisManager::builder("redis://127.0.0.1:6379/0")
    ///     .init_commands([setname])
    ///     .build()?;
    /// # drop(manager); Ok(()) }
    /// ```
    pub fn init_commands(mut self, commands: impl IntoIterator<Item = redis::Cmd>) -> Self {
        self.init_commands = commands.into_iter().collect();
        self
    }

    /// For `rediss://` (feature `tls`): trust exactly the CA certificate(s) in `pem`
    /// (PEM text, as in a `ca.crt` file) instead of the system's. The server's certificate
    /// must be signed by one of them and name the URL's host.
    #[cfg(feature = "tls")]
    pub fn tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Some(TlsRoots::Pem(pem.into()));
        self
    }

    /// For `rediss://` (feature `tls`): use this rustls client configuration (your own
    /// roots, a client certificate for mutual TLS...). Its ALPN and key log settings are
    /// used as given.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(TlsRoots::Config(config));
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<RedisManager, BuildError> {
        let client = match self.client {
            // redis-rs refuses to parse `rediss://` without its TLS support.
            #[cfg(not(feature = "tls"))]
            Err(BuildError::Url(e)) if e.to_string().contains("TLS") => {
                return Err(BuildError::TlsNotEnabled)
            }
            other => other?,
        };
        if self.response_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroResponseTimeout);
        }
        if self.query_timeout == Some(Duration::ZERO) {
            return Err(BuildError::ZeroQueryTimeout);
        }
        let info = client.get_connection_info();
        let tls = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => return Err(BuildError::InsecureTls),
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls { host, .. } => {
                let config = match self.tls {
                    Some(TlsRoots::Config(c)) => c,
                    Some(TlsRoots::Pem(pem)) => Arc::new(crate::tls::config_from_pem(&pem)?),
                    None => Arc::new(crate::tls::config_native()?),
                };
                Some(Tls::new(config, host)?)
            }
            #[cfg(feature = "tls")]
            _ if self.tls.is_some() => return Err(BuildError::TlsWithoutRediss),
            _ => None,
        };
        let db = info.redis_settings().db();
        Ok(RedisManager {
            client,
            tls,
            db,
            response_timeout: self.response_timeout,
            query_timeout: self.query_timeout,
            init_commands: self.init_commands,
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
    tls: Option<Tls>,
    db: i64,
    response_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
    init_commands: Vec<redis::Cmd>,
    ping: AtomicU64,
}

impl RedisManager {
    /// A builder from a URL (`redis://127.0.0.1:6379/0`) or any redis-rs connection info.
    pub fn builder<T: IntoConnectionInfo>(info: T) -> RedisManagerBuilder {
        RedisManagerBuilder {
            client: Client::open(info).map_err(BuildError::Url),
            response_timeout: None,
            query_timeout: None,
            init_commands: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
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

    /// The redis-rs client holding the connection info the connections are opened with.
    /// Its own connect methods do not apply this manager's TLS settings; for a connection
    /// outside the pool use [`pubsub`](Self::pubsub) or a connection from the pool.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens a dedicated Pub/Sub connection, outside the pool, with the manager's address,
    /// credentials, database and TLS settings: redis-rs's own [`PubSub`](redis::aio::PubSub)
    /// (`subscribe`, `on_message`, `split`...). A subscribed connection cannot run other
    /// commands, so it is never pooled (a pooled connection that sends `SUBSCRIBE` is
    /// discarded on return). It lives until you drop it; publish through the pool.
    ///
    /// Opening it (connect, TLS handshake, `AUTH`, `SELECT`) must finish within
    /// `connect_timeout`, or it fails with a timeout error.
    ///
    /// ```no_run
    /// # async fn demo(pool: poolguard::conn::Pool<poolguard_redis::RedisManager>) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use poolguard_redis::redis::AsyncCommands;
    /// use futures_util::StreamExt as _;
    ///
    /// let mut sub = pool.manager().pubsub(Duration::from_secs(5)).await?;
    /// sub.subscribe("news").await?;
    /// let mut conn = pool.get().await?;
    /// let _: i64 = conn.publish("news", "hello").await?;
    /// let msg = tokio::time::timeout(Duration::from_secs(5), sub.on_message().next()).await?;
    /// # let _ = msg; Ok(()) }
    /// ```
    pub async fn pubsub(&self, connect_timeout: Duration) -> Result<redis::aio::PubSub, Error> {
        let info = self.client.get_connection_info();
        let open = async {
            let stream = crate::connect::open(info, self.tls.as_ref()).await?;
            Ok::<_, Error>(redis::aio::PubSub::new(info.redis_settings(), stream).await?)
        };
        match tokio::time::timeout(connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(Error::Redis(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("opening a Pub/Sub connection took longer than {connect_timeout:?}"),
            )))),
        }
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
            .field("init_commands", &self.init_commands.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisManager")
            .field("address", &self.address())
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .field("response_timeout", &self.response_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisManager {
    /// Opens a connection: socket (TLS when configured), `HELLO`/`AUTH`, `SELECT`, then the
    /// init commands. `creds`: a credentials provider's answer, replacing the URL's user
    /// (when it names one) and password for this connect.
    async fn open(&self, creds: Option<&Credentials>) -> Result<RedisConnection, Error> {
        // The pool bounds the connect with its connect_timeout; redis-rs's own 1 s default
        // would turn a slow network into a confusing second deadline.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(self.response_timeout);
        let info = self.client.get_connection_info();
        let mut settings = info.redis_settings().clone();
        if let Some(creds) = creds {
            if let Some(user) = creds.user() {
                settings = settings.set_username(user);
            }
            settings = settings.set_password(creds.password().expose());
        }
        let stream = crate::connect::open(info, self.tls.as_ref()).await?;
        let (inner, driver) =
            MultiplexedConnection::new_with_config(&settings, stream, config).await?;
        // The driver owns the socket and ends when the server closes it; the connection
        // owns the driver (aborted on drop) and reads its end as "closed".
        let driver = tokio::spawn(driver);
        let mut conn = RedisConnection::new(inner, driver, self.query_timeout);
        for (i, cmd) in self.init_commands.iter().enumerate() {
            let res = match conn.raw(cmd).await {
                Ok(v) => v.extract_error().map(drop),
                Err(e) => Err(e),
            };
            if let Err(source) = res {
                return Err(Error::InitCommand {
                    index: i + 1,
                    name: crate::error::command_name(cmd),
                    source,
                });
            }
        }
        Ok(conn)
    }
}

impl Manager for RedisManager {
    type Connection = RedisConnection;
    type Error = Error;

    async fn connect(&self) -> Result<RedisConnection, Error> {
        self.open(None).await
    }

    /// Connects as [`connect`](Manager::connect) does, authenticating (`AUTH`) with the
    /// provider's user (the URL's when it names none) and password instead of the
    /// URL's.
    async fn connect_with(&self, credentials: Credentials) -> Result<RedisConnection, Error> {
        self.open(Some(&credentials)).await
    }

    fn accepts_credentials(&self) -> bool {
        true
    }

    /// `WRONGPASS` and `NOAUTH`.
    fn is_auth_failure(&self, error: &Error) -> bool {
        error.is_auth_failure()
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

    fn failover_class(&self, error: &Error) -> Option<&'static str> {
        error.failover_class()
    }
}

/// `conn.report(&e)` with the `redis::RedisError` a command returned: the error stays yours
/// (to return, log or match), and a fatal one evicts the connection.
///
/// ```no_run
/// # async fn demo(pool: poolguard::conn::Pool<poolguard_redis::RedisManager>) -> Result<(), Box<dyn std::error::Error>> {
/// use poolguard_redis::redis::{self, AsyncCommands};
///
/// let mut conn = pool.get().await?;
/// let hits: redis::RedisResult<i64> = conn.incr("hits", 1).await;
/// if let Err(e) = &hits {
///     conn.report(e);
/// }
/// println!("{}", hits?);
/// # Ok(()) }
/// ```
impl Classify<RedisError> for RedisManager {
    fn classify_error(&self, error: &RedisError) -> ErrorClass {
        crate::error::classify(error)
    }

    fn failover_class_of(&self, error: &RedisError) -> Option<&'static str> {
        crate::error::failover_class(error)
    }
}

fn classify_fatal(e: &redis::RedisError) -> bool {
    crate::error::classify(e) == ErrorClass::Fatal
}
