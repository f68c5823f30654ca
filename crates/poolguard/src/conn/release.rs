//! The release flow: a held connection comes back (its guard was dropped), goes through the
//! reset task when the manager asks for one, and is handed to the oldest waiter or made
//! idle; or it is discarded (its place released, replacement opens planned) and closed on
//! a bounded background task.
//!
//! Under the state lock: the holder's removal and the leak report of a late return, the
//! retire decision (broken, lifetime, abandoned), [`Manager::needs_reset`]
//! (a flag check, documented on the trait), the handoff to a waiter or the idle list, and
//! counting a close in `closing`. [`Manager::is_broken`] on return
//! runs before the lock is taken; `Manager::reset` and `Manager::close` run on their own
//! tasks; the send to a waiter happens after the lock is released.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use super::cancel::{Closing, Detached};
use super::engine::WaiterOf;
use super::engine::{Locked, Shared};
use super::hooks::{self, HookName};
use super::internals::{Conn, Handed, Handoff};
use super::lanes::{LaneHold, LANE_BIT};
use super::leak;
use super::stats::CloseReason;
use super::Manager;
use crate::close_task;

/// The hold-time histogram records every `HOLD_SAMPLE`th use of each connection (the first
/// one included), so the return path usually needs no clock read.
pub(crate) const HOLD_SAMPLE: u64 = 8;

impl<M: Manager> Shared<M> {
    /// A held connection comes back (its guard was dropped).
    ///
    /// The fast paths, inlined into the guard's drop: no leak detection, no
    /// `after_release` hook, not marked broken, its holder neither leaked nor abandoned,
    /// its epoch current, not due for retirement, the pool open and nobody waiting: the
    /// connection goes straight back to its lane (a guard from a lane, whose lane is free
    /// and whose gate is open, see `lanes.rs`: no pool lock), or else, under the pool lock,
    /// to this thread's lane or the idle list
    /// (or to its reset), a sampled use recording its hold time on the way. Everything
    /// else is [`release_full`](Self::release_full), out of line; it decides from scratch,
    /// and each `Manager` check (`is_broken`, `needs_reset`) still runs once per return.
    #[inline]
    pub(crate) fn release(
        self: &Arc<Self>,
        mut conn: Conn<M::Connection>,
        slot: usize,
        close_as: Option<CloseReason>,
        since: Instant,
    ) {
        conn.uses = conn.uses.wrapping_add(1);
        if close_as.is_some()
            || self.cfg.leak_threshold.is_some()
            || self.hooks.after_release.is_some()
        {
            return self.release_full(conn, slot, close_as, since);
        }
        let sampled = conn.uses % HOLD_SAMPLE == 1;
        if self.manager.is_broken(&mut conn.raw) {
            return self.release_full(conn, slot, Some(CloseReason::Broken), since);
        }
        // As in `release_full`: a sampled use reads the clock (and records its hold time,
        // once: the full path below does not sample again); otherwise the coarse clock.
        let exact = if sampled {
            Some(self.record_hold(since))
        } else {
            None
        };
        if slot & LANE_BIT != 0 {
            // The lane's return: without the pool lock, the coarse clock is the checkout
            // time. A hold that spans a maintenance pass is never back here (that pass's
            // drain moved its record to the holders), so it is at most one interval old,
            // as the state's coarse clock is; lifetime is re-checked at the next checkout
            // with a fresh clock anyway.
            let now = exact.unwrap_or(since);
            // Busy: another thread shares this lane (it moves on; the shared path below
            // takes the lane lock in turn, after the state lock).
            let Some(mut lane) = self.lanes.try_lock(slot & !LANE_BIT) else {
                super::lanes::reseed();
                return self.release_locked(conn, slot, exact, since);
            };
            // (A lane with a checkout record holds no idle connection.)
            if matches!(lane.hold, LaneHold::Held(_))
                && self.lanes.open_epoch() == Some(conn.epoch)
                && !conn.retire_due(now)
                && !self.manager.needs_reset(&mut conn.raw)
            {
                lane.hold = LaneHold::Free;
                conn.cold.last_used = now;
                conn.checked_at(now, self.bypass);
                lane.conn = Some(conn);
                return;
            }
            drop(lane);
        }
        self.release_locked(conn, slot, exact, since);
    }

