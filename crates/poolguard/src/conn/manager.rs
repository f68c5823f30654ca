//! The contract between the pool and a backend.

use std::future::Future;

/// What a backend error means for the connection it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The connection is unusable (server gone, protocol desync): evict it, never reuse it.
    Fatal,
    /// The error belongs to the request (bad SQL, constraint violation): the connection is fine.
    Transient,
}

/// Creates, checks, resets and closes connections of one backend.
///
/// Every async method is called by the pool under a deadline (`connect_timeout`,
/// `validation_timeout`, `reset_timeout`, the close timeout); implementations need not add
/// their own, but must be cancel-safe: the pool may drop any of these futures at any await
/// point, and the connection (if any) is then closed, never reused.
///
/// Two sync methods run while the pool's lock is held, so every other `get` and return
/// waits for them: [`needs_reset`](Manager::needs_reset) (always) and
/// [`is_broken`](Manager::is_broken) (when an idle connection is checked out). Keep them to a
/// flag check: no I/O, no blocking, no call into the pool (that would deadlock). Every other
/// method runs without the lock.
pub trait Manager: Send + Sync + 'static {
    /// The pooled connection.
    type Connection: Send + 'static;
    /// The backend's error, kept as the cause of every pool error it provokes.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Runs on its own task, without the pool lock.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Opens a new connection authenticating with `credentials`, the answer of the pool's
    /// credentials provider ([`Builder::credentials`](super::Builder::credentials)), instead
    /// of the credentials in the manager's own configuration. Called instead of
    /// [`connect`](Manager::connect) only when a provider is set; runs as `connect` does.
    /// The default ignores `credentials` and calls `connect`: a manager that supports them
    /// overrides this and [`accepts_credentials`](Manager::accepts_credentials).
    fn connect_with(
        &self,
        credentials: super::Credentials,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send {
        drop(credentials);
        self.connect()
    }

    /// Whether [`connect_with`](Manager::connect_with) uses its credentials. `build()`
    /// refuses a credentials provider for a manager that says `false` (the default).
    fn accepts_credentials(&self) -> bool {
        false
    }

    /// Whether a failed connect is an authentication failure (PostgreSQL SQLSTATE 28P01 /
    /// 28000; Redis `WRONGPASS`, `NOAUTH`): counted apart, and when such failures open the
    /// breaker the doctor says so first (`conn.auth-failures`). The default is `false`.
    /// Called without the pool lock.
    fn is_auth_failure(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// A cheap liveness check (`SELECT 1`, `PING`). An error evicts the connection.
    /// Runs in `get` (checkout) or on a maintenance task (keepalive), without the pool lock.
    fn validate(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Resets session state when a connection comes back (rollback, `DISCARD`, `UNWATCH`).
    /// An error evicts the connection. The default does nothing.
    /// Runs on its own task, without the pool lock.
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        async { Ok(()) }
    }

    /// Whether this returned connection needs [`reset`](Manager::reset), asked on every
    /// return of a healthy connection while the pool is open. `true` (the default, the safe
    /// choice): the pool runs `reset` on a task under `reset_timeout` before reuse. `false`:
    /// the connection goes straight back to the pool (or the oldest waiter) inline, with no
    /// task spawned. Return `false` always when `reset` is a no-op, or when a cheap sync check
    /// shows the session is clean (no open transaction, no pending state).
    /// Runs under the pool lock.
    fn needs_reset(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        true
    }

    /// A cheap synchronous check, run on every return and on every checkout of an idle
    /// connection: `true` evicts the connection (for example
    /// `tokio_postgres::Client::is_closed`). The default is `false`.
    /// Runs under the pool lock on checkout; without it on return.
    fn is_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// Classifies a backend error: [`ErrorClass::Fatal`] errors evict the connection they
    /// came from. The default treats every error as fatal, the safe choice.
    /// Called by `PooledConnection::report`, without the pool lock.
    fn classify(&self, error: &Self::Error) -> ErrorClass {
        let _ = error;
        ErrorClass::Fatal
    }

    /// Whether a failed connect or validation says the server is restarting and will be back
    /// shortly (PostgreSQL "the database system is shutting down" / "is starting up",
    /// 57P01/57P02/57P03; Redis `LOADING`). While such errors are seen (and for ten seconds
    /// after the last one), the open breaker probes at most 100 ms apart instead of backing
    /// off, so a restart costs little more than the restart itself. The default is `false`.
    /// Called without the pool lock.
    fn is_restarting(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The failover class of `error`, when it is the kind of error a failover produces on
    /// every connection to the old server (PostgreSQL 57P01 `admin_shutdown`, 25006
    /// `read_only_sql_transaction`; Redis `READONLY`): a short name, the same for every
    /// error of the class (it appears in logs and in the doctor). With
    /// [`Config::failover_burst`](super::Config::failover_burst) set, a burst of errors of
    /// one class soft-evicts the pool. The default is `None` (no class). Only asked when
    /// that option is on. Called without the pool lock.
    fn failover_class(&self, error: &Self::Error) -> Option<&'static str> {
        let _ = error;
        None
    }

    /// Closes a connection the pool no longer wants (politely, if the protocol has a goodbye).
    /// Runs on its own task under the pool's close timeout, without the pool lock. The
    /// default drops it.
    fn close(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send {
        drop(conn);
        async {}
    }

    /// The backend's own doctor findings for the pool labelled `pool` (misuse only the
    /// backend can see, such as session state used through a transaction-pooling proxy);
    /// `Pool::doctor()` appends them to its own. The default has none.
    fn findings(&self, pool: &str) -> Vec<crate::diag::Finding> {
        let _ = pool;
        Vec::new()
    }
}

/// Errors the holder of a connection can [`report`](super::PooledConnection::report): the
/// manager's own `Error`, and whatever else a backend lets its users report without
/// converting (the Redis manager accepts `&redis::RedisError`, so the caller keeps it).
///
/// Every manager classifies its own error through [`Manager::classify`]; implement this for
/// another error type `E` to make `conn.report(&e)` accept it.
pub trait Classify<E: ?Sized> {
    /// What `error` means for the connection it came from.
    fn classify_error(&self, error: &E) -> ErrorClass;

    /// Its failover class, as [`Manager::failover_class`] (default `None`).
    fn failover_class_of(&self, error: &E) -> Option<&'static str> {
        let _ = error;
        None
    }
}

impl<M: Manager> Classify<M::Error> for M {
    fn classify_error(&self, error: &M::Error) -> ErrorClass {
        self.classify(error)
    }

    fn failover_class_of(&self, error: &M::Error) -> Option<&'static str> {
        self.failover_class(error)
    }
}
