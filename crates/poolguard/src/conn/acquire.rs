//! The acquire flow: `Pool::get` (idle fast path, checkout validation, waiting in the
//! FIFO), the breaker's view of failures, the acquire-timeout snapshot, and opening a
//! connection (a task per reserved place, whose result is handed to the oldest waiter).
//!
//! Under the state lock: the fast path (count the get, pop an idle connection, check its
//! lifetime and freshness, [`Manager::is_broken`], register
//! the holder); the queueing decision (breaker admission, `max_waiters`, enqueue, plan
//! opens); the breaker updates after a validation or connect (and, when it opens, taking
//! every waiter out of the queue); the timeout snapshot. `Manager::connect` and
//! `Manager::validate` run without it, under their own deadlines, and waiters are told
//! (oneshot sends) after it is released.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::breaker::Admit;
use super::cancel::{Detached, Opening, WaitGuard};
use super::engine::{PoolError, Shared, WaiterOf};
use super::error::{Error, Phase, TimeoutSnapshot};
use super::guard::PooledConnection;
use super::hooks::{self, HookFailure, HookName};
use super::internals::{Conn, ConnectFault};
use super::lanes::{LaneHold, PoolRef, LANE_BIT};
use super::leak::Hold;
use super::stats::CloseReason;
use super::{Manager, PauseMode};

enum Step<M: Manager> {
    Validate(Conn<M::Connection>),
    Accept(PooledConnection<M>),
    /// Queued; opens to spawn; a nested acquire whose call-site pair is new (the held
    /// connection's site, and the pool's size then), to report once the lock is released.
    Wait(
        WaitGuard<M>,
        usize,
        Option<(&'static Location<'static>, usize, usize)>,
    ),
}

/// What a lane's fast path found.
enum LaneGet<M: Manager> {
    Got(PooledConnection<M>),
    /// Its idle connection, broken (taken out; the get counted).
    Broken(Conn<M::Connection>),
    Miss,
}

/// The future of `Pool::get`, `get_timeout` and `try_get`.
///
/// Its first poll is the fast path, written out by hand so that it inlines into the
/// caller's future: the budget unit, one clock read, the lock, an idle connection that is
/// neither due for retirement nor for validation and needs no hook, the holder recorded.
/// Anything else (paused, closed, no idle connection, a connection to retire, validate or
/// hand to `before_acquire`, a subscriber for the `poolguard.conn.get` span) continues as
/// the full acquire loop, [`Shared::acquire_slow`], boxed: only those gets pay for its
/// state machine, and the common one moves no large future around.
pub(crate) struct Acquire<'a, M: Manager, const WAIT: bool> {
    shared: &'a Arc<Shared<M>>,
    site: &'static Location<'static>,
    limit: Duration,
    slow: Option<SlowAcquire<'a, M>>,
}

type SlowAcquire<'a, M> =
    Pin<Box<dyn Future<Output = Result<PooledConnection<M>, PoolError<M>>> + Send + 'a>>;

