//! The guard a caller holds: derefs to the connection, returns it on drop.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::Shared;
use super::internals::Conn;
use super::{Classify, ErrorClass, Manager};

/// A checked-out connection. Derefs to `M::Connection`; dropping it returns the connection
/// to the pool (reset first, when the manager has a reset), or closes it when it is broken,
/// past its lifetime, abandoned, or the pool is closed.
pub struct PooledConnection<M: Manager> {
    shared: Arc<Shared<M>>,
    /// Always `Some` until `Drop` takes it.
    conn: Option<Conn<M::Connection>>,
    slot: usize,
    since: Instant,
    broken: bool,
}

impl<M: Manager> PooledConnection<M> {
    pub(crate) fn new(
        shared: Arc<Shared<M>>,
        conn: Conn<M::Connection>,
        slot: usize,
        since: Instant,
    ) -> Self {
        Self {
            shared,
            conn: Some(conn),
            slot,
            since,
            broken: false,
        }
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
    /// instead of reused when this guard is dropped. Returns the classification.
    pub fn report<E: ?Sized>(&mut self, error: &E) -> ErrorClass
    where
        M: Classify<E>,
    {
        let class = self.shared.manager.classify_error(error);
        if class == ErrorClass::Fatal {
            self.broken = true;
        }
        class
    }

    /// Marks the connection unusable: it is closed, not reused, when this guard is dropped.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether it will be closed on drop (`report`ed fatal or `mark_broken`).
    pub fn is_marked_broken(&self) -> bool {
        self.broken
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
            .field("pool", &self.shared.cfg.name)
            .field("id", &self.conn.as_ref().map(|c| c.id))
            .field("held_for", &self.since.elapsed())
            .field("broken", &self.broken)
            .finish()
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .release(conn, self.slot, self.broken, self.since);
        }
    }
}
