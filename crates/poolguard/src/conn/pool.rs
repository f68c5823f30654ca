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
use super::error::Error;
use super::guard::PooledConnection;
use super::maintenance;
use super::stats::{CloseReason, StatsSnapshot, Status};
use super::Manager;
use crate::diag::labels::{self, short_type_name, Engine};
use crate::diag::{Finding, PrometheusWriter, Severity};

/// An async connection pool. Cheap to clone (all clones share one pool); when the last
/// clone is dropped the pool closes: idle connections are closed, the maintenance task
/// stops, and connections still held are closed when they come back.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
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
        let shared = Arc::new(Shared::new(self.manager, self.config, rt));
        maintenance::spawn(&shared);
        tracing::info!(pool = %shared.cfg.name, max_size = shared.cfg.max_size, min_idle = shared.cfg.min_idle, "pool built");
        if shared.cfg.min_idle > 0 {
            let opens = {
                let mut st = shared.state.lock();
                shared.plan(&mut st, Instant::now(), shared.cfg.min_idle)
            };
            shared.spawn_opens(opens);
        }
        Ok(Pool { shared })
    }
}

impl<M: Manager> Pool<M> {
    /// A builder with the default [`Config`].
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    /// Gets a connection: an idle one at once (validated first if it was idle longer than
    /// `validation_bypass`), or waits in FIFO order for a returned or newly opened one,
    /// for at most `acquire_timeout`.
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
    #[track_caller]
    pub fn get(
        &self,
    ) -> impl Future<Output = Result<PooledConnection<M>, Error<M::Error>>> + Send + '_ {
        let site = Location::caller();
        self.shared.acquire(site)
    }

    /// Closes the pool: new gets fail with `Closed`, waiters are woken with `Closed`, idle
    /// connections are closed (each under `close_timeout`), held ones are closed when they
    /// come back, and maintenance stops. Idempotent.
    pub fn close(&self) {
        self.shared.close_pool();
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().is_closed()
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
        if max_size == 0 || max_size < self.shared.cfg.min_idle {
            return Err(BuildError {
                field: "max_size",
                problem: format!(
                    "({max_size}) must be at least 1 and at least min_idle ({})",
                    self.shared.cfg.min_idle
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
            let mut st = self.shared.state.lock();
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
        let mut st = self.shared.state.lock();
        // Reading the breaker may move it from open to half-open: fine, that is its clock.
        let _ = st.breaker.open_limit(now);
        self.shared.status_locked(&st)
    }

    /// Totals since the pool was built.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.shared.stats.snapshot();
        let st = self.shared.state.lock();
        s.gets = st.gets;
        s.waited_saturated = st.waited_saturated;
        s.waited_cold = st.waited_cold;
        s.waited_growing = st.waited_growing;
        s
    }

    /// The configuration in force (`max_size` as built; see [`Status::max_size`]).
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Diagnoses misuse and trouble from the live state and counters.
    pub fn doctor(&self) -> Vec<Finding> {
        let s = self.status();
        let t = self.stats();
        let cfg = &self.shared.cfg;
        let label = cfg.name.clone();
        let mut out = Vec::new();
        let (last, failing, noted) = {
            let st = self.shared.state.lock();
            (
                st.breaker.last_text.clone(),
                st.breaker.failures,
                st.breaker.noted,
            )
        };
        if s.breaker == BreakerState::Closed && (failing > 0 || noted > 0) {
            // Failing now, the breaker not (yet) open: say so before it opens, or when it is off.
            let breaker = match cfg.breaker_threshold {
                Some(n) => format!("the breaker opens after {n} consecutive failures"),
                None => "the breaker is off, so gets keep waiting for connects".to_owned(),
            };
            out.push(Finding::new(
                if s.idle + s.in_use == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                "conn.connect-failures",
                &label,
                format!(
                    "{failing} consecutive connect failures (or validation timeouts) and {noted} failed validations since the last success ({} connects and {} validations failed in total, {} connections open); {breaker}; last error: {}",
                    t.connect_failures,
                    t.validation_failures,
                    s.idle + s.in_use,
                    last.as_deref().unwrap_or("none")
                ),
                "fix what the last error names (credentials, address, database name, server health)",
            ));
        }
        if s.breaker != BreakerState::Closed {
            out.push(Finding::new(
                Severity::Critical,
                "conn.breaker-open",
                &label,
                format!(
                    "the breaker is {} after repeated failures; last error: {}",
                    s.breaker,
                    last.as_deref().unwrap_or("none")
                ),
                "restore the backend (gets fail fast until a probe succeeds)",
            ));
        }
        if t.leaks > t.unleaked {
            let holders = self.shared.timeout_snapshot(Instant::now(), Duration::ZERO);
            let sites: Vec<String> = holders
                .longest_holders
                .iter()
                .filter(|h| h.leaked)
                .map(|h| h.to_string())
                .collect();
            out.push(Finding::new(
                Severity::Critical,
                "conn.leak",
                &label,
                format!(
                    "{} connection(s) held past leak_threshold and not returned: {}",
                    t.leaks - t.unleaked,
                    sites.join(", ")
                ),
                "return the connection on every path (drop the guard; avoid holding it across slow awaits)",
            ));
        }
        if t.timed_out > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "conn.acquire-timeouts",
                &label,
                format!("{} of {} gets timed out waiting", t.timed_out, t.gets),
                "look at the timeout errors' snapshots: leaks, long holders, a slow backend, or a max_size too small",
            ));
        }
        if t.overloaded > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "conn.overloaded",
                &label,
                format!(
                    "{} gets refused past max_waiters ({})",
                    t.overloaded, cfg.max_waiters
                ),
                "add capacity or shed load upstream",
            ));
        }
        // Waits, by what the pool looked like when they queued. A share above 5 % (at max
        // size) or 10 % (cold, growing) of all gets is worth a finding.
        if t.waited_saturated > 0 && t.waited_saturated * 20 > t.gets {
            out.push(Finding::new(
                Severity::Warning,
                "conn.saturated",
                &label,
                format!(
                    "{} of {} gets waited with all {} connections in use (size = max_size); wait p99 {:.1?}, hold p99 {:.1?}, {} timed out",
                    t.waited_saturated,
                    t.gets,
                    s.max_size,
                    t.wait_time.p99(),
                    t.hold_time.p99(),
                    t.timed_out
                ),
                "raise max_size if the backend has room for more connections, or hold each connection for less time (no slow work, no unrelated awaits while holding it)",
            ));
        }
        if t.waited_cold > 0 && t.waited_cold * 10 > t.gets {
            let (message, fix) = if cfg.min_idle == 0 {
                (
                    format!(
                        "{} of {} gets waited for a connect on an empty pool, and min_idle is 0",
                        t.waited_cold, t.gets
                    ),
                    "set min_idle so maintenance keeps connections warm",
                )
            } else {
                (
                    format!(
                        "{} of {} gets waited while the pool held fewer than min_idle ({}) connections; {} closed so far ({} idle, {} lifetime, {} broken), {} connects failed",
                        t.waited_cold,
                        t.gets,
                        cfg.min_idle,
                        t.closed_total(),
                        t.closed_by(CloseReason::Idle),
                        t.closed_by(CloseReason::Lifetime),
                        t.closed_by(CloseReason::Broken),
                        t.connect_failures
                    ),
                    "let the pool warm up before it takes traffic (min_idle connections are opened at build); if it keeps falling below min_idle, look at why connections close and why connects fail",
                )
            };
            out.push(Finding::new(
                Severity::Info,
                "conn.cold-start",
                &label,
                message,
                fix,
            ));
        }
        if t.waited_growing > 0 && t.waited_growing * 10 > t.gets {
            out.push(Finding::new(
                Severity::Info,
                "conn.waits-for-connect",
                &label,
                format!(
                    "{} of {} gets waited for a new connection while the pool had room (size between min_idle {} and max_size {}); {} opened, {} closed",
                    t.waited_growing,
                    t.gets,
                    cfg.min_idle,
                    s.max_size,
                    t.created,
                    t.closed_total()
                ),
                format!(
                    "raise min_idle toward the usual demand so connections are ready; if connections close soon after use, fix that (see closed-by reasons); max_concurrent_opens ({}) bounds how fast the pool grows",
                    cfg.max_concurrent_opens
                ),
            ));
        }
        if cfg.abandon_timeout.is_some() {
            out.push(Finding::new(
                Severity::Info,
                "conn.abandon-on",
                &label,
                format!(
                    "abandon_timeout {:?}: a longer transaction loses its connection's slot ({} abandoned so far)",
                    cfg.abandon_timeout.unwrap_or_default(),
                    t.abandoned
                ),
                "keep it well above your longest legitimate transaction",
            ));
        }
        if t.close_timeouts > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "conn.close-timeouts",
                &label,
                format!("{} closes exceeded close_timeout", t.close_timeouts),
                "the backend is slow to say goodbye; check the network",
            ));
        }
        out.extend(self.shared.manager.findings(&label));
        out
    }

    /// Appends this pool's metrics in the Prometheus text format.
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        let s = self.status();
        let t = self.stats();
        let l = self.shared.cfg.name.as_str();
        let pool = [("pool", l)];
        for (name, help, v) in [
            (
                "poolguard_conn_size",
                "Connections counted against max_size.",
                s.size,
            ),
            ("poolguard_conn_max_size", "The max_size limit.", s.max_size),
            ("poolguard_conn_idle", "Idle connections.", s.idle),
            (
                "poolguard_conn_in_use",
                "Checked-out connections.",
                s.in_use,
            ),
            ("poolguard_conn_waiters", "Callers waiting.", s.waiters),
            (
                "poolguard_conn_abandoned",
                "Abandoned connections still held.",
                s.abandoned,
            ),
        ] {
            w.gauge(name, help, &pool, v as f64);
        }
        let breaker = match s.breaker {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            _ => 2.0,
        };
        w.gauge(
            "poolguard_conn_breaker_state",
            "0 closed, 1 half-open, 2 open.",
            &pool,
            breaker,
        );
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
                "poolguard_conn_timeouts_total",
                "Gets that timed out.",
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
                "Failed connects.",
                t.connect_failures,
            ),
            (
                "poolguard_conn_validation_failures_total",
                "Failed validations.",
                t.validation_failures,
            ),
            (
                "poolguard_conn_leaks_total",
                "Connections reported as leaked.",
                t.leaks,
            ),
        ] {
            w.counter(name, help, &pool, v);
        }
        for r in CloseReason::ALL {
            w.counter(
                "poolguard_conn_closed_total",
                "Connections closed, by reason.",
                &[("pool", l), ("reason", r.as_str())],
                t.closed_by(r),
            );
        }
        w.summary(
            "poolguard_conn_wait_seconds",
            "Time gets waited.",
            &pool,
            &t.wait_time,
        );
        w.summary(
            "poolguard_conn_hold_seconds",
            "Time connections were held.",
            &pool,
            &t.hold_time,
        );
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