impl<M: Manager, const WAIT: bool> Future for Acquire<'_, M, WAIT> {
    type Output = Result<PooledConnection<M>, PoolError<M>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(slow) = &mut this.slow {
            return slow.as_mut().poll(cx);
        }
        let shared = this.shared;
        if tracing::enabled!(target: "poolguard::conn::get", tracing::Level::INFO) {
            return this.go_slow(cx, None);
        }
        // Cooperative budget: a task that gets and returns in a loop without awaiting
        // anything else still yields now and then, so every task progresses.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        coop.made_progress();
        let now = Instant::now();
        if shared.lanes.on() {
            match shared.lane_get(this.site, now) {
                LaneGet::Got(conn) => return Poll::Ready(Ok(conn)),
                // Died while idle in the lane: evicted as the shared fast path below does.
                LaneGet::Broken(conn) => return this.evict_and_retry(cx, conn, now),
                LaneGet::Miss => {}
            }
        }
        let mut st = shared.lock_quick();
        // Counted under the lock the get takes anyway (no extra atomic).
        st.gets += 1;
        if st.fast_get() && shared.hooks.before_acquire.is_none() {
            if let Some(mut conn) = st.take_idle() {
                if conn.retire_due(now) || conn.stale(now) {
                    // Retired or validated by the full loop (which takes it again).
                    st.untake_idle(conn);
                } else if shared.manager.is_broken(&mut conn.raw) {
                    // Died while idle (the server closed it): evicted here, by the
                    // manager's cheap sync check, rather than handed out.
                    drop(st);
                    return this.evict_and_retry(cx, conn, now);
                } else {
                    // The task checking out: recorded with the hold (one thread-local
                    // read), so a get that has to wait can tell whether its own task
                    // already holds a connection.
                    let slot = st.holders.insert(this.site, now, tokio::task::try_id());
                    drop(st);
                    return Poll::Ready(Ok(PooledConnection::new(
                        PoolRef::Shared(Arc::clone(shared)),
                        conn,
                        slot,
                        now,
                    )));
                }
            }
        }
        drop(st);
        let begun = Begun {
            start: now,
            now,
            retry: false,
        };
        this.go_slow(cx, Some(begun))
    }
}

/// Where [`Acquire`]'s fast path left a get for [`Shared::acquire_slow`]: the budget unit
/// consumed and the get counted at `start`; the clock read last at `now`; `retry` when it
/// already made a pass (a broken idle connection was discarded), so the deadline applies.
#[derive(Clone, Copy)]
pub(crate) struct Begun {
    start: Instant,
    now: Instant,
    retry: bool,
}

impl<'a, M: Manager, const WAIT: bool> Acquire<'a, M, WAIT> {
    /// A fast path found its idle connection broken (the get counted at `start`): closes
    /// it (through the draining lock, so the replacement plan counts every idle
    /// connection), then continues as the full loop, on its second pass.
    #[cold]
    #[inline(never)]
    fn evict_and_retry(
        &mut self,
        cx: &mut Context<'_>,
        conn: Conn<M::Connection>,
        start: Instant,
    ) -> Poll<Result<PooledConnection<M>, PoolError<M>>> {
        self.shared.discard(conn, CloseReason::Broken);
        let begun = Begun {
            start,
            now: Instant::now(),
            retry: true,
        };
        self.go_slow(cx, Some(begun))
    }

    /// Continues as the full acquire loop: `begun` once the fast path consumed the budget
    /// unit and counted the get, `None` for a traced get.
    #[cold]
    #[inline(never)]
    fn go_slow(
        &mut self,
        cx: &mut Context<'_>,
        begun: Option<Begun>,
    ) -> Poll<Result<PooledConnection<M>, PoolError<M>>> {
        let (shared, site, limit) = (self.shared, self.site, self.limit);
        let slow: SlowAcquire<'a, M> = match begun {
            None => Box::pin(shared.acquire_traced::<WAIT>(site, limit)),
            begun => Box::pin(shared.acquire_slow::<WAIT>(site, limit, begun)),
        };
        self.slow.insert(slow).as_mut().poll(cx)
    }
}

