//! The pooled connection: a `tokio_postgres::Client`, the task that drives its socket, the
//! socket tap and a per-connection statement cache.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use crate::error::Error;
use crate::manager::Canceller;
use crate::tap::{TapState, TxStatus};

/// Aborts the connection task when dropped, so a connection never outlives its owner.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The TCP options of a connection's socket, read back from the socket (`getsockopt`) right
/// after the manager set them from the connection string (`keepalives`, `keepalives_idle`,
/// `keepalives_interval`, `keepalives_retries`, `tcp_user_timeout`). See
/// [`PgConnection::tcp_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// `TCP_NODELAY` (always set, as tokio-postgres does).
    pub nodelay: bool,
    /// `SO_KEEPALIVE`: on unless the connection string says `keepalives=0`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`: idle time before the first probe (`keepalives_idle`, default 2 h).
    pub keepalive_idle: Option<Duration>,
    /// `TCP_KEEPINTVL`: time between probes (`keepalives_interval`, else the system's).
    pub keepalive_interval: Option<Duration>,
    /// `TCP_KEEPCNT`: unanswered probes before the connection is dropped
    /// (`keepalives_retries`, else the system's).
    pub keepalive_retries: Option<u32>,
    /// `TCP_USER_TIMEOUT` (Linux): how long sent data may stay unacknowledged before the
    /// kernel drops the connection (`tcp_user_timeout`; `None` = the system's default).
    pub user_timeout: Option<Duration>,
    /// The socket's local address.
    pub local_addr: std::net::SocketAddr,
}

impl TcpOptions {
    pub(crate) fn read(
        sock: &socket2::SockRef<'_>,
        local_addr: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
        #[allow(unused_mut)]
        let mut o = TcpOptions {
            local_addr,
            nodelay: sock.tcp_nodelay()?,
            keepalive: sock.keepalive()?,
            keepalive_idle: None,
            keepalive_interval: None,
            keepalive_retries: None,
            user_timeout: None,
        };
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        {
            o.keepalive_idle = Some(sock.tcp_keepalive_time()?);
            o.keepalive_interval = Some(sock.tcp_keepalive_interval()?);
            o.keepalive_retries = Some(sock.tcp_keepalive_retries()?);
            o.user_timeout = sock.tcp_user_timeout()?;
        }
        Ok(o)
    }
}

/// A pooled PostgreSQL connection. It dereferences to [`tokio_postgres::Client`].
///
/// It owns the task that drives its socket: dropping the connection aborts that task, and
/// [`Manager::close`](poolguard::conn::Manager::close) ends it politely (a `Terminate`
/// message) within the pool's close timeout.
pub struct PgConnection {
    // Field order matters: the client is dropped before the task guard aborts the task.
    client: Client,
    tap: Arc<TapState>,
    statements: HashMap<String, Statement>,
    statement_cache_capacity: usize,
    task: TaskGuard,
    addr: String,
    tcp: Option<TcpOptions>,
    cancel: Canceller,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("addr", &self.addr)
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl PgConnection {
    pub(crate) fn new(
        client: Client,
        tap: Arc<TapState>,
        task: JoinHandle<()>,
        statement_cache_capacity: usize,
        addr: String,
        tcp: Option<TcpOptions>,
        cancel: Canceller,
    ) -> Self {
        PgConnection {
            client,
            tap,
            statements: HashMap::new(),
            statement_cache_capacity,
            task: TaskGuard(task),
            addr,
            tcp,
            cancel,
        }
    }

    /// The client (also reachable through `Deref`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Asks the server to cancel the request running on this connection: a `CancelRequest`
    /// with this session's key, on a new socket to the same address (plaintext, which the
    /// server accepts before any authentication), bounded by `connect_timeout` (10 s without
    /// one). Use it instead of `cancel_token().cancel_query(..)`, which cannot find the server
    /// of a pooled connection (the manager opens the socket itself).
    ///
    /// The cancelled request ends with SQLSTATE 57014 (`query_canceled`), which leaves the
    /// connection usable. As with any cancel, the request may finish before the server sees
    /// it; `Ok` means the request was sent, not that something was cancelled.
    pub async fn cancel_query(&self) -> Result<(), Error> {
        self.cancel.send().await
    }

    /// Whether the pool's [`query_timeout`](crate::PostgresManagerBuilder::query_timeout)
    /// ended this connection (a request waited too long; it was cancelled and the socket
    /// closed).
    pub fn timed_out(&self) -> bool {
        self.tap.expired()
    }

    /// The TCP options of the socket, as read back when it was opened; `None` for a Unix
    /// socket.
    pub fn tcp_options(&self) -> Option<&TcpOptions> {
        self.tcp.as_ref()
    }

    /// The local address of the TCP socket (`None` for a Unix socket): the server shows its
    /// port as `client_port` in `pg_stat_activity`.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().map(|t| t.local_addr)
    }

    /// Prepares `sql` once per connection and returns the cached statement on later borrows.
    ///
    /// Prepared statements live in the server session, so they stay valid across borrows of
    /// the same connection; they are lost with the connection, and emptied by
    /// [`RecyclingMethod::Clean`](crate::RecyclingMethod::Clean) (which runs `DISCARD ALL`).
    pub async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statement_cache_capacity > 0 {
            if self.statements.len() >= self.statement_cache_capacity {
                self.statements.clear();
            }
            self.statements.insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    /// Statements currently cached by [`prepare_cached`](Self::prepare_cached).
    pub fn cached_statements(&self) -> usize {
        self.statements.len()
    }

    pub(crate) fn clear_statement_cache(&mut self) {
        self.statements.clear();
    }

    /// The kinds of session state changed since the last reset (see
    /// [`SessionChange`](crate::SessionChange)).
    pub(crate) fn session_dirty(&self) -> u8 {
        self.tap.session.dirty()
    }

    /// Named `Parse` messages sent since the last call.
    pub(crate) fn take_named_parses(&self) -> u64 {
        self.tap.session.take_named_parses()
    }

    /// Forgets the session state after a reset, and the statements a `DEALLOCATE ALL` or
    /// `DISCARD ALL` dropped on the server.
    pub(crate) fn session_reset_done(&mut self, statements_dropped: bool) {
        self.tap.session.clear();
        if statements_dropped {
            self.statements.clear();
            self.client.clear_type_cache();
        }
    }

    /// The transaction status the wire protocol last reported.
    pub(crate) fn tx_status(&self) -> TxStatus {
        self.tap.status()
    }

    /// Waits until every request sent so far is answered, then returns the status.
    pub(crate) async fn settled_tx_status(&self) -> TxStatus {
        self.tap.settled().await
    }

    /// Whether the socket is gone (client closed or connection task ended).
    pub(crate) fn is_dead(&self) -> bool {
        self.tap.is_dead() || self.client.is_closed() || self.task.0.is_finished()
    }

    /// Drops the client (which makes the connection task send `Terminate` and stop) and waits
    /// for the task. If this future is dropped first, the task is aborted.
    pub(crate) async fn shutdown(self) {
        let PgConnection { client, task, .. } = self;
        drop(client);
        let mut task = task;
        let _ = (&mut task.0).await;
    }
}

impl Deref for PgConnection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}
