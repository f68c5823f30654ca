//! Operator controls on a running pool: pause and resume, soft-evict and retain, and the
//! run-time settings (`set_min_idle`, `set_idle_timeout`, `set_max_lifetime`,
//! `set_acquire_timeout`). Each is a short critical section on the state lock (the
//! transitions are `Internals` methods) followed, outside it, by the sends, closes and opens
//! it decided, exactly like the get and return flows.
//!
//! Refill after an eviction is never a storm: the replacements are ordinary planned opens,
//! so at most `max_concurrent_opens` connects run at once per pool, none while the breaker
//! is open, one probe while it is half-open.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::cancel::Detached;
use super::config::{check_min_idle, check_optional, check_required, BuildError, Config};
use super::engine::{duration_ns, Shared};
use super::internals::{Conn, Handoff, Lifetimes};
use super::pool::Pool;
use super::stats::CloseReason;
use super::Manager;

/// What a [`Pool::get`] does while the pool is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseMode {
    /// Wait in the FIFO queue (under the get's own `acquire_timeout`) until
    /// [`Pool::resume`]; the queue is then served oldest first.
    Wait,
    /// Fail at once with [`Error::Paused`](super::Error::Paused).
    FailFast,
}

/// What the pool knows about one idle connection, for [`Pool::retain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnMetrics {
    /// The pool's id for the connection (as in `tracing` events).
    pub id: u64,
    /// Time since it was opened.
    pub age: Duration,
    /// Time since it was last returned (or validated).
    pub idle_for: Duration,
    /// Times it was checked out and returned.
    pub uses: u64,
}

impl<M: Manager> Pool<M> {
    /// Pauses the pool (a database switchover, a maintenance window): no connection is
    /// handed out until [`resume`](Self::resume). A `get` meanwhile waits in the queue
    /// under its own deadline ([`PauseMode::Wait`]) or fails at once with
    /// [`Error::Paused`](super::Error::Paused) ([`PauseMode::FailFast`]). Connections
    /// returned meanwhile go idle; maintenance keeps running (lifetimes, keepalive,
    /// `min_idle`); callers already queued stay queued. Pausing a paused pool changes its
    /// mode (the pause keeps its start time). [`Status::paused`](super::Status::paused)
    /// shows it, and the doctor reports a pause longer than `acquire_timeout` while callers
    /// wait.
    pub fn pause(&self, mode: PauseMode) {
        let mut st = self.shared.lock();
        st.pause(mode, Instant::now());
        drop(st);
        tracing::info!(pool = %self.shared.cfg.name, ?mode, "pool paused");
    }

    /// Ends a pause: the callers that queued meanwhile are served oldest first, by idle
    /// connections (checked as a `get` checks them: past their lifetime or broken ones are
    /// closed, ones idle past `validation_bypass` are validated first) and then by new
    /// connects, paced by `max_concurrent_opens`. Returns whether the pool was paused.
    pub fn resume(&self) -> bool {
        let shared = &self.shared;
        let now = Instant::now();
        let mut sends = Vec::new();
        let mut closes: Vec<(Conn<M::Connection>, CloseReason)> = Vec::new();
        let mut validate = Vec::new();
        let mut back = Vec::new();
        let opens = {
            let mut st = shared.lock();
            let Some(p) = st.resume() else {
                return false;
            };
            tracing::info!(pool = %shared.cfg.name, paused_s = now.saturating_duration_since(p.since).as_secs_f64(), waiters = st.waiters_len(), "pool resumed");
            while st.waiters_len() > validate.len() {
                let Some(mut conn) = st.take_idle() else {
                    break;
                };
                let reason = if let Some(reason) = st.stale(&mut conn) {
                    Some(reason)
                } else if conn.retire_due(now) {
                    Some(CloseReason::Lifetime)
                } else if shared.manager.is_broken(&mut conn.raw) {
                    Some(CloseReason::Broken)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    st.release_place();
                    closes.push((conn, reason));
                } else if conn.stale(now) {
                    // Validated on a task, then handed to the oldest waiter.
                    validate.push(conn);
                } else if let Some(w) = st.pop_waiter() {
                    let slot = st.holders.insert(w.site, now, w.task);
                    sends.push((w, conn, slot));
                } else {
                    back.push(conn);
                }
            }
            shared.begin_closes(closes.len());
            shared.plan(&mut st, now, 0)
        };
        for (w, conn, slot) in sends {
            if let Err(Ok(Some(h))) = w.tx.send(Ok(Some(Handoff {
                conn,
                slot,
                at: now,
            }))) {
                // That waiter gave up meanwhile: the next one, or idle.
                let mut st = shared.lock();
                st.holders.remove(h.slot);
                shared.deliver_locked(st, h.conn, now);
            }
        }
        for conn in back {
            shared.deliver(conn, now);
        }
        for (c, reason) in closes {
            shared.close_conn(c, reason);
        }
        for c in validate {
            spawn_validate_then_deliver(shared, c);
        }
        shared.spawn_opens(opens);
        true
    }

