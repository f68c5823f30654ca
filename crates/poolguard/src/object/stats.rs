//! Stats snapshots and trim traces (rendered as Prometheus text in `metrics.rs`).

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::layout::Layout;
use crate::diag::HistogramSnapshot;

/// Counters bumped on the slow paths (read-modify-write atomics). The fast-path counters
/// live in the per-thread cells and the shard locks; see [`super::local`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) gets_unslotted: AtomicU64,
    pub(crate) returns_unslotted: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) discard_oversized: AtomicU64,
    pub(crate) discard_reset: AtomicU64,
    pub(crate) reset_panics: AtomicU64,
    pub(crate) discard_over_cap: AtomicU64,
    pub(crate) detached: AtomicU64,
    pub(crate) trims: AtomicU64,
    pub(crate) trim_freed: AtomicU64,
    pub(crate) reclaim_deferred: AtomicU64,
    pub(crate) reclaim_refused: AtomicU64,
    pub(crate) peak_objects: AtomicU64,
    pub(crate) peak_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

/// Objects a pool dropped instead of keeping, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Discards {
    /// Reported more heap bytes than `max_object_bytes`.
    pub oversized: u64,
    /// `Recycle::reset` returned false or panicked.
    pub refused_by_reset: u64,
    /// Of those, how many panicked.
    pub reset_panics: u64,
    /// Every tier was at its cap (`max_idle` / `max_idle_bytes`).
    pub over_cap: u64,
    /// Victims evicted by the budget to make room for a fresher object.
    pub evicted_by_budget: u64,
}

/// Objects and heap bytes retained on one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Retained {
    /// Objects held.
    pub objects: usize,
    /// Their heap bytes (as charged when they came back).
    pub bytes: usize,
}

impl Retained {
    pub(crate) fn new((objects, bytes): (usize, usize)) -> Self {
        Self { objects, bytes }
    }
}

/// What a pool retains, split by tier (the same tiers as the hit counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RetainedByTier {
    /// The per-thread cells (a gauge that a concurrent get, put or trim may leave briefly
    /// stale).
    pub local: Retained,
    /// The shared stacks' primary generation (returned since the last trim cycle).
    pub shared: Retained,
    /// The shared stacks' victim generation (survived one trim cycle unused; the next one
    /// frees it).
    pub victim: Retained,
}

impl RetainedByTier {
    /// The tiers with their label values (`local`, `shared`, `victim`).
    pub fn tiers(&self) -> [(&'static str, Retained); 3] {
        [
            ("local", self.local),
            ("shared", self.shared),
            ("victim", self.victim),
        ]
    }

    /// All tiers together.
    pub fn total(&self) -> Retained {
        let t = self.tiers();
        Retained {
            objects: t.iter().map(|(_, r)| r.objects).sum(),
            bytes: t.iter().map(|(_, r)| r.bytes).sum(),
        }
    }
}

/// Why a trim cycle ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TrimCause {
    /// [`Pool::trim`](super::Pool::trim).
    Manual,
    /// The background [`Trimmer`](super::Trimmer).
    Background,
    /// The budget: a pool's worth of returns were refused over cap since the last cycle.
    Budget,
}

impl fmt::Display for TrimCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrimCause::Manual => "manual",
            TrimCause::Background => "background",
            TrimCause::Budget => "budget",
        })
    }
}

/// One trim cycle, like a line of Go's `gctrace` (its `Display` is that line).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TrimTrace {
    /// The pool's label.
    pub pool: String,
    /// Cycle number (1-based).
    pub cycle: u64,
    /// What started it.
    pub cause: TrimCause,
    /// Objects and bytes retained before the cycle.
    pub before: (usize, usize),
    /// Objects and bytes retained after.
    pub after: (usize, usize),
    /// Objects freed (the victim generation plus per-thread objects with no room left).
    pub freed: usize,
    /// Their heap bytes.
    pub freed_bytes: usize,
    /// Of the freed objects, how many were handed to the pool's reclaimer (dropped on its
    /// workers, not in this cycle); 0 without a reclaimer or when it refused.
    pub deferred: usize,
    /// The longest time one lock was held by this cycle (what a concurrent get could wait).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::secs"))]
    pub max_pause: Duration,
    /// Wall time of the whole cycle, disposal included.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::secs"))]
    pub took: Duration,
}

