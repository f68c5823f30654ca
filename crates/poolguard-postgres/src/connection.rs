//! The pooled connection: a `tokio_postgres::Client`, the task that drives its socket, the
//! socket tap and a per-connection statement cache.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::cancel::Canceller;
use crate::error::Error;
use crate::statement_cache::{prepare_cached, run_cached, StatementCache};
use crate::tap::{TapState, TxStatus};
use crate::transaction::PgTransaction;

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
    /// Boxed: the pool moves the connection by value on every checkout and return, so what
    /// a query does not read on every call stays behind one pointer (632 bytes inline
    /// before, about 190 now).
    cold: Box<Cold>,
    task: TaskGuard,
    /// `set_statement_timeout` changed the session's `statement_timeout`: the reset undoes it.
    statement_timeout_set: AtomicBool,
}

/// The parts of a [`PgConnection`] behind its box.
struct Cold {
    statements: StatementCache,
    addr: String,
    tcp: Option<TcpOptions>,
    cancel: Canceller,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("addr", &self.cold.addr)
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.cold.statements.len())
            .finish_non_exhaustive()
    }
}

impl PgConnection {
    pub(crate) fn new(
        client: Client,
        tap: Arc<TapState>,
        task: JoinHandle<()>,
        statements: StatementCache,
        addr: String,
        tcp: Option<TcpOptions>,
        cancel: Canceller,
    ) -> Self {
        PgConnection {
            client,
            tap,
            cold: Box::new(Cold {
                statements,
                addr,
                tcp,
                cancel,
            }),
            task: TaskGuard(task),
            statement_timeout_set: AtomicBool::new(false),
        }
    }

    /// The client (also reachable through `Deref`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.cold.addr
    }

    /// Asks the server to cancel the request running on this connection: a `CancelRequest`
    /// with this session's key, on a new socket to the same address (plaintext, which the
    /// server accepts before any authentication), bounded by `connect_timeout` (10 s without
    /// one). Use it instead of `cancel_token().cancel_query(..)`, which cannot find the server
    /// of a pooled connection (the manager opens the socket itself).
    ///
    /// The cancelled request ends with SQLSTATE 57014 (`query_canceled`), which leaves the
    /// connection usable. As with any cancel, the request may finish before the server sees
    /// it; `Ok` means the server took the cancel request (it closed the cancel connection,
    /// having signalled the backend), not that something was cancelled. Counted in
    /// [`PgStats::cancels_sent`](crate::PgStats::cancels_sent) (or `cancel_failures`).
    pub async fn cancel_query(&self) -> Result<(), Error> {
        self.cold.cancel.send().await
    }

    /// Sets the server's `statement_timeout` for this borrow (`None`: no limit): a statement
    /// running longer is cancelled by the server itself with SQLSTATE 57014, and the
    /// connection stays usable. Sent as `SET statement_timeout`; inside a transaction block
    /// it lasts until the transaction ends if that rolls back (PostgreSQL's rule for `SET`).
    /// When the connection goes back to the pool, the reset sends `RESET statement_timeout`,
    /// so the next borrower gets the session's default again. Durations are rounded up to
    /// whole milliseconds (a non-zero timeout never becomes "no limit");
    /// [`Error::StatementTimeoutTooLong`] above PostgreSQL's limit (about 24.8 days).
    pub async fn set_statement_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let ms = match timeout {
            None => 0,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000);
                if ms > i32::MAX as u128 {
                    return Err(Error::StatementTimeoutTooLong { requested: t });
                }
                ms.max(1)
            }
        };
        // Marked first: if this future is dropped after the SET was sent, the reset still
        // undoes it.
        self.statement_timeout_set.store(true, Ordering::Release);
        self.client
            .batch_execute(&format!("SET statement_timeout = {ms}"))
            .await?;
        Ok(())
    }

    /// Whether `set_statement_timeout` changed the session since the last reset.
    pub(crate) fn statement_timeout_set(&self) -> bool {
        self.statement_timeout_set.load(Ordering::Acquire)
    }

    pub(crate) fn statement_timeout_reset(&self) {
        self.statement_timeout_set.store(false, Ordering::Release);
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
        self.cold.tcp.as_ref()
    }

    /// The local address of the TCP socket (`None` for a Unix socket): the server shows its
    /// port as `client_port` in `pg_stat_activity`.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.cold.tcp.as_ref().map(|t| t.local_addr)
    }

    /// Prepares `sql` once per connection and returns the cached statement on later borrows.
    ///
    /// Prepared statements live in the server session, so they stay valid across borrows of
    /// the same connection; they are lost with the connection, and emptied by
    /// [`RecyclingMethod::Clean`](crate::RecyclingMethod::Clean) (which runs `DISCARD ALL`).
    /// It takes `&self`: the cache has its own lock (held for a map lookup, never across the
    /// round trip), so it can be used while a [`transaction`](Self::transaction) is open, or
    /// from several futures sharing the connection.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        prepare_cached(&self.client, &self.cold.statements, sql).await
    }

    /// Runs `sql` through the statement cache and returns its rows, healing a stale cached
    /// statement: when the server rejects it (SQLSTATE 0A000 "cached plan must not change
    /// result type" after a schema change, or 26000 "prepared statement does not exist"
    /// after `DEALLOCATE`), the statement is prepared again and the query retried once.
    /// The retry happens only when the session was idle outside a transaction block before
    /// the call: the rejected statement ran nothing, so running it again is safe. Inside a
    /// transaction the error is returned (the server aborted the transaction) and the next
    /// call prepares afresh. Each retry is counted in
    /// [`PgStats::statements_reprepared`](crate::PgStats::statements_reprepared).
    pub async fn query_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let client = &self.client;
        run_cached(
            client,
            &self.cold.statements,
            &self.tap,
            sql,
            |st| async move { client.query(&st, params).await },
        )
        .await
    }

    /// [`query_cached`](Self::query_cached) for a statement whose row count is wanted
    /// (`INSERT`, `UPDATE`...): the same healing and retry rule.
    pub async fn execute_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let client = &self.client;
        run_cached(
            client,
            &self.cold.statements,
            &self.tap,
            sql,
            |st| async move { client.execute(&st, params).await },
        )
        .await
    }

    /// Starts a transaction (`BEGIN`) whose [`prepare_cached`](PgTransaction::prepare_cached)
    /// shares this connection's statement cache. Dropping it without `commit` rolls back, as
    /// with `tokio_postgres::Transaction`; a connection returned to the pool inside a
    /// transaction is rolled back by the pool in any case.
    pub async fn transaction(&mut self) -> Result<PgTransaction<'_>, tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        Ok(PgTransaction::new(tx, &self.cold.statements, &self.tap))
    }

    /// Statements currently cached by [`prepare_cached`](Self::prepare_cached).
    pub fn cached_statements(&self) -> usize {
        self.cold.statements.len()
    }

    pub(crate) fn clear_statement_cache(&self) {
        self.cold.statements.clear();
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
            self.cold.statements.clear();
            self.client.clear_type_cache();
        }
    }

    pub(crate) fn canceller(&self) -> &Canceller {
        &self.cold.cancel
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

#[cfg(test)]
mod tests {
    /// The pool moves a connection by value through every checkout, return and handoff:
    /// what a query does not need on every call stays boxed, so those moves stay small.
    #[test]
    fn a_connection_moves_in_a_few_cache_lines() {
        let size = std::mem::size_of::<super::PgConnection>();
        assert!(size <= 256, "PgConnection is {size} bytes inline");
    }
}
