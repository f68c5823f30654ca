//! Counters, histograms and the `status()` snapshot.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::diag::{Histogram, HistogramSnapshot};

use super::breaker::BreakerState;
use super::hooks::{HookCounters, HookName, HookStats};

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// `Manager::is_broken`, or the holder reported a fatal error / called `mark_broken`.
    Broken,
    /// Validation failed or timed out.
    Validation,
    /// Reset failed or timed out.
    Reset,
    /// Idle longer than `idle_timeout`.
    Idle,
    /// Older than `max_lifetime`.
    Lifetime,
    /// Came back after being abandoned.
    Abandoned,
    /// Above `max_size` after a `resize` down.
    Surplus,
    /// The pool was closed.
    PoolClosed,
    /// Evicted: `Pool::soft_evict_all` (closed when idle, or on return) or refused by a
    /// `Pool::retain` predicate.
    Evicted,
    /// A lifecycle hook refused it, panicked or hung (`after_connect`, `before_acquire`,
    /// `after_release`).
    Hook,
    /// Opened with credentials a rotation replaced (see `Builder::credentials`), retired
    /// once the new ones were proven.
    Rotated,
}

impl CloseReason {
    /// Every reason, in the order of [`StatsSnapshot::closed`].
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Broken,
        CloseReason::Validation,
        CloseReason::Reset,
        CloseReason::Idle,
        CloseReason::Lifetime,
        CloseReason::Abandoned,
        CloseReason::Surplus,
        CloseReason::PoolClosed,
        CloseReason::Evicted,
        CloseReason::Hook,
        CloseReason::Rotated,
    ];

    /// A short lowercase name (Prometheus label value).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Broken => "broken",
            CloseReason::Validation => "validation",
            CloseReason::Reset => "reset",
            CloseReason::Idle => "idle",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Abandoned => "abandoned",
            CloseReason::Surplus => "surplus",
            CloseReason::PoolClosed => "pool_closed",
            CloseReason::Evicted => "evicted",
            CloseReason::Hook => "hook",
            CloseReason::Rotated => "rotated",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The live counters (relaxed atomics; totals since the pool was built).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) waited: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) validations: AtomicU64,
    pub(crate) validation_failures: AtomicU64,
    pub(crate) validation_timeouts: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) leaks: AtomicU64,
    pub(crate) unleaked: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) close_timeouts: AtomicU64,
    pub(crate) closes_done: AtomicU64,
    pub(crate) breaker_opened: AtomicU64,
    pub(crate) paused_refused: AtomicU64,
    pub(crate) soft_evictions: AtomicU64,
    pub(crate) auto_soft_evicts: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) hooks: [HookCounters; HookName::ALL.len()],
    pub(crate) detached: AtomicU64,
    pub(crate) would_block: AtomicU64,
    pub(crate) credentials_calls: AtomicU64,
    pub(crate) credentials_failures: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) rotation_probe_failures: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) wait_time: Histogram,
    /// Recorded on the return's fast path (every sampled use, from every thread): on lines
    /// of its own, so those writes do not evict the fields every checkout reads.
    pub(crate) hold_time: crossbeam_utils::CachePadded<Histogram>,
    pub(crate) queue_time: Histogram,
    pub(crate) checkout_validation_time: Histogram,
    pub(crate) connect_time: Histogram,
    pub(crate) validation_time: Histogram,
    pub(crate) reset_time: Histogram,
}

impl Stats {
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        StatsSnapshot {
            gets: 0,
            waited: l(&self.waited),
            waited_saturated: 0,
            waited_cold: 0,
            waited_growing: 0,
            nested_acquires: 0,
            timed_out: l(&self.timed_out),
            overloaded: l(&self.overloaded),
            unavailable: l(&self.unavailable),
            created: l(&self.created),
            connect_failures: l(&self.connect_failures),
            validations: l(&self.validations),
            validation_failures: l(&self.validation_failures),
            validation_timeouts: l(&self.validation_timeouts),
            resets: l(&self.resets),
            leaks: l(&self.leaks),
            unleaked: l(&self.unleaked),
            abandoned: l(&self.abandoned),
            close_timeouts: l(&self.close_timeouts),
            closes_done: l(&self.closes_done),
            breaker_opened: l(&self.breaker_opened),
            paused_refused: l(&self.paused_refused),
            soft_evictions: l(&self.soft_evictions),
            auto_soft_evicts: l(&self.auto_soft_evicts),
            closed: CloseReason::ALL.map(|r| l(&self.closed[r.index()])),
            hooks: HookName::ALL.map(|h| self.hooks[h.index()].snapshot()),
            detached: l(&self.detached),
            would_block: l(&self.would_block),
            credentials_calls: l(&self.credentials_calls),
            credentials_failures: l(&self.credentials_failures),
            rotations: l(&self.rotations),
            rotation_probe_failures: l(&self.rotation_probe_failures),
            auth_failures: l(&self.auth_failures),
            wait_time: self.wait_time.snapshot(),
            hold_time: self.hold_time.snapshot(),
            queue_time: self.queue_time.snapshot(),
            checkout_validation_time: self.checkout_validation_time.snapshot(),
            connect_time: self.connect_time.snapshot(),
            validation_time: self.validation_time.snapshot(),
            reset_time: self.reset_time.snapshot(),
        }
    }
}