    /// Whether the pool is paused, and how (`None`: serving).
    pub fn paused(&self) -> Option<PauseMode> {
        self.shared.lock().paused().map(|p| p.mode)
    }

    /// Retires every connection the pool has now, without breaking any caller (after a
    /// failover, a credentials change, a DNS move): idle ones are closed at once, held ones
    /// when they come back, and those being opened, validated or reset when they finish.
    /// Connections opened after the call are kept.
    ///
    /// The refill is paced, so a fleet of pools soft-evicting together does not stampede
    /// the database: replacements are opened for waiting callers and for `min_idle`, at
    /// most `max_concurrent_opens` at a time, and none while the breaker is open. Returns
    /// how many idle connections were closed now; the closes are counted under
    /// [`CloseReason::Evicted`].
    pub fn soft_evict_all(&self) -> usize {
        self.shared.soft_evict()
    }

    /// Keeps the idle connections for which `keep(conn, metrics)` is true and closes the
    /// others (counted under [`CloseReason::Evicted`]); returns how many were closed.
    /// Held connections are not visited.
    ///
    /// `keep` runs without the pool's lock (it may call the pool, e.g. `status()`): the
    /// idle connections are taken out of the idle list while it runs, so a `get` meanwhile
    /// waits for one of them or for a new connect. A `keep` that panics keeps that
    /// connection (the panic is reported through `tracing`). Replacements for the closed
    /// ones are opened for waiters and `min_idle`, paced as after
    /// [`soft_evict_all`](Self::soft_evict_all).
    pub fn retain(&self, mut keep: impl FnMut(&M::Connection, ConnMetrics) -> bool) -> usize {
        let shared = &self.shared;
        let all = shared.lock().take_all_idle();
        let now = Instant::now();
        let mut kept = Vec::with_capacity(all.len());
        let mut drop_list = Vec::new();
        for conn in all {
            let metrics = conn.metrics(now);
            let verdict = catch_unwind(AssertUnwindSafe(|| keep(&conn.raw, metrics)));
            match verdict {
                Ok(true) => kept.push(conn),
                Ok(false) => drop_list.push(conn),
                Err(_) => {
                    tracing::warn!(pool = %shared.cfg.name, conn = conn.id, "retain predicate panicked; the connection is kept");
                    kept.push(conn);
                }
            }
        }
        let n = drop_list.len();
        {
            let mut st = shared.lock();
            for _ in &drop_list {
                st.release_place();
            }
            shared.begin_closes(n);
        }
        // Oldest first, so the idle order is what it was (a waiter that queued meanwhile
        // gets the first).
        for conn in kept {
            shared.deliver(conn, now);
        }
        let opens = {
            let mut st = shared.lock();
            let min_idle = st.min_idle();
            shared.plan(&mut st, now, min_idle)
        };
        for c in drop_list {
            shared.close_conn(c, CloseReason::Evicted);
        }
        shared.spawn_opens(opens);
        n
    }