    /// [`release`](Self::release) past its lane: the shared fast path under the pool lock,
    /// else the rest.
    #[inline]
    fn release_locked(
        self: &Arc<Self>,
        mut conn: Conn<M::Connection>,
        slot: usize,
        exact: Option<Instant>,
        since: Instant,
    ) {
        let mut st = self.lock_quick();
        let slot = self.lanes.resolve(&mut st, slot);
        let now = match exact {
            Some(now) => now,
            None => since.max(st.coarse),
        };
        if st.fast_return(&conn, slot, now) {
            st.holders.remove(slot);
            if self.manager.needs_reset(&mut conn.raw) {
                drop(st);
                self.spawn_reset(conn);
                return;
            }
            conn.cold.last_used = now;
            conn.checked_at(now, self.bypass);
            // The last step of this critical section: this thread's next get takes it
            // from its lane.
            self.lanes.park(&mut st, conn);
            return;
        }
        drop(st);
        self.release_rest(conn, slot, None, exact, since);
    }

    /// A sampled use: its hold time into the histogram; the exact clock it read.
    #[inline(never)]
    fn record_hold(&self, since: Instant) -> Instant {
        let now = Instant::now();
        self.stats
            .hold_time
            .record(now.saturating_duration_since(since));
        now
    }

    /// [`release`](Self::release) in full: sampling, leak reports, abandoned holds,
    /// retirement, soft-evict, hooks, reset and the handoff to waiters. `conn.uses` is
    /// already counted; `close_as` includes a broken connection the fast path found.
    #[cold]
    #[inline(never)]
    fn release_full(
        self: &Arc<Self>,
        conn: Conn<M::Connection>,
        slot: usize,
        close_as: Option<CloseReason>,
        since: Instant,
    ) {
        // One clock read per cycle is the fast path's budget: the return reads the clock
        // only for sampled uses (hold-time histogram); otherwise the checkout time stands
        // in for "last used" (errs toward validating a long-held connection once more, and
        // lifetime is re-checked at the next checkout with a fresh clock anyway).
        let sampled = (conn.uses % HOLD_SAMPLE == 1).then(|| self.record_hold(since));
        self.release_rest(conn, slot, close_as, sampled, since);
    }

    /// The rest of [`release_full`](Self::release_full), after sampling: `sampled` is the
    /// exact clock of a sampled use (its hold time already recorded).
    #[cold]
    #[inline(never)]
    fn release_rest(
        self: &Arc<Self>,
        mut conn: Conn<M::Connection>,
        slot: usize,
        mut close_as: Option<CloseReason>,
        sampled: Option<Instant>,
        since: Instant,
    ) {
        // With leak detection on, every return reads the clock, so a hold past the threshold
        // is reported when it comes back even if no maintenance pass saw it out.
        let exact = sampled.or_else(|| self.cfg.leak_threshold.map(|_| Instant::now()));
        if close_as.is_none() && self.manager.is_broken(&mut conn.raw) {
            close_as = Some(CloseReason::Broken);
        }
        let mut st = self.lock();
        let slot = self.lanes.resolve(&mut st, slot);
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
        let retire = if close_as.is_some() {
            close_as
        } else if let Some(reason) = st.stale(&mut conn) {
            Some(reason)
        } else if conn.retire_due(now) {
            Some(CloseReason::Lifetime)
        } else {
            None
        };
        if let Some(reason) = retire {
            self.discard_locked(st, conn, reason, now);
            return;
        }
        if self.hooks.after_release.is_some() && !st.is_closed() {
            drop(st);
            self.spawn_after_release(conn);
            return;
        }
        if !st.is_closed() && self.manager.needs_reset(&mut conn.raw) {
            drop(st);
            self.spawn_reset(conn);
            return;
        }
        conn.cold.last_used = now;
        conn.checked_at(now, self.bypass);
        // Nobody waits (the common case): straight back to idle, without the handoff loop.
        if let Some(mut conn) = st.put_idle_unless_wanted(conn) {
            let budget = self.cfg.handoff_after;
            if !budget.is_zero() {
                // Someone waits: while the oldest waiter is within the handoff budget, the
                // connection goes idle for whoever comes first (one waiter is woken for it);
                // beyond it, the strict handoff below. The exact clock: only here, when a
                // waiter exists.
                match st.barge(conn, Instant::now(), budget) {
                    Ok(wake) => {
                        drop(st);
                        if let Some(w) = wake {
                            self.wake(w);
                        }
                        return;
                    }
                    Err(c) => conn = c,
                }
            }
            self.deliver_locked(st, conn, now);
        }
    }

