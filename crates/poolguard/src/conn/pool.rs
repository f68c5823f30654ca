//! The public front: [`Pool`].

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::breaker::BreakerState;
use super::config::{BuildError, Builder, Config};
use super::engine::Shared;
use super::error::{Error, Holder};
use super::guard::{OwnedPooledConnection, PooledConnection};
use super::hooks::HookName;
use super::maintenance;
use super::stats::{CloseReason, StatsSnapshot, Status};
use super::Manager;
use crate::diag::labels::{self, short_type_name, Engine};
use crate::diag::{Finding, PrometheusWriter};

/// An async connection pool. Cheap to clone (all clones share one pool); when the last
/// clone is dropped the pool closes: idle connections are closed, the maintenance task
/// stops, and connections still held are closed when they come back.
pub struct Pool<M: Manager> {
    pub(super) shared: Arc<Shared<M>>,
}

impl<M: Manager> Builder<M> {
    /// Validates the configuration and starts the pool (and its maintenance task) on the
    /// current tokio runtime.
    ///
    /// # Errors
    /// A [`BuildError`] naming the field, the problem and the fix; also when called
    /// outside a tokio runtime.
    pub fn build(mut self) -> Result<Pool<M>, BuildError> {
        self.config.validate()?;
        if self.hooks.credentials.is_some() && !self.manager.accepts_credentials() {
            return Err(BuildError {
                field: "credentials",
                problem: format!(
                    "is set, but the manager ({}) ignores credentials, so the provider's answers would never be used",
                    std::any::type_name::<M>()
                ),
                fix: "use a manager that accepts credentials (the PostgreSQL and Redis managers do), or drop the provider and configure the manager's own user and password",
            });
        }
        let rt = Handle::try_current().map_err(|_| BuildError {
            field: "runtime",
            problem: "no tokio runtime is running".into(),
            fix: "call build() from inside a tokio runtime (the pool spawns its maintenance and close tasks on it)",
        })?;
        if self.config.name.is_empty() {
            self.config.name =
                labels::default_label(Engine::Conn, &short_type_name(std::any::type_name::<M>()));
        }
        // Released when the last handle is dropped (see `Drop for Pool`).
        labels::register(Engine::Conn, &self.config.name);
        let shared = Arc::new(Shared::new(self.manager, self.config, rt, self.hooks));
        maintenance::spawn(&shared);
        tracing::info!(pool = %shared.cfg.name, max_size = shared.cfg.max_size, min_idle = shared.cfg.min_idle, "pool built");
        if shared.cfg.min_idle > 0 {
            let opens = {
                let mut st = shared.lock();
                shared.plan(&mut st, Instant::now(), shared.cfg.min_idle)
            };
            shared.spawn_opens(opens);
        }
        Ok(Pool { shared })
    }

