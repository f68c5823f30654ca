//! The state under the pool lock: idle connections, the FIFO of waiters, the holders and the
//! counters that bound the pool.
//!
//! This is the only code that changes the pool's counts (`size`, `max_size`, `idle`,
//! `waiters`, `opening`, `abandoned`, `closed`): those fields are private to this module,
//! and each transition is one method below that returns what the async code must do next
//! (opens to spawn, a waiter to send to, connections to close). None of them awaits,
//! allocates on the get/return path, reads the clock or touches an atomic; the unit tests at
//! the end drive them without a runtime.
//!
//! Rules (every field may only be read or written with `Shared::state` locked):
//! * `size` counts every connection that exists or is being opened, except abandoned ones:
//!   idle + held + opening + "in flight" (being validated, reset, or handed to a waiter).
//!   Every increment happens in [`Internals::plan_opens`] before the connect starts, so
//!   `size <= max_size` holds at every instant (a `resize` down lets it exceed the new limit
//!   until the surplus comes back and is closed). Every decrement is a method that hands the
//!   connection (or the reservation) back to the caller to close: no place is lost.
//! * `opening <= max_concurrent_opens` (and `opening <= size`): only `plan_opens` raises it.
//! * `idle` and `waiters` are both non-empty only while a woken waiter is on its way
//!   (`woken`) or while the pool is paused: a caller only queues when `idle` is empty; a
//!   returned connection goes to the oldest waiter, except while that waiter has waited less
//!   than the handoff budget ([`barge`](Internals::barge)): then it goes idle, where an
//!   arriving caller may take it, and the oldest waiter is taken out of the queue and woken
//!   to compete for it. At most one waiter is woken at a time; it clears `woken` when it next
//!   holds the lock (or its cancellation guard does), then takes an idle connection or queues
//!   again at the front with its first queueing time, and wakes the next waiter if
//!   connections are still idle ([`wake_for_idle`](Internals::wake_for_idle)). Beyond the
//!   budget the handoff is strict FIFO, so fairness holds up to that budget. Opens, resets
//!   and the cancellation guards always hand off strictly ([`hand_off`](Internals::hand_off)).
//!   While paused, callers queue and connections go idle; `resume` serves the queue oldest
//!   first.
//! * `epoch` only grows. A connection whose `epoch` is below `evict_before` was soft-evicted:
//!   it is closed wherever it next meets the lock (return, handoff); one of an older epoch
//!   otherwise gets the current lifetimes (`Lifetimes`) there. So the fast path pays one
//!   comparison, and a soft-evict or a runtime change of a lifetime needs no walk over held
//!   connections.
//! * A waiter is removed from `waiters` exactly once: by the deliverer (`pop_front`), by a
//!   failure broadcast, by a wake, or by its own cancellation guard.

use std::collections::VecDeque;
use std::panic::Location;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::credentials::Rotation;
use super::error::Error;
use super::leak::{self, Holders, Scan};
use super::nested::Nested;
use super::stats::CloseReason;

/// A pooled connection plus its bookkeeping.
///
/// Kept small: it moves by value through every checkout and return (idle list, guard,
/// handoff), so the fields only maintenance reads live in [`Cold`], boxed once per connect.
#[derive(Debug)]
pub(crate) struct Conn<C> {
    pub(crate) raw: C,
    pub(crate) id: u64,
    /// Times it was checked out and returned (drives hold-time sampling).
    pub(crate) uses: u64,
    /// `created + max_lifetime - jitter`.
    pub(crate) retire_at: Option<Instant>,
    /// Last time it was known alive (validated, reset or returned) plus
    /// `validation_bypass`: until then a checkout skips validation. Stored as the sum so the
    /// checkout compares two instants instead of computing a duration.
    pub(crate) fresh_until: Instant,
    /// The pool's epoch when its connect started (or when its lifetimes were last brought
    /// up to date); see the module rules.
    pub(crate) epoch: u64,
    pub(crate) cold: Box<Cold>,
}

/// The per-connection facts that only maintenance and close events read.
#[derive(Debug)]
pub(crate) struct Cold {
    pub(crate) created: Instant,
    /// Last time it came back to the pool (or, for unsampled returns, was checked out).
    /// Written on every return but read only by maintenance and `retain`, so here: the
    /// hot part that moves with every checkout and return stays small.
    pub(crate) last_used: Instant,
    /// `idle_timeout - jitter`.
    pub(crate) idle_limit: Option<Duration>,
    /// `keepalive_interval - jitter`.
    pub(crate) keepalive: Option<Duration>,
    /// The random fractions its lifetime and idle timeout are shortened by (kept so a
    /// runtime change of either keeps this connection's jitter).
    cut_life: f64,
    cut_idle: f64,
    /// The credentials generation it was opened with (`credentials.rs`; 0 without a
    /// provider): below the pool's, it retires.
    pub(crate) cred_gen: u64,
}

/// The lifetimes that can change at run time (`Pool::set_idle_timeout`,
/// `Pool::set_max_lifetime`), kept under the lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Lifetimes {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
}

impl Lifetimes {
    pub(crate) fn of(cfg: &super::Config) -> Self {
        Self {
            idle_timeout: cfg.idle_timeout,
            max_lifetime: cfg.max_lifetime,
        }
    }
}

/// The pool is paused: since when, and what a `get` does meanwhile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paused {
    pub(crate) mode: super::PauseMode,
    pub(crate) since: Instant,
}

fn cut(jitter: f64) -> f64 {
    if jitter <= 0.0 {
        0.0
    } else {
        fastrand::f64() * jitter
    }
}

fn shortened(d: Duration, cut: f64) -> Duration {
    if cut <= 0.0 {
        d
    } else {
        d.mul_f64(1.0 - cut)
    }
}

impl<C> Conn<C> {
    /// `bypass`: see [`Shared::bypass`](super::engine::Shared::bypass); `life` and `epoch`:
    /// the pool's when the connect started.
    pub(crate) fn new(
        raw: C,
        id: u64,
        now: Instant,
        cfg: &super::Config,
        life: Lifetimes,
        epoch: u64,
        bypass: Duration,
    ) -> Self {
        let mut c = Self {
            raw,
            id,
            uses: 0,
            retire_at: None,
            fresh_until: crate::deadline::add_tokio(now, bypass),
            epoch,
            cold: Box::new(Cold {
                created: now,
                last_used: now,
                idle_limit: None,
                keepalive: cfg
                    .keepalive_interval
                    .map(|d| shortened(d, cut(cfg.jitter))),
                cut_life: cut(cfg.jitter),
                cut_idle: cut(cfg.jitter),
                cred_gen: 0,
            }),
        };
        c.apply(life);
        c
    }

