//! The engine behind [`Pool`](super::Pool): acquire, return, open, close.
//!
//! # Cancellation safety
//!
//! Every connection outside the idle list is owned by exactly one value whose `Drop` puts
//! it back in a consistent state, and the owner exists before the first `.await` that could
//! be cancelled:
//! * a held connection: [`PooledConnection`] (drop = return);
//! * one being validated, reset or keepalive-checked: [`Detached`] (drop = close it and
//!   release its place in `size`, since its protocol state is unknown);
//! * one being opened: [`Opening`] (drop = release the reserved place);
//! * a waiter: [`WaitGuard`] (drop = leave the queue, and return any connection that was
//!   handed over in the meantime).
//!
//! So dropping a `get` future or aborting a task at any await point loses no capacity.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::breaker::{Admit, Breaker};
use super::error::{Error, Phase, TimeoutSnapshot};
use super::guard::PooledConnection;
use super::internals::{Conn, Handed, Handoff, Internals, Reply, Waiter};
use super::leak;
use super::stats::{CloseReason, Stats};
use super::{Config, Manager};

/// The hold-time histogram records every `HOLD_SAMPLE`th use of each connection (the first
/// one included), so the return path usually needs no clock read.
pub(crate) const HOLD_SAMPLE: u64 = 8;

type State<M> = Internals<<M as Manager>::Connection, <M as Manager>::Error>;
type PoolError<M> = Error<<M as Manager>::Error>;
type WaiterOf<M> = Waiter<<M as Manager>::Connection, <M as Manager>::Error>;

// `repr(C)` with the lock first: the `Arc`'s reference counts, the lock word and the head of
// the state share cache lines, so a get touches fewer lines that the other worker also writes.
#[repr(C)]
pub(crate) struct Shared<M: Manager> {
    pub(crate) state: Mutex<State<M>>,
    pub(crate) manager: M,
    pub(crate) cfg: Config,
    pub(crate) stats: Stats,
    pub(crate) rt: Handle,
    /// Closes still running. Counted under the state lock in the same critical section
    /// that takes the connection out of `size` (or `abandoned`), so `size + closing` never
    /// dips to 0 while a close is pending.
    pub(crate) closing: AtomicUsize,
    /// Signalled when the pool is closed and the last connection is gone (`Pool::wait_closed`).
    pub(crate) drained: Notify,
    pub(crate) next_id: AtomicU64,
    /// Live `Pool` handles; the last one to go closes the pool.
    pub(crate) handles: AtomicUsize,
    /// Wakes the maintenance task when the pool closes.
    pub(crate) shutdown: Arc<Notify>,
    /// `validation_bypass`, capped at 100 years so `now + bypass` cannot overflow.
    pub(crate) bypass: Duration,
}

impl<M: Manager> std::fmt::Debug for Shared<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

