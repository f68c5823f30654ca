//! Pool configuration: plain data, a `#[must_use]` builder, and a validating `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::Pool;
use super::Recycle;
use crate::diag::{validate_name, NameError};
use crate::reclaim::Reclaimer;

/// The default `max_object_bytes`: 64 KiB, Go's `fmt` rule for its print buffers.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 64 * 1024;
/// The default `max_idle_bytes`: 64 MiB.
pub const DEFAULT_MAX_IDLE_BYTES: usize = 64 * 1024 * 1024;
/// The default `max_idle`: 1024 objects.
pub const DEFAULT_MAX_IDLE: usize = 1024;
/// The largest `max_idle` accepted: 16 777 216 objects. A pool that should keep more is a
/// cache, not a pool.
pub const MAX_IDLE: usize = 1 << 24;
/// The largest `shards` accepted: 1024. Each shard is a lock and a cache line, allocated
/// when the pool is built; more shards than cores only spread the objects thinner.
pub const MAX_SHARDS: usize = 1024;
/// The largest `local_slots` accepted: 4096 per-thread cells (a cache line each, allocated
/// when the pool is built); threads beyond them use the shared stacks.
pub const MAX_LOCAL_SLOTS: usize = 4096;

/// What a pool may retain and how it is laid out. Plain data; see [`Builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Objects retained in total, on every tier together (hard cap). 1 to [`MAX_IDLE`].
    pub max_idle: usize,
    /// Heap bytes retained in total, as reported by [`Recycle::heap_bytes`] (hard cap).
    pub max_idle_bytes: usize,
    /// An object reporting more heap bytes than this is dropped on return, not kept.
    pub max_object_bytes: usize,
    /// Number of shared stacks (each with its own lock and its own victim generation). 1 to
    /// [`MAX_SHARDS`].
    pub shards: usize,
    /// Number of per-thread slots (one cached object each); threads beyond it use the
    /// shared stacks only. At most [`MAX_LOCAL_SLOTS`]; capped at `max_idle / 2` when the
    /// pool is built.
    pub local_slots: usize,
    /// Report checkouts held longer than this (off when `None`).
    pub hold_threshold: Option<Duration>,
    /// The label used in stats, traces, doctor findings and metrics. Unset (the default): the
    /// type's short name and a sequence number (`Vec<u8>-1`, `Vec<u8>-2`), distinct for
    /// every pool; two live pools given the same name get a `tracing` warning. 1 to [`MAX_NAME_BYTES`](crate::diag::MAX_NAME_BYTES) bytes, no control characters
    /// ([`validate_name`], the rule of every pool and reclaimer).
    pub name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_idle: DEFAULT_MAX_IDLE,
            max_idle_bytes: DEFAULT_MAX_IDLE_BYTES,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            shards: cores.next_power_of_two().clamp(1, 64),
            local_slots: (cores * 4).clamp(8, 256),
            hold_threshold: None,
            name: None,
        }
    }
}

/// Why a pool could not be built: what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_idle` was zero.
    #[error("max_idle is 0, so the pool could never keep an object; set max_idle to at least 1 (or do not pool)")]
    ZeroMaxIdle,
    /// `shards` was zero.
    #[error("shards is 0; set shards to at least 1 (the default is the number of cores)")]
    ZeroShards,
    /// An object of the largest allowed size could not fit the byte budget.
    #[error("max_object_bytes ({max_object_bytes}) exceeds max_idle_bytes ({max_idle_bytes}): no object of that size could be kept; lower max_object_bytes or raise max_idle_bytes")]
    ObjectLargerThanBudget {
        /// The configured per-object cap.
        max_object_bytes: usize,
        /// The configured total cap.
        max_idle_bytes: usize,
    },
    /// The hold-tracking threshold was zero.
    #[error("hold_threshold is zero, so every checkout would be reported; use a positive duration (e.g. 1s) or disable hold tracking")]
    ZeroHoldThreshold,
    /// A size was above its documented limit ([`MAX_IDLE`], [`MAX_SHARDS`],
    /// [`MAX_LOCAL_SLOTS`]).
    #[error("{field} is {value}, above its limit of {max}: {fix}")]
    TooLarge {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The largest value accepted.
        max: usize,
        /// How to fix it.
        fix: &'static str,
    },
    /// The name breaks the naming rule shared by every pool and reclaimer.
    #[error("invalid pool name: {0}")]
    Name(#[source] NameError),
}

/// A time source for hold tracking: the elapsed time since some fixed origin.
pub(crate) type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    let origin = Instant::now();
    Arc::new(move || origin.elapsed())
}

pub(crate) type Factory<T> = Box<dyn Fn() -> T + Send + Sync>;