    /// Derives the retirement instant and the idle limit from `life` (and this
    /// connection's own jitter).
    fn apply(&mut self, life: Lifetimes) {
        self.retire_at = life.max_lifetime.map(|d| {
            crate::deadline::add_tokio(self.cold.created, shortened(d, self.cold.cut_life))
        });
        self.cold.idle_limit = life.idle_timeout.map(|d| shortened(d, self.cold.cut_idle));
    }

    /// How the pool sees it at `now` (for `Pool::retain`).
    pub(crate) fn metrics(&self, now: Instant) -> super::ConnMetrics {
        super::ConnMetrics {
            id: self.id,
            age: now.saturating_duration_since(self.cold.created),
            idle_for: now.saturating_duration_since(self.cold.last_used),
            uses: self.uses,
        }
    }

    pub(crate) fn retire_due(&self, now: Instant) -> bool {
        self.retire_at.is_some_and(|t| now >= t)
    }

    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        self.cold
            .idle_limit
            .is_some_and(|d| now.saturating_duration_since(self.cold.last_used) >= d)
    }

    /// Records that it was known alive at `now` (`bypass`: see [`Shared::bypass`]).
    ///
    /// [`Shared::bypass`]: super::engine::Shared::bypass
    /// `bypass` is the pool's `validation_bypass`, already capped (`Shared::bypass`), so
    /// the sum needs no clamp: only the overflow check, which cannot fail for it.
    #[inline]
    pub(crate) fn checked_at(&mut self, now: Instant, bypass: Duration) {
        // Through `std` directly: one call on the return's fast path, not two.
        self.fresh_until = now
            .into_std()
            .checked_add(bypass)
            .map_or(now, Instant::from_std);
    }

    /// Whether a checkout at `now` must validate it first.
    pub(crate) fn stale(&self, now: Instant) -> bool {
        now > self.fresh_until
    }

    pub(crate) fn keepalive_due(&self, now: Instant, bypass: Duration) -> bool {
        let last_checked = self.fresh_until.checked_sub(bypass).unwrap_or(now);
        self.cold
            .keepalive
            .is_some_and(|d| now.saturating_duration_since(last_checked) >= d)
    }
}

/// A connection handed to a waiter, already registered as held in `slot`.
#[derive(Debug)]
pub(crate) struct Handoff<C> {
    pub(crate) conn: Conn<C>,
    pub(crate) slot: usize,
    pub(crate) at: Instant,
}

/// What a waiter is told: a connection, `None` (woken to retry: a connection went idle
/// within the handoff budget), or an error.
pub(crate) type Reply<C, E> = Result<Option<Handoff<C>>, Error<E>>;

#[derive(Debug)]
pub(crate) struct Waiter<C, E: std::error::Error + 'static> {
    pub(crate) id: u64,
    pub(crate) site: &'static Location<'static>,
    /// The waiting task (the hold it is handed is recorded as this task's).
    pub(crate) task: Option<tokio::task::Id>,
    pub(crate) tx: oneshot::Sender<Reply<C, E>>,
    /// When it first queued (a woken waiter queues again with it).
    pub(crate) since: Instant,
}

/// Where [`Internals::hand_off`] put a ready connection.
#[derive(Debug)]
pub(crate) enum Handed<C, E: std::error::Error + 'static> {
    /// Into the idle list.
    Idle,
    /// Out of `size`: the pool is closed or above `max_size`. Close it for this reason.
    Close(Conn<C>, CloseReason),
    /// Registered as held in `slot` for this waiter: send it. If the waiter is gone, undo
    /// the hold (`holders.remove(slot)`) and hand the connection off again.
    Waiter(Waiter<C, E>, Conn<C>, usize),
}

/// `repr(C)`, hot fields first: the get/return path reads `closed`, `gets`, `size`,
/// `max_size`, `idle`, `waiters` and `holders`, which then sit next to the lock word.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Internals<C, E: std::error::Error + 'static> {
    closed: bool,
    /// Calls to `get` (kept here, not in `Stats`: the get path holds this lock anyway).
    pub(crate) gets: u64,
    /// See the module rules.
    size: usize,
    max_size: usize,
    /// Idle connections; pushed and popped at the back (the most recently used is reused
    /// first, so the surplus ages out at the front).
    idle: VecDeque<Conn<C>>,
    /// Callers waiting, oldest first.
    waiters: VecDeque<Waiter<C, E>>,
    /// Call site and age of every checked-out connection.
    pub(crate) holders: Holders,
    /// Connects in progress (included in `size`).
    opening: usize,
    /// Abandoned connections still held (not in `size`).
    abandoned: usize,
    next_waiter: u64,
    /// A waiter has been woken to retry and has not yet held the lock since (see the rules).
    woken: bool,
    pub(crate) breaker: Breaker<E>,
    /// Gets that queued, by the pool's state when they did (counted on the wait path only):
    /// every place in use (`size >= max_size`), ...
    pub(crate) waited_saturated: u64,
    /// ... the pool empty or below `min_idle`, ...
    pub(crate) waited_cold: u64,
    /// ... or room to grow (the get waited for a new connection).
    pub(crate) waited_growing: u64,
    /// Gets that waited while their own task held a connection of this pool, by call sites
    /// (see `nested.rs`; counted on the wait path only).
    pub(crate) nested: Nested,
    /// A clock for the return path that costs nothing: advanced by each maintenance pass
    /// (so it lags by at most `maintenance_interval`); unsampled returns use it, or the
    /// checkout time when later, as "now".
    pub(crate) coarse: Instant,
    /// `Some` while the pool is paused.
    paused: Option<Paused>,
    /// See the module rules.
    epoch: u64,
    evict_before: u64,
    /// `min_idle` in force (changed by `Pool::set_min_idle`).
    min_idle: usize,
    lifetimes: Lifetimes,
    /// Idle order: `false` LIFO (the default: the most recently used first), `true` FIFO.
    fifo: bool,
    /// The last hook panic or timeout, as `hook: fault` (the doctor names it).
    pub(crate) hook_fault: Option<String>,
    /// The last failed connect (including a failed `after_connect`) and how many there were:
    /// `Pool::ready` returns the first one after it started.
    pub(crate) connect_fault: Option<ConnectFault<E>>,
    pub(crate) connect_faults: u64,
    /// The failover-signature detector (`Config::failover_burst`); `None`: off.
    pub(crate) failover: Option<super::failover::Watch>,
    /// Credentials rotation (`credentials.rs`); inert without a provider.
    pub(crate) rotation: Rotation,
    /// The last connect failure was an authentication failure (cleared by a success).
    pub(crate) auth_failing: bool,
    /// A connection was parked in a lane under this lock since the last drain (see
    /// `lanes.rs`: the next locked section drains even if the gate stayed closed).
    pub(crate) lanes_dirty: bool,
}