impl<M: Manager> Shared<M> {
    /// The lane's fast path of a get (see `lanes.rs`): this thread's lane, when free to
    /// take, has an idle connection that is current and neither due for retirement nor for
    /// validation, and the gate is open. A broken one is taken out (and the get counted);
    /// anything else leaves the connection where it is, for the shared path (whose lock
    /// drains it into the idle list).
    #[inline]
    fn lane_get(self: &Arc<Self>, site: &'static Location<'static>, now: Instant) -> LaneGet<M> {
        let i = self.lanes.mine();
        let Some(mut lane) = self.lanes.try_lock(i) else {
            super::lanes::reseed();
            return LaneGet::Miss;
        };
        let Some(epoch) = self.lanes.open_epoch() else {
            return LaneGet::Miss;
        };
        let Some(conn) = lane.conn.as_mut() else {
            return LaneGet::Miss;
        };
        if conn.epoch != epoch || conn.retire_due(now) || conn.stale(now) {
            return LaneGet::Miss;
        }
        let broken = self.manager.is_broken(&mut conn.raw);
        let Some(conn) = lane.conn.take() else {
            return LaneGet::Miss;
        };
        lane.gets += 1;
        if broken {
            return LaneGet::Broken(conn);
        }
        lane.hold = LaneHold::Held(Hold {
            site,
            since: now,
            leaked: false,
            abandoned: false,
            task: tokio::task::try_id(),
        });
        let shared = lane.handle(self);
        drop(lane);
        LaneGet::Got(PooledConnection::new(shared, conn, LANE_BIT | i, now))
    }

