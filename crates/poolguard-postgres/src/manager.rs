//! `poolguard::conn::Manager` for tokio-postgres.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use poolguard::conn::{Credentials, ErrorClass, Manager};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use tokio_postgres::NoTls;

use crate::cancel::Canceller;
use crate::config::{
    describe_host, BuildError, PostgresConfig, PostgresManagerBuilder, RecyclingMethod,
};
use crate::connection::{PgConnection, TcpOptions};
use crate::error::Error;
use crate::pgbouncer::StatementMode;
use crate::session_state::{reset_sql, SessionChange, SessionCounters, SessionStats};
use crate::statement_cache::StatementCache;
use crate::stats::{Counters, PgStats};
use crate::tap::{drive, watchdog, Socket, TapState, TapStream, TxStatus, WakeCounter};

/// One entry of the host list: `host`, `hostaddr` and port at the same position.
#[derive(Debug, Clone)]
struct Candidate {
    host: Option<Host>,
    hostaddr: Option<IpAddr>,
    port: u16,
}

impl Candidate {
    fn describe(&self) -> String {
        match (&self.hostaddr, &self.host) {
            (Some(ip), _) => SocketAddr::new(*ip, self.port).to_string(),
            (None, Some(h)) => describe_host(h, self.port),
            (None, None) => "(no host)".into(),
        }
    }
}

/// One address to try.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Tcp(a) => a.to_string(),
            Target::Unix(p) => p.display().to_string(),
        }
    }
}

/// Deadline of a cancel request when the config has no `connect_timeout`.
const CANCEL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens, checks, resets and closes PostgreSQL connections for a `poolguard::conn::Pool`.
#[derive(Debug)]
pub struct PostgresManager {
    config: PostgresConfig,
    /// `config.pg` with `sslmode=disable`: TLS, when used, is negotiated below the tap, so
    /// tokio-postgres must not try again.
    raw: tokio_postgres::Config,
    /// Session state the borrowers left behind, counted at reset.
    session: SessionCounters,
    /// Shared with every connection: the statement-cache epoch and the counters.
    counters: Arc<Counters>,
}

/// The connection settings, password shown as `***` (see [`PostgresConfig`]'s `Display`).
impl std::fmt::Display for PostgresManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.config, f)
    }
}

impl PostgresManager {
    /// A builder from a connection string (`host=... user=... dbname=...` or a
    /// `postgres://` URL). Parse errors are reported by [`PostgresManagerBuilder::build`].
    pub fn builder(connection_string: &str) -> PostgresManagerBuilder {
        PostgresManagerBuilder::from_str(connection_string)
    }

    /// A builder from a `tokio_postgres::Config`.
    pub fn builder_from_config(config: tokio_postgres::Config) -> PostgresManagerBuilder {
        PostgresManagerBuilder::new(config)
    }

    /// A manager with default settings from a connection string.
    pub fn new(connection_string: &str) -> Result<Self, BuildError> {
        Self::builder(connection_string).build()
    }

    pub(crate) fn from_config(config: PostgresConfig) -> Self {
        let mut raw = config.pg.clone();
        raw.ssl_mode(SslMode::Disable);
        PostgresManager {
            config,
            raw,
            session: SessionCounters::default(),
            counters: Arc::default(),
        }
    }

    /// How often borrowers left session state behind (`SET`, `SET ROLE`, `LISTEN`, advisory
    /// locks, `PREPARE`, temporary tables, holdable cursors) and how many resets undid it.
    pub fn session_stats(&self) -> SessionStats {
        self.session.snapshot()
    }

    /// Doctor findings of this manager, for the pool labelled `pool`: under
    /// [`StatementMode::Unnamed`], the named statements and session-scoped features used
    /// through the transaction-pooling proxy. `Pool::doctor()` includes them.
    pub fn findings(&self, pool: &str) -> Vec<poolguard::diag::Finding> {
        crate::pgbouncer::findings(self.config.statement_mode, &self.session_stats(), pool)
    }