/// A failed connect, kept for `Pool::ready` (cloned into its error).
#[derive(Debug)]
pub(crate) enum ConnectFault<E> {
    Backend(std::sync::Arc<E>),
    TimedOut(Duration),
    Hook(super::hooks::HookFailure),
    Credentials(super::CredentialsFault),
}

impl<E> Clone for ConnectFault<E> {
    fn clone(&self) -> Self {
        match self {
            ConnectFault::Backend(e) => ConnectFault::Backend(std::sync::Arc::clone(e)),
            ConnectFault::TimedOut(d) => ConnectFault::TimedOut(*d),
            ConnectFault::Hook(h) => ConnectFault::Hook(h.clone()),
            ConnectFault::Credentials(c) => ConnectFault::Credentials(c.clone()),
        }
    }
}

impl<E: std::error::Error + 'static> ConnectFault<E> {
    pub(crate) fn into_error(self) -> Error<E> {
        match self {
            ConnectFault::Backend(source) => Error::Backend {
                phase: super::error::Phase::Connect,
                source,
            },
            ConnectFault::TimedOut(after) => Error::PhaseTimeout {
                phase: super::error::Phase::Connect,
                after,
            },
            ConnectFault::Hook(h) => Error::Hook(h),
            ConnectFault::Credentials(c) => Error::Credentials(c),
        }
    }
}