    /// `Pool::get` (`WAIT`, `limit` = `acquire_timeout`), `Pool::get_timeout` (`WAIT`, a
    /// shorter `limit`) and `Pool::try_get` (no `WAIT`: no idle connection is
    /// `Error::WouldBlock`; validation and `before_acquire` still run, each bounded).
    /// See [`Acquire`]: the fast path, then (when it does not apply) [`Self::acquire_slow`].
    #[inline]
    pub(crate) fn acquire<const WAIT: bool>(
        self: &Arc<Self>,
        site: &'static Location<'static>,
        limit: Duration,
    ) -> Acquire<'_, M, WAIT> {
        Acquire {
            shared: self,
            site,
            limit,
            slow: None,
        }
    }

    /// The full acquire loop (waiting, validating, hooks, pause, retries). `begun`: where
    /// [`Acquire`]'s fast path left it; `None` (the traced get) starts from scratch.
    pub(crate) async fn acquire_slow<const WAIT: bool>(
        self: &Arc<Self>,
        site: &'static Location<'static>,
        limit: Duration,
        begun: Option<Begun>,
    ) -> Result<PooledConnection<M>, PoolError<M>> {
        // `counted`: the get is counted; `passed`: a pass was made (the deadline applies
        // from the second pass on: the first cannot be late, `acquire_timeout` > 0, and a
        // zero `get_timeout` still takes what the first pass finds).
        let (start, mut now, mut counted, mut passed) = match begun {
            Some(b) => (b.start, b.now, true, b.retry),
            None => {
                tokio::task::coop::consume_budget().await;
                let start = Instant::now();
                (start, start, false, false)
            }
        };
        // The deadline is computed where it is needed (waiting, validating, retrying), not
        // on the fast path: the first pass cannot be late (`acquire_timeout` > 0).
        let deadline = || crate::deadline::add_tokio(start, limit);
        // The task checking out: recorded with the hold (one thread-local read), so a get
        // that has to wait can tell whether its own task already holds a connection.
        let task = tokio::task::try_id();
        // When this caller first queued; `Some` once it was woken to retry (a connection
        // went idle within the handoff budget): it then queues again at the front, keeping
        // this time.
        let mut queued_at: Option<Instant> = None;
        loop {
            if passed && now >= deadline() {
                if queued_at.is_some() {
                    // Woken, but out of time: a connection left idle goes to the next waiter.
                    self.wake_next();
                }
                return Err(self.timed_out(now, now - start));
            }
            let step = {
                let mut st = self.lock();
                passed = true;
                if !counted {
                    // Counted under the lock the get takes anyway (no extra atomic).
                    counted = true;
                    st.gets += 1;
                }
                if st.is_closed() {
                    return Err(Error::Closed);
                }
                if let Some(p) = st.paused() {
                    // Paused: fail fast, or queue for `resume` (no connect is planned).
                    if p.mode == PauseMode::FailFast {
                        self.stats.paused_refused.fetch_add(1, Relaxed);
                        return Err(Error::Paused);
                    }
                    let waiting = st.waiters_len();
                    if waiting >= self.cfg.max_waiters && queued_at.is_none() {
                        self.stats.overloaded.fetch_add(1, Relaxed);
                        return Err(Error::Overloaded {
                            waiters: waiting,
                            max_waiters: self.cfg.max_waiters,
                        });
                    }
                    let (tx, rx) = oneshot::channel();
                    let min_idle = st.min_idle();
                    // A woken waiter that finds the pool paused queues again at the front.
                    let id = match queued_at {
                        None => st.queue_waiter(site, task, tx, min_idle, now),
                        Some(since) => st.requeue_front(site, task, tx, since),
                    };
                    Step::Wait(
                        WaitGuard {
                            shared: Arc::clone(self),
                            id,
                            rx,
                            done: false,
                        },
                        0,
                        None,
                    )
                } else if let Some(mut conn) = st.take_idle() {
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
                        let slot = st.holders.insert(site, now, task);
                        if queued_at.is_some() {
                            // After a retry: connections still idle go to the next waiter.
                            let next = st.wake_for_idle();
                            drop(st);
                            if let Some(w) = next {
                                self.wake(w);
                            }
                        } else {
                            drop(st);
                        }
                        let g = PooledConnection::new(
                            PoolRef::Shared(Arc::clone(self)),
                            conn,
                            slot,
                            now,
                        );
                        if self.hooks.before_acquire.is_none() {
                            return Ok(g);
                        }
                        Step::Accept(g)
                    } else {
                        Step::Validate(conn)
                    }
                } else {
                    if !WAIT {
                        self.stats.would_block.fetch_add(1, Relaxed);
                        return Err(Error::WouldBlock);
                    }
                    let waiting = st.waiters_len();
                    if let Admit::Reject(retry_in) = st.breaker.admit_caller(now, waiting) {
                        self.stats.unavailable.fetch_add(1, Relaxed);
                        return Err(Error::Unavailable {
                            failures: st.breaker.failures,
                            retry_in,
                            last_error: st.breaker.last_error.clone(),
                        });
                    }
                    if waiting >= self.cfg.max_waiters && queued_at.is_none() {
                        self.stats.overloaded.fetch_add(1, Relaxed);
                        return Err(Error::Overloaded {
                            waiters: waiting,
                            max_waiters: self.cfg.max_waiters,
                        });
                    }
                    // Only here, with no idle connection: does this task already hold one?
                    // (Once per get: not again when a woken waiter queues once more.)
                    let mut report = None;
                    let held = task
                        .filter(|_| queued_at.is_none())
                        .and_then(|t| st.holders.held_by(t));
                    if let Some(held) = held {
                        if st.nested.note(held, site) {
                            report = Some((held, st.size(), st.max_size()));
                        }
                    }
                    let (tx, rx) = oneshot::channel();
                    let min_idle = st.min_idle();
                    let id = match queued_at {
                        None => st.queue_waiter(site, task, tx, min_idle, now),
                        Some(since) => st.requeue_front(site, task, tx, since),
                    };
                    let opens = self.plan(&mut st, now, 0);
                    Step::Wait(
                        WaitGuard {
                            shared: Arc::clone(self),
                            id,
                            rx,
                            done: false,
                        },
                        opens,
                        report,
                    )
                }
            };
            match step {
                Step::Validate(conn) => {
                    if queued_at.is_some() {
                        // After a retry: connections still idle go to the next waiter.
                        self.wake_next();
                    }
                    if let Some(g) = self.validate_checkout(conn, site, deadline()).await {
                        if self.hooks.before_acquire.is_none() {
                            return Ok(g);
                        }
                        if let Some(g) = Box::pin(self.accept(g, deadline())).await {
                            return Ok(g);
                        }
                    }
                }
                Step::Accept(g) => {
                    if let Some(g) = Box::pin(self.accept(g, deadline())).await {
                        return Ok(g);
                    }
                }
                Step::Wait(mut wait, opens, report) => {
                    self.spawn_opens(opens);
                    if let Some((held, size, max_size)) = report {
                        tracing::warn!(pool = %self.cfg.name, held_at = %held, waiting_at = %site, size, max_size, "nested acquire: this task waits for a second connection while it holds one from {held}; enough such tasks deadlock the pool (reported once per pair of call sites)");
                    }
                    let first = match queued_at {
                        Some(first) => first,
                        None => {
                            // A wait is counted once, however often the caller is woken.
                            self.stats.waited.fetch_add(1, Relaxed);
                            queued_at = Some(now);
                            now
                        }
                    };
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
                        Some(Ok(Some(h))) => {
                            self.stats.wait_time.record(end - start);
                            self.stats.queue_time.record(end - first);
                            let g = PooledConnection::new(
                                PoolRef::Shared(Arc::clone(self)),
                                h.conn,
                                h.slot,
                                h.at,
                            );
                            if self.hooks.before_acquire.is_none() {
                                return Ok(g);
                            }
                            if let Some(g) = Box::pin(self.accept(g, deadline())).await {
                                return Ok(g);
                            }
                        }
                        // Woken to retry: another waiter may be woken from now on; take an
                        // idle connection or queue again.
                        Some(Ok(None)) => self.lock().end_wake(),
                        Some(Err(e)) => return Err(e),
                        None => return Err(self.timed_out(end, end - start)),
                    }
                }
            }
            now = Instant::now();
        }
    }

    /// Runs `before_acquire` (when set) on a connection about to be handed out, under its
    /// timeout and never past `deadline`. Awaited boxed (only when a hook is set), so the
    /// hook's future does not grow every get's future. `None`: it was refused (or the hook failed) and
    /// the connection is being closed; the caller tries the next one.
    async fn accept(
        self: &Arc<Self>,
        mut g: PooledConnection<M>,
        deadline: Instant,
    ) -> Option<PooledConnection<M>> {
        let Some(hook) = &self.hooks.before_acquire else {
            return Some(g);
        };
        let full = self.cfg.before_acquire_timeout;
        let limit = full.min(deadline.saturating_duration_since(Instant::now()));
        // Dropped mid-hook (the get cancelled), the connection is closed, not reused: the
        // hook may have left it half-way.
        g.close_as(Some(CloseReason::Hook));
        let counters = &self.stats.hooks[HookName::BeforeAcquire.index()];
        match hooks::run(hook, g.raw_mut(), limit, counters, limit >= full).await {
            Ok(()) => {
                g.close_as(None);
                Some(g)
            }
            Err(fault) => {
                self.hook_failed(HookName::BeforeAcquire, g.id(), &fault);
                drop(g);
                None
            }
        }
    }

    /// A get inside its `poolguard.conn.get` span (fields `pool`, `wait_s`, `outcome`).
    async fn acquire_traced<const WAIT: bool>(
        self: &Arc<Self>,
        site: &'static Location<'static>,
        limit: Duration,
    ) -> Result<PooledConnection<M>, PoolError<M>> {
        let span = tracing::info_span!(
            target: "poolguard::conn::get",
            "poolguard.conn.get",
            pool = %self.cfg.name,
            wait_s = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let start = Instant::now();
        let res = self
            .acquire_slow::<WAIT>(site, limit, None)
            .instrument(span.clone())
            .await;
        span.record("wait_s", start.elapsed().as_secs_f64());
        span.record(
            "outcome",
            match &res {
                Ok(_) => "ok",
                Err(e) => e.code(),
            },
        );
        res
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
            let slot = self.lock().holders.insert(site, now, tokio::task::try_id());
            Some(PooledConnection::new(
                PoolRef::Shared(Arc::clone(self)),
                conn,
                slot,
                now,
            ))
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
                let closed_breaker = self.lock().breaker.on_success();
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
                if self.cfg.failover_burst.is_some() {
                    self.failover_seen(self.manager.failover_class(&e), "validate");
                }
                self.lock()
                    .breaker
                    .note(Instant::now(), Arc::new(e), text, restart);
                false
            }
            Err(_) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                self.stats.validation_timeouts.fetch_add(1, Relaxed);
                tracing::warn!(pool = %self.cfg.name, conn = id, timeout_s = limit.as_secs_f64(), "validation timed out; closing the connection");
                let text = format!("validate: timed out after {limit:?}");
                if limit >= self.cfg.validation_timeout {
                    self.failure(None, None, text, Phase::Validate, false);
                } else {
                    // Cut short by the caller's own deadline: says nothing about the backend.
                    self.lock().breaker.last_text = Some(text);
                }
                false
            }
        }
    }

    /// A connect or validation failure: feed the breaker; when it opens, fail every waiter
    /// fast. Connect failures also go to the oldest waiter, so a wrong password reaches a
    /// caller as the backend's error, not as a timeout. `restart`: the manager recognised a
    /// restart signature in the error (the breaker then probes again soon).
    /// `hook`: the connect succeeded but its `after_connect` hook failed.
    fn failure(
        self: &Arc<Self>,
        error: Option<Arc<M::Error>>,
        other: Option<ConnectFault<M::Error>>,
        text: String,
        phase: Phase,
        restart: bool,
    ) {
        let now = Instant::now();
        let mut st = self.lock();
        let opened = st.breaker.on_failure(now, error.clone(), text, restart);
        let mut failed: Vec<(WaiterOf<M>, PoolError<M>)> = Vec::new();
        // Paused waiters did not ask for this connect: they wait for `resume`.
        let paused = st.paused().is_some();
        let fault = (phase == Phase::Connect).then(|| {
            let fault = match (other, error) {
                (Some(f), _) => f,
                (None, Some(source)) => ConnectFault::Backend(source),
                (None, None) => ConnectFault::TimedOut(self.cfg.connect_timeout),
            };
            st.note_connect_fault(fault.clone());
            fault
        });
        if let (Some(fault), false) = (fault, paused) {
            // The oldest waiter gets this connect's own error.
            if let Some(w) = st.pop_waiter() {
                failed.push((w, fault.into_error()));
            }
        }
        if opened {
            self.stats.breaker_opened.fetch_add(1, Relaxed);
        }
        if opened && !paused {
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
        if phase == Phase::Connect {
            self.progress.notify_waiters();
        }
    }

    fn timed_out(&self, now: Instant, waited: Duration) -> PoolError<M> {
        self.stats.timed_out.fetch_add(1, Relaxed);
        let snap = self.timeout_snapshot(now, waited);
        super::error::log_timeout(self.cfg.timeout_log_level, &snap);
        Error::Timeout(Box::new(snap))
    }

    pub(crate) fn timeout_snapshot(&self, now: Instant, waited: Duration) -> TimeoutSnapshot {
        let st = self.lock();
        TimeoutSnapshot {
            name: self.cfg.name.clone(),
            waited,
            status: self.status_locked(&st),
            longest_holders: st.holders.longest(now, 3),
        }
    }
}

