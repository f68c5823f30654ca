//! The guard a caller holds: derefs to the connection, returns it on drop.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::Shared;
use super::internals::Conn;
use super::lanes::PoolRef;
use super::stats::CloseReason;
use super::{Classify, ErrorClass, Manager};

/// A checked-out connection. Derefs to `M::Connection`; dropping it returns the connection
/// to the pool (reset first, when the manager has a reset), or closes it when it is broken,
/// past its lifetime, abandoned, or the pool is closed.
pub struct PooledConnection<M: Manager> {
    /// The pool: directly, or through the lane it was checked out from (whose reference
    /// count only that lane's thread touches).
    shared: PoolRef<M>,
    /// Always `Some` until `Drop` takes it.
    conn: Option<Conn<M::Connection>>,
    slot: usize,
    since: Instant,
    /// `Some`: closed for this reason on drop (`mark_broken`, a fatal `report`, a hook).
    close_as: Option<CloseReason>,
}

impl<M: Manager> PooledConnection<M> {
    pub(crate) fn new(
        shared: PoolRef<M>,
        conn: Conn<M::Connection>,
        slot: usize,
        since: Instant,
    ) -> Self {
        Self {
            shared,
            conn: Some(conn),
            slot,
            since,
            close_as: None,
        }
    }

    /// Closes (`Some`) rather than returns the connection on drop, or not (`None`).
    pub(crate) fn close_as(&mut self, reason: Option<CloseReason>) {
        self.close_as = reason;
    }

    pub(crate) fn raw_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }

    #[inline]
    fn shared(&self) -> &Arc<Shared<M>> {
        self.shared.get()
    }

    fn conn(&self) -> &Conn<M::Connection> {
        self.conn
            .as_ref()
            .expect("invariant: the connection is present until drop")
    }

    fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        self.conn
            .as_mut()
            .expect("invariant: the connection is present until drop")
    }

    /// Reports a backend error seen while using this connection: the manager's `Error`, or
    /// any other error type the manager can [`Classify`] (the error stays the caller's).
    /// When the manager classifies it as [`ErrorClass::Fatal`], the connection is closed
    /// instead of reused when this guard is dropped; with
    /// [`Config::failover_burst`](super::Config::failover_burst) set, a fatal error of a
    /// failover class also counts toward the automatic soft-evict. Returns the
    /// classification.
    pub fn report<E: ?Sized>(&mut self, error: &E) -> ErrorClass
    where
        M: Classify<E>,
    {
        let class = self.shared().manager.classify_error(error);
        if class == ErrorClass::Fatal {
            self.close_as = Some(CloseReason::Broken);
            if self.shared().cfg.failover_burst.is_some() {
                let failover = self.shared().manager.failover_class_of(error);
                self.shared().failover_seen(failover, "report");
            }
        }
        class
    }

    /// [`report`](Self::report) for an error the caller has classified itself, for a
    /// backend's own reporting helper on an error type it cannot give [`Classify`] for
    /// (a second `Classify` impl would make `conn.report(&e.into())` ambiguous): a fatal
    /// `class` closes the connection on drop, and with
    /// [`Config::failover_burst`](super::Config::failover_burst) set, a fatal error's
    /// `failover_class` (as [`Manager::failover_class`] names them) counts toward the
    /// automatic soft-evict. Returns `class`.
    pub fn report_classified(
        &mut self,
        class: ErrorClass,
        failover_class: Option<&'static str>,
    ) -> ErrorClass {
        if class == ErrorClass::Fatal {
            self.close_as = Some(CloseReason::Broken);
            if self.shared().cfg.failover_burst.is_some() {
                self.shared().failover_seen(failover_class, "report");
            }
        }
        class
    }

    /// Marks the connection unusable: it is closed, not reused, when this guard is dropped.
    pub fn mark_broken(&mut self) {
        self.close_as = Some(CloseReason::Broken);
    }

    /// Whether it will be closed on drop (`report`ed fatal or `mark_broken`).
    pub fn is_marked_broken(&self) -> bool {
        self.close_as.is_some()
    }

    /// Takes the connection out of the pool for good, for a session that outlives a
    /// checkout (`LISTEN`, Pub/Sub, a connection handed to another library). Its place is
    /// freed at once, so a replacement may open (a caller waiting gets one); the pool never
    /// sees this connection again: closing it is yours (drop it). Counted in
    /// [`StatsSnapshot::detached`](super::StatsSnapshot::detached) and
    /// `poolguard_conn_detached_total`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::Pool;
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new()).max_size(1).build()?;
    /// let listener = pool.get().await?.detach(); // the raw connection, now yours
    /// assert_eq!(pool.status().size, 0);         // its place is free again
    /// let other = pool.get().await?;             // so another one opens
    /// assert_ne!(other.id(), listener.id());
    /// assert_eq!(pool.stats().detached, 1);
    /// # Ok(()) }
    /// ```
    pub fn detach(mut self) -> M::Connection {
        let conn = self
            .conn
            .take()
            .expect("invariant: the connection is present until drop");
        self.shared().detach_conn(self.slot, conn.id);
        conn.raw
    }

    /// How long this connection has been held.
    pub fn held_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// The pool's id for this connection (as in `tracing` events).
    pub fn id(&self) -> u64 {
        self.conn().id
    }
}

impl<M: Manager> Deref for PooledConnection<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self.conn().raw
    }
}

impl<M: Manager> DerefMut for PooledConnection<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.shared().cfg.name)
            .field("id", &self.conn.as_ref().map(|c| c.id))
            .field("held_for", &self.since.elapsed())
            .field("broken", &self.close_as.is_some())
            .finish()
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared()
                .release(conn, self.slot, self.close_as, self.since);
        }
    }
}

/// A checked-out connection that holds its pool: `'static`, for moving into a spawned task
/// ([`Pool::get_owned`](super::Pool::get_owned)). The pool stays open while it is held (it
/// counts as a [`Pool`](super::Pool) handle); otherwise it behaves as [`PooledConnection`],
/// which it derefs to (and `DerefMut`: `report`, `mark_broken`; the connection through a
/// second deref).
pub struct OwnedPooledConnection<M: Manager> {
    // Declared first, so it is returned before the pool handle is released.
    conn: PooledConnection<M>,
    pool: super::Pool<M>,
}

impl<M: Manager> OwnedPooledConnection<M> {
    pub(crate) fn new(conn: PooledConnection<M>, pool: super::Pool<M>) -> Self {
        Self { conn, pool }
    }

    /// The pool it came from.
    pub fn pool(&self) -> &super::Pool<M> {
        &self.pool
    }

    /// As [`PooledConnection::detach`]: the connection leaves the pool for good.
    pub fn detach(self) -> M::Connection {
        self.conn.detach()
    }
}

impl<M: Manager> Deref for OwnedPooledConnection<M> {
    type Target = PooledConnection<M>;
    fn deref(&self) -> &PooledConnection<M> {
        &self.conn
    }
}

impl<M: Manager> DerefMut for OwnedPooledConnection<M> {
    fn deref_mut(&mut self) -> &mut PooledConnection<M> {
        &mut self.conn
    }
}

impl<M: Manager> fmt::Debug for OwnedPooledConnection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedPooledConnection")
            .field(&self.conn)
            .finish()
    }
}