    /// Empties the statement cache of every connection this manager opened, for use after
    /// a migration: idle and held connections alike prepare afresh on their next
    /// `prepare_cached` (each cache compares an epoch this bumps). Statements already handed
    /// out stay valid until they are dropped. See [`invalidate_statements`](crate::invalidate_statements).
    pub fn invalidate_statements(&self) {
        self.counters
            .statement_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The manager's own counters (statement re-prepares, cache invalidations...), which
    /// the pool's statistics do not carry.
    pub fn stats(&self) -> PgStats {
        self.counters.snapshot()
    }

    /// The validated settings.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// The places to try, in tokio-postgres's order: every host (with its `hostaddr` and
    /// port), shuffled when `load_balance_hosts=random`. Host names are resolved later, one
    /// at a time, as each is tried.
    fn candidates(&self) -> Vec<Candidate> {
        let pg = &self.config.pg;
        let (hosts, addrs, ports) = (pg.get_hosts(), pg.get_hostaddrs(), pg.get_ports());
        let mut out: Vec<Candidate> = (0..hosts.len().max(addrs.len()))
            .map(|i| Candidate {
                host: hosts.get(i).cloned(),
                hostaddr: addrs.get(i).copied(),
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
            })
            .collect();
        if pg.get_load_balance_hosts() == LoadBalanceHosts::Random {
            fastrand::shuffle(&mut out);
        }
        out
    }

    /// Tries every address of every host in order, as tokio-postgres does, and returns the
    /// first session that matches `target_session_attrs`. Each address gets its own
    /// `connect_timeout` (socket, TLS, startup and the session check).
    /// `creds`: a credentials provider's answer, replacing the configured user and
    /// password.
    async fn connect_any(&self, creds: Option<&Credentials>) -> Result<PgConnection, Error> {
        let mut failures: Vec<(String, Error)> = Vec::new();
        let random = self.config.pg.get_load_balance_hosts() == LoadBalanceHosts::Random;
        for c in self.candidates() {
            let targets = match self.resolve(&c).await {
                Ok(mut targets) => {
                    if random {
                        fastrand::shuffle(&mut targets);
                    }
                    targets
                }
                Err(e) => {
                    failures.push((c.describe(), e));
                    continue;
                }
            };
            for target in targets {
                let desc = target.describe();
                match self.connect_one(&c, target, &desc, creds).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        tracing::debug!(addr = %desc, error = %e, "PostgreSQL host not usable; trying the next one");
                        failures.push((desc, e));
                    }
                }
            }
        }
        match failures.len() {
            0 => Err(Error::Connect {
                addr: "(no host)".into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no host configured"),
            }),
            1 => Err(failures.remove(0).1),
            _ => Err(Error::AllHostsFailed { attempts: failures }),
        }
    }

    /// The addresses of one host: its `hostaddr`, the addresses its name resolves to, or its
    /// Unix socket.
    async fn resolve(&self, c: &Candidate) -> Result<Vec<Target>, Error> {
        match (&c.hostaddr, &c.host) {
            (Some(ip), _) => Ok(vec![Target::Tcp(SocketAddr::new(*ip, c.port))]),
            (None, Some(Host::Tcp(name))) => {
                let lookup = tokio::net::lookup_host((name.as_str(), c.port));
                let found = match self.config.pg.get_connect_timeout() {
                    Some(t) => tokio::time::timeout(*t, lookup).await.map_err(|_| {
                        Error::ConnectTimeout {
                            addr: c.describe(),
                            during: "name resolution",
                            timeout: *t,
                        }
                    })?,
                    None => lookup.await,
                };
                let found: Vec<Target> = found
                    .map_err(|source| Error::Connect {
                        addr: c.describe(),
                        source,
                    })?
                    .map(Target::Tcp)
                    .collect();
                if found.is_empty() {
                    return Err(Error::Connect {
                        addr: c.describe(),
                        source: io::Error::new(
                            io::ErrorKind::NotFound,
                            "the host name resolved to no address",
                        ),
                    });
                }
                Ok(found)
            }
            (None, Some(Host::Unix(dir))) => {
                Ok(vec![Target::Unix(dir.join(format!(".s.PGSQL.{}", c.port)))])
            }
            (None, None) => Ok(Vec::new()),
        }
    }

    /// One attempt at one address, bounded by `connect_timeout`.
    async fn connect_one(
        &self,
        c: &Candidate,
        target: Target,
        desc: &str,
        creds: Option<&Credentials>,
    ) -> Result<PgConnection, Error> {
        let phase = std::sync::Mutex::new("the TCP connect");
        let attempt = self.attempt(c, target, desc, &phase, creds);
        match self.config.pg.get_connect_timeout() {
            Some(t) => match tokio::time::timeout(*t, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Error::ConnectTimeout {
                    addr: desc.to_owned(),
                    during: *phase.lock().unwrap_or_else(|p| p.into_inner()),
                    timeout: *t,
                }),
            },
            None => attempt.await,
        }
    }

    async fn attempt(
        &self,
        c: &Candidate,
        target: Target,
        desc: &str,
        phase: &std::sync::Mutex<&'static str>,
        creds: Option<&Credentials>,
    ) -> Result<PgConnection, Error> {
        let set_phase = |p: &'static str| *phase.lock().unwrap_or_else(|p| p.into_inner()) = p;
        let connect_error = |source: io::Error| Error::Connect {
            addr: desc.to_owned(),
            source,
        };
        let (socket, tcp) = match &target {
            Target::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
                let tcp = apply_tcp_options(&stream, &self.config.pg).map_err(connect_error)?;
                (Socket::Tcp(stream), Some(tcp))
            }
            Target::Unix(path) => (
                Socket::Unix(UnixStream::connect(path).await.map_err(connect_error)?),
                None,
            ),
        };
        set_phase("TLS negotiation");
        let socket = self
            .secure(socket, c.host.as_ref(), c.hostaddr.as_ref(), desc)
            .await?;
        set_phase("the startup handshake (authentication)");
        let query_timeout = self.config.query_timeout;
        let tap = Arc::new(TapState::new(query_timeout.is_some()));
        // A provider's credentials replace the configured ones for this connect only.
        let with_creds;
        let raw = match creds {
            None => &self.raw,
            Some(creds) => {
                let mut raw = self.raw.clone();
                if let Some(user) = creds.user() {
                    raw.user(user);
                }
                raw.password(creds.password().expose());
                with_creds = raw;
                &with_creds
            }
        };
        let (client, connection) = raw
            .connect_raw(TapStream::new(socket, Arc::clone(&tap)), NoTls)
            .await?;
        let task_addr = desc.to_owned();
        let counter = WakeCounter::new(Arc::clone(&tap));
        let cancel = Canceller {
            token: client.cancel_token(),
            target,
            addr: desc.to_owned(),
            deadline: self
                .config
                .pg
                .get_connect_timeout()
                .copied()
                .unwrap_or(CANCEL_DEADLINE),
            counters: Arc::clone(&self.counters),
        };
        let task_tap = Arc::clone(&tap);
        let task_cancel = cancel.clone();
        let task = tokio::spawn(async move {
            let expired = match query_timeout {
                None => {
                    if let Err(e) = drive(connection, counter).await {
                        tracing::debug!(addr = %task_addr, error = %e, "postgres connection ended with an error");
                    }
                    None
                }
                Some(limit) => {
                    tokio::select! {
                        r = drive(connection, counter) => {
                            if let Err(e) = r {
                                tracing::debug!(addr = %task_addr, error = %e, "postgres connection ended with an error");
                            }
                            None
                        }
                        () = watchdog(&task_tap, limit) => Some(limit),
                    }
                }
            };
            // The connection (and its socket) is dropped by now: the caller's request fails.
            if let Some(limit) = expired {
                task_tap.expire();
                tracing::warn!(addr = %task_addr, query_timeout = ?limit, "query_timeout expired: request cancelled, connection closed");
                task_cancel.spawn();
            }
        });
        let statements = StatementCache::new(
            self.config.statement_cache_capacity,
            Arc::clone(&self.counters),
            Arc::clone(&tap),
        );
        let conn = PgConnection::new(client, tap, task, statements, desc.to_owned(), tcp, cancel);
        let wanted = self.config.pg.get_target_session_attrs();
        if wanted != TargetSessionAttrs::Any {
            set_phase("the target_session_attrs check");
            let rows = conn.simple_query("SHOW transaction_read_only").await?;
            let read_only = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "on"),
                _ => None,
            });
            match (wanted, read_only) {
                (TargetSessionAttrs::ReadWrite, Some(true)) => {
                    return Err(Error::ReadOnly {
                        addr: desc.to_owned(),
                    })
                }
                (TargetSessionAttrs::ReadOnly, Some(false)) => {
                    return Err(Error::NotReadOnly {
                        addr: desc.to_owned(),
                    })
                }
                (_, None) => {
                    return Err(Error::Connect {
                        addr: desc.to_owned(),
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "SHOW transaction_read_only returned no row",
                        ),
                    })
                }
                _ => {}
            }
        }
        Ok(conn)
    }

    /// Negotiates TLS on a TCP socket when a connector is configured and `sslmode` allows.
    #[cfg(feature = "tls")]
    async fn secure(
        &self,
        socket: Socket,
        host: Option<&Host>,
        ip: Option<&std::net::IpAddr>,
        desc: &str,
    ) -> Result<Socket, Error> {
        use crate::tls::{negotiate, Negotiated};
        let (Some(tls), Socket::Tcp(stream)) = (&self.config.tls, &socket) else {
            return Ok(socket);
        };
        let mode = self.config.pg.get_ssl_mode();
        if mode == SslMode::Disable {
            return Ok(socket);
        }
        let _ = stream;
        let Socket::Tcp(stream) = socket else {
            unreachable!("matched above")
        };
        let name = match (host, ip) {
            (Some(Host::Tcp(h)), _) => h.clone(),
            (_, Some(ip)) => ip.to_string(),
            _ => String::new(),
        };
        let tls_error = |reason: String| Error::Tls {
            addr: desc.to_owned(),
            reason,
        };
        match negotiate(tls, stream, &name).await {
            Ok(Negotiated::Tls(s)) => Ok(Socket::Tls(s)),
            Ok(Negotiated::Refused(s)) if mode != SslMode::Require => Ok(Socket::Tcp(s)),
            Ok(Negotiated::Refused(_)) => Err(tls_error(
                "the server does not accept TLS and sslmode=require".into(),
            )),
            Err(e) => Err(tls_error(e.to_string())),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn secure(
        &self,
        socket: Socket,
        _host: Option<&Host>,
        _ip: Option<&std::net::IpAddr>,
        _desc: &str,
    ) -> Result<Socket, Error> {
        Ok(socket)
    }

    async fn rollback(&self, conn: &mut PgConnection) -> Result<(), Error> {
        conn.simple_query("ROLLBACK").await?;
        match conn.tx_status() {
            TxStatus::Idle => Ok(()),
            _ => Err(Error::StillInTransaction),
        }
    }
}

impl Manager for PostgresManager {
    type Connection = PgConnection;
    type Error = Error;

    async fn connect(&self) -> Result<PgConnection, Error> {
        let mut conn = self.connect_any(None).await?;
        self.run_init_sql(&mut conn).await?;
        Ok(conn)
    }

    /// Connects as [`connect`](Manager::connect) does, with the provider's user (when it
    /// names one) and password instead of the configured ones.
    async fn connect_with(&self, credentials: Credentials) -> Result<PgConnection, Error> {
        let mut conn = self.connect_any(Some(&credentials)).await?;
        self.run_init_sql(&mut conn).await?;
        Ok(conn)
    }

    fn accepts_credentials(&self) -> bool {
        true
    }

    /// SQLSTATE 28P01 (wrong password) and 28000 (unknown role, `pg_hba.conf`).
    fn is_auth_failure(&self, error: &Error) -> bool {
        error.is_auth_failure()
    }

    async fn validate(&self, conn: &mut PgConnection) -> Result<(), Error> {
        // An empty query is the cheapest full round trip: the server answers
        // EmptyQueryResponse + ReadyForQuery without parsing or planning anything.
        conn.simple_query("").await?;
        Ok(())
    }

    /// Rolls back an open transaction, then applies the recycling method. When a request is
    /// still unanswered (a query abandoned mid-flight), it first waits for the answers, which
    /// tell whether a transaction is open: after a moment the request is cancelled on the
    /// server (a `CancelRequest`, repeated until the answer comes), so an abandoned long
    /// query ends with 57014 and the connection is reused instead of waiting it out. A
    /// `Close` tokio-postgres queued when a statement was dropped is only waited for until
    /// it is written. The pool bounds the whole wait with `reset_timeout`.
    async fn reset(&self, conn: &mut PgConnection) -> Result<(), Error> {
        let rollback = match crate::cancel::settle(conn, &self.counters).await {
            TxStatus::Idle => false,
            TxStatus::InTransaction => true,
            TxStatus::Unknown => return Err(Error::SessionEnded),
        };
        self.finish_reset(conn, self.config.recycling, rollback)
            .await
    }

    /// A connection needs the reset task only when its session is not known to be idle, when
    /// the borrower changed session state, or when the recycling method always does a round
    /// trip.
    fn needs_reset(&self, conn: &mut PgConnection) -> bool {
        if self.config.statement_mode == StatementMode::Unnamed {
            crate::pgbouncer::on_return(&self.session, conn);
            return self.config.recycling != RecyclingMethod::Fast
                || conn.tx_status() != TxStatus::Idle
                || conn.statement_timeout_set();
        }
        self.config.recycling != RecyclingMethod::Fast
            || conn.tx_status() != TxStatus::Idle
            || conn.session_dirty() != 0
            || conn.statement_timeout_set()
    }

    fn is_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_dead()
    }

    fn is_restarting(&self, error: &Error) -> bool {
        error.is_restarting()
    }

    fn classify(&self, error: &Error) -> ErrorClass {
        error.class()
    }

    fn failover_class(&self, error: &Error) -> Option<&'static str> {
        error.failover_class()
    }

    async fn close(&self, conn: PgConnection) {
        conn.shutdown().await;
    }

    fn findings(&self, pool: &str) -> Vec<poolguard::diag::Finding> {
        // The inherent method of the same name.
        PostgresManager::findings(self, pool)
    }
}

