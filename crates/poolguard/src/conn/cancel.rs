//! The cancellation guards: every connection (or reserved place) outside the idle list is
//! owned by exactly one of these, or by the user-facing `PooledConnection` (drop = return),
//! and the owner exists before the first `.await` that could be cancelled:
//! * [`Detached`]: a connection being validated, reset or keepalive-checked (drop = close it
//!   and release its place in `size`, since its protocol state is unknown);
//! * [`Opening`]: a place reserved for a connect (drop = release the reservation);
//! * [`WaitGuard`]: a queued caller (drop = leave the queue, and return any connection that
//!   was handed over in the meantime);
//! * [`Closing`]: a close in progress, inside the close engine's guard (its end, however
//!   the task ends = end its count in `closing`).
//!
//! So dropping a `get` future or aborting a task (a runtime shutting down) at any await
//! point loses no capacity and no count.
//!
//! Under the state lock: each `Drop` takes it once, briefly, to undo its own accounting
//! (release a place, leave the queue, hand a connection on); no user code runs under it
//! here. `Closing` touches only atomics.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::engine::Shared;
use super::internals::{Conn, Reply};
use super::stats::CloseReason;
use super::Manager;
use crate::close_task::{CloseEnd, Outcome};

/// A close in progress, as the crate's close engine (`close_task`) ends it: counts a
/// timeout, then `closes_done`, and ends the close's count in `closing`, whether the close
/// completed, timed out or its task was dropped.
pub(super) struct Closing<M: Manager>(pub(super) Arc<Shared<M>>);

impl<M: Manager> CloseEnd for Closing<M> {
    fn end(&mut self, outcome: Outcome) {
        let shared = &self.0;
        if outcome == Outcome::TimedOut {
            shared.stats.close_timeouts.fetch_add(1, Relaxed);
            tracing::warn!(pool = %shared.cfg.name, timeout_s = shared.cfg.close_timeout.as_secs_f64(), "close timed out; connection dropped");
        }
        shared.stats.closes_done.fetch_add(1, Relaxed);
        if shared.closing.fetch_sub(1, Relaxed) == 1 {
            shared.drained.notify_waiters();
        }
    }
}

/// A place reserved in `size` for a connect in progress.
pub(super) struct Opening<M: Manager> {
    pub(super) shared: Arc<Shared<M>>,
    /// Cleared once the connect's outcome is accounted for by the opener itself.
    pub(super) armed: bool,
    /// This connect is the credentials rotation's probe (cleared once its outcome is
    /// accounted for): dropped before, the probe ends without a verdict.
    pub(super) probe: bool,
}

impl<M: Manager> Drop for Opening<M> {
    fn drop(&mut self) {
        if self.probe {
            let now = Instant::now();
            let cfg = &self.shared.cfg;
            self.shared.lock().rotation.probe_failed(
                None,
                now,
                cfg.breaker_backoff,
                cfg.breaker_max_backoff,
            );
        }
        if self.armed {
            // The connect was cancelled (runtime shutting down): give the place back.
            self.shared.unreserve();
        }
    }
}

/// A connection counted in `size` but neither idle nor held: being validated or reset.
/// Dropping it (failure or cancellation) closes the connection and frees its place.
pub(crate) struct Detached<M: Manager> {
    shared: Arc<Shared<M>>,
    conn: Option<Conn<M::Connection>>,
    reason: CloseReason,
}

impl<M: Manager> Detached<M> {
    pub(crate) fn new(
        shared: Arc<Shared<M>>,
        conn: Conn<M::Connection>,
        reason: CloseReason,
    ) -> Self {
        Self {
            shared,
            conn: Some(conn),
            reason,
        }
    }

    fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        self.conn
            .as_mut()
            .expect("invariant: a Detached holds its connection until take()")
    }

    pub(crate) fn raw(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }

    /// The close reason if it is dropped from now on.
    pub(crate) fn set_reason(&mut self, reason: CloseReason) {
        self.reason = reason;
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.conn_mut().id
    }

    pub(crate) fn take(mut self) -> Conn<M::Connection> {
        self.conn
            .take()
            .expect("invariant: a Detached holds its connection until take()")
    }
}

impl<M: Manager> Drop for Detached<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.discard(conn, self.reason);
        }
    }
}

/// A queued caller. Dropping it before it got its reply leaves the queue and returns any
/// connection that was handed over in the meantime, or passes on a wake it was sent.
pub(crate) struct WaitGuard<M: Manager> {
    pub(super) shared: Arc<Shared<M>>,
    pub(super) id: u64,
    pub(super) rx: oneshot::Receiver<Reply<M::Connection, M::Error>>,
    /// Set once the reply was taken (or the queue left): `Drop` then has nothing to undo.
    pub(super) done: bool,
}

impl<M: Manager> WaitGuard<M> {
    /// Leaves the queue; returns a reply that raced the cancellation, if any.
    pub(super) fn cancel(&mut self) -> Option<Reply<M::Connection, M::Error>> {
        self.done = true;
        self.shared.lock().remove_waiter(self.id);
        self.rx.close();
        self.rx.try_recv().ok()
    }
}

impl<M: Manager> Drop for WaitGuard<M> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.cancel() {
            Some(Ok(Some(h))) => {
                // Never used: back to the pool without a reset.
                let now = Instant::now();
                let mut conn = h.conn;
                let mut st = self.shared.lock();
                st.holders.remove(h.slot);
                conn.cold.last_used = now;
                self.shared.deliver_locked(st, conn, now);
            }
            // Woken to retry, and gone: another waiter may take the idle connection.
            Some(Ok(None)) => self.shared.pass_wake_on(),
            Some(Err(_)) | None => {}
        }
    }
}
