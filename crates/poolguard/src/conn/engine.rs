//! The engine behind [`Pool`](super::Pool): [`Shared`], the state every handle, guard and
//! task shares, and the pool-wide operations (plan and spawn opens, close the pool). The
//! flows are beside it, one file each: `acquire.rs` (get, waiting, opening a connection),
//! `release.rs` (return, reset task, discard, close one connection) and `cancel.rs` (the
//! guards that make every await cancel-safe). The state itself, and every change to the
//! counts, is `internals.rs`.
//!
//! # The one lock
//!
//! `Shared::state` (a `parking_lot` mutex over [`Internals`]) is the pool's lock, always taken
//! through [`Shared::lock`], which drains the per-thread lanes (`lanes.rs`) into it first
//! and re-opens their gate when it is released, or, on the two shared fast paths only,
//! through [`Shared::lock_quick`], which does neither. The leak tracker (`Internals::holders`) and
//! the breaker (`Internals::breaker`) are plain data inside it, not locks of their own; the
//! stats (`Stats`, `closing`, `next_id`) are atomics, updated with or without the lock. Lock
//! order: the state lock, then a lane's lock (the lanes' fast paths take only their lane);
//! nothing else is taken while the state lock is held, except the `tracing` subscriber for
//! the few events emitted in a critical section (leak reports on return, the breaker
//! opening). The state lock is never held across an await: every critical section is a
//! synchronous block that decides, unlocks, then spawns, sends or closes.
//!
//! User code that runs under the state lock: [`Manager::is_broken`] on the checkout of an
//! idle connection, and [`Manager::needs_reset`] on every healthy return while the pool is
//! open (both documented on the trait as flag checks). Every other `Manager` method runs
//! on a task or in the caller's future, without the lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::cancel::Opening;
use super::error::Error;
use super::failover::Watch;
use super::hooks::{HookFailure, HookFault, HookName, Hooks};
use super::internals::{Internals, Lifetimes, Waiter};
use super::lanes::Lanes;
use super::stats::{CloseReason, Stats, Status};
use super::{Config, Manager};

pub(super) type State<M> = Internals<<M as Manager>::Connection, <M as Manager>::Error>;
pub(super) type PoolError<M> = Error<<M as Manager>::Error>;
pub(super) type WaiterOf<M> = Waiter<<M as Manager>::Connection, <M as Manager>::Error>;

// `repr(C)` with the lock first: the `Arc`'s reference counts, the lock word and the head of
// the state share cache lines, so a get touches fewer lines that the other worker also writes.
#[repr(C)]
pub(crate) struct Shared<M: Manager> {
    /// Only through [`lock`](Self::lock).
    state: Mutex<State<M>>,
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
    /// The lifecycle hooks (`hooks.rs`); `None` costs one branch on each path.
    pub(crate) hooks: Hooks<M::Connection>,
    /// Signalled after every connect outcome and on close (`Pool::ready`).
    pub(crate) progress: Notify,
    /// `acquire_timeout` in force, in nanoseconds (`Pool::set_acquire_timeout`; at most
    /// `MAX_DURATION`, so it fits). Read only when a get waits, validates or retries.
    pub(crate) acquire_timeout_ns: AtomicU64,
    /// The per-thread lanes of the checkout cycle (none when off).
    pub(crate) lanes: Lanes<M>,
}

/// The state lock, held: lanes drained when it was taken, their gate set when it is dropped
/// (or, from [`Shared::lock_quick`], neither).
pub(crate) struct Locked<'a, M: Manager> {
    guard: MutexGuard<'a, State<M>>,
    lanes: Option<&'a Lanes<M>>,
}

impl<M: Manager> std::ops::Deref for Locked<'_, M> {
    type Target = State<M>;
    #[inline]
    fn deref(&self) -> &State<M> {
        &self.guard
    }
}

impl<M: Manager> std::ops::DerefMut for Locked<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut State<M> {
        &mut self.guard
    }
}

impl<M: Manager> Drop for Locked<'_, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(lanes) = self.lanes {
            lanes.leave(&self.guard);
        }
    }
}