impl<C, E: std::error::Error + 'static> Internals<C, E> {
    pub(crate) fn new(max_size: usize, breaker: Breaker<E>, now: Instant) -> Self {
        Self {
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            holders: Holders::default(),
            size: 0,
            opening: 0,
            abandoned: 0,
            max_size,
            closed: false,
            next_waiter: 0,
            woken: false,
            gets: 0,
            waited_saturated: 0,
            waited_cold: 0,
            waited_growing: 0,
            nested: Nested::default(),
            breaker,
            coarse: now,
            paused: None,
            epoch: 0,
            evict_before: 0,
            min_idle: 0,
            lifetimes: Lifetimes {
                idle_timeout: None,
                max_lifetime: None,
            },
            fifo: false,
            hook_fault: None,
            connect_fault: None,
            connect_faults: 0,
            failover: None,
            rotation: Rotation::new(1),
            auth_failing: false,
            lanes_dirty: false,
        }
    }

    /// At most `max_swaps` old-credential connections retire at once
    /// (`max_concurrent_opens`).
    pub(crate) fn with_rotation(mut self, max_swaps: usize) -> Self {
        self.rotation = Rotation::new(max_swaps);
        self
    }

    /// The run-time settings taken from the built configuration.
    pub(crate) fn with_settings(
        mut self,
        min_idle: usize,
        lifetimes: Lifetimes,
        fifo: bool,
    ) -> Self {
        self.min_idle = min_idle;
        self.lifetimes = lifetimes;
        self.fifo = fifo;
        self
    }

    /// Decides how many connections to open now and reserves them in `size`/`opening`.
    ///
    /// Opens serve waiters not already covered by an open in progress (surplus opens are
    /// elided), plus `min_idle` when `warm` (maintenance). Never more than
    /// `max_concurrent_opens` at once, one probe when the breaker is half-open, none when
    /// it is open or the pool is closed.
    pub(crate) fn plan_opens(
        &mut self,
        now: Instant,
        max_concurrent: usize,
        warm_min_idle: usize,
    ) -> usize {
        if self.closed {
            return 0;
        }
        // Paused waiters wait for `resume`, not for a connect.
        let want_waiters = if self.paused.is_some() {
            0
        } else {
            self.waiters.len().saturating_sub(self.opening)
        };
        let want_idle = warm_min_idle.saturating_sub(self.idle.len() + self.opening);
        // Each retired old-credential connection is owed its replacement.
        let want = want_waiters.max(want_idle).max(self.rotation.owed);
        if want == 0 {
            return 0;
        }
        let limit = self.breaker.open_limit(now).min(max_concurrent);
        let n = want
            .min(self.max_size.saturating_sub(self.size))
            .min(limit.saturating_sub(self.opening));
        self.size += n;
        self.opening += n;
        self.rotation.owed -= n.min(self.rotation.owed);
        n
    }

    // --- Reads -------------------------------------------------------------------------

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn waiters_len(&self) -> usize {
        self.waiters.len()
    }

    pub(crate) fn opening(&self) -> usize {
        self.opening
    }

    pub(crate) fn abandoned(&self) -> usize {
        self.abandoned
    }

    pub(crate) fn paused(&self) -> Option<Paused> {
        self.paused
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn min_idle(&self) -> usize {
        self.min_idle
    }

    pub(crate) fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// Whether `conn` may stay in the pool: `false` when it was soft-evicted (the caller
    /// releases its place and closes it); otherwise it is brought up to the current epoch's
    /// lifetimes. One comparison when nothing changed.
    #[cfg(test)]
    pub(crate) fn current(&mut self, conn: &mut Conn<C>) -> bool {
        self.stale(conn).is_none()
    }

    /// `None` to keep `conn` (of the current epoch, or see below); else the reason to close:
    /// `Evicted` (soft-evicted) or
    /// `Rotated` (opened with credentials a rotation replaced, and a retirement slot is
    /// free: its replacement is then owed and planned by the next `plan_opens`). An
    /// old-credential connection without a free slot stays, on the slow path (its epoch
    /// is left behind), until one is.
    #[inline]
    pub(crate) fn stale(&mut self, conn: &mut Conn<C>) -> Option<CloseReason> {
        if conn.epoch == self.epoch {
            return None;
        }
        self.stale_slow(conn)
    }

    /// [`stale`](Self::stale) for a connection of another epoch (kept out of line: the
    /// return fast path inlines only the comparison).
    #[cold]
    #[inline(never)]
    fn stale_slow(&mut self, conn: &mut Conn<C>) -> Option<CloseReason> {
        if conn.epoch < self.evict_before {
            return Some(CloseReason::Evicted);
        }
        conn.apply(self.lifetimes);
        if conn.cold.cred_gen < self.rotation.gen {
            if self.retire_slot() {
                self.rotation.owed += 1;
                return Some(CloseReason::Rotated);
            }
            return None;
        }
        conn.epoch = self.epoch;
        None
    }

    /// Whether an old-credential connection may retire now: a slot below
    /// `max_concurrent_opens` is free and the breaker lets connects through.
    fn retire_slot(&self) -> bool {
        self.rotation.may_retire(self.opening)
            && self.breaker.state() == super::breaker::BreakerState::Closed
            && !self.closed
    }

    /// A connection opened outside `plan_opens` (the probe of
    /// `Pool::refresh_credentials`) takes a place in `size` if one is free and the pool is
    /// open; `false`: the caller closes it.
    pub(crate) fn adopt(&mut self) -> bool {
        if self.closed || self.size >= self.max_size {
            return false;
        }
        self.size += 1;
        true
    }

    /// Credentials rotated (the probe succeeded): connections of an older generation take
    /// the slow path of [`stale`](Self::stale) from now on (a new epoch).
    pub(crate) fn rotated(&mut self) {
        self.epoch += 1;
    }

    /// Retires idle old-credential connections, oldest first, while retirement slots are
    /// free: each leaves `size` (returned to close) and is owed a replacement, which the
    /// caller plans (`plan_opens`) in the same critical section.
    pub(crate) fn retire_old_idle(&mut self) -> Vec<Conn<C>> {
        let mut out = Vec::new();
        if self.rotation.gen == 0 {
            return out;
        }
        let gen = self.rotation.gen;
        let mut i = 0;
        while i < self.idle.len() && self.retire_slot() {
            if self.idle[i].cold.cred_gen < gen {
                if let Some(c) = self.idle.remove(i) {
                    self.size -= 1;
                    self.rotation.owed += 1;
                    out.push(c);
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// Closed, and no connection counted or abandoned (pending closes are counted apart).
    pub(crate) fn is_empty_closed(&self) -> bool {
        self.closed && self.size == 0 && self.abandoned == 0
    }

    // --- Transitions -------------------------------------------------------------------

    /// Takes the most recently used idle connection. It stays counted in `size` ("in
    /// flight") until it is checked out, handed back with [`hand_off`](Self::hand_off), or
    /// its place is released with [`release_place`](Self::release_place).
    #[inline]
    pub(crate) fn take_idle(&mut self) -> Option<Conn<C>> {
        if self.fifo {
            self.idle.pop_front()
        } else {
            self.idle.pop_back()
        }
    }

    /// Gives back a connection just taken with [`take_idle`](Self::take_idle), where it
    /// was (the get's fast path leaves it to the full acquire loop).
    #[inline]
    pub(crate) fn untake_idle(&mut self, conn: Conn<C>) {
        if self.fifo {
            self.idle.push_front(conn);
        } else {
            self.idle.push_back(conn);
        }
    }

    /// Whether a get may take the fast path: the pool is open and not paused.
    #[inline]
    pub(crate) fn fast_get(&self) -> bool {
        !self.closed && self.paused.is_none()
    }

    /// Queues a caller (the caller checked `max_waiters` and the breaker) and counts why it
    /// waits. Returns the waiter's id, for [`remove_waiter`](Self::remove_waiter).
    pub(crate) fn queue_waiter(
        &mut self,
        site: &'static Location<'static>,
        task: Option<tokio::task::Id>,
        tx: oneshot::Sender<Reply<C, E>>,
        min_idle: usize,
        now: Instant,
    ) -> u64 {
        if self.size >= self.max_size {
            self.waited_saturated += 1;
        } else if self.size < min_idle.max(1) {
            self.waited_cold += 1;
        } else {
            self.waited_growing += 1;
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back(Waiter {
            id,
            site,
            task,
            tx,
            since: now,
        });
        id
    }

    /// A woken waiter that found no idle connection queues again at the front, keeping its
    /// first queueing time `since` (so the handoff budget counts its whole wait).
    pub(crate) fn requeue_front(
        &mut self,
        site: &'static Location<'static>,
        task: Option<tokio::task::Id>,
        tx: oneshot::Sender<Reply<C, E>>,
        since: Instant,
    ) -> u64 {
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_front(Waiter {
            id,
            site,
            task,
            tx,
            since,
        });
        id
    }

    /// The return path when someone waits (`put_idle_unless_wanted` declined): while the
    /// oldest waiter has waited less than `budget`, the connection goes idle (`Ok`), with
    /// the waiter to wake if none is woken yet; otherwise it is given back (`Err`) for the
    /// strict [`hand_off`](Self::hand_off).
    pub(crate) fn barge(
        &mut self,
        conn: Conn<C>,
        now: Instant,
        budget: Duration,
    ) -> Result<Option<Waiter<C, E>>, Conn<C>> {
        if self.closed || self.size > self.max_size {
            return Err(conn);
        }
        match self.waiters.front() {
            Some(w) if now.saturating_duration_since(w.since) < budget => {}
            _ => return Err(conn),
        }
        self.idle.push_back(conn);
        Ok(self.wake_for_idle())
    }

    /// The oldest waiter, taken out of the queue to be woken, when connections are idle, no
    /// waiter is woken yet and the pool is not paused.
    pub(crate) fn wake_for_idle(&mut self) -> Option<Waiter<C, E>> {
        // While paused nobody is woken: `resume` serves the queue.
        if self.woken || self.idle.is_empty() || self.paused.is_some() {
            return None;
        }
        let w = self.waiters.pop_front()?;
        self.woken = true;
        Some(w)
    }

    /// The woken waiter holds the lock again (or left): another one may be woken.
    pub(crate) fn end_wake(&mut self) {
        self.woken = false;
    }

    /// The oldest waiter, taken out of the queue (a connect failure goes to it).
    pub(crate) fn pop_waiter(&mut self) -> Option<Waiter<C, E>> {
        self.waiters.pop_front()
    }

    /// Every waiter, oldest first, taken out of the queue (the breaker opened).
    pub(crate) fn drain_waiters(&mut self) -> Vec<Waiter<C, E>> {
        self.waiters.drain(..).collect()
    }

    /// A ready connection counted in `size` goes to the oldest waiter (registered as held
    /// for it), else to the idle list; or, when the pool is closed or above `max_size`, its
    /// place is released and the caller must close it.
    /// A soft-evicted connection (see [`stale`](Self::stale)) is closed too; while the
    /// pool is paused the connection goes idle even if callers wait.
    #[inline]
    pub(crate) fn hand_off(&mut self, mut conn: Conn<C>, now: Instant) -> Handed<C, E> {
        let reason = if self.closed {
            Some(CloseReason::PoolClosed)
        } else if self.size > self.max_size {
            Some(CloseReason::Surplus)
        } else {
            self.stale(&mut conn)
        };
        if let Some(reason) = reason {
            self.size -= 1;
            return Handed::Close(conn, reason);
        }
        if self.paused.is_some() {
            self.idle.push_back(conn);
            return Handed::Idle;
        }
        match self.waiters.pop_front() {
            None => {
                self.idle.push_back(conn);
                Handed::Idle
            }
            Some(w) => {
                let slot = self.holders.insert(w.site, now, w.task);
                Handed::Waiter(w, conn, slot)
            }
        }
    }

    /// The return path's fast case: nobody waits, the pool is open and not above
    /// `max_size`, so the connection goes straight to the idle list (`None`). Otherwise it
    /// is given back (`Some`) for [`hand_off`](Self::hand_off), which serves the oldest
    /// waiter or releases the place. Same outcome as `hand_off` in the fast case, without
    /// building a [`Handed`] and its handoff loop.
    #[inline]
    pub(crate) fn put_idle_unless_wanted(&mut self, conn: Conn<C>) -> Option<Conn<C>> {
        if (self.waiters.is_empty() || self.paused.is_some())
            && !self.closed
            && self.size <= self.max_size
        {
            self.idle.push_back(conn);
            None
        } else {
            Some(conn)
        }
    }

    /// Whether a returned connection may take the return's fast path at `now`: its holder
    /// in `slot` neither leaked nor abandoned, its epoch current (nothing to evict or
    /// update), not due for retirement, the pool open, not above `max_size`, and nobody
    /// waiting. Then the caller removes the holder and puts it idle
    /// ([`put_idle`](Self::put_idle)) or resets it.
    #[inline]
    pub(crate) fn fast_return(&self, conn: &Conn<C>, slot: usize, now: Instant) -> bool {
        self.holders.is_plain(slot)
            && conn.epoch == self.epoch
            && !conn.retire_due(now)
            && self.waiters.is_empty()
            && !self.closed
            && self.size <= self.max_size
    }

    /// The return's fast path (see [`fast_return`](Self::fast_return)): into the idle list.
    #[inline]
    pub(crate) fn put_idle(&mut self, conn: Conn<C>) {
        self.idle.push_back(conn);
    }

    /// A connection in flight (taken idle, being validated or reset, refused by every
    /// waiter...) will be closed: its place in `size` is released. The caller closes it.
    pub(crate) fn release_place(&mut self) {
        debug_assert!(self.size > 0, "a place released twice");
        self.size -= 1;
    }

    /// A held connection is taken out of the pool for good (`detach`): its holder leaves
    /// the tracker and its place in `size` is released (or, abandoned, it leaves
    /// `abandoned`). Returns whether that was the last place of a closed pool.
    pub(crate) fn detach_held(&mut self, slot: usize) -> bool {
        match self.holders.remove(slot) {
            Some(h) if h.abandoned => self.abandoned_returned(),
            _ => self.release_place(),
        }
        self.is_empty_closed()
    }

    /// A connect failed: kept for `Pool::ready`.
    pub(crate) fn note_connect_fault(&mut self, fault: ConnectFault<E>) {
        self.connect_faults += 1;
        self.connect_fault = Some(fault);
    }

    /// An abandoned connection came back (the caller closes it).
    pub(crate) fn abandoned_returned(&mut self) {
        debug_assert!(self.abandoned > 0);
        self.abandoned -= 1;
    }

    /// A connect succeeded: the place it reserved now holds a connection in flight.
    pub(crate) fn opened(&mut self) {
        self.opening -= 1;
    }

    /// A connect failed or was cancelled: its reservation is released. Returns whether that
    /// was the last place of a closed pool.
    pub(crate) fn open_failed(&mut self) -> bool {
        self.size -= 1;
        self.opening -= 1;
        self.closed && self.size == 0
    }

    /// Maintenance's holder scan: marks leaks and abandoned holds; abandoned ones leave
    /// `size` (so a replacement can be opened) and are counted in `abandoned`.
    pub(crate) fn scan_holders(
        &mut self,
        now: Instant,
        leak_threshold: Option<Duration>,
        abandon_timeout: Option<Duration>,
    ) -> Scan {
        let scan = leak::scan(&mut self.holders, now, leak_threshold, abandon_timeout);
        self.size -= scan.abandoned.len();
        self.abandoned += scan.abandoned.len();
        scan
    }

    /// Maintenance's idle pass, oldest first: retires connections past their lifetime, above
    /// `max_size`, or idle too long while above `min_idle` (their places released, returned
    /// to close), and takes those due for keepalive out of the idle list (still in `size`:
    /// in flight). Returns `(to close, to validate)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn retire_idle(
        &mut self,
        now: Instant,
        min_idle: usize,
        bypass: Duration,
    ) -> (Vec<(Conn<C>, CloseReason)>, Vec<Conn<C>>) {
        let mut retire = Vec::new();
        let mut keepalive = Vec::new();
        let mut keep = VecDeque::with_capacity(self.idle.len());
        let mut idle_left = self.idle.len();
        while let Some(c) = self.idle.pop_front() {
            let reason = if c.retire_due(now) {
                Some(CloseReason::Lifetime)
            } else if self.size > self.max_size {
                Some(CloseReason::Surplus)
            } else if idle_left > min_idle && c.idle_expired(now) {
                Some(CloseReason::Idle)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.size -= 1;
                idle_left -= 1;
                retire.push((c, reason));
            } else if c.keepalive_due(now, bypass) {
                keepalive.push(c);
            } else {
                keep.push_back(c);
            }
        }
        self.idle = keep;
        (retire, keepalive)
    }

    /// Sets `max_size`; idle surplus leaves at once (oldest first, returned to close), held
    /// surplus when it comes back. Returns the old limit and the surplus.
    pub(crate) fn resize(&mut self, max_size: usize) -> (usize, Vec<Conn<C>>) {
        let old = std::mem::replace(&mut self.max_size, max_size);
        let mut surplus = Vec::new();
        while self.size > self.max_size {
            match self.idle.pop_front() {
                Some(c) => {
                    self.size -= 1;
                    surplus.push(c);
                }
                None => break,
            }
        }
        (old, surplus)
    }

    /// Closes the pool: every idle connection leaves `size` (returned to close) and every
    /// waiter leaves the queue (returned to be told). `None` when it was already closed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn close(&mut self) -> Option<(Vec<Conn<C>>, Vec<Waiter<C, E>>)> {
        if self.closed {
            return None;
        }
        self.closed = true;
        let idle: Vec<_> = self.idle.drain(..).collect();
        self.size -= idle.len();
        let waiters: Vec<_> = self.waiters.drain(..).collect();
        Some((idle, waiters))
    }

    /// Pauses the pool (or changes the mode of a pause in progress, keeping its start).
    pub(crate) fn pause(&mut self, mode: super::PauseMode, now: Instant) {
        let since = self.paused.map_or(now, |p| p.since);
        self.paused = Some(Paused { mode, since });
    }

    /// Ends a pause; `None` when the pool was not paused. The caller then serves the
    /// waiters, oldest first, with [`take_idle`](Self::take_idle) and
    /// [`pop_waiter`](Self::pop_waiter).
    pub(crate) fn resume(&mut self) -> Option<Paused> {
        self.paused.take()
    }

    /// `Pool::soft_evict_all`: every connection of the current epoch or older is evicted.
    /// The idle ones leave `size` now (returned to close); the others are closed when they
    /// next meet the lock ([`stale`](Self::stale)).
    pub(crate) fn soft_evict(&mut self) -> Vec<Conn<C>> {
        self.epoch += 1;
        self.evict_before = self.epoch;
        let idle: Vec<_> = self.idle.drain(..).collect();
        self.size -= idle.len();
        idle
    }

    /// Every idle connection, oldest first, taken out of the idle list but still counted in
    /// `size` (in flight): `Pool::retain` looks at each without the lock, then hands each
    /// back ([`hand_off`](Self::hand_off)) or releases its place.
    pub(crate) fn take_all_idle(&mut self) -> Vec<Conn<C>> {
        self.idle.drain(..).collect()
    }

    /// `Pool::set_min_idle` (validated by the caller).
    pub(crate) fn set_min_idle(&mut self, min_idle: usize) {
        self.min_idle = min_idle;
    }

    /// `Pool::set_idle_timeout` / `set_max_lifetime`: idle connections get the new
    /// lifetimes now, the others when they next meet the lock (a new epoch).
    pub(crate) fn set_lifetimes(&mut self, lifetimes: Lifetimes) {
        self.lifetimes = lifetimes;
        self.epoch += 1;
        let epoch = self.epoch;
        for c in self.idle.iter_mut() {
            c.apply(lifetimes);
            c.epoch = epoch;
        }
    }

    pub(crate) fn remove_waiter(&mut self, id: u64) -> bool {
        // Cancelled waiters are usually recent: search from the back.
        match self.waiters.iter().rposition(|w| w.id == id) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }

    /// Checked out and counted (abandoned ones excluded).
    pub(crate) fn in_use(&self) -> usize {
        self.holders.len() - self.abandoned
    }
}

#[cfg(test)]
mod tests {
    //! Each transition and its invariants, driven without a runtime: `size <= max_size`
    //! (outside a resize down), `opening <= max_concurrent_opens` and `opening <= size`,
    //! idle and waiters both non-empty only while a waiter is woken, and no lost place (every place taken out of
    //! `size` comes back to the caller as a connection to close or a failed reservation).

    use super::*;
    use crate::conn::breaker::Breaker;
    use crate::conn::Config;

    type I = Internals<u32, std::io::Error>;

    fn pool(max: usize) -> I {
        let b = Breaker::new(None, Duration::from_millis(25), Duration::from_secs(1));
        Internals::new(max, b, Instant::now())
    }

    fn conn(id: u64) -> Conn<u32> {
        let cfg = Config::default();
        Conn::new(
            id as u32,
            id,
            Instant::now(),
            &cfg,
            Lifetimes::of(&cfg),
            0,
            Duration::from_millis(500),
        )
    }

    /// The invariants that hold after every transition (resize down excepted for `size`).
    fn check(p: &I, max_opens: usize) {
        assert!(p.size <= p.max_size, "size {} > max {}", p.size, p.max_size);
        assert!(
            p.opening <= max_opens,
            "opening {} > {max_opens}",
            p.opening
        );
        assert!(p.opening <= p.size);
        assert!(p.idle.is_empty() || p.waiters.is_empty() || p.woken || p.paused.is_some());
        assert!(p.idle.len() + p.opening <= p.size);
    }

    /// Opens `n` connections through the real transitions; they end up idle.
    fn fill(p: &mut I, n: usize) {
        let now = Instant::now();
        let planned = p.plan_opens(now, n, n);
        assert_eq!(planned, n);
        for i in 0..n {
            p.opened();
            assert!(matches!(p.hand_off(conn(i as u64), now), Handed::Idle));
        }
    }

    #[test]
    fn plan_opens_reserves_within_both_limits() {
        let mut p = pool(3);
        let now = Instant::now();
        assert_eq!(p.plan_opens(now, 2, 5), 2, "capped by max_concurrent_opens");
        check(&p, 2);
        assert_eq!(p.plan_opens(now, 2, 5), 0, "two already opening");
        p.opened();
        assert_eq!(p.plan_opens(now, 2, 5), 1, "capped by max_size");
        assert_eq!((p.size, p.opening), (3, 2));
        check(&p, 2);
    }

    #[test]
    fn waiters_get_one_open_each_and_surplus_opens_are_elided() {
        let mut p = pool(4);
        let now = Instant::now();
        let (tx, _rx) = oneshot::channel();
        p.queue_waiter(Location::caller(), None, tx, 0, Instant::now());
        assert_eq!(p.waited_cold, 1, "an empty pool: cold");
        assert_eq!(p.plan_opens(now, 4, 0), 1);
        assert_eq!(p.plan_opens(now, 4, 0), 0, "the waiter is covered");
        check(&p, 4);
    }

    #[test]
    fn a_failed_open_gives_its_place_back() {
        let mut p = pool(1);
        assert_eq!(p.plan_opens(Instant::now(), 1, 1), 1);
        assert!(!p.open_failed(), "pool still open");
        assert_eq!((p.size, p.opening), (0, 0));
        check(&p, 1);
        assert_eq!(
            p.plan_opens(Instant::now(), 1, 1),
            1,
            "the place is usable again"
        );
        p.close();
        assert!(p.open_failed(), "the last place of a closed pool");
    }

    #[test]
    fn hand_off_serves_the_oldest_waiter_before_idle() {
        let mut p = pool(2);
        let now = Instant::now();
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        let first = p.queue_waiter(Location::caller(), None, tx1, 0, Instant::now());
        p.queue_waiter(Location::caller(), None, tx2, 0, Instant::now());
        assert_eq!(p.plan_opens(now, 2, 0), 2);
        p.opened();
        match p.hand_off(conn(0), now) {
            Handed::Waiter(w, _, slot) => {
                assert_eq!(w.id, first, "FIFO");
                assert!(p.holders.remove(slot).is_some(), "registered as held");
            }
            other => panic!("expected a waiter, got {other:?}"),
        }
        assert_eq!(p.waiters.len(), 1);
        check(&p, 2);
    }

    #[test]
    fn the_fast_paths_step_aside_for_every_case_the_full_flows_handle() {
        let now = Instant::now();
        let site = Location::caller();
        let mut p = pool(2);
        fill(&mut p, 2);
        // Checkout: open and not paused.
        assert!(p.fast_get());
        p.pause(crate::conn::PauseMode::Wait, now);
        assert!(!p.fast_get(), "paused");
        p.resume();
        // `untake_idle` puts a connection back where `take_idle` found it.
        let ids = |p: &I| p.idle.iter().map(|c| c.id).collect::<Vec<_>>();
        let before = ids(&p);
        let c = p.take_idle().expect("idle");
        p.untake_idle(c);
        assert_eq!(ids(&p), before, "LIFO: back at the back");
        p.fifo = true;
        let c = p.take_idle().expect("idle");
        p.untake_idle(c);
        assert_eq!(ids(&p), before, "FIFO: back at the front");
        p.fifo = false;

        // Return: a plain hold of the current epoch, nobody waiting, open, within max_size.
        let c = p.take_idle().expect("idle");
        let slot = p.holders.insert(site, now, None);
        assert!(p.fast_return(&c, slot, now));
        p.holders.iter_mut().for_each(|h| h.leaked = true);
        assert!(!p.fast_return(&c, slot, now), "a leaked hold is reported");
        p.holders.iter_mut().for_each(|h| {
            h.leaked = false;
            h.abandoned = true;
        });
        assert!(!p.fast_return(&c, slot, now), "an abandoned hold is closed");
        p.holders.iter_mut().for_each(|h| h.abandoned = false);
        p.set_lifetimes(p.lifetimes);
        assert!(
            !p.fast_return(&c, slot, now),
            "an older epoch: evict or update"
        );
        let mut c = c;
        assert!(p.current(&mut c));
        assert!(p.fast_return(&c, slot, now), "brought up to date");
        let (tx, _rx) = oneshot::channel();
        let w = p.queue_waiter(site, None, tx, 0, now);
        assert!(!p.fast_return(&c, slot, now), "someone waits");
        assert!(p.remove_waiter(w));
        p.resize(0);
        assert!(!p.fast_return(&c, slot, now), "above max_size");
        p.resize(2);
        assert!(p.fast_return(&c, slot, now));
        p.holders.remove(slot);
        assert!(!p.fast_return(&c, slot, now), "no such hold");
        p.put_idle(c);
        p.close().expect("first close");
        let c = p.take_idle();
        assert!(c.is_none(), "close took the idle ones");
        assert!(!p.fast_get(), "closed");
    }

    #[test]
    fn put_idle_unless_wanted_idles_only_when_nobody_wants_it() {
        let now = Instant::now();
        // Nobody waits, open, within max_size: idle, and the count is unchanged.
        let mut p = pool(2);
        fill(&mut p, 1);
        let c = p.take_idle().expect("idle");
        assert!(p.put_idle_unless_wanted(c).is_none());
        assert_eq!((p.size, p.idle.len()), (1, 1));
        check(&p, 2);

        // A waiter is queued: handed back, the queue and the idle list untouched.
        let c = p.take_idle().expect("idle");
        let (tx, _rx) = oneshot::channel();
        let first = p.queue_waiter(Location::caller(), None, tx, 0, Instant::now());
        let c = p.put_idle_unless_wanted(c).expect("a waiter wants it");
        assert_eq!((p.size, p.idle.len(), p.waiters.len()), (1, 0, 1));
        match p.hand_off(c, now) {
            Handed::Waiter(w, _, slot) => {
                assert_eq!(w.id, first);
                assert!(p.holders.remove(slot).is_some());
            }
            other => panic!("expected the waiter, got {other:?}"),
        }
        check(&p, 2);

        // Above max_size (a resize down while it was out): handed back, still counted.
        let mut p = pool(2);
        fill(&mut p, 2);
        let (a, b) = (p.take_idle().expect("idle"), p.take_idle().expect("idle"));
        p.resize(1);
        let a = p.put_idle_unless_wanted(a).expect("surplus");
        assert_eq!((p.size, p.idle.len()), (2, 0));
        assert!(matches!(
            p.hand_off(a, now),
            Handed::Close(_, CloseReason::Surplus)
        ));
        assert!(
            p.put_idle_unless_wanted(b).is_none(),
            "back at max_size: idle"
        );
        assert_eq!((p.size, p.idle.len()), (1, 1));

        // Closed: handed back, still counted until hand_off releases the place.
        let c = p.take_idle().expect("idle");
        p.close().expect("first close");
        let c = p.put_idle_unless_wanted(c).expect("closed");
        assert_eq!((p.size, p.idle.len()), (1, 0));
        assert!(matches!(
            p.hand_off(c, now),
            Handed::Close(_, CloseReason::PoolClosed)
        ));
        assert!(p.is_empty_closed());
    }

    #[test]
    fn take_idle_then_release_place_loses_nothing() {
        let mut p = pool(2);
        fill(&mut p, 2);
        let c = p.take_idle().expect("idle");
        assert_eq!(p.size, 2, "in flight, still counted");
        p.release_place();
        assert_eq!((p.size, p.idle.len()), (1, 1));
        drop(c);
        check(&p, 2);
    }

    #[test]
    fn hand_off_above_max_size_or_closed_releases_the_place() {
        let mut p = pool(2);
        fill(&mut p, 2);
        let (a, b) = (p.take_idle().expect("idle"), p.take_idle().expect("idle"));
        let (old, surplus) = p.resize(1);
        assert_eq!(old, 2);
        assert!(surplus.is_empty(), "both are in flight: none to close yet");
        assert_eq!(p.size, 2, "held surplus stays counted until it comes back");
        assert!(matches!(
            p.hand_off(a, Instant::now()),
            Handed::Close(_, CloseReason::Surplus)
        ));
        assert_eq!(p.size, 1);
        assert!(matches!(p.hand_off(b, Instant::now()), Handed::Idle));
        check(&p, 2);
        let c = p.take_idle().expect("idle");
        let (idle, waiters) = p.close().expect("first close");
        assert_eq!((idle.len(), waiters.len(), p.size), (0, 0, 1));
        assert!(p.close().is_none(), "idempotent");
        assert!(matches!(
            p.hand_off(c, Instant::now()),
            Handed::Close(_, CloseReason::PoolClosed)
        ));
        assert!(p.is_empty_closed());
    }

    #[test]
    fn resize_down_closes_idle_surplus_oldest_first() {
        let mut p = pool(3);
        fill(&mut p, 3);
        let (old, surplus) = p.resize(1);
        assert_eq!(old, 3);
        let ids: Vec<u64> = surplus.iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 1], "the oldest (front) go first");
        assert_eq!((p.size, p.max_size, p.idle.len()), (1, 1, 1));
        check(&p, 3);
    }

    #[test]
    fn abandoned_holds_leave_size_and_come_back_once() {
        let mut p = pool(1);
        fill(&mut p, 1);
        let t0 = Instant::now();
        let c = p.take_idle().expect("idle");
        p.holders.insert(Location::caller(), t0, None);
        let scan = p.scan_holders(
            t0 + Duration::from_secs(10),
            None,
            Some(Duration::from_secs(5)),
        );
        assert_eq!(scan.abandoned.len(), 1);
        assert_eq!((p.size, p.abandoned, p.in_use()), (0, 1, 0));
        assert_eq!(
            p.plan_opens(Instant::now(), 1, 1),
            1,
            "a replacement may open"
        );
        p.abandoned_returned();
        assert_eq!(p.abandoned, 0);
        drop(c);
        check(&p, 1);
    }

    #[test]
    fn retire_idle_keeps_min_idle_and_returns_the_rest_to_close() {
        let mut p = pool(3);
        fill(&mut p, 3);
        let later = Instant::now() + Duration::from_secs(3600);
        let (retire, keepalive) = p.retire_idle(later, 1, Duration::from_millis(500));
        // Past max_lifetime (30 min by default): every one retires, min_idle notwithstanding
        // (maintenance opens replacements).
        assert_eq!(retire.len(), 3);
        assert!(retire.iter().all(|(_, r)| *r == CloseReason::Lifetime));
        assert!(keepalive.is_empty());
        assert_eq!((p.size, p.idle.len()), (0, 0));
        check(&p, 3);
    }

    #[test]
    fn barge_idles_within_the_budget_and_wakes_one_waiter_at_a_time() {
        let t0 = Instant::now();
        let budget = Duration::from_millis(1);
        let mut p = pool(2);
        fill(&mut p, 2);
        let a = p.take_idle().expect("idle");
        let b = p.take_idle().expect("idle");
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        let first = p.queue_waiter(Location::caller(), None, tx1, 0, t0);
        let second = p.queue_waiter(Location::caller(), None, tx2, 0, t0);
        // Within the budget: idle, and the oldest waiter is taken out to be woken.
        let w = p
            .barge(a, t0, budget)
            .expect("idle")
            .expect("a waiter to wake");
        assert_eq!(w.id, first);
        check(&p, 2);
        assert_eq!((p.idle.len(), p.waiters.len()), (1, 1));
        // A second return while that waiter is on its way: idle, nobody else woken.
        assert!(p.barge(b, t0, budget).expect("idle").is_none());
        check(&p, 2);
        // The woken waiter takes one and passes the wake on for the other.
        p.end_wake();
        let got = p.take_idle().expect("idle");
        let next = p.wake_for_idle().expect("the next waiter");
        assert_eq!(next.id, second);
        assert!(p.wake_for_idle().is_none(), "one woken at a time");
        // Beyond the budget the return is given back for the strict handoff.
        p.end_wake();
        let (tx3, _rx3) = oneshot::channel();
        let third = p.requeue_front(Location::caller(), None, tx3, t0);
        let late = t0 + Duration::from_millis(2);
        let got = p.barge(got, late, budget).expect_err("strict");
        match p.hand_off(got, late) {
            Handed::Waiter(w, _, _) => assert_eq!(w.id, third),
            other => panic!("expected the waiter, got {other:?}"),
        }
        check(&p, 2);
    }

    #[test]
    fn paused_waiters_get_no_opens_and_connections_go_idle() {
        let mut p = pool(2);
        fill(&mut p, 1);
        let now = Instant::now();
        p.pause(crate::conn::PauseMode::Wait, now);
        let c = p.take_idle().expect("idle");
        let (tx, _rx) = oneshot::channel();
        p.queue_waiter(Location::caller(), None, tx, 0, now);
        assert_eq!(
            p.plan_opens(now, 2, 0),
            0,
            "a paused waiter asks for no connect"
        );
        assert!(
            p.put_idle_unless_wanted(c).is_none(),
            "idle, though someone waits"
        );
        assert_eq!((p.idle.len(), p.waiters.len()), (1, 1));
        check(&p, 2);
        assert!(p.resume().is_some());
        assert!(p.resume().is_none(), "once");
        // `Pool::resume` serves the queue from the idle list first, then plans opens.
        let c = p.take_idle().expect("idle");
        let w = p.pop_waiter().expect("the waiter");
        p.holders.insert(w.site, now, w.task);
        drop(c);
        assert_eq!(p.plan_opens(now, 2, 0), 0, "nobody left waiting");
    }

    #[test]
    fn soft_evict_closes_idle_now_and_older_epochs_where_they_meet_the_lock() {
        let mut p = pool(3);
        fill(&mut p, 3);
        let now = Instant::now();
        let mut held = p.take_idle().expect("idle");
        let evicted = p.soft_evict();
        assert_eq!(evicted.len(), 2);
        assert_eq!((p.size, p.idle.len()), (1, 0), "the held one still counts");
        assert!(!p.current(&mut held), "an older epoch is evicted");
        assert!(matches!(
            p.hand_off(held, now),
            Handed::Close(_, CloseReason::Evicted)
        ));
        assert_eq!(p.size, 0);
        // A connection of the new epoch stays.
        assert_eq!(p.plan_opens(now, 1, 1), 1);
        p.opened();
        let mut fresh = conn(9);
        fresh.epoch = p.epoch();
        assert!(p.current(&mut fresh));
        assert!(matches!(p.hand_off(fresh, now), Handed::Idle));
        check(&p, 1);
    }

    #[test]
    fn new_lifetimes_reach_idle_now_and_others_by_their_epoch() {
        let mut p = pool(2);
        fill(&mut p, 2);
        let mut held = p.take_idle().expect("idle");
        let life = Lifetimes {
            idle_timeout: None,
            max_lifetime: Some(Duration::from_secs(1)),
        };
        p.set_lifetimes(life);
        let later = Instant::now() + Duration::from_secs(2);
        assert!(p.idle.iter().all(|c| c.retire_due(later)), "idle: at once");
        assert!(!held.retire_due(later), "held: not yet");
        assert!(p.current(&mut held), "a lifetime change evicts nothing");
        assert!(held.retire_due(later), "held: when it meets the lock");
        assert_eq!(held.cold.idle_limit, None);
    }

    #[test]
    fn fifo_takes_the_least_recently_returned() {
        let mut p = pool(3).with_settings(0, Lifetimes::of(&Config::default()), true);
        fill(&mut p, 3);
        assert_eq!(p.take_idle().map(|c| c.id), Some(0));
        let mut p = pool(3);
        fill(&mut p, 3);
        assert_eq!(p.take_idle().map(|c| c.id), Some(2), "LIFO by default");
    }

    #[test]
    fn close_returns_every_idle_connection_and_waiter() {
        let mut p = pool(2);
        let (tx, _rx) = oneshot::channel();
        p.queue_waiter(Location::caller(), None, tx, 0, Instant::now());
        assert_eq!(p.plan_opens(Instant::now(), 1, 0), 1);
        let (idle, waiters) = p.close().expect("open");
        assert_eq!((idle.len(), waiters.len()), (0, 1));
        assert_eq!(
            p.plan_opens(Instant::now(), 1, 0),
            0,
            "no opens once closed"
        );
        assert!(p.open_failed(), "the reservation was the last place");
        assert!(p.is_empty_closed());
    }
}