impl PostgresManager {
    /// Runs `init_sql` in order; its session state becomes the baseline (not counted as
    /// left behind by a borrower).
    async fn run_init_sql(&self, conn: &mut PgConnection) -> Result<(), Error> {
        if self.config.init_sql.is_empty() {
            return Ok(());
        }
        for (i, sql) in self.config.init_sql.iter().enumerate() {
            if let Err(source) = conn.batch_execute(sql).await {
                return Err(Error::InitSql {
                    index: i + 1,
                    head: crate::error::statement_head(sql),
                    source,
                });
            }
        }
        conn.session_reset_done(false);
        Ok(())
    }

    async fn finish_reset(
        &self,
        conn: &mut PgConnection,
        method: RecyclingMethod,
        rollback: bool,
    ) -> Result<(), Error> {
        if rollback {
            self.rollback(conn).await?;
        }
        if conn.statement_timeout_set() {
            conn.batch_execute("RESET statement_timeout").await?;
            conn.statement_timeout_reset();
        }
        // Read after the rollback: a `SET` rolled back is still counted (conservative).
        // Behind a transaction-pooling proxy it was counted on return, not reset.
        let dirty = match self.config.statement_mode {
            StatementMode::Unnamed => 0,
            _ => conn.session_dirty(),
        };
        match method {
            RecyclingMethod::Clean => {
                conn.clear_statement_cache();
                conn.batch_execute("DISCARD ALL").await?;
                conn.session_reset_done(true);
                self.run_init_sql(conn).await
            }
            _ => match reset_sql(dirty) {
                // One round trip undoes exactly what the borrower changed; it also serves as
                // `Verified`'s check.
                Some(sql) => {
                    self.session.record(dirty, true);
                    conn.batch_execute(&sql).await?;
                    conn.session_reset_done(dirty & SessionChange::PreparedStatement.bit() != 0);
                    // The reset undid settings (`RESET ALL`, `RESET ROLE`): the baseline
                    // goes back on.
                    if dirty & (SessionChange::Setting.bit() | SessionChange::Role.bit()) != 0 {
                        self.run_init_sql(conn).await
                    } else {
                        Ok(())
                    }
                }
                None if method == RecyclingMethod::Verified && !rollback => {
                    conn.simple_query("").await?;
                    Ok(())
                }
                None => Ok(()),
            },
        }
    }
}

/// Applies the TCP options of the connection string as tokio-postgres does (`TCP_NODELAY`;
/// `SO_KEEPALIVE` with `keepalives_idle`/`keepalives_interval`/`keepalives_retries` unless
/// `keepalives=0`; `TCP_USER_TIMEOUT` from `tcp_user_timeout`), then reads them back.
fn apply_tcp_options(stream: &TcpStream, pg: &tokio_postgres::Config) -> io::Result<TcpOptions> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Some(t) = pg.get_tcp_user_timeout() {
        sock.set_tcp_user_timeout(Some(*t))?;
    }
    if pg.get_keepalives() {
        #[allow(unused_mut)]
        let mut keepalive = socket2::TcpKeepalive::new().with_time(pg.get_keepalives_idle());
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "fuchsia",
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "dragonfly",
            target_os = "illumos"
        ))]
        {
            if let Some(interval) = pg.get_keepalives_interval() {
                keepalive = keepalive.with_interval(interval);
            }
            if let Some(retries) = pg.get_keepalives_retries() {
                keepalive = keepalive.with_retries(retries);
            }
        }
        sock.set_tcp_keepalive(&keepalive)?;
    }
    TcpOptions::read(&sock, stream.local_addr()?)
}
