//! `poolguard::conn::Manager` for tokio-postgres.

use std::io;
use std::sync::Arc;

use poolguard::conn::{ErrorClass, Manager};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::NoTls;

use crate::config::{
    describe_host, BuildError, PostgresConfig, PostgresManagerBuilder, RecyclingMethod,
};
use crate::connection::PgConnection;
use crate::error::Error;
use crate::tap::{drive, Socket, TapState, TapStream, TxStatus, WakeCounter};

/// Opens, checks, resets and closes PostgreSQL connections for a `poolguard::conn::Pool`.
#[derive(Debug)]
pub struct PostgresManager {
    config: PostgresConfig,
    /// `config.pg` with `sslmode=disable`: TLS, when used, is negotiated below the tap, so
    /// tokio-postgres must not try again.
    raw: tokio_postgres::Config,
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
        PostgresManager { config, raw }
    }

    /// The validated settings.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Opens the socket to the first host that accepts, in the config's order.
    async fn open_socket(&self) -> Result<(Socket, String), Error> {
        let pg = &self.config.pg;
        let hosts = pg.get_hosts();
        let addrs = pg.get_hostaddrs();
        let ports = pg.get_ports();
        let n = hosts.len().max(addrs.len());
        let mut last: Option<Error> = None;
        for i in 0..n {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let (desc, result) = match (addrs.get(i), hosts.get(i)) {
                (Some(ip), _) => {
                    let desc = format!("{ip}:{port}");
                    (desc, TcpStream::connect((*ip, port)).await.map(Socket::Tcp))
                }
                (None, None) => continue,
                (None, Some(host)) => match host {
                    Host::Tcp(h) => (
                        describe_host(host, port),
                        TcpStream::connect((h.as_str(), port))
                            .await
                            .map(Socket::Tcp),
                    ),
                    Host::Unix(dir) => (
                        describe_host(host, port),
                        UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                            .await
                            .map(Socket::Unix),
                    ),
                },
            };
            match result {
                Ok(socket) => {
                    if let Socket::Tcp(s) = &socket {
                        let _ = s.set_nodelay(true);
                    }
                    match self.secure(socket, hosts.get(i), addrs.get(i), &desc).await {
                        Ok(socket) => return Ok((socket, desc)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(source) => last = Some(Error::Connect { addr: desc, source }),
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            addr: "(no host)".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no host configured"),
        }))
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
        let (socket, addr) = self.open_socket().await?;
        let tap = Arc::new(TapState::default());
        let (client, connection) = self
            .raw
            .connect_raw(TapStream::new(socket, Arc::clone(&tap)), NoTls)
            .await?;
        let task_addr = addr.clone();
        let counter = WakeCounter::new(Arc::clone(&tap));
        let task = tokio::spawn(async move {
            if let Err(e) = drive(connection, counter).await {
                tracing::debug!(addr = %task_addr, error = %e, "postgres connection ended with an error");
            }
        });
        let conn = PgConnection::new(
            client,
            tap,
            task,
            self.config.statement_cache_capacity,
            addr,
        );
        if self.config.pg.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
            let rows = conn.simple_query("SHOW transaction_read_only").await?;
            let read_only = rows.iter().any(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("on"),
                _ => false,
            });
            if read_only {
                return Err(Error::ReadOnly {
                    addr: conn.addr().to_owned(),
                });
            }
        }
        Ok(conn)
    }

    async fn validate(&self, conn: &mut PgConnection) -> Result<(), Error> {
        // An empty query is the cheapest full round trip: the server answers
        // EmptyQueryResponse + ReadyForQuery without parsing or planning anything.
        conn.simple_query("").await?;
        Ok(())
    }

    /// Rolls back an open transaction, then applies the recycling method. When a request is
    /// still unanswered (a query cancelled mid-flight, or the `Close` tokio-postgres sends when
    /// a statement is dropped), it first waits for the answers, which tell whether a
    /// transaction is open; the pool bounds that wait with `reset_timeout`.
    async fn reset(&self, conn: &mut PgConnection) -> Result<(), Error> {
        let rollback = match conn.settled_tx_status().await {
            TxStatus::Idle => false,
            TxStatus::InTransaction => true,
            TxStatus::Unknown => return Err(Error::SessionEnded),
        };
        self.finish_reset(conn, self.config.recycling, rollback)
            .await
    }

    /// A connection needs the reset task only when its session is not known to be idle, or
    /// when the recycling method always does a round trip.
    fn needs_reset(&self, conn: &mut PgConnection) -> bool {
        self.config.recycling != RecyclingMethod::Fast || conn.tx_status() != TxStatus::Idle
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

    async fn close(&self, conn: PgConnection) {
        conn.shutdown().await;
    }
}

impl PostgresManager {
    async fn finish_reset(
        &self,
        conn: &mut PgConnection,
        method: RecyclingMethod,
        rollback: bool,
    ) -> Result<(), Error> {
        if rollback {
            self.rollback(conn).await?;
        }
        match method {
            RecyclingMethod::Fast => Ok(()),
            RecyclingMethod::Verified => {
                if !rollback {
                    conn.simple_query("").await?;
                }
                Ok(())
            }
            RecyclingMethod::Clean => {
                conn.clear_statement_cache();
                conn.batch_execute("DISCARD ALL").await?;
                Ok(())
            }
        }
    }
}