    /// Changes `min_idle` at run time (validated as by `build()`: at most the current
    /// `max_size`). Raising it opens the missing connections now, paced by
    /// `max_concurrent_opens`; lowering it lets maintenance close the surplus as it idles
    /// out.
    ///
    /// # Errors
    /// The [`BuildError`] `build()` gives for that value.
    pub fn set_min_idle(&self, min_idle: usize) -> Result<(), BuildError> {
        let shared = &self.shared;
        let opens = {
            let mut st = shared.lock();
            check_min_idle(min_idle, st.max_size())?;
            st.set_min_idle(min_idle);
            shared.plan(&mut st, Instant::now(), min_idle)
        };
        tracing::info!(pool = %shared.cfg.name, min_idle, "min_idle changed");
        shared.spawn_opens(opens);
        Ok(())
    }

    /// Changes `idle_timeout` at run time (`None`: never), validated as by `build()`.
    /// Idle connections get it at once (each keeps its own jitter), the others when they
    /// come back.
    ///
    /// # Errors
    /// The [`BuildError`] `build()` gives for that value.
    pub fn set_idle_timeout(&self, idle_timeout: Option<Duration>) -> Result<(), BuildError> {
        check_optional("idle_timeout", idle_timeout)?;
        let mut st = self.shared.lock();
        let life = Lifetimes {
            idle_timeout,
            ..st.lifetimes()
        };
        st.set_lifetimes(life);
        drop(st);
        tracing::info!(pool = %self.shared.cfg.name, idle_timeout_s = idle_timeout.map(|d| d.as_secs_f64()), "idle_timeout changed");
        Ok(())
    }

    /// Changes `max_lifetime` at run time (`None`: never), validated as by `build()`.
    /// Every connection's retirement is recomputed from its own opening time (and
    /// jitter): idle ones at once (maintenance retires those now past it on its next
    /// pass), the others when they come back.
    ///
    /// # Errors
    /// The [`BuildError`] `build()` gives for that value.
    pub fn set_max_lifetime(&self, max_lifetime: Option<Duration>) -> Result<(), BuildError> {
        check_optional("max_lifetime", max_lifetime)?;
        let mut st = self.shared.lock();
        let life = Lifetimes {
            max_lifetime,
            ..st.lifetimes()
        };
        st.set_lifetimes(life);
        drop(st);
        tracing::info!(pool = %self.shared.cfg.name, max_lifetime_s = max_lifetime.map(|d| d.as_secs_f64()), "max_lifetime changed");
        Ok(())
    }

    /// Changes `acquire_timeout` at run time, validated as by `build()`. Gets that start
    /// afterwards use it; gets already waiting keep the deadline they started with.
    ///
    /// # Errors
    /// The [`BuildError`] `build()` gives for that value.
    pub fn set_acquire_timeout(&self, acquire_timeout: Duration) -> Result<(), BuildError> {
        check_required("acquire_timeout", acquire_timeout)?;
        self.shared
            .acquire_timeout_ns
            .store(duration_ns(acquire_timeout), Relaxed);
        tracing::info!(pool = %self.shared.cfg.name, acquire_timeout_s = acquire_timeout.as_secs_f64(), "acquire_timeout changed");
        Ok(())
    }

    /// The configuration in force: [`config`](Self::config) with the values changed at run
    /// time (`max_size` by [`resize`](Self::resize), `min_idle`, `idle_timeout`,
    /// `max_lifetime`, `acquire_timeout` by their setters).
    pub fn current_config(&self) -> Config {
        let mut c = self.shared.cfg.clone();
        let st = self.shared.lock();
        let life = st.lifetimes();
        c.max_size = st.max_size();
        c.min_idle = st.min_idle();
        c.idle_timeout = life.idle_timeout;
        c.max_lifetime = life.max_lifetime;
        drop(st);
        c.acquire_timeout = self.shared.acquire_timeout();
        c
    }
}

/// Validates an idle connection on a task, then hands it to the oldest waiter (or idle);
/// a failure closes it (its `Detached` guard).
fn spawn_validate_then_deliver<M: Manager>(shared: &Arc<Shared<M>>, c: Conn<M::Connection>) {
    let mut d = Detached::new(Arc::clone(shared), c, CloseReason::Validation);
    let s = Arc::clone(shared);
    shared.rt.spawn(async move {
        if s.check(&mut d, s.cfg.validation_timeout).await {
            let now = Instant::now();
            let mut conn = d.take();
            conn.checked_at(now, s.bypass);
            s.deliver(conn, now);
        }
    });
}