    /// Tells a waiter taken out of the queue by [`wake_for_idle`] to retry; when it has gone
    /// already, the next one, while connections are still idle.
    ///
    /// [`wake_for_idle`]: super::internals::Internals::wake_for_idle
    pub(crate) fn wake(&self, mut w: WaiterOf<M>) {
        loop {
            if w.tx.send(Ok(None)).is_ok() {
                return;
            }
            let mut st = self.lock();
            st.end_wake();
            match st.wake_for_idle() {
                Some(next) => w = next,
                None => return,
            }
        }
    }

    /// Wakes the oldest waiter if connections are idle and no waiter is woken.
    pub(crate) fn wake_next(&self) {
        let next = self.lock().wake_for_idle();
        if let Some(w) = next {
            self.wake(w);
        }
    }

    /// A woken waiter will not retry (it timed out or was cancelled): the wake goes to the
    /// next waiter, if connections are idle.
    pub(crate) fn pass_wake_on(&self) {
        let next = {
            let mut st = self.lock();
            st.end_wake();
            st.wake_for_idle()
        };
        if let Some(w) = next {
            self.wake(w);
        }
    }

    /// The `after_release` hook on a task, then (kept, and the manager asks for it) the
    /// reset, then the handoff. A refusal, a panic or a timeout closes the connection.
    fn spawn_after_release(self: &Arc<Self>, conn: Conn<M::Connection>) {
        let mut d = Detached::new(Arc::clone(self), conn, CloseReason::Hook);
        let shared = Arc::clone(self);
        self.rt.spawn(async move {
            let Some(hook) = &shared.hooks.after_release else {
                return;
            };
            let counters = &shared.stats.hooks[HookName::AfterRelease.index()];
            let limit = shared.cfg.after_release_timeout;
            if let Err(fault) = hooks::run(hook, d.raw(), limit, counters, true).await {
                shared.hook_failed(HookName::AfterRelease, d.id(), &fault);
                return; // `d` closes it
            }
            let closed = shared.lock().is_closed();
            if !closed && shared.manager.needs_reset(d.raw()) {
                d.set_reason(CloseReason::Reset);
                Self::reset_then_deliver(&shared, d).await;
            } else {
                let now = Instant::now();
                let mut conn = d.take();
                conn.cold.last_used = now;
                conn.checked_at(now, shared.bypass);
                shared.deliver(conn, now);
            }
        });
    }

    fn spawn_reset(self: &Arc<Self>, conn: Conn<M::Connection>) {
        let d = Detached::new(Arc::clone(self), conn, CloseReason::Reset);
        let shared = Arc::clone(self);
        self.rt
            .spawn(async move { Self::reset_then_deliver(&shared, d).await });
    }

    async fn reset_then_deliver(shared: &Arc<Self>, mut d: Detached<M>) {
        {
            shared.stats.resets.fetch_add(1, Relaxed);
            let limit = shared.cfg.reset_timeout;
            let began = Instant::now();
            let res = tokio::time::timeout(limit, shared.manager.reset(d.raw())).await;
            shared.stats.reset_time.record(Instant::now() - began);
            match res {
                Ok(Ok(())) => {
                    let now = Instant::now();
                    let mut conn = d.take();
                    conn.cold.last_used = now;
                    conn.checked_at(now, shared.bypass);
                    shared.deliver(conn, now);
                }
                Ok(Err(e)) => {
                    tracing::warn!(pool = %shared.cfg.name, conn = d.id(), error = %e, "reset failed; closing the connection");
                    if shared.cfg.failover_burst.is_some() {
                        shared.failover_seen(shared.manager.failover_class(&e), "reset");
                    }
                }
                Err(_) => {
                    tracing::warn!(pool = %shared.cfg.name, conn = d.id(), timeout_s = limit.as_secs_f64(), "reset timed out; closing the connection");
                }
            }
        }
    }