impl<M: Manager> Opening<M> {
    /// Connects under `connect_timeout` (after asking the credentials provider, when one is
    /// set); the connection goes to the oldest waiter (or idle), a failure to the breaker
    /// and the oldest waiter.
    pub(super) async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        // The epoch this connect belongs to: a soft-evict while it runs evicts it too.
        let epoch = shared.lock().epoch();
        let used = match &shared.hooks.credentials {
            None => None,
            Some(provider) => match shared.credentials_for_connect(&**provider).await {
                Ok(u) => {
                    self.probe = u.probe.is_some();
                    Some(u)
                }
                Err(fault) => {
                    self.armed = false;
                    shared.unreserve();
                    let text = format!("connect: {fault}");
                    shared.failure(
                        None,
                        Some(ConnectFault::Credentials(fault)),
                        text,
                        Phase::Connect,
                        false,
                    );
                    return;
                }
            },
        };
        let limit = shared.cfg.connect_timeout;
        let began = Instant::now();
        let res = match &used {
            None => tokio::time::timeout(limit, shared.manager.connect()).await,
            Some(u) => {
                let creds = u.credentials.clone();
                tokio::time::timeout(limit, shared.manager.connect_with(creds)).await
            }
        };
        let mut now = Instant::now();
        shared.stats.connect_time.record(now - began);
        match res {
            Ok(Ok(mut raw)) => {
                shared.stats.created.fetch_add(1, Relaxed);
                let id = shared.next_id.fetch_add(1, Relaxed);
                if let Some(hook) = &shared.hooks.after_connect {
                    // Still `armed`: cancelled here, the place is given back (the connection
                    // is dropped with the task).
                    let counters = &shared.stats.hooks[HookName::AfterConnect.index()];
                    let limit = shared.cfg.after_connect_timeout;
                    let res = hooks::run(hook, &mut raw, limit, counters, true).await;
                    now = Instant::now();
                    if let Err(fault) = res {
                        self.armed = false;
                        let failure = shared.hook_failed(HookName::AfterConnect, id, &fault);
                        if std::mem::take(&mut self.probe) {
                            shared.probe_failed(format!("connect: {failure}"), now);
                        }
                        shared.after_connect_failed(raw, id, now, failure);
                        return;
                    }
                }
                self.armed = false;
                self.probe = false;
                let (closed_breaker, life, gen, rotated) = {
                    let mut st = shared.lock();
                    st.opened();
                    st.auth_failing = false;
                    let (gen, rotated) = match used {
                        None => (0, false),
                        Some(u) => {
                            let gen = u.gen;
                            let rotated = st.rotation.succeeded(u);
                            if rotated {
                                st.rotated();
                            }
                            (gen, rotated)
                        }
                    };
                    (st.breaker.on_success(), st.lifetimes(), gen, rotated)
                };
                let mut conn = Conn::new(raw, id, now, &shared.cfg, life, epoch, shared.bypass);
                conn.cold.cred_gen = gen;
                tracing::debug!(pool = %shared.cfg.name, conn = id, "connection opened");
                if closed_breaker {
                    tracing::info!(pool = %shared.cfg.name, "breaker closed: connect succeeded");
                }
                if rotated {
                    shared.stats.rotations.fetch_add(1, Relaxed);
                    tracing::info!(pool = %shared.cfg.name, conn = id, generation = gen, max_at_once = shared.cfg.max_concurrent_opens, "credentials rotated: the new credentials were proven by a probe connect; connections opened with the old ones retire gradually");
                }
                shared.deliver(conn, now);
                // Keep going while waiters or min_idle still want connections, and retire
                // old-credential connections as retirement slots free up.
                let (old, opens) = {
                    let mut st = shared.lock();
                    let old = st.retire_old_idle();
                    shared.begin_closes(old.len());
                    let min_idle = st.min_idle();
                    (old, shared.plan(&mut st, now, min_idle))
                };
                for c in old {
                    shared.close_conn(c, CloseReason::Rotated);
                }
                shared.spawn_opens(opens);
                shared.progress.notify_waiters();
            }
            Ok(Err(e)) => {
                self.armed = false;
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                let auth = shared.manager.is_auth_failure(&e);
                if auth {
                    shared.stats.auth_failures.fetch_add(1, Relaxed);
                }
                if std::mem::take(&mut self.probe) {
                    tracing::warn!(pool = %shared.cfg.name, error = %e, auth, "credential rotation: the probe connect with the new credentials failed; the proven credentials stay in use");
                    shared.unreserve();
                    shared.probe_failed(format!("connect: {e}"), now);
                    return;
                }
                tracing::warn!(pool = %shared.cfg.name, error = %e, auth, "connect failed");
                shared.unreserve();
                let text = format!("connect: {e}");
                let restart = shared.manager.is_restarting(&e);
                if shared.cfg.failover_burst.is_some() {
                    shared.failover_seen(shared.manager.failover_class(&e), "connect");
                }
                shared.lock().auth_failing = auth;
                shared.failure(Some(Arc::new(e)), None, text, Phase::Connect, restart);
            }
            Err(_) => {
                self.armed = false;
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                if std::mem::take(&mut self.probe) {
                    tracing::warn!(pool = %shared.cfg.name, timeout_s = limit.as_secs_f64(), "credential rotation: the probe connect with the new credentials timed out; the proven credentials stay in use");
                    shared.unreserve();
                    shared.probe_failed(format!("connect: timed out after {limit:?}"), now);
                    return;
                }
                tracing::warn!(pool = %shared.cfg.name, timeout_s = limit.as_secs_f64(), "connect timed out");
                shared.unreserve();
                shared.lock().auth_failing = false;
                shared.failure(
                    None,
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
    /// Asks the provider (under `credentials_timeout`, counted) and decides what this
    /// connect uses: the proven credentials, a fresh answer of the same generation, or (one
    /// connect at a time) a changed answer as the rotation's probe.
    async fn credentials_for_connect(
        &self,
        provider: &dyn super::CredentialsProvider,
    ) -> Result<super::credentials::Use, super::CredentialsFault> {
        self.stats.credentials_calls.fetch_add(1, Relaxed);
        let limit = self.cfg.credentials_timeout;
        match super::credentials::call(provider, limit).await {
            Ok(fresh) => Ok(self.lock().rotation.choose(fresh, Instant::now())),
            Err(fault) => {
                self.stats.credentials_failures.fetch_add(1, Relaxed);
                self.lock().rotation.provider_fault = Some(fault.to_string());
                self.stats.connect_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %self.cfg.name, error = %fault, "credentials provider failed; the connect fails");
                Err(fault)
            }
        }
    }

    /// The rotation's probe failed: the proven credentials stay in use, the next probe
    /// backs off; waiters get connects with the proven credentials (the probe's failure
    /// is not the backend's: the breaker does not count it).
    pub(super) fn probe_failed(self: &Arc<Self>, text: String, now: Instant) {
        self.stats.rotation_probe_failures.fetch_add(1, Relaxed);
        let opens = {
            let mut st = self.lock();
            st.rotation.probe_failed(
                Some(text),
                now,
                self.cfg.breaker_backoff,
                self.cfg.breaker_max_backoff,
            );
            self.plan(&mut st, now, 0)
        };
        self.spawn_opens(opens);
        self.progress.notify_waiters();
    }
}

impl<M: Manager> Shared<M> {
    /// A new connection's `after_connect` hook failed: the connection is closed (reason
    /// `hook`), its place released, and the connect counts as failed (breaker, the oldest
    /// waiter, `Pool::ready`).
    fn after_connect_failed(
        self: &Arc<Self>,
        raw: M::Connection,
        id: u64,
        now: Instant,
        failure: HookFailure,
    ) {
        self.stats.connect_failures.fetch_add(1, Relaxed);
        let conn = {
            let mut st = self.lock();
            let conn = Conn::new(
                raw,
                id,
                now,
                &self.cfg,
                st.lifetimes(),
                st.epoch(),
                self.bypass,
            );
            st.opened();
            st.release_place();
            self.begin_closes(1);
            conn
        };
        self.close_conn(conn, CloseReason::Hook);
        let text = format!("connect: {failure}");
        self.failure(
            None,
            Some(ConnectFault::Hook(failure)),
            text,
            Phase::Connect,
            false,
        );
    }

    /// A connect failed or was cancelled: its reservation is released (and `wait_closed`
    /// woken when that was the last place of a closed pool).
    pub(super) fn unreserve(&self) {
        let last = self.lock().open_failed();
        if last {
            self.drained.notify_waiters();
        }
    }
}
