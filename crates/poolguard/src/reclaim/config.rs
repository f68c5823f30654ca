//! Configuration: plain data, a `#[must_use]` builder, and the validation that `build()` runs.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::WatchdogEvent;
use super::Reclaimer;
use crate::diag::{validate_name, NameError};

/// What `defer` does when the queue is full (or the reclaimer is shut down).
///
/// Neither choice ever blocks the caller or lets the queue grow past its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Drop the value on the caller's thread and count it (`inline_drops`). The default: the
    /// caller pays for one drop, which is what it would have paid without a reclaimer.
    #[default]
    DropInline,
    /// Give the value back to the caller ([`Deferred::HandedBack`](super::Deferred::HandedBack)),
    /// counted as `handed_back`; the caller decides (retry later, keep it, drop it).
    HandBack,
}

/// A callback told about every watchdog report (slow job, stuck job), on the watchdog thread.
pub(crate) type WatchdogHook = Arc<dyn Fn(&WatchdogEvent) + Send + Sync>;

/// The time source of the figures (queue wait, run time) and of the watchdog's thresholds.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The reclaimer's configuration, as plain data. Build one with [`Reclaimer::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Name used in thread names, tracing, doctor findings and Prometheus labels. Empty (the
    /// default): a distinct generated `reclaim-N`. Otherwise 1 to
    /// [`MAX_NAME_BYTES`](crate::diag::MAX_NAME_BYTES) bytes without control characters (the
    /// rule of every pool). Two live reclaimers under one name get a `tracing` warning.
    pub name: String,
    /// Worker threads that normally drain the queue.
    pub workers: usize,
    /// Hard limit on threads alive at once, counting workers retired because they were stuck
    /// and still running their job. Replacements are never spawned past it.
    pub max_threads: usize,
    /// How many deferred drops may wait in the queue; beyond it [`Config::when_full`]
    /// applies.
    pub capacity: usize,
    /// What to do when the queue is full.
    pub when_full: WhenFull,
    /// A job running longer than this is reported (stats, `tracing` warning, watchdog hook)
    /// while it is still running.
    pub slow_threshold: Duration,
    /// A job running longer than this is counted as stuck and its worker is replaced.
    pub stuck_threshold: Duration,
    /// How long dropping the last handle (or [`Reclaimer::shutdown`]) waits for queued work
    /// before it drops the rest on its own thread.
    pub shutdown_timeout: Duration,
    /// Async closes that may run at once on the runtime.
    pub max_closes_in_flight: usize,
    /// The tokio runtime that runs async closes; without one, `close_async` refuses.
    #[cfg(feature = "tokio")]
    pub runtime: Option<tokio::runtime::Handle>,
    pub(crate) on_watchdog: Option<WatchdogHook>,
    pub(crate) clock: Option<Clock>,
}

impl Config {
    /// Whether async closes have a runtime to run on (never without the `tokio` feature).
    fn has_runtime(&self) -> bool {
        #[cfg(feature = "tokio")]
        return self.runtime.is_some();
        #[cfg(not(feature = "tokio"))]
        false
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("max_threads", &self.max_threads)
            .field("capacity", &self.capacity)
            .field("when_full", &self.when_full)
            .field("slow_threshold", &self.slow_threshold)
            .field("stuck_threshold", &self.stuck_threshold)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_closes_in_flight", &self.max_closes_in_flight)
            .field("runtime", &self.has_runtime())
            .field("on_watchdog", &self.on_watchdog.is_some())
            .field(
                "clock",
                &self.clock.as_ref().map_or("system", |_| "injected"),
            )
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            workers: 2,
            max_threads: 6,
            capacity: 4096,
            when_full: WhenFull::DropInline,
            slow_threshold: Duration::from_millis(100),
            stuck_threshold: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            max_closes_in_flight: 256,
            #[cfg(feature = "tokio")]
            runtime: None,
            on_watchdog: None,
            clock: None,
        }
    }
}

impl Config {
    /// How often the watchdog looks at the running jobs: often enough to see a job cross
    /// either threshold within a quarter of it, never busier than every millisecond.
    pub(crate) fn watchdog_period(&self) -> Duration {
        (self.slow_threshold.min(self.stuck_threshold) / 4).max(Duration::from_millis(1))
    }