    /// `PooledConnection::detach`: the holder leaves, the place is freed (replacement opens
    /// planned for waiters) and the connection is the caller's for good.
    pub(crate) fn detach_conn(self: &Arc<Self>, slot: usize, id: u64) {
        self.stats.detached.fetch_add(1, Relaxed);
        let (last, opens) = {
            let mut st = self.lock();
            let slot = self.lanes.resolve(&mut st, slot);
            let last = st.detach_held(slot);
            (last, self.plan(&mut st, Instant::now(), 0))
        };
        tracing::debug!(pool = %self.cfg.name, conn = id, "connection detached from the pool");
        self.spawn_opens(opens);
        if last {
            self.drained.notify_waiters();
        }
    }

    /// Gives a ready connection (counted in `size`) to the oldest waiter, or makes it idle.
    pub(crate) fn deliver(self: &Arc<Self>, conn: Conn<M::Connection>, now: Instant) {
        let st = self.lock();
        self.deliver_locked(st, conn, now);
    }

    pub(super) fn deliver_locked<'a>(
        self: &'a Arc<Self>,
        mut st: Locked<'a, M>,
        mut conn: Conn<M::Connection>,
        now: Instant,
    ) {
        loop {
            let (w, c, slot) = match st.hand_off(conn, now) {
                Handed::Idle => return,
                Handed::Close(conn, reason) => {
                    self.begin_closes(1);
                    // A soft-evicted connection may have been meant for a waiter: a
                    // replacement is planned for it (none for a closed pool).
                    let opens = if matches!(reason, CloseReason::Evicted | CloseReason::Rotated) {
                        self.plan(&mut st, now, 0)
                    } else {
                        0
                    };
                    drop(st);
                    self.close_conn(conn, reason);
                    self.spawn_opens(opens);
                    return;
                }
                Handed::Waiter(w, c, slot) => (w, c, slot),
            };
            conn = c;
            drop(st);
            match w.tx.send(Ok(Some(Handoff {
                conn,
                slot,
                at: now,
            }))) {
                Ok(()) => return,
                Err(Ok(Some(h))) => {
                    // That waiter gave up in the meantime: try the next one.
                    conn = h.conn;
                    st = self.lock();
                    st.holders.remove(slot);
                }
                Err(Ok(None) | Err(_)) => return,
            }
        }
    }

    /// Releases a connection's place in `size` and closes it.
    pub(crate) fn discard(self: &Arc<Self>, conn: Conn<M::Connection>, reason: CloseReason) {
        let st = self.lock();
        self.discard_locked(st, conn, reason, Instant::now());
    }

    /// [`discard`](Self::discard) for a caller that already holds the state lock: releases
    /// the place, plans replacement opens, unlocks, then closes and spawns the opens.
    pub(super) fn discard_locked(
        self: &Arc<Self>,
        mut st: Locked<'_, M>,
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

    /// Closes a connection that no longer counts in `size`, on a bounded background path
    /// (the crate's close engine, which the reclaimer's `close_async` also runs on):
    /// `Manager::close` gets `close_timeout`, then the connection is dropped regardless.
    /// The caller has counted it with [`begin_closes`](Self::begin_closes).
    pub(crate) fn close_conn(self: &Arc<Self>, conn: Conn<M::Connection>, reason: CloseReason) {
        self.stats.closed(reason);
        tracing::debug!(pool = %self.cfg.name, conn = conn.id, %reason, age_s = conn.cold.created.elapsed().as_secs_f64(), "connection closed");
        let shared = Arc::clone(self);
        let close = async move { shared.manager.close(conn.raw).await };
        close_task::spawn(
            &self.rt,
            self.cfg.close_timeout,
            close,
            Closing(Arc::clone(self)),
        );
    }
}