    /// Builds the pool, then refuses to start without its backend: waits (at most
    /// `timeout`) for [`Pool::ready`], and when that fails closes the pool (what it opened
    /// is closed, each under `close_timeout`) and returns the error. For services that must
    /// not come up without their database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use poolguard::conn::{Pool, StartError};
    /// use poolguard_testkit::sim::{Behavior, Op, SimManager};
    ///
    /// let db = SimManager::new();
    /// db.set(Op::Connect, Behavior::Err); // every connect fails
    /// let started = Pool::builder(db.clone())
    ///     .min_idle(2)
    ///     .build_and_connect(Duration::from_secs(5))
    ///     .await;
    /// assert!(matches!(started, Err(StartError::Connect(_))));
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StartError::Build`] for a bad configuration; [`StartError::Connect`] with the
    /// first connect error (or a timeout) from [`Pool::ready`].
    pub async fn build_and_connect(
        self,
        timeout: Duration,
    ) -> Result<Pool<M>, StartError<M::Error>> {
        let pool = self.build().map_err(StartError::Build)?;
        match pool.ready(timeout).await {
            Ok(()) => Ok(pool),
            Err(e) => {
                tracing::warn!(pool = %pool.shared.cfg.name, error = %e, "pool not started: its backend is not ready");
                pool.close();
                let _ = pool.wait_closed(pool.shared.cfg.close_timeout).await;
                Err(StartError::Connect(e))
            }
        }
    }
}

/// Why [`Builder::build_and_connect`] refused to start the pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError<E: std::error::Error + 'static> {
    /// The configuration is invalid.
    #[error(transparent)]
    Build(BuildError),
    /// The backend could not be reached in time: the first connect error (phase-named) or
    /// a timeout.
    #[error("pool not started: {0}")]
    Connect(Error<E>),
}

impl<M: Manager> Pool<M> {
    /// The most holders [`Pool::holders`] (and the pool's diagnostics snapshot) lists.
    pub const MAX_LISTED_HOLDERS: usize = 64;

    /// A builder with the default [`Config`].
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    /// Gets a connection: an idle one at once (validated first if it was idle longer than
    /// `validation_bypass`), or waits in FIFO order for a returned or newly opened one,
    /// for at most `acquire_timeout` (a caller arriving while the oldest waiter has waited
    /// less than `handoff_after` may take a returned connection first; see
    /// [`Config::handoff_after`](super::Config::handoff_after)).
    ///
    /// The caller's location is recorded for leak reports and timeout snapshots.
    ///
    /// # Errors
    /// [`Error::Timeout`] with a snapshot; [`Error::Backend`] / [`Error::PhaseTimeout`]
    /// when the connect this caller waited for failed; [`Error::Unavailable`] when the
    /// breaker is open; [`Error::Overloaded`] past `max_waiters`; [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Dropping the future at any await point leaks nothing: the caller leaves the queue,
    /// and a connection handed over or being validated at that moment goes back to the
    /// pool (or is closed).
    ///
    /// # Tracing
    /// Each call runs in an `INFO` span `poolguard.conn.get` (target `poolguard::conn::get`)
    /// with fields `pool`, `wait_s` (seconds the get took, `f64`) and `outcome` (`ok` or
    /// [`Error::code`]), so a checkout shows in the trace of the request that made it. With
    /// no subscriber interested in that target, the span costs one cached check.
    #[track_caller]
    pub fn get(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<M>, Error<M::Error>>> + Send + '_ {
        let site = Location::caller();
        // The acquire itself: with no subscriber for the span, it is the whole future (the
        // span check is its first statement).
        self.shared
            .acquire::<true>(site, self.shared.acquire_timeout())
    }

    /// As [`get`](Pool::get), with this call's own deadline: `timeout`, capped at the pool's
    /// `acquire_timeout` (the operator's bound on every wait; a longer `timeout` is clamped
    /// to it, not refused, so callers can pass their request's remaining budget). A zero
    /// `timeout` takes an idle connection if there is one and fails with
    /// [`Error::Timeout`] otherwise (use [`try_get`](Pool::try_get) to tell "none idle" apart).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use poolguard::conn::{Error, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new()).max_size(1).build()?;
    /// let held = pool.get().await?;
    /// let second = pool.get_timeout(Duration::from_millis(50)).await;
    /// assert!(matches!(second, Err(Error::Timeout(_))));
    /// # drop(held); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<PooledConnection<M>, Error<M::Error>>> + Send + '_ {
        let site = Location::caller();
        let limit = timeout.min(self.shared.acquire_timeout());
        self.shared.acquire::<true>(site, limit)
    }

    /// An idle connection now, or [`Error::WouldBlock`]: it never queues and never opens a
    /// connection (keep `min_idle` above 0, or call [`ready`](Pool::ready), to have some).
    /// An idle connection is still validated when it was idle past `validation_bypass`, and
    /// `before_acquire` still runs, each under its own timeout (so this awaits only bounded
    /// work); a connection that fails either is closed and the next idle one tried.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::{Error, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new()).build()?;
    /// assert!(matches!(pool.try_get().await, Err(Error::WouldBlock))); // nothing opened yet
    /// drop(pool.get().await?);
    /// # tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    /// let conn = pool.try_get().await?; // the idle one
    /// # drop(conn); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when no idle connection is usable, [`Error::Closed`], or
    /// [`Error::Timeout`] if validation and hooks together outlast `acquire_timeout`.
    #[track_caller]
    pub fn try_get(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<M>, Error<M::Error>>> + Send + '_ {
        let site = Location::caller();
        self.shared
            .acquire::<false>(site, self.shared.acquire_timeout())
    }

    /// As [`get`](Pool::get), but the future and the guard are `'static`: the guard holds
    /// a handle to the pool (which stays open while it is held), so both can move into a
    /// spawned task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::Pool;
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new()).build()?;
    /// let task = tokio::spawn(pool.get_owned());
    /// let conn = task.await??;
    /// assert_eq!(conn.pool().status().in_use, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_owned(
        &self,
    ) -> impl Future<Output = Result<OwnedPooledConnection<M>, Error<M::Error>>> + Send + 'static
    {
        let site = Location::caller();
        let pool = self.clone();
        async move {
            let limit = pool.shared.acquire_timeout();
            let conn = pool.shared.acquire::<true>(site, limit).await?;
            Ok(OwnedPooledConnection::new(conn, pool))
        }
    }

    /// Waits until the pool is warm: `min_idle` connections open (or one, when `min_idle`
    /// is 0, which this opens), for at most `timeout`. Returns the first connect error seen
    /// after the call (the backend's error or a connect timeout, phase `connect`, or a
    /// failed `after_connect` hook) rather than waiting out a backend that refuses.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use poolguard::conn::Pool;
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new()).min_idle(3).max_concurrent_opens(3).build()?;
    /// pool.ready(Duration::from_secs(5)).await?;
    /// assert!(pool.status().idle >= 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Backend`] / [`Error::PhaseTimeout`] (phase `connect`) / [`Error::Hook`]:
    /// the first failed connect; [`Error::Timeout`] (with a snapshot) when connects were
    /// still running at the deadline; [`Error::Closed`].
    ///
    /// # Cancel safety
    /// It only watches: dropping it leaves the connects it started to finish and stay idle.
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error<M::Error>> {
        let start = Instant::now();
        let deadline = crate::deadline::add_tokio(start, timeout);
        let target = self.shared.lock().min_idle().max(1);
        let seen = self.shared.lock().connect_faults;
        loop {
            // Registered before the check, so a connect finishing in between is not missed.
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let (opens, wake) = {
                let mut st = self.shared.lock();
                if st.is_closed() {
                    return Err(Error::Closed);
                }
                if st.connect_faults != seen {
                    if let Some(f) = st.connect_fault.clone() {
                        return Err(f.into_error());
                    }
                }
                if st.size() - st.opening() >= target {
                    return Ok(());
                }
                let now = Instant::now();
                let opens = self.shared.plan(&mut st, now, target);
                // The breaker is open (it opened before this call): look again when its
                // probe is due, rather than only when a connect ends.
                let wake = if opens == 0
                    && st.opening() == 0
                    && st.breaker.state() != BreakerState::Closed
                {
                    crate::deadline::add_tokio(now, st.breaker.retry_in(now)).min(deadline)
                } else {
                    deadline
                };
                (opens, wake)
            };
            self.shared.spawn_opens(opens);
            if tokio::time::timeout_at(wake, progress).await.is_err() && wake >= deadline {
                let now = Instant::now();
                let snap = self.shared.timeout_snapshot(now, now - start);
                return Err(Error::Timeout(Box::new(snap)));
            }
        }
    }

    /// Closes the pool: new gets fail with `Closed`, waiters are woken with `Closed`, idle
    /// connections are closed (each under `close_timeout`), held ones are closed when they
    /// come back, and maintenance stops. Idempotent.
    pub fn close(&self) {
        self.shared.close_pool();
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().is_closed()
    }

    /// Waits until every connection is closed after [`close`](Pool::close), for at most
    /// `timeout`. Returns whether everything was closed in time.
    ///
    /// `Duration::MAX` waits as long as it takes (each close is bounded by `close_timeout`
    /// anyway); `Duration::ZERO` does not wait: it says whether everything is closed now.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline::after_tokio(timeout);
        loop {
            // Registered before the check, so a signal between the check and the await is
            // not lost; the drained state is final, so waking on it ends the loop.
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.is_drained() {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.shared.is_drained();
            }
        }
    }

    /// Changes `max_size`. Growing serves waiters at once; shrinking closes idle surplus
    /// now and held surplus when it comes back.
    ///
    /// # Errors
    /// When `max_size` is 0, below `min_idle` or above [`MAX_SIZE`](super::MAX_SIZE).
    pub fn resize(&self, max_size: usize) -> Result<(), BuildError> {
        let min_idle = self.shared.lock().min_idle();
        if max_size == 0 || max_size < min_idle {
            return Err(BuildError {
                field: "max_size",
                problem: format!(
                    "({max_size}) must be at least 1 and at least min_idle ({min_idle})"
                ),
                fix: "pass a larger size",
            });
        }
        if max_size > super::MAX_SIZE {
            return Err(BuildError {
                field: "max_size",
                problem: format!(
                    "({max_size}) is above the limit of {} connections",
                    super::MAX_SIZE
                ),
                fix: "pass a smaller size",
            });
        }
        let now = Instant::now();
        let (surplus, opens) = {
            let mut st = self.shared.lock();
            let (old, surplus) = st.resize(max_size);
            self.shared.begin_closes(surplus.len());
            tracing::info!(pool = %self.shared.cfg.name, old, new = max_size, "pool resized");
            (surplus, self.shared.plan(&mut st, now, 0))
        };
        for c in surplus {
            self.shared.close_conn(c, CloseReason::Surplus);
        }
        self.shared.spawn_opens(opens);
        Ok(())
    }

    /// The pool right now.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let mut st = self.shared.lock();
        // Reading the breaker may move it from open to half-open: fine, that is its clock.
        let _ = st.breaker.open_limit(now);
        self.shared.status_locked(&st)
    }

    /// The checked-out connections, oldest first (at most [`Pool::MAX_LISTED_HOLDERS`]),
    /// each with the call site of its `get`, how long it has been held and whether it was
    /// reported as a leak. Abandoned connections still held are included.
    pub fn holders(&self) -> Vec<Holder> {
        let now = Instant::now();
        self.shared
            .lock()
            .holders
            .longest(now, Self::MAX_LISTED_HOLDERS)
    }

    /// Totals since the pool was built.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.shared.stats.snapshot();
        let st = self.shared.lock();
        s.gets = st.gets;
        s.waited_saturated = st.waited_saturated;
        s.waited_cold = st.waited_cold;
        s.waited_growing = st.waited_growing;
        s.nested_acquires = st.nested.total;
        s
    }

    /// The configuration the pool was built with. Settings changed at run time
    /// ([`resize`](Self::resize), [`set_min_idle`](Self::set_min_idle),
    /// [`set_idle_timeout`](Self::set_idle_timeout), [`set_max_lifetime`](Self::set_max_lifetime),
    /// [`set_acquire_timeout`](Self::set_acquire_timeout)) are not shown here: see
    /// [`current_config`](Self::current_config).
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Diagnoses misuse and trouble from the live state and counters, then appends the
    /// manager's own findings ([`Manager::findings`]).
    pub fn doctor(&self) -> Vec<Finding> {
        let mut out = super::doctor::diagnose(&self.shared, &self.status(), &self.stats());
        out.extend(self.shared.manager.findings(&self.shared.cfg.name));
        out
    }

    /// Appends this pool's metrics in the Prometheus text format (families
    /// `poolguard_conn_*`, label `pool`; durations as histograms in seconds).
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        let s = self.status();
        let t = self.stats();
        let l = self.shared.cfg.name.as_str();
        let pool = [("pool", l)];
        for (name, help, v) in [
            (
                "poolguard_conn_size",
                "Connections counted against max_size (idle, in use, opening).",
                s.size,
            ),
            ("poolguard_conn_max_size", "The max_size limit.", s.max_size),
            (
                "poolguard_conn_min_idle",
                "The min_idle setting.",
                self.shared.lock().min_idle(),
            ),
            ("poolguard_conn_idle", "Idle connections.", s.idle),
            (
                "poolguard_conn_in_use",
                "Checked-out connections (abandoned excluded).",
                s.in_use,
            ),
            (
                "poolguard_conn_opening",
                "Connections being opened.",
                s.opening,
            ),
            (
                "poolguard_conn_waiters",
                "Callers waiting in get.",
                s.waiters,
            ),
            (
                "poolguard_conn_abandoned",
                "Abandoned connections still held.",
                s.abandoned,
            ),
            (
                "poolguard_conn_paused",
                "1 while the pool is paused (gets wait for resume or fail fast), else 0.",
                usize::from(s.paused),
            ),
        ] {
            w.gauge(name, help, &pool, v as f64);
        }
        for (state, label) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
        ] {
            w.gauge(
                "poolguard_conn_breaker_state",
                "The breaker's state: 1 for the current state, 0 for the others.",
                &[("pool", l), ("state", label)],
                if s.breaker == state { 1.0 } else { 0.0 },
            );
        }
        for (name, help, v) in [
            ("poolguard_conn_gets_total", "Calls to get.", t.gets),
            ("poolguard_conn_waited_total", "Gets that waited.", t.waited),
            (
                "poolguard_conn_waited_saturated_total",
                "Gets that waited with size at max_size.",
                t.waited_saturated,
            ),
            (
                "poolguard_conn_waited_cold_total",
                "Gets that waited on an empty pool or one below min_idle.",
                t.waited_cold,
            ),
            (
                "poolguard_conn_waited_growing_total",
                "Gets that waited for a new connection while the pool had room.",
                t.waited_growing,
            ),
            (
                "poolguard_conn_nested_acquires_total",
                "Gets that waited while their own task held a connection of this pool.",
                t.nested_acquires,
            ),
            (
                "poolguard_conn_timeouts_total",
                "Gets that hit the acquire timeout.",
                t.timed_out,
            ),
            (
                "poolguard_conn_overloaded_total",
                "Gets refused past max_waiters.",
                t.overloaded,
            ),
            (
                "poolguard_conn_unavailable_total",
                "Gets refused by the open breaker.",
                t.unavailable,
            ),
            (
                "poolguard_conn_created_total",
                "Connections opened.",
                t.created,
            ),
            (
                "poolguard_conn_connect_failures_total",
                "Connects that failed or timed out.",
                t.connect_failures,
            ),
            (
                "poolguard_conn_validations_total",
                "Validations run (checkout and keepalive).",
                t.validations,
            ),
            (
                "poolguard_conn_validation_failures_total",
                "Validations that failed or timed out.",
                t.validation_failures,
            ),
            (
                "poolguard_conn_validation_timeouts_total",
                "Validations that timed out (also counted as failures).",
                t.validation_timeouts,
            ),
            (
                "poolguard_conn_resets_total",
                "Resets run on return.",
                t.resets,
            ),
            (
                "poolguard_conn_breaker_opens_total",
                "Times the breaker opened.",
                t.breaker_opened,
            ),
            (
                "poolguard_conn_leaks_total",
                "Connections reported as leaked.",
                t.leaks,
            ),
            (
                "poolguard_conn_unleaks_total",
                "Leaked connections that came back later.",
                t.unleaked,
            ),
            (
                "poolguard_conn_paused_refused_total",
                "Gets refused at once because the pool was paused in fail-fast mode.",
                t.paused_refused,
            ),
            (
                "poolguard_conn_soft_evictions_total",
                "Soft-evicts (soft_evict_all calls and automatic ones).",
                t.soft_evictions,
            ),
            (
                "poolguard_conn_auto_soft_evictions_total",
                "Automatic soft-evicts on a failover signature.",
                t.auto_soft_evicts,
            ),
            (
                "poolguard_conn_detached_total",
                "Connections taken out of the pool for good (detach).",
                t.detached,
            ),
            (
                "poolguard_conn_would_block_total",
                "try_get calls that found no idle connection.",
                t.would_block,
            ),
            (
                "poolguard_conn_credentials_calls_total",
                "Calls to the credentials provider (one per connect).",
                t.credentials_calls,
            ),
            (
                "poolguard_conn_credentials_failures_total",
                "Credentials provider calls that failed, panicked or timed out.",
                t.credentials_failures,
            ),
            (
                "poolguard_conn_credential_rotations_total",
                "Credential rotations proven by a probe connect.",
                t.rotations,
            ),
            (
                "poolguard_conn_rotation_probe_failures_total",
                "Probe connects with changed credentials that failed (the old ones stayed in use).",
                t.rotation_probe_failures,
            ),
            (
                "poolguard_conn_auth_failures_total",
                "Connects that failed on authentication.",
                t.auth_failures,
            ),
        ] {
            w.counter(name, help, &pool, v);
        }
        for h in HookName::ALL {
            let hs = t.hook(h);
            w.counter(
                "poolguard_conn_hook_runs_total",
                "Lifecycle hook runs, by hook.",
                &[("pool", l), ("hook", h.as_str())],
                hs.runs,
            );
            for (outcome, v) in [
                ("refused", hs.refused),
                ("panicked", hs.panicked),
                ("timed_out", hs.timed_out),
            ] {
                w.counter(
                    "poolguard_conn_hook_failures_total",
                    "Lifecycle hook runs that failed (the connection was closed), by hook and outcome.",
                    &[("pool", l), ("hook", h.as_str()), ("outcome", outcome)],
                    v,
                );
            }
        }
        for r in CloseReason::ALL {
            w.counter(
                "poolguard_conn_closed_total",
                "Connections closed, by reason.",
                &[("pool", l), ("reason", r.as_str())],
                t.closed_by(r),
            );
        }
        for (phase, h) in [
            ("queue", &t.queue_time),
            ("validate", &t.checkout_validation_time),
        ] {
            w.histogram(
                "poolguard_conn_acquire_seconds",
                "Time gets spent per acquire phase (queued for a connection, validating one).",
                &[("pool", l), ("phase", phase)],
                h,
            );
        }
        for (name, help, h) in [
            (
                "poolguard_conn_wait_seconds",
                "Total time gets waited (gets that waited).",
                &t.wait_time,
            ),
            (
                "poolguard_conn_hold_seconds",
                "Time connections were held by callers (sampled uses).",
                &t.hold_time,
            ),
            (
                "poolguard_conn_connect_seconds",
                "Every connect, success or failure.",
                &t.connect_time,
            ),
            (
                "poolguard_conn_validation_seconds",
                "Every validation, success or failure.",
                &t.validation_time,
            ),
            (
                "poolguard_conn_reset_seconds",
                "Every reset, success or failure.",
                &t.reset_time,
            ),
        ] {
            w.histogram(name, help, &pool, h);
        }
    }

    /// This pool's metrics as Prometheus text.
    pub fn prometheus(&self) -> String {
        let mut w = PrometheusWriter::new();
        self.write_prometheus(&mut w);
        w.finish()
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Manager> Drop for Pool<M> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, AcqRel) == 1 {
            labels::release(Engine::Conn, &self.shared.cfg.name);
            self.shared.close_pool();
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.cfg.name)
            .field("status", &self.status())
            .finish()
    }
}
