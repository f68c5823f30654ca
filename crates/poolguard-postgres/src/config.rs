//! Manager configuration: plain data plus a validating builder.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::Host;

use crate::manager::PostgresManager;

/// What happens to a connection when a borrower gives it back, and what it costs.
///
/// Whatever the method, a connection given back inside a transaction is rolled back before
/// anyone else gets it, and a closed connection is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum RecyclingMethod {
    /// No round trip when the connection is clean. The socket tap (see the crate docs) knows
    /// the session's transaction status from the protocol itself, so `ROLLBACK` is sent only
    /// when the borrower left a transaction open; when a request is still unanswered (a query
    /// cancelled mid-flight), its answer is awaited first, since it decides. Cost: zero round
    /// trips in the common case, one otherwise.
    ///
    /// A query given as an SQL string (`client.query("...", ..)`) prepares a throwaway
    /// statement and closes it when done; that `Close` may still be queued when the
    /// connection comes back, and the connection then goes through the pool's reset task,
    /// which waits until the `Close` is written, not answered (a batch of only `Close`s
    /// cannot open a transaction), so no round trip is added. Use
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached) or
    /// `simple_query` on hot paths.
    ///
    /// Session state a borrower leaves behind is reset on return, and only then: the tap reads
    /// the SQL of every statement sent (and the server's reports of changed settings), and a
    /// connection whose borrower ran `SET` (not `SET LOCAL`), `set_config(.., false)`,
    /// `SET ROLE`/`SET SESSION AUTHORIZATION`, `LISTEN`, a session advisory lock, `PREPARE`,
    /// `CREATE TEMP ...` or `DECLARE ... WITH HOLD` goes through one round trip undoing exactly
    /// those kinds (see [`SessionChange`](crate::SessionChange)). Detection is conservative:
    /// anything it cannot read (a `DO` block, an oversized statement) resets every kind. It
    /// cannot see state changed inside a function unless the server reports the setting
    /// (`TimeZone`, `DateStyle`, `application_name`, `search_path` is not one of them on
    /// PostgreSQL 15); use `Clean` when functions change unreported state.
    #[default]
    Fast,
    /// Fast, plus one empty-query round trip on every return, so a connection that died
    /// during the borrow is found now instead of at its next checkout (a session-state reset,
    /// when needed, is that round trip). Cost: one round trip per borrow.
    Verified,
    /// Verified, plus `DISCARD ALL` on every return: session settings (`SET`), temporary
    /// tables, prepared statements (the statement cache is emptied too), `LISTEN`s and
    /// advisory locks are all dropped. Cost: one round trip plus the server's cleanup work,
    /// and every cached statement must be prepared again.
    Clean,
}

/// The manager's settings. Build it with [`PostgresManager::builder`] so it is validated.
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Connection settings (hosts, user, password, database, application name...).
    pub pg: tokio_postgres::Config,
    /// What happens to a connection on return.
    pub recycling: RecyclingMethod,
    /// Prepared statements kept per connection by
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached); `0` disables
    /// the cache. When full, the cache is emptied and starts over.
    pub statement_cache_capacity: usize,
    /// Named or unnamed statements (transaction-pooling proxies); see [`StatementMode`].
    ///
    /// [`StatementMode`]: crate::StatementMode
    pub statement_mode: crate::StatementMode,
    /// How long one request may wait for its answer before the connection is cancelled and
    /// closed; `None` (the default): no limit. See [`PostgresManagerBuilder::query_timeout`].
    pub query_timeout: Option<std::time::Duration>,
    /// The TLS connector (feature `tls`), see [`PostgresManagerBuilder::tls`].
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug already redacts the password.
        f.debug_struct("PostgresConfig")
            .field("pg", &self.pg)
            .field("recycling", &self.recycling)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("statement_mode", &self.statement_mode)
            .field("query_timeout", &self.query_timeout)
            .field("tls", &self.has_tls())
            .finish()
    }
}