/// Totals since the pool was built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Calls to `get`.
    pub gets: u64,
    /// Gets that had to wait (no idle connection at hand).
    pub waited: u64,
    /// Gets that waited with every place in use (`size` at `max_size`): the pool is too
    /// small for the load, or connections are held too long.
    pub waited_saturated: u64,
    /// Gets that waited on an empty pool, or one below `min_idle` (start-up, or after
    /// connections were closed).
    pub waited_cold: u64,
    /// Gets that waited for a new connection while the pool had room (at or above
    /// `min_idle`, below `max_size`).
    pub waited_growing: u64,
    /// Gets that waited while their own task already held a connection of this pool (a
    /// nested acquire: enough such tasks deadlock the pool). Seen on the wait path only: a
    /// nested get served at once by an idle connection is not counted.
    pub nested_acquires: u64,
    /// Gets that ended in an acquire timeout.
    pub timed_out: u64,
    /// Gets refused by admission control (`max_waiters`).
    pub overloaded: u64,
    /// Gets refused fast because the breaker was open.
    pub unavailable: u64,
    /// Connections opened.
    pub created: u64,
    /// Connects that failed or timed out.
    pub connect_failures: u64,
    /// Validations run (checkout and keepalive).
    pub validations: u64,
    /// Validations that failed or timed out.
    pub validation_failures: u64,
    /// Validations that timed out (counted in `validation_failures` too): cut off by
    /// `validation_timeout` or by the caller's own deadline.
    pub validation_timeouts: u64,
    /// Resets run on return.
    pub resets: u64,
    /// Connections reported as leaked: held past `leak_threshold`, seen by maintenance while
    /// still out or on their return.
    pub leaks: u64,
    /// Leaked connections that came back (those reported on their return included), so
    /// `leaks - unleaked` are still out.
    pub unleaked: u64,
    /// Connections abandoned by maintenance.
    pub abandoned: u64,
    /// `Manager::close` calls cut off by `close_timeout`.
    pub close_timeouts: u64,
    /// Closes finished (politely or cut off).
    pub closes_done: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Gets refused at once because the pool was paused with `PauseMode::FailFast`.
    pub paused_refused: u64,
    /// Soft-evicts: calls to `Pool::soft_evict_all` and the automatic ones.
    pub soft_evictions: u64,
    /// Automatic soft-evicts on a failover signature (`Config::failover_burst`), included
    /// in `soft_evictions`.
    pub auto_soft_evicts: u64,
    /// Connections closed, by [`CloseReason`] (indexed as [`CloseReason::ALL`]).
    pub closed: [u64; CloseReason::ALL.len()],
    /// Each lifecycle hook's runs and failures (indexed as [`HookName::ALL`]:
    /// `after_connect`, `before_acquire`, `after_release`; see [`hook`](Self::hook)).
    pub hooks: [HookStats; HookName::ALL.len()],
    /// Connections taken out of the pool for good (`detach`).
    pub detached: u64,
    /// `try_get` calls that found no idle connection ([`Error::WouldBlock`](super::Error::WouldBlock)).
    pub would_block: u64,
    /// Calls to the credentials provider (one per connect while one is set).
    pub credentials_calls: u64,
    /// Provider calls that failed, panicked or timed out (each failed its connect).
    pub credentials_failures: u64,
    /// Credential rotations proven by a probe connect (older connections then retire).
    pub rotations: u64,
    /// Probe connects with changed credentials that failed (the old ones stayed in use).
    pub rotation_probe_failures: u64,
    /// Connects that failed on authentication (`Manager::is_auth_failure`).
    pub auth_failures: u64,
    /// Time callers waited (only gets that waited).
    pub wait_time: HistogramSnapshot,
    /// Time connections were held by callers, sampled: the 1st, 9th, 17th... use of each
    /// connection (so the return path rarely reads the clock).
    pub hold_time: HistogramSnapshot,
    /// Acquire phase `queue`: time gets spent queued for a connection (handed over by a
    /// return or by a connect the pool started), one sample per wait.
    pub queue_time: HistogramSnapshot,
    /// Acquire phase `validate`: time gets spent validating an idle connection on checkout
    /// (idle past the validation bypass window).
    pub checkout_validation_time: HistogramSnapshot,
    /// Every connect (started by a get, by `min_idle` or by maintenance), success or failure.
    pub connect_time: HistogramSnapshot,
    /// Every validation (on checkout and keepalive), success or failure.
    pub validation_time: HistogramSnapshot,
    /// Every reset on return, success or failure.
    pub reset_time: HistogramSnapshot,
}

impl StatsSnapshot {
    /// Connections closed for `reason`.
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// One hook's totals.
    pub fn hook(&self, hook: HookName) -> HookStats {
        self.hooks[hook.index()]
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }
}

/// The pool right now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Connections counted against `max_size`: idle + in use + being opened, validated or reset.
    pub size: usize,
    /// The limit.
    pub max_size: usize,
    /// Idle connections.
    pub idle: usize,
    /// Checked out by callers (abandoned ones excluded).
    pub in_use: usize,
    /// Being opened.
    pub opening: usize,
    /// Callers waiting.
    pub waiters: usize,
    /// Abandoned connections still held by their callers (not counted in `size`).
    pub abandoned: usize,
    /// Closes pending or running: counted from the moment a connection leaves `size` (or
    /// `abandoned`) to be closed until its close has finished or timed out.
    pub closing: usize,
    /// The breaker.
    pub breaker: BreakerState,
    /// `close()` was called (or every `Pool` handle was dropped).
    pub closed: bool,
    /// [`Pool::pause`](super::Pool::pause) is in force: gets wait for
    /// [`resume`](super::Pool::resume) or fail fast.
    pub paused: bool,
    /// The most recent backend error the pool met while connecting or validating, as
    /// `phase: error` (e.g. `connect: connection refused`; the shipped managers' errors never
    /// print a password), kept after
    /// the backend recovers; `None` if there has been none.
    pub last_error: Option<String>,
}