/// Builds a [`Pool`]: `Pool::builder(|| Vec::with_capacity(4096)).max_idle(256).build()?`.
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder<T> {
    pub(crate) factory: Factory<T>,
    pub(crate) config: Config,
    pub(crate) clock: Option<Clock>,
    pub(crate) reclaimer: Option<Reclaimer>,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("type", &std::any::type_name::<T>())
            .field("config", &self.config)
            .field("reclaimer", &self.reclaimer)
            .finish_non_exhaustive()
    }
}

impl<T: Recycle + Send + 'static> Builder<T> {
    pub(crate) fn new(factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            factory: Box::new(factory),
            config: Config::default(),
            clock: None,
            reclaimer: None,
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Objects retained in total (default 1024).
    pub fn max_idle(mut self, n: usize) -> Self {
        self.config.max_idle = n;
        self
    }

    /// Heap bytes retained in total (default 64 MiB).
    pub fn max_idle_bytes(mut self, bytes: usize) -> Self {
        self.config.max_idle_bytes = bytes;
        self
    }

    /// Largest object kept, in heap bytes (default 64 KiB).
    pub fn max_object_bytes(mut self, bytes: usize) -> Self {
        self.config.max_object_bytes = bytes;
        self
    }

    /// Number of shared stacks (default: cores rounded up to a power of two).
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }

    /// Number of per-thread slots (default: 4 per core, 8..=256); 0 disables the local tier.
    pub fn local_slots(mut self, n: usize) -> Self {
        self.config.local_slots = n;
        self
    }

    /// Report checkouts held longer than `threshold`, with their call site (off by default).
    pub fn hold_threshold(mut self, threshold: Duration) -> Self {
        self.config.hold_threshold = Some(threshold);
        self
    }

    /// The pool's label in stats, traces and metrics (default: the type's short name and a
    /// sequence number, e.g. `Vec<u8>-1`). Give each live pool its own: two live pools under
    /// one name get a `tracing` warning, as their metrics would collide.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// The time source of hold tracking (default: a monotonic clock). Tests inject a manual
    /// clock here instead of sleeping.
    pub fn clock(mut self, now: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(now));
        self
    }

    /// Hands what the pool frees to `reclaimer` instead of dropping it on the caller's
    /// thread: each trim cycle's freed objects (one job per batch, labelled with the pool's
    /// type name), budget evictions, and objects dropped on return as oversized. When the
    /// reclaimer refuses (queue full, shut down) its [`WhenFull`](crate::reclaim::WhenFull)
    /// policy applies and the batch is dropped on the caller, counted in
    /// [`PoolStats::reclaim_refused`](super::PoolStats::reclaim_refused); nothing is lost.
    pub fn reclaimer(mut self, reclaimer: Reclaimer) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// Validates the configuration and builds the pool.
    ///
    /// Nothing is allocated before every size is checked against its limit, and nothing
    /// allocated at build is proportional to more than [`MAX_SHARDS`] or [`MAX_LOCAL_SLOTS`].
    pub fn build(self) -> Result<Pool<T>, BuildError> {
        self.config.validate()?;
        Ok(Pool::from_builder(self))
    }
}

impl Config {
    /// Checks every rule [`Builder::build`] enforces; the error says what was wrong and
    /// how to fix it.
    pub fn validate(&self) -> Result<(), BuildError> {
        let c = self;
        if let Some(name) = &c.name {
            validate_name(name).map_err(BuildError::Name)?;
        }
        if c.max_idle == 0 {
            return Err(BuildError::ZeroMaxIdle);
        }
        if c.shards == 0 {
            return Err(BuildError::ZeroShards);
        }
        for (field, value, max, fix) in [
            (
                "max_idle",
                c.max_idle,
                MAX_IDLE,
                "a pool keeps spare objects, not a data set: lower max_idle (the default is 1024)",
            ),
            (
                "shards",
                c.shards,
                MAX_SHARDS,
                "use about one shard per core (the default)",
            ),
            (
                "local_slots",
                c.local_slots,
                MAX_LOCAL_SLOTS,
                "use a few slots per core (the default); threads beyond the slots share the stacks",
            ),
        ] {
            if value > max {
                return Err(BuildError::TooLarge {
                    field,
                    value,
                    max,
                    fix,
                });
            }
        }
        if c.max_object_bytes > c.max_idle_bytes {
            return Err(BuildError::ObjectLargerThanBudget {
                max_object_bytes: c.max_object_bytes,
                max_idle_bytes: c.max_idle_bytes,
            });
        }
        if c.hold_threshold == Some(Duration::ZERO) {
            return Err(BuildError::ZeroHoldThreshold);
        }
        Ok(())
    }
}