/// The settings as a `key=value` connection string with the password shown as `***`, for
/// logs and status output.
impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tokio_postgres::config::{SslMode, TargetSessionAttrs};
        let pg = &self.pg;
        let mut out = Vec::<(&str, String)>::new();
        let join = |items: Vec<String>| items.join(",");
        if !pg.get_hosts().is_empty() {
            let hosts = pg.get_hosts().iter().map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            });
            out.push(("host", join(hosts.collect())));
        }
        if !pg.get_hostaddrs().is_empty() {
            out.push((
                "hostaddr",
                join(pg.get_hostaddrs().iter().map(ToString::to_string).collect()),
            ));
        }
        if !pg.get_ports().is_empty() {
            out.push((
                "port",
                join(pg.get_ports().iter().map(ToString::to_string).collect()),
            ));
        }
        if let Some(user) = pg.get_user() {
            out.push(("user", user.to_owned()));
        }
        if pg.get_password().is_some() {
            out.push(("password", "***".to_owned()));
        }
        if let Some(db) = pg.get_dbname() {
            out.push(("dbname", db.to_owned()));
        }
        if let Some(app) = pg.get_application_name() {
            out.push(("application_name", app.to_owned()));
        }
        if let Some(options) = pg.get_options() {
            out.push(("options", options.to_owned()));
        }
        match pg.get_ssl_mode() {
            SslMode::Disable => out.push(("sslmode", "disable".into())),
            SslMode::Require => out.push(("sslmode", "require".into())),
            _ => {}
        }
        match pg.get_target_session_attrs() {
            TargetSessionAttrs::ReadWrite => {
                out.push(("target_session_attrs", "read-write".into()))
            }
            TargetSessionAttrs::ReadOnly => out.push(("target_session_attrs", "read-only".into())),
            _ => {}
        }
        if let Some(t) = pg.get_connect_timeout() {
            out.push(("connect_timeout", format!("{}", t.as_secs_f64())));
        }
        for (i, (key, value)) in out.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let plain = !value.is_empty()
                && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\');
            if plain || *key == "password" {
                write!(f, "{key}={value}")?;
            } else {
                let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
                write!(f, "{key}='{escaped}'")?;
            }
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// Whether a TLS connector was given.
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.tls.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
        }
    }
}

/// Why a [`PostgresManagerBuilder`] refused its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The connection string did not parse. The message names the offending key and says
    /// what it should look like; it never contains a password.
    #[error("invalid PostgreSQL connection string: {reason}")]
    ConnectionString {
        /// The key that was refused (`port`, `sslmode`, an unknown option...), when the
        /// error can be pinned to one.
        key: Option<String>,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// No host was given.
    #[error(
        "the PostgreSQL config names no host; add `host=...` (or a `postgres://host/...` URL)"
    )]
    NoHost,
    /// `port` lists several ports, but not one per host.
    #[error("the PostgreSQL config lists {hosts} host(s) but {ports} ports; give one port for all hosts, or exactly one per host (host=a,b port=5432,5433)")]
    PortCount {
        /// Hosts listed.
        hosts: usize,
        /// Ports listed.
        ports: usize,
    },
    /// `host` and `hostaddr` are both given, with different lengths.
    #[error("the PostgreSQL config lists {hosts} host(s) but {hostaddrs} hostaddr(s); give exactly one hostaddr per host, or drop one of the lists")]
    HostAddrCount {
        /// Hosts listed.
        hosts: usize,
        /// Host addresses listed.
        hostaddrs: usize,
    },
    /// A TCP option of the connection string cannot be applied on this platform.
    #[error("`{option}` cannot be applied on this platform; remove it from the connection string")]
    UnsupportedOption {
        /// The connection-string key.
        option: &'static str,
    },
    /// `query_timeout(Duration::ZERO)` would close every connection at its first query.
    #[error("query_timeout must be greater than zero (leave it unset for no limit)")]
    ZeroQueryTimeout,
    /// No user was given.
    #[error("the PostgreSQL config names no user; add `user=...` to the connection string")]
    NoUser,
    /// TLS was required but no connector was given.
    #[error("sslmode=require needs TLS: enable the `tls` feature and pass a connector with PostgresManagerBuilder::tls (or use sslmode=prefer/disable)")]
    TlsRequired,
}

/// Builds a validated [`PostgresManager`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct PostgresManagerBuilder {
    config: Result<PostgresConfig, BuildError>,
}

impl PostgresManagerBuilder {
    pub(crate) fn new(pg: tokio_postgres::Config) -> Self {
        PostgresManagerBuilder {
            config: Ok(PostgresConfig {
                pg,
                recycling: RecyclingMethod::default(),
                statement_cache_capacity: 256,
                statement_mode: crate::StatementMode::Named,
                query_timeout: None,
                #[cfg(feature = "tls")]
                tls: None,
            }),
        }
    }

    pub(crate) fn from_str(s: &str) -> Self {
        match tokio_postgres::Config::from_str(s) {
            Ok(pg) => Self::new(pg),
            Err(e) => {
                let (key, reason) = crate::conninfo::diagnose(s, &e);
                PostgresManagerBuilder {
                    config: Err(BuildError::ConnectionString { key, reason }),
                }
            }
        }
    }

    fn map(mut self, f: impl FnOnce(&mut PostgresConfig)) -> Self {
        if let Ok(c) = &mut self.config {
            f(c);
        }
        self
    }

    /// What happens to a connection on return (default [`RecyclingMethod::Fast`]).
    pub fn recycling(self, method: RecyclingMethod) -> Self {
        self.map(|c| c.recycling = method)
    }

    /// [`StatementMode::Unnamed`](crate::StatementMode::Unnamed) for a transaction-pooling
    /// proxy such as PgBouncer in `pool_mode=transaction` (default `Named`). `Unnamed` turns
    /// the statement cache off, whatever [`statement_cache_capacity`](Self::statement_cache_capacity) says.
    pub fn statement_mode(self, mode: crate::StatementMode) -> Self {
        self.map(|c| c.statement_mode = mode)
    }