    fn validate(&self) -> Result<(), BuildError> {
        if !self.name.is_empty() {
            validate_name(&self.name).map_err(BuildError::Name)?;
        }
        if self.workers == 0 {
            return Err(BuildError::NoWorkers);
        }
        if self.max_threads < self.workers || self.max_threads > MAX_THREADS {
            return Err(BuildError::ThreadLimit {
                workers: self.workers,
                max_threads: self.max_threads,
            });
        }
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if self.capacity > MAX_CAPACITY {
            return Err(BuildError::TooLarge {
                field: "capacity",
                value: self.capacity,
                max: MAX_CAPACITY,
            });
        }
        if self.max_closes_in_flight == 0 {
            return Err(BuildError::ZeroCloses);
        }
        if self.max_closes_in_flight > MAX_CLOSES_IN_FLIGHT {
            return Err(BuildError::TooLarge {
                field: "max_closes_in_flight",
                value: self.max_closes_in_flight,
                max: MAX_CLOSES_IN_FLIGHT,
            });
        }
        if self.slow_threshold < MIN_THRESHOLD || self.stuck_threshold <= self.slow_threshold {
            return Err(BuildError::Thresholds {
                slow: self.slow_threshold,
                stuck: self.stuck_threshold,
            });
        }
        if self.shutdown_timeout.is_zero() {
            return Err(BuildError::ZeroShutdownTimeout);
        }
        Ok(())
    }
}

/// The shortest `slow_threshold` accepted: 1 ms, the watchdog's shortest period. The
/// watchdog looks at running jobs every quarter of the smaller threshold but never more
/// often than every millisecond, so a shorter threshold could not be observed and would only
/// make it spin.
pub const MIN_THRESHOLD: Duration = Duration::from_millis(1);

/// The most threads one reclaimer may own (`max_threads`, workers included): 1024.
pub const MAX_THREADS: usize = 1024;
/// The largest queue `capacity` accepted: 1 048 576 deferred drops. A queue that long is a
/// backlog, not a buffer: add workers or drop inline.
pub const MAX_CAPACITY: usize = 1 << 20;
/// The largest `max_closes_in_flight` accepted: 65 536 async closes at once.
pub const MAX_CLOSES_IN_FLIGHT: usize = 1 << 16;

/// Why [`Builder::build`] refused a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The name breaks the naming rule shared by every pool and reclaimer (it also names
    /// the threads).
    #[error("invalid reclaimer name: {0}")]
    Name(#[source] NameError),
    /// A size above its documented limit ([`MAX_CAPACITY`], [`MAX_CLOSES_IN_FLIGHT`]).
    #[error(
        "reclaimer `{field}` is {value}, above its limit of {max}: a backlog that large hides \
         a stall instead of absorbing a burst; lower it (add workers if the queue fills)"
    )]
    TooLarge {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// `workers(0)`.
    #[error("reclaimer needs at least one worker thread: set `workers(n)` with n >= 1")]
    NoWorkers,
    /// `max_threads` below `workers` or above the hard ceiling.
    #[error(
        "reclaimer `max_threads` is {max_threads} with {workers} workers: it must be at least \
         `workers` (room to replace stuck workers needs more) and at most 1024"
    )]
    ThreadLimit {
        /// Configured workers.
        workers: usize,
        /// Configured hard limit.
        max_threads: usize,
    },
    /// `capacity(0)`.
    #[error("reclaimer queue capacity is 0: set `capacity(n)` with n >= 1 (default 4096)")]
    ZeroCapacity,
    /// `max_closes_in_flight(0)`.
    #[error("reclaimer `max_closes_in_flight` is 0: set it to at least 1 (default 256)")]
    ZeroCloses,
    /// Slow threshold below [`MIN_THRESHOLD`] or not below the stuck threshold.
    #[error(
        "reclaimer thresholds slow={slow:?} stuck={stuck:?}: the slow threshold must be at least \
         1 ms (MIN_THRESHOLD, the watchdog's shortest period) and strictly below the stuck \
         threshold"
    )]
    Thresholds {
        /// Configured slow threshold.
        slow: Duration,
        /// Configured stuck threshold.
        stuck: Duration,
    },
    /// `shutdown_timeout(0)`.
    #[error(
        "reclaimer shutdown timeout is 0: give dropping the last handle some time to run the \
         queued drops (default 5s)"
    )]
    ZeroShutdownTimeout,
    /// The operating system refused a worker thread.
    #[error("reclaimer could not spawn its threads ({0}); lower `workers` or raise the OS limit")]
    Spawn(#[source] std::io::Error),
}