/// Binary-unit bytes for traces (`1.2 MiB`).
pub(crate) fn human_bytes(b: usize) -> String {
    let v = b as f64;
    if b >= 1 << 30 {
        format!("{:.1} GiB", v / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", v / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl fmt::Display for TrimTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool {} trim #{} ({}): retained {} in {} objs -> {} in {} objs, freed {} objs {} (victim{}), max pause {:?}, {:?}",
            self.pool,
            self.cycle,
            self.cause,
            human_bytes(self.before.1),
            self.before.0,
            human_bytes(self.after.1),
            self.after.0,
            self.freed,
            human_bytes(self.freed_bytes),
            if self.deferred > 0 {
                format!(", {} deferred", self.deferred)
            } else {
                String::new()
            },
            self.max_pause,
            self.took
        )
    }
}

/// A checkout held longer than the pool's `hold_threshold`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LongHold {
    /// Where `get()` was called.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::site"))]
    pub site: &'static Location<'static>,
    /// How long the object was held (so far, when still held).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::secs"))]
    pub held: Duration,
    /// Whether the checkout is still out (not returned or detached yet).
    pub still_held: bool,
}

/// A point-in-time copy of a pool's counters and gauges.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PoolStats {
    /// The pool's label (unless named: the type's short name and a sequence number).
    pub name: String,
    /// The pooled type.
    pub type_name: &'static str,
    /// Checkouts.
    pub gets: u64,
    /// Gets served by the calling thread's cached object.
    pub hits_local: u64,
    /// Gets served by a shared stack's primary generation.
    pub hits_shared: u64,
    /// Gets served by a victim generation (an object that survived one trim cycle).
    pub hits_victim: u64,
    /// Gets that called the factory.
    pub misses: u64,
    /// Objects that came back (guards dropped and `put` calls).
    pub returns: u64,
    /// Returns, on threads with a per-thread cell, of objects larger than a cell's byte share
    /// ([`Layout::cell_bytes`]): they skipped the per-thread tier for the shared stacks.
    pub skipped_local: u64,
    /// How the caps are split between the tiers (each tier's effective cap).
    pub layout: Layout,
    /// Objects taken out for good with `detach`.
    pub detached: u64,
    /// Objects dropped instead of kept, by reason.
    pub discards: Discards,
    /// Trim cycles run.
    pub trims: u64,
    /// Objects freed by trim cycles.
    pub trim_freed: u64,
    /// Freed objects handed to the pool's reclaimer (trims, budget evictions, oversized
    /// returns), dropped on its workers.
    pub reclaim_deferred: u64,
    /// Freed objects the reclaimer refused (queue full or shut down), dropped on the
    /// caller's thread instead.
    pub reclaim_refused: u64,
    /// Objects retained now, on every tier (per-thread cells are a gauge that a concurrent
    /// trim may leave briefly stale).
    pub retained_objects: usize,
    /// Heap bytes retained now.
    pub retained_bytes: usize,
    /// The same, split by tier (`retained_objects` and `retained_bytes` are its
    /// [`total`](RetainedByTier::total)).
    pub retained_by_tier: RetainedByTier,
    /// The most objects seen retained (sampled at snapshots and trim cycles).
    pub peak_objects: usize,
    /// The most bytes seen retained (sampled at snapshots and trim cycles).
    pub peak_bytes: usize,
    /// Checkouts held longer than the threshold (0 when hold tracking is off).
    pub long_holds: u64,
    /// The most recent long holds (up to 16), with call sites.
    pub recent_long_holds: Vec<LongHold>,
    /// Checkouts held past the threshold right now (not returned yet; maybe never).
    pub held_now_count: usize,
    /// The longest of them (up to 16), longest first; [`Pool::long_holds`](super::Pool::long_holds)
    /// lists them all.
    pub held_now: Vec<LongHold>,
    /// The most recent trim traces (up to 16), oldest first.
    pub recent_trims: Vec<TrimTrace>,
    /// Lock hold times of trim cycles (what a concurrent get or put could wait).
    pub trim_pauses: HistogramSnapshot,
}

impl PoolStats {
    /// Fraction of gets served without calling the factory (1.0 when there were no gets).
    pub fn hit_rate(&self) -> f64 {
        if self.gets == 0 {
            1.0
        } else {
            (self.hits_local + self.hits_shared + self.hits_victim) as f64 / self.gets as f64
        }
    }
}