    /// Prepared statements cached per connection (default 256; 0 disables the cache).
    pub fn statement_cache_capacity(self, capacity: usize) -> Self {
        self.map(|c| c.statement_cache_capacity = capacity)
    }

    /// Bounds every request on the pool's connections: when one waits longer than `timeout`
    /// for its answer, the manager sends the server a cancel request for it and closes the
    /// connection. The caller's future then ends at once with a closed-connection error
    /// ([`tokio_postgres::Error::is_closed`];
    /// [`PgConnection::timed_out`](crate::PgConnection::timed_out) tells why), and the pool
    /// evicts the connection: a session whose state is unknown is never reused. This holds
    /// for a server that is frozen or unreachable too, where no answer, not even to the
    /// cancel, will come.
    ///
    /// The clock of a request starts when it is written to the socket, or, for pipelined
    /// requests, when the answer to the one before it arrives; a `COPY` counts as one
    /// request, data transfer included. The cancel request is sent on its own connection
    /// (plaintext, as the server accepts it before authentication), bounded by
    /// `connect_timeout` (10 s without one), by a task of its own so the caller does not wait
    /// for it.
    ///
    /// Without this option, bound a single query with `tokio::time::timeout`. Dropping the
    /// query future does not stop the server, so the connection comes back with a request in
    /// flight; the pool's reset then sends a cancel request itself and waits for the answer
    /// (57014, under its `reset_timeout`) before anyone else gets the connection, and closes
    /// it if the answer does not come. To stop the query before giving the connection back,
    /// [`PgConnection::cancel_query`](crate::PgConnection::cancel_query) asks the server:
    ///
    /// ```no_run
    /// # async fn demo(pool: poolguard::conn::Pool<poolguard_postgres::PostgresManager>)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let conn = pool.get().await?;
    /// match tokio::time::timeout(Duration::from_secs(2), conn.query("SELECT slow()", &[])).await {
    ///     Ok(rows) => println!("{} rows", rows?.len()),
    ///     Err(_) => {
    ///         // The server is still running it: ask it to stop.
    ///         conn.cancel_query().await?;
    ///         eprintln!("the query took more than 2 s");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A zero timeout is refused by [`build`](Self::build).
    pub fn query_timeout(self, timeout: std::time::Duration) -> Self {
        self.map(|c| c.query_timeout = Some(timeout))
    }

    /// Sets `application_name`, which shows in `pg_stat_activity` (handy to find, or
    /// terminate, this pool's backends).
    pub fn application_name(self, name: &str) -> Self {
        self.map(|c| {
            c.pg.application_name(name);
        })
    }

    /// Encrypts connections with `connector` (any tokio-postgres TLS connector, e.g.
    /// `tokio_postgres_rustls::MakeRustlsConnect`), as `sslmode` says: `prefer` (the default)
    /// falls back to plaintext when the server refuses TLS, `require` fails instead,
    /// `disable` never asks. Unix sockets are never encrypted.
    #[cfg(feature = "tls")]
    pub fn tls<T>(self, connector: T) -> Self
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio::net::TcpStream>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send + 'static,
        T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio::net::TcpStream>>::Future: Send,
    {
        let tls = crate::tls::Tls(std::sync::Arc::new(crate::tls::Connector(connector)));
        self.map(|c| c.tls = Some(tls))
    }

    /// Validates the settings.
    pub fn build(self) -> Result<PostgresManager, BuildError> {
        let mut config = self.config?;
        if config.statement_mode == crate::StatementMode::Unnamed {
            config.statement_cache_capacity = 0;
        }
        if config.pg.get_hosts().is_empty() && config.pg.get_hostaddrs().is_empty() {
            return Err(BuildError::NoHost);
        }
        let (hosts, addrs) = (config.pg.get_hosts().len(), config.pg.get_hostaddrs().len());
        if hosts > 0 && addrs > 0 && hosts != addrs {
            return Err(BuildError::HostAddrCount {
                hosts,
                hostaddrs: addrs,
            });
        }
        let ports = config.pg.get_ports().len();
        if ports > 1 && ports != hosts.max(addrs) {
            return Err(BuildError::PortCount {
                hosts: hosts.max(addrs),
                ports,
            });
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
        if config.pg.get_tcp_user_timeout().is_some() {
            return Err(BuildError::UnsupportedOption {
                option: "tcp_user_timeout",
            });
        }
        if config.query_timeout == Some(std::time::Duration::ZERO) {
            return Err(BuildError::ZeroQueryTimeout);
        }
        if config.pg.get_user().is_none() {
            return Err(BuildError::NoUser);
        }
        if config.pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require && !config.has_tls()
        {
            return Err(BuildError::TlsRequired);
        }
        Ok(PostgresManager::from_config(config))
    }
}

/// `host:port` for messages.
pub(crate) fn describe_host(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(h) => format!("{h}:{port}"),
        Host::Unix(p) => format!("{}/.s.PGSQL.{port}", p.display()),
    }
}