enum Step<M: Manager> {
    Validate(Conn<M::Connection>),
    Wait(WaitGuard<M>, usize),
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, cfg: Config, rt: Handle) -> Self {
        let cfg_bypass = cfg
            .validation_bypass
            .min(Duration::from_secs(100 * 365 * 24 * 3600));
        let breaker = Breaker::new(
            cfg.breaker_threshold,
            cfg.breaker_backoff,
            cfg.breaker_max_backoff,
        )
        .for_pool(&cfg.name);
        Self {
            state: Mutex::new(Internals::new(cfg.max_size, breaker, Instant::now())),
            manager,
            cfg,
            stats: Stats::default(),
            rt,
            closing: AtomicUsize::new(0),
            drained: Notify::new(),
            next_id: AtomicU64::new(0),
            handles: AtomicUsize::new(1),
            shutdown: Arc::new(Notify::new()),
            bypass: cfg_bypass,
        }
    }

    /// `Pool::get`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        site: &'static Location<'static>,
    ) -> Result<PooledConnection<M>, PoolError<M>> {
        // Cooperative budget: a task that gets and returns in a loop without awaiting
        // anything else still yields now and then, so every task progresses.
        tokio::task::coop::consume_budget().await;
        let start = Instant::now();
        // The deadline is computed where it is needed (waiting, validating, retrying), not
        // on the fast path: the first pass cannot be late (`acquire_timeout` > 0).
        let deadline = || crate::deadline::add_tokio(start, self.cfg.acquire_timeout);
        let mut now = start;
        let mut counted = false;
        loop {
            if counted && now >= deadline() {
                return Err(self.timed_out(now, now - start));
            }
            let step = {
                let mut st = self.state.lock();
                if !counted {
                    // Counted under the lock the get takes anyway (no extra atomic).
                    counted = true;
                    st.gets += 1;
                }
                if st.is_closed() {
                    return Err(Error::Closed);
                }
                if let Some(mut conn) = st.take_idle() {
                    // A connection that died while idle (server closed it) is evicted here,
                    // by the manager's cheap sync check, rather than handed out.
                    let reason = if conn.retire_due(now) {
                        Some(CloseReason::Lifetime)
                    } else if self.manager.is_broken(&mut conn.raw) {
                        Some(CloseReason::Broken)
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        self.discard_locked(st, conn, reason, now);
                        now = Instant::now();
                        continue;
                    }
                    if !conn.stale(now) {
                        // The fast path: straight out, without a detour through `Step`.
                        let slot = st.holders.insert(site, now);
                        drop(st);
                        return Ok(PooledConnection::new(Arc::clone(self), conn, slot, now));
                    } else {
                        Step::Validate(conn)
                    }
                } else {
                    let waiting = st.waiters_len();
                    if let Admit::Reject(retry_in) = st.breaker.admit_caller(now, waiting) {
                        self.stats.unavailable.fetch_add(1, Relaxed);
                        return Err(Error::Unavailable {
                            failures: st.breaker.failures,
                            retry_in,
                            last_error: st.breaker.last_error.clone(),
                        });
                    }
                    if waiting >= self.cfg.max_waiters {
                        self.stats.overloaded.fetch_add(1, Relaxed);
                        return Err(Error::Overloaded {
                            waiters: waiting,
                            max_waiters: self.cfg.max_waiters,
                        });
                    }
                    let (tx, rx) = oneshot::channel();
                    let id = st.queue_waiter(site, tx, self.cfg.min_idle);
                    let opens = self.plan(&mut st, now, 0);
                    Step::Wait(
                        WaitGuard {
                            shared: Arc::clone(self),
                            id,
                            rx,
                            done: false,
                        },
                        opens,
                    )
                }
            };
            match step {
                Step::Validate(conn) => {
                    if let Some(g) = self.validate_checkout(conn, site, deadline()).await {
                        return Ok(g);
                    }
                }
                Step::Wait(mut wait, opens) => {
                    self.spawn_opens(opens);
                    self.stats.waited.fetch_add(1, Relaxed);
                    let got = tokio::time::timeout_at(deadline(), &mut wait.rx).await;
                    let reply = match got {
                        Ok(Ok(reply)) => Some(reply),
                        Ok(Err(_)) => Some(Err(Error::Closed)),
                        // A handoff may have raced the deadline: take it rather than waste it.
                        Err(_) => wait.cancel(),
                    };
                    wait.done = true;
                    let end = Instant::now();
                    match reply {
                        Some(Ok(h)) => {
                            self.stats.wait_time.record(end - start);
                            self.stats.queue_time.record(end - now);
                            return Ok(PooledConnection::new(
                                Arc::clone(self),
                                h.conn,
                                h.slot,
                                h.at,
                            ));
                        }
                        Some(Err(e)) => return Err(e),
                        None => return Err(self.timed_out(end, end - start)),
                    }
                }
            }
            now = Instant::now();
        }
    }

    /// Validates an idle connection on checkout (it was idle past the bypass window).
    /// `None`: it was dead and has been closed; the caller tries again.
    async fn validate_checkout(
        self: &Arc<Self>,
        conn: Conn<M::Connection>,
        site: &'static Location<'static>,
        deadline: Instant,
    ) -> Option<PooledConnection<M>> {
        let mut d = Detached::new(Arc::clone(self), conn, CloseReason::Validation);
        let limit = self
            .cfg
            .validation_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let began = Instant::now();
        let ok = self.check(&mut d, limit).await;
        self.stats
            .checkout_validation_time
            .record(Instant::now() - began);
        if ok {
            let now = Instant::now();
            let mut conn = d.take();
            conn.checked_at(now, self.bypass);
            let slot = self.state.lock().holders.insert(site, now);
            Some(PooledConnection::new(Arc::clone(self), conn, slot, now))
        } else {
            None
        }
    }

    /// Runs `Manager::validate` under `limit`, feeding the breaker. On failure the
    /// connection is left in `d` (dropping it closes it).
    pub(crate) async fn check(self: &Arc<Self>, d: &mut Detached<M>, limit: Duration) -> bool {
        self.stats.validations.fetch_add(1, Relaxed);
        let id = d.id();
        let began = Instant::now();
        let res = tokio::time::timeout(limit, self.manager.validate(d.raw())).await;
        self.stats.validation_time.record(Instant::now() - began);
        match res {
            Ok(Ok(())) => {
                let closed_breaker = self.state.lock().breaker.on_success();
                if closed_breaker {
                    tracing::info!(pool = %self.cfg.name, "breaker closed: validation succeeded");
                }
                true
            }
            Ok(Err(e)) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %self.cfg.name, conn = id, error = %e, "validation failed; closing the connection");
                // The backend answered (or the socket said it is gone): this connection is
                // dead, the backend is not necessarily. Evict it without feeding the breaker,
                // so a server restart does not open it while fresh connects would succeed.
                let text = format!("validate: {e}");
                let restart = self.manager.is_restarting(&e);
                self.state
                    .lock()
                    .breaker
                    .note(Instant::now(), Arc::new(e), text, restart);
                false
            }
            Err(_) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %self.cfg.name, conn = id, timeout_s = limit.as_secs_f64(), "validation timed out; closing the connection");
                let text = format!("validate: timed out after {limit:?}");
                if limit >= self.cfg.validation_timeout {
                    self.failure(None, text, Phase::Validate, false);
                } else {
                    // Cut short by the caller's own deadline: says nothing about the backend.
                    self.state.lock().breaker.last_text = Some(text);
                }
                false
            }
        }
    }

    /// A connect or validation failure: feed the breaker; when it opens, fail every waiter
    /// fast. Connect failures also go to the oldest waiter, so a wrong password reaches a
    /// caller as the backend's error, not as a timeout. `restart`: the manager recognised a
    /// restart signature in the error (the breaker then probes again soon).
    fn failure(
        self: &Arc<Self>,
        error: Option<Arc<M::Error>>,
        text: String,
        phase: Phase,
        restart: bool,
    ) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let opened = st.breaker.on_failure(now, error.clone(), text, restart);
        let mut failed: Vec<(WaiterOf<M>, PoolError<M>)> = Vec::new();
        if phase == Phase::Connect {
            // The oldest waiter gets this connect's own error.
            if let Some(w) = st.pop_waiter() {
                let e = match error {
                    Some(source) => Error::Backend { phase, source },
                    None => Error::PhaseTimeout {
                        phase,
                        after: self.cfg.connect_timeout,
                    },
                };
                failed.push((w, e));
            }
        }
        if opened {
            self.stats.breaker_opened.fetch_add(1, Relaxed);
            let retry_in = st.breaker.retry_in(now);
            let failures = st.breaker.failures;
            tracing::warn!(pool = %self.cfg.name, failures, retry_in_s = retry_in.as_secs_f64(), last_error = ?st.breaker.last_text, "breaker open: failing gets fast");
            for w in st.drain_waiters() {
                let e = Error::Unavailable {
                    failures,
                    retry_in,
                    last_error: st.breaker.last_error.clone(),
                };
                failed.push((w, e));
            }
        }
        let opens = self.plan(&mut st, now, 0);
        drop(st);
        for (w, e) in failed {
            let _ = w.tx.send(Err(e));
        }
        self.spawn_opens(opens);
    }

    fn timed_out(&self, now: Instant, waited: Duration) -> PoolError<M> {
        self.stats.timed_out.fetch_add(1, Relaxed);
        let snap = self.timeout_snapshot(now, waited);
        super::error::log_timeout(self.cfg.timeout_log_level, &snap);
        Error::Timeout(Box::new(snap))
    }

    pub(crate) fn timeout_snapshot(&self, now: Instant, waited: Duration) -> TimeoutSnapshot {
        let st = self.state.lock();
        TimeoutSnapshot {
            name: self.cfg.name.clone(),
            waited,
            size: st.size(),
            max_size: st.max_size(),
            idle: st.idle_len(),
            in_use: st.in_use(),
            opening: st.opening(),
            waiters: st.waiters_len(),
            breaker: st.breaker.state(),
            last_error: st.breaker.last_text.clone(),
            longest_holders: st.holders.longest(now, 3),
        }
    }

    /// `plan_opens` with this pool's limits.
    pub(crate) fn plan(&self, st: &mut State<M>, now: Instant, warm_min_idle: usize) -> usize {
        st.plan_opens(now, self.cfg.max_concurrent_opens, warm_min_idle)
    }

    pub(crate) fn spawn_opens(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let opening = Opening {
                shared: Arc::clone(self),
                armed: true,
            };
            self.rt.spawn(opening.run());
        }
    }

    /// A held connection comes back (its guard was dropped).
    pub(crate) fn release(
        self: &Arc<Self>,
        mut conn: Conn<M::Connection>,
        slot: usize,
        mut broken: bool,
        since: Instant,
    ) {
        // One clock read per cycle is the fast path's budget: the return reads the clock
        // only for sampled uses (hold-time histogram); otherwise the checkout time stands
        // in for "last used" (errs toward validating a long-held connection once more, and
        // lifetime is re-checked at the next checkout with a fresh clock anyway).
        conn.uses = conn.uses.wrapping_add(1);
        let sampled = if conn.uses % HOLD_SAMPLE == 1 {
            let now = Instant::now();
            self.stats
                .hold_time
                .record(now.saturating_duration_since(since));
            Some(now)
        } else {
            None
        };
        // With leak detection on, every return reads the clock, so a hold past the threshold
        // is reported when it comes back even if no maintenance pass saw it out.
        let exact = sampled.or_else(|| self.cfg.leak_threshold.map(|_| Instant::now()));
        if !broken && self.manager.is_broken(&mut conn.raw) {
            broken = true;
        }
        let mut st = self.state.lock();
        let now = match exact {
            Some(now) => now,
            None => since.max(st.coarse),
        };
        let hold = st.holders.remove(slot);
        if let Some(h) = hold {
            if h.leaked {
                self.stats.unleaked.fetch_add(1, Relaxed);
                tracing::info!(pool = %self.cfg.name, site = %h.site, held_s = h.since.elapsed().as_secs_f64(), "unleaked: a connection reported as leaked came back");
            } else if let (Some(threshold), Some(at)) = (self.cfg.leak_threshold, exact) {
                let held = at.saturating_duration_since(h.since);
                if leak::is_leak(held, threshold) {
                    // Out past the threshold between two maintenance passes: reported now,
                    // as a leak that already came back.
                    self.stats.leaks.fetch_add(1, Relaxed);
                    self.stats.unleaked.fetch_add(1, Relaxed);
                    tracing::warn!(pool = %self.cfg.name, site = %h.site, held_s = held.as_secs_f64(), threshold_s = threshold.as_secs_f64(), "connection leak: leaked for {held:.1?} (leak_threshold {threshold:?}), now returned");
                }
            }
            if h.abandoned {
                st.abandoned_returned();
                self.begin_closes(1);
                drop(st);
                self.close_conn(conn, CloseReason::Abandoned);
                return;
            }
        }
        let retire = if broken {
            Some(CloseReason::Broken)
        } else if conn.retire_due(now) {
            Some(CloseReason::Lifetime)
        } else {
            None
        };
        if let Some(reason) = retire {
            self.discard_locked(st, conn, reason, now);
            return;
        }
        if !st.is_closed() && self.manager.needs_reset(&mut conn.raw) {
            drop(st);
            self.spawn_reset(conn);
            return;
        }
        conn.last_used = now;
        conn.checked_at(now, self.bypass);
        // Nobody waits: straight back to idle, inside `hand_off`.
        self.deliver_locked(st, conn, now);
    }

    fn spawn_reset(self: &Arc<Self>, conn: Conn<M::Connection>) {
        let mut d = Detached::new(Arc::clone(self), conn, CloseReason::Reset);
        let shared = Arc::clone(self);
        self.rt.spawn(async move {
            shared.stats.resets.fetch_add(1, Relaxed);
            let limit = shared.cfg.reset_timeout;
            let began = Instant::now();
            let res = tokio::time::timeout(limit, shared.manager.reset(d.raw())).await;
            shared.stats.reset_time.record(Instant::now() - began);
            match res {
                Ok(Ok(())) => {
                    let now = Instant::now();
                    let mut conn = d.take();
                    conn.last_used = now;
                    conn.checked_at(now, shared.bypass);
                    shared.deliver(conn, now);
                }
                Ok(Err(e)) => {
                    tracing::warn!(pool = %shared.cfg.name, conn = d.id(), error = %e, "reset failed; closing the connection");
                }
                Err(_) => {
                    tracing::warn!(pool = %shared.cfg.name, conn = d.id(), timeout_s = limit.as_secs_f64(), "reset timed out; closing the connection");
                }
            }
        });
    }

    /// Gives a ready connection (counted in `size`) to the oldest waiter, or makes it idle.
    pub(crate) fn deliver(self: &Arc<Self>, conn: Conn<M::Connection>, now: Instant) {
        let st = self.state.lock();
        self.deliver_locked(st, conn, now);
    }

    fn deliver_locked<'a>(
        self: &'a Arc<Self>,
        mut st: parking_lot::MutexGuard<'a, State<M>>,
        mut conn: Conn<M::Connection>,
        now: Instant,
    ) {
        loop {
            let (w, c, slot) = match st.hand_off(conn, now) {
                Handed::Idle => return,
                Handed::Close(conn, reason) => {
                    self.begin_closes(1);
                    drop(st);
                    self.close_conn(conn, reason);
                    return;
                }
                Handed::Waiter(w, c, slot) => (w, c, slot),
            };
            conn = c;
            drop(st);
            match w.tx.send(Ok(Handoff {
                conn,
                slot,
                at: now,
            })) {
                Ok(()) => return,
                Err(Ok(h)) => {
                    // That waiter gave up in the meantime: try the next one.
                    conn = h.conn;
                    st = self.state.lock();
                    st.holders.remove(slot);
                }
                Err(Err(_)) => return,
            }
        }
    }

    /// Releases a connection's place in `size` and closes it.
    pub(crate) fn discard(self: &Arc<Self>, conn: Conn<M::Connection>, reason: CloseReason) {
        let st = self.state.lock();
        self.discard_locked(st, conn, reason, Instant::now());
    }

    /// [`discard`](Self::discard) for a caller that already holds the state lock: releases
    /// the place, plans replacement opens, unlocks, then closes and spawns the opens.
    fn discard_locked(
        self: &Arc<Self>,
        mut st: parking_lot::MutexGuard<'_, State<M>>,
        conn: Conn<M::Connection>,
        reason: CloseReason,
        now: Instant,
    ) {
        st.release_place();
        self.begin_closes(1);
        let opens = self.plan(&mut st, now, 0);
        drop(st);
        self.close_conn(conn, reason);
        self.spawn_opens(opens);
    }

    /// Counts `n` closes as pending. Called under the state lock, in the critical section
    /// that takes the connections out of `size`/`abandoned`; each is then handed to
    /// [`close_conn`](Self::close_conn), which ends the count.
    pub(crate) fn begin_closes(&self, n: usize) {
        self.closing.fetch_add(n, Relaxed);
    }

    /// Whether the pool is closed and every connection is gone (none counted, none
    /// abandoned, no close pending).
    pub(crate) fn is_drained(&self) -> bool {
        let st = self.state.lock();
        st.is_empty_closed() && self.closing.load(Relaxed) == 0
    }

    /// Closes a connection that no longer counts in `size`, on a bounded background path:
    /// `Manager::close` gets `close_timeout`, then the connection is dropped regardless.
    /// The caller has counted it with [`begin_closes`](Self::begin_closes).
    pub(crate) fn close_conn(self: &Arc<Self>, conn: Conn<M::Connection>, reason: CloseReason) {
        self.stats.closed(reason);
        tracing::debug!(pool = %self.cfg.name, conn = conn.id, %reason, age_s = conn.cold.created.elapsed().as_secs_f64(), "connection closed");
        let guard = Closing(Arc::clone(self));
        self.rt.spawn(async move {
            let shared = &guard.0;
            let limit = shared.cfg.close_timeout;
            if tokio::time::timeout(limit, shared.manager.close(conn.raw))
                .await
                .is_err()
            {
                shared.stats.close_timeouts.fetch_add(1, Relaxed);
                tracing::warn!(pool = %shared.cfg.name, timeout_s = limit.as_secs_f64(), "close timed out; connection dropped");
            }
            drop(guard);
        });
    }

    /// `Pool::close`: no new gets, waiters woken with `Closed`, idle connections closed,
    /// held ones closed when they come back. Idempotent.
    pub(crate) fn close_pool(self: &Arc<Self>) {
        let (idle, waiters) = {
            let mut st = self.state.lock();
            let Some((idle, waiters)) = st.close() else {
                return;
            };
            self.begin_closes(idle.len());
            (idle, waiters)
        };
        tracing::info!(pool = %self.cfg.name, idle = idle.len(), waiters = waiters.len(), "pool closed");
        for w in waiters {
            let _ = w.tx.send(Err(Error::Closed));
        }
        for c in idle {
            self.close_conn(c, CloseReason::PoolClosed);
        }
        self.shutdown.notify_waiters();
        // Nothing to close at all: `wait_closed` is done now.
        self.drained.notify_waiters();
    }
}

