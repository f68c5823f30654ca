//! The state under the pool lock: idle connections, the FIFO of waiters, the holders and the
//! counters that bound the pool.
//!
//! Rules (every field may only be read or written with `Shared::state` locked):
//! * `size` counts every connection that exists or is being opened, except abandoned ones:
//!   idle + held + opening + "in flight" (being validated, reset, or handed to a waiter).
//!   Every increment happens in [`Internals::plan_opens`] before the connect starts, so
//!   `size <= max_size` holds at every instant (a `resize` down lets it exceed the new limit
//!   until the surplus comes back and is closed).
//! * `idle` and `waiters` are never both non-empty: a returned connection goes to the
//!   oldest waiter first, and a caller only queues when `idle` is empty. That is the whole
//!   fairness argument: FIFO handoff, no barging.
//! * A waiter is removed from `waiters` exactly once: by the deliverer (`pop_front`), by a
//!   failure broadcast, or by its own cancellation guard.

use std::collections::VecDeque;
use std::panic::Location;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::error::Error;
use super::leak::Holders;

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
    /// Last time it came back to the pool (or, for unsampled returns, was checked out).
    pub(crate) last_used: Instant,
    /// Last time it was known alive (validated, reset or returned) plus
    /// `validation_bypass`: until then a checkout skips validation. Stored as the sum so the
    /// checkout compares two instants instead of computing a duration.
    pub(crate) fresh_until: Instant,
    pub(crate) cold: Box<Cold>,
}

/// The per-connection facts that only maintenance and close events read.
#[derive(Debug)]
pub(crate) struct Cold {
    pub(crate) created: Instant,
    /// `idle_timeout - jitter`.
    pub(crate) idle_limit: Option<Duration>,
    /// `keepalive_interval - jitter`.
    pub(crate) keepalive: Option<Duration>,
}

fn jittered(d: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return d;
    }
    let cut = fastrand::f64() * jitter;
    d.mul_f64(1.0 - cut)
}

impl<C> Conn<C> {
    /// `bypass`: see [`Shared::bypass`](super::inner::Shared::bypass).
    pub(crate) fn new(
        raw: C,
        id: u64,
        now: Instant,
        cfg: &super::Config,
        bypass: Duration,
    ) -> Self {
        Self {
            raw,
            id,
            uses: 0,
            retire_at: cfg
                .max_lifetime
                .map(|d| crate::deadline::add_tokio(now, jittered(d, cfg.jitter))),
            last_used: now,
            fresh_until: crate::deadline::add_tokio(now, bypass),
            cold: Box::new(Cold {
                created: now,
                idle_limit: cfg.idle_timeout.map(|d| jittered(d, cfg.jitter)),
                keepalive: cfg.keepalive_interval.map(|d| jittered(d, cfg.jitter)),
            }),
        }
    }

    pub(crate) fn retire_due(&self, now: Instant) -> bool {
        self.retire_at.is_some_and(|t| now >= t)
    }

    pub(crate) fn idle_expired(&self, now: Instant) -> bool {
        self.cold
            .idle_limit
            .is_some_and(|d| now.saturating_duration_since(self.last_used) >= d)
    }

    /// Records that it was known alive at `now` (`bypass`: see [`Shared::bypass`]).
    ///
    /// [`Shared::bypass`]: super::inner::Shared::bypass
    pub(crate) fn checked_at(&mut self, now: Instant, bypass: Duration) {
        self.fresh_until = crate::deadline::add_tokio(now, bypass);
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

pub(crate) type Reply<C, E> = Result<Handoff<C>, Error<E>>;

#[derive(Debug)]
pub(crate) struct Waiter<C, E: std::error::Error + 'static> {
    pub(crate) id: u64,
    pub(crate) site: &'static Location<'static>,
    pub(crate) tx: oneshot::Sender<Reply<C, E>>,
}

/// `repr(C)`, hot fields first: the get/return path reads `closed`, `gets`, `size`,
/// `max_size`, `idle`, `waiters` and `holders`, which then sit next to the lock word.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Internals<C, E: std::error::Error + 'static> {
    pub(crate) closed: bool,
    /// Calls to `get` (kept here, not in `Stats`: the get path holds this lock anyway).
    pub(crate) gets: u64,
    /// See the module rules.
    pub(crate) size: usize,
    pub(crate) max_size: usize,
    /// Idle connections; pushed and popped at the back (the most recently used is reused
    /// first, so the surplus ages out at the front).
    pub(crate) idle: VecDeque<Conn<C>>,
    /// Callers waiting, oldest first.
    pub(crate) waiters: VecDeque<Waiter<C, E>>,
    /// Call site and age of every checked-out connection.
    pub(crate) holders: Holders,
    /// Connects in progress (included in `size`).
    pub(crate) opening: usize,
    /// Abandoned connections still held (not in `size`).
    pub(crate) abandoned: usize,
    pub(crate) next_waiter: u64,
    pub(crate) breaker: Breaker<E>,
    /// Gets that queued, by the pool's state when they did (counted on the wait path only):
    /// every place in use (`size >= max_size`), ...
    pub(crate) waited_saturated: u64,
    /// ... the pool empty or below `min_idle`, ...
    pub(crate) waited_cold: u64,
    /// ... or room to grow (the get waited for a new connection).
    pub(crate) waited_growing: u64,
    /// A clock for the return path that costs nothing: advanced by each maintenance pass
    /// (so it lags by at most `maintenance_interval`); unsampled returns use it, or the
    /// checkout time when later, as "now".
    pub(crate) coarse: Instant,
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
            gets: 0,
            waited_saturated: 0,
            waited_cold: 0,
            waited_growing: 0,
            breaker,
            coarse: now,
        }
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
        let want_waiters = self.waiters.len().saturating_sub(self.opening);
        let want_idle = warm_min_idle.saturating_sub(self.idle.len() + self.opening);
        let want = want_waiters.max(want_idle);
        if want == 0 {
            return 0;
        }
        let limit = self.breaker.open_limit(now).min(max_concurrent);
        let n = want
            .min(self.max_size.saturating_sub(self.size))
            .min(limit.saturating_sub(self.opening));
        self.size += n;
        self.opening += n;
        n
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