/// `d` in nanoseconds, saturating (validated durations are at most a year).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<M: Manager> std::fmt::Debug for Shared<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Shared<M> {
    /// Takes the state lock (see the module rules): every lane drained into it.
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_, M> {
        let mut guard = self.state.lock();
        self.lanes.enter(&mut guard);
        Locked {
            guard,
            lanes: Some(&self.lanes),
        }
    }

    /// Takes the state lock without draining the lanes, for the two shared fast paths only:
    /// a get that takes an idle connection from the shared list (or leaves for the full
    /// loop, which drains), and a return that makes its connection idle. Neither counts or
    /// walks idle connections or holders, nor makes the gate's conditions true, so they
    /// need not see the lanes; and draining there would empty every other thread's lane
    /// each time one thread's lane is empty, which then empties the next one's.
    #[inline]
    pub(crate) fn lock_quick(&self) -> Locked<'_, M> {
        Locked {
            guard: self.state.lock(),
            lanes: None,
        }
    }

    pub(crate) fn new(manager: M, cfg: Config, rt: Handle, hooks: Hooks<M::Connection>) -> Self {
        let cfg_bypass = cfg
            .validation_bypass
            .min(Duration::from_secs(100 * 365 * 24 * 3600));
        let breaker = Breaker::new(
            cfg.breaker_threshold,
            cfg.breaker_backoff,
            cfg.breaker_max_backoff,
        )
        .for_pool(&cfg.name);
        let mut internals = Internals::new(cfg.max_size, breaker, Instant::now())
            .with_settings(
                cfg.min_idle,
                Lifetimes::of(&cfg),
                cfg.idle_order == super::IdleOrder::Fifo,
            )
            .with_rotation(cfg.max_concurrent_opens);
        // Lanes need every checkout and return to be free to skip the shared path.
        let lanes = cfg.idle_order != super::IdleOrder::Fifo
            && cfg.leak_threshold.is_none()
            && hooks.before_acquire.is_none()
            && hooks.after_release.is_none();
        internals.failover = cfg
            .failover_burst
            .map(|n| Watch::new(n, cfg.failover_window, cfg.failover_cooldown));
        Self {
            state: Mutex::new(internals),
            acquire_timeout_ns: AtomicU64::new(duration_ns(cfg.acquire_timeout)),
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
            hooks,
            progress: Notify::new(),
            lanes: Lanes::new(lanes),
        }
    }

    /// `acquire_timeout` in force.
    pub(crate) fn acquire_timeout(&self) -> Duration {
        Duration::from_nanos(self.acquire_timeout_ns.load(Relaxed))
    }

    /// The counts as [`Status`], read under the lock the caller holds (`Pool::status` and
    /// the acquire-timeout snapshot).
    pub(crate) fn status_locked(&self, st: &State<M>) -> Status {
        Status {
            size: st.size(),
            max_size: st.max_size(),
            idle: st.idle_len(),
            in_use: st.in_use(),
            opening: st.opening(),
            waiters: st.waiters_len(),
            abandoned: st.abandoned(),
            closing: self.closing.load(Relaxed),
            breaker: st.breaker.state(),
            closed: st.is_closed(),
            paused: st.paused().is_some(),
            last_error: st.breaker.last_text.clone(),
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
                probe: false,
            };
            self.rt.spawn(opening.run());
        }
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
        let st = self.lock();
        st.is_empty_closed() && self.closing.load(Relaxed) == 0
    }

    /// `Pool::close`: no new gets, waiters woken with `Closed`, idle connections closed,
    /// held ones closed when they come back. Idempotent.
    pub(crate) fn close_pool(self: &Arc<Self>) {
        let (idle, waiters) = {
            let mut st = self.lock();
            // The lanes' references to this pool, also when it was closed before (none is
            // made after). Never the last reference: the caller holds one.
            drop(self.lanes.take_handles());
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
        self.progress.notify_waiters();
        // Nothing to close at all: `wait_closed` is done now.
        self.drained.notify_waiters();
    }
}

impl<M: Manager> Shared<M> {
    /// `Pool::soft_evict_all` (also run by the failover detector): every current
    /// connection retires, idle ones now; the refill is planned (paced) for waiters and
    /// `min_idle`. Returns how many idle connections were closed now.
    pub(crate) fn soft_evict(self: &Arc<Self>) -> usize {
        let now = Instant::now();
        let (idle, opens) = {
            let mut st = self.lock();
            if st.is_closed() {
                return 0;
            }
            let idle = st.soft_evict();
            self.begin_closes(idle.len());
            let min_idle = st.min_idle();
            (idle, self.plan(&mut st, now, min_idle))
        };
        self.stats.soft_evictions.fetch_add(1, Relaxed);
        tracing::info!(pool = %self.cfg.name, idle_closed = idle.len(), "soft evict: every current connection retires (idle now, held on return)");
        let n = idle.len();
        for c in idle {
            self.close_conn(c, CloseReason::Evicted);
        }
        self.spawn_opens(opens);
        n
    }

    /// An error the pool met (`phase`: where), when `failover_burst` is on: its failover
    /// class (if the manager names one) goes to the detector; a completed burst
    /// soft-evicts the pool once. The caller has checked that the option is on.
    pub(crate) fn failover_seen(
        self: &Arc<Self>,
        class: Option<&'static str>,
        phase: &'static str,
    ) {
        let Some(class) = class else {
            return;
        };
        let now = Instant::now();
        let hit = {
            let mut st = self.lock();
            if st.is_closed() {
                return;
            }
            let hit = st
                .failover
                .as_mut()
                .and_then(|w| w.observe(class, now, phase));
            hit.map(|t| (t, st.failover.as_ref().map(|w| (w.window(), w.cooldown()))))
        };
        let Some((t, Some((window, cooldown)))) = hit else {
            return;
        };
        self.stats.auto_soft_evicts.fetch_add(1, Relaxed);
        tracing::warn!(pool = %self.cfg.name, class = t.class, errors = t.count, within_s = t.within.as_secs_f64(), window_s = window.as_secs_f64(), cooldown_s = cooldown.as_secs_f64(), phase, "failover signature: {} `{}` errors within {:.1?}; soft-evicting every connection (paced refill), next automatic one not before {cooldown:?}", t.count, t.class, t.within);
        self.soft_evict();
    }

    /// A hook run failed on connection `conn`: a refusal is a decision (`debug`); a panic or
    /// a timeout is a bug in the hook (`warn`, kept for the doctor).
    pub(crate) fn hook_failed(&self, hook: HookName, conn: u64, fault: &HookFault) -> HookFailure {
        let failure = HookFailure {
            hook,
            fault: fault.clone(),
        };
        match fault {
            HookFault::Refused(_) => {
                tracing::debug!(pool = %self.cfg.name, conn, %hook, error = %failure, "hook refused the connection; closing it");
            }
            HookFault::Panicked(_) | HookFault::TimedOut(_) => {
                tracing::warn!(pool = %self.cfg.name, conn, %hook, error = %failure, "hook failed (contained); closing the connection");
                self.lock().hook_fault = Some(failure.to_string());
            }
        }
        failure
    }
}