/// Decrements `closing` when a close finishes or its task is dropped.
struct Closing<M: Manager>(Arc<Shared<M>>);

impl<M: Manager> Drop for Closing<M> {
    fn drop(&mut self) {
        self.0.stats.closes_done.fetch_add(1, Relaxed);
        if self.0.closing.fetch_sub(1, Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A place reserved in `size` for a connect in progress.
struct Opening<M: Manager> {
    shared: Arc<Shared<M>>,
    armed: bool,
}

impl<M: Manager> Opening<M> {
    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let limit = shared.cfg.connect_timeout;
        let began = Instant::now();
        let res = tokio::time::timeout(limit, shared.manager.connect()).await;
        let now = Instant::now();
        shared.stats.connect_time.record(now - began);
        self.armed = false;
        match res {
            Ok(Ok(raw)) => {
                shared.stats.created.fetch_add(1, Relaxed);
                let id = shared.next_id.fetch_add(1, Relaxed);
                let conn = Conn::new(raw, id, now, &shared.cfg, shared.bypass);
                let closed_breaker = {
                    let mut st = shared.state.lock();
                    st.opened();
                    st.breaker.on_success()
                };
                tracing::debug!(pool = %shared.cfg.name, conn = id, "connection opened");
                if closed_breaker {
                    tracing::info!(pool = %shared.cfg.name, "breaker closed: connect succeeded");
                }
                shared.deliver(conn, now);
                // Keep going while waiters or min_idle still want connections.
                let opens = {
                    let mut st = shared.state.lock();
                    shared.plan(&mut st, now, shared.cfg.min_idle)
                };
                shared.spawn_opens(opens);
            }
            Ok(Err(e)) => {
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %shared.cfg.name, error = %e, "connect failed");
                shared.unreserve();
                let text = format!("connect: {e}");
                let restart = shared.manager.is_restarting(&e);
                shared.failure(Some(Arc::new(e)), text, Phase::Connect, restart);
            }
            Err(_) => {
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %shared.cfg.name, timeout_s = limit.as_secs_f64(), "connect timed out");
                shared.unreserve();
                shared.failure(
                    None,
                    format!("connect: timed out after {limit:?}"),
                    Phase::Connect,
                    false,
                );
            }
        }
    }
}

impl<M: Manager> Shared<M> {
    fn unreserve(&self) {
        let last = self.state.lock().open_failed();
        if last {
            self.drained.notify_waiters();
        }
    }
}

impl<M: Manager> Drop for Opening<M> {
    fn drop(&mut self) {
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
/// connection that was handed over in the meantime.
pub(crate) struct WaitGuard<M: Manager> {
    shared: Arc<Shared<M>>,
    id: u64,
    rx: oneshot::Receiver<Reply<M::Connection, M::Error>>,
    done: bool,
}

impl<M: Manager> WaitGuard<M> {
    /// Leaves the queue; returns a reply that raced the cancellation, if any.
    fn cancel(&mut self) -> Option<Reply<M::Connection, M::Error>> {
        self.done = true;
        self.shared.state.lock().remove_waiter(self.id);
        self.rx.close();
        self.rx.try_recv().ok()
    }
}

impl<M: Manager> Drop for WaitGuard<M> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(Ok(h)) = self.cancel() {
            // Never used: back to the pool without a reset.
            let now = Instant::now();
            let mut conn = h.conn;
            let mut st = self.shared.state.lock();
            st.holders.remove(h.slot);
            conn.last_used = now;
            self.shared.deliver_locked(st, conn, now);
        }
    }
}