/// Builds a [`Reclaimer`]; every setter has a sensible default.
#[must_use = "a builder does nothing until `build()` is called"]
#[derive(Debug, Clone, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// A builder from explicit plain-data configuration.
    pub fn from_config(cfg: Config) -> Self {
        Self { cfg }
    }

    /// Name in threads, logs, doctor findings and metrics (default: a distinct `reclaim-N`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// Worker threads (default 2). Raises `max_threads` to `workers + 4` if it was lower.
    pub fn workers(mut self, n: usize) -> Self {
        self.cfg.workers = n;
        if self.cfg.max_threads < n {
            self.cfg.max_threads = n.saturating_add(4);
        }
        self
    }

    /// Hard limit on live threads, stuck ones included (default 6).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.cfg.max_threads = n;
        self
    }

    /// Queue capacity (default 4096).
    pub fn capacity(mut self, n: usize) -> Self {
        self.cfg.capacity = n;
        self
    }

    /// Policy when the queue is full (default [`WhenFull::DropInline`]).
    pub fn when_full(mut self, p: WhenFull) -> Self {
        self.cfg.when_full = p;
        self
    }

    /// Report jobs running longer than this (default 100 ms; at least [`MIN_THRESHOLD`], 1 ms).
    pub fn slow_threshold(mut self, d: Duration) -> Self {
        self.cfg.slow_threshold = d;
        self
    }

    /// Count jobs running longer than this as stuck and replace their worker (default 2 s).
    pub fn stuck_threshold(mut self, d: Duration) -> Self {
        self.cfg.stuck_threshold = d;
        self
    }

    /// Bound on the flush run when the last handle is dropped (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.cfg.shutdown_timeout = d;
        self
    }

    /// Async closes running at once (default 256).
    pub fn max_closes_in_flight(mut self, n: usize) -> Self {
        self.cfg.max_closes_in_flight = n;
        self
    }

    /// The tokio runtime on which async closes run (its time driver must be enabled).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.cfg.runtime = Some(handle);
        self
    }

    /// A callback for every watchdog report, called on the watchdog thread (keep it short).
    pub fn on_watchdog(mut self, hook: impl Fn(&WatchdogEvent) + Send + Sync + 'static) -> Self {
        self.cfg.on_watchdog = Some(Arc::new(hook));
        self
    }

    /// The time source of the figures (queue wait and run time of each job) and of the
    /// watchdog's slow/stuck thresholds (default: `Instant::now`). Deadlines of `flush` and
    /// shutdown stay on the system clock. Tests inject a manual clock here, so the figures
    /// they assert are known exactly instead of measured.
    pub fn clock(mut self, now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.cfg.clock = Some(Arc::new(now));
        self
    }

    /// Validates the configuration and starts the worker threads and the watchdog.
    pub fn build(mut self) -> Result<Reclaimer, BuildError> {
        self.cfg.validate()?;
        if self.cfg.name.is_empty() {
            self.cfg.name =
                crate::diag::labels::default_label(crate::diag::labels::Engine::Reclaim, "reclaim");
        }
        Reclaimer::start(self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let e = Builder::default().workers(0).build().unwrap_err();
        assert!(matches!(e, BuildError::NoWorkers), "{e}");
        let e = Builder::default()
            .workers(4)
            .max_threads(3)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("at least `workers`"), "{e}");
        let e = Builder::default()
            .slow_threshold(Duration::from_secs(3))
            .stuck_threshold(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("strictly below"), "{e}");
        // Below the watchdog's 1 ms period: refused, the error names the floor.
        let e = Builder::default()
            .slow_threshold(Duration::from_nanos(1))
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::Thresholds { .. }), "{e}");
        assert!(e.to_string().contains("at least 1 ms"), "{e}");
        assert!(Builder::default()
            .slow_threshold(MIN_THRESHOLD)
            .stuck_threshold(MIN_THRESHOLD * 4)
            .build()
            .is_ok());
        let e = Builder::default().capacity(0).build().unwrap_err();
        assert!(matches!(e, BuildError::ZeroCapacity), "{e}");
        let e = Builder::default().name("a\0b").build().unwrap_err();
        assert!(
            matches!(e, BuildError::Name(NameError::ControlChar { at: 1 })),
            "{e}"
        );
        let e = Builder::default()
            .shutdown_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("shutdown timeout"), "{e}");
    }

    #[test]
    fn watchdog_period_is_a_quarter_of_the_smaller_threshold() {
        let mut c = Config {
            slow_threshold: Duration::from_millis(100),
            ..Config::default()
        };
        assert_eq!(c.watchdog_period(), Duration::from_millis(25));
        c.slow_threshold = Duration::from_micros(10);
        assert_eq!(c.watchdog_period(), Duration::from_millis(1));
    }
}
