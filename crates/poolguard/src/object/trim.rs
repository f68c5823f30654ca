//! The trim cycle, in named steps.
//!
//! Under the trim lock (which only serialises cycles) a cycle does nothing but move boxes:
//!
//! 1. [`rotate_shards`](Inner::rotate_shards): every shard frees its victim generation and
//!    demotes its primary one, one O(1) swap under that shard's lock;
//! 2. [`steal_cells`](Inner::steal_cells): the calling thread's cell and the cells of exited
//!    threads are emptied, and the pool's generation advances: every other live thread ages
//!    its cached object by the cycles it missed at its next use.
//!
//! Then, with no pool lock held, because each runs user code (`heap_bytes`, `Drop`, the
//! `tracing` subscriber, the hold tracker's clock):
//!
//! 3. [`demote_stolen`](Inner::demote_stolen): each stolen object is measured and filed in a
//!    victim generation (freed by the next cycle unless a get takes it first);
//! 4. [`dispose_batch`](Inner::dispose_batch): what was freed is dropped as one batch (one
//!    reclaimer job when there is a reclaimer);
//! 5. [`record`](Inner::record) and [`scan_holds`](Inner::scan_holds): the trace is logged
//!    and kept, and checkouts held past the threshold are reported once.
//!
//! A cycle that runs while another is between steps 2 and 3 may rotate before the first
//! one's stolen objects are filed; they then survive one cycle more. Nothing is lost or
//! counted twice either way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::engine::Inner;
use super::stats::{Counters, TrimCause, TrimTrace};
use super::victim::Entry;
use super::Recycle;
use crate::diag::Histogram;
use crate::sync::pl::Mutex;

/// Traces kept for `PoolStats::recent_trims`.
const RECENT_TRIMS: usize = 16;

pub(crate) struct TrimState {
    /// Serialises steps 1 and 2 of cycles (a budget cycle skips when one is running).
    lock: Mutex<()>,
    cycles: AtomicU64,
    /// Returns refused over cap since the last cycle; a pool's worth starts a budget cycle.
    pub(super) refused_since_cycle: AtomicU64,
    pub(super) recent: Mutex<VecDeque<TrimTrace>>,
    pub(super) pauses: Histogram,
}

impl TrimState {
    pub(super) fn new() -> Self {
        Self {
            lock: Mutex::new(()),
            cycles: AtomicU64::new(0),
            refused_since_cycle: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TRIMS)),
            pauses: Histogram::new(),
        }
    }
}

/// The longest single lock hold of a cycle; every hold also goes to the pool's histogram.
struct Pauses<'a> {
    all: &'a Histogram,
    max: Duration,
}

impl Pauses<'_> {
    fn note(&mut self, p: Duration) {
        self.all.record(p);
        self.max = self.max.max(p);
    }
}

/// What steps 1 and 2 took out of the tiers.
struct Collected<T> {
    /// The shards' victim generations, one batch per non-empty shard.
    dead: Vec<Vec<Entry<T>>>,
    /// The cells' objects, with the index of the cell each came from.
    stolen: Vec<(usize, Box<T>)>,
}

impl<T: Recycle + Send + 'static> Inner<T> {
    /// One trim cycle; `None` when `skip_if_busy` and another cycle holds the trim lock.
    pub(super) fn trim_cycle(&self, cause: TrimCause, skip_if_busy: bool) -> Option<TrimTrace> {
        let t0 = Instant::now();
        let mut pauses = Pauses {
            all: &self.trim.pauses,
            max: Duration::ZERO,
        };
        let (before, cycle, collected) = {
            let _serial = if skip_if_busy {
                self.trim.lock.try_lock()?
            } else {
                self.trim.lock.lock()
            };
            let before = self.retained();
            self.trim.refused_since_cycle.store(0, Relaxed);
            let cycle = self.trim.cycles.fetch_add(1, Relaxed) + 1;
            let dead = self.rotate_shards(&mut pauses);
            let stolen = self.steal_cells();
            self.gen.fetch_add(1, Relaxed);
            (before, cycle, Collected { dead, stolen })
        };
        // No pool lock from here on.
        let mut stolen_from = vec![false; self.cells.len()];
        for (i, _) in &collected.stolen {
            stolen_from[*i] = true;
        }
        let mut dead = collected.dead;
        let homeless = self.demote_stolen(collected.stolen, &mut pauses);
        if !homeless.is_empty() {
            dead.push(homeless);
        }
        let (freed, freed_bytes, deferred) = self.dispose_batch(dead);
        let after = self.retained_except(&stolen_from);
        Counters::add(&self.counters.trims, 1);
        Counters::add(&self.counters.trim_freed, freed as u64);
        let trace = TrimTrace {
            pool: self.name.clone(),
            cycle,
            cause,
            before,
            after,
            freed,
            freed_bytes,
            deferred,
            max_pause: pauses.max,
            took: t0.elapsed(),
        };
        self.record(&trace);
        self.scan_holds();
        Some(trace)
    }

    /// Step 1: every shard frees its victim generation and demotes its primary one.
    fn rotate_shards(&self, pauses: &mut Pauses<'_>) -> Vec<Vec<Entry<T>>> {
        let mut dead = Vec::new();
        self.shards.rotate(&mut dead, |p| pauses.note(p));
        dead
    }

    /// Step 3: measures each stolen object and files it in a victim generation (home shard
    /// first); returns those no shard had room for.
    fn demote_stolen(
        &self,
        stolen: Vec<(usize, Box<T>)>,
        pauses: &mut Pauses<'_>,
    ) -> Vec<Entry<T>> {
        let mut homeless = Vec::new();
        for (i, o) in stolen {
            let b = T::heap_bytes(&o);
            let t = Instant::now();
            let r = self.shards.push_victim(i, (o, b));
            pauses.note(t.elapsed());
            if let Err(e) = r {
                homeless.push(e);
            }
        }
        homeless
    }

    /// Step 4: drops everything the cycle freed as one batch (one reclaimer job). Returns
    /// the objects freed, their bytes, and how many went to the reclaimer.
    fn dispose_batch(&self, dead: Vec<Vec<Entry<T>>>) -> (usize, usize, usize) {
        let freed: usize = dead.iter().map(Vec::len).sum();
        let freed_bytes: usize = dead.iter().flatten().map(|e| e.1).sum();
        let mut all = Vec::with_capacity(freed);
        for batch in dead {
            all.extend(batch);
        }
        (freed, freed_bytes, self.dispose(all, true))
    }

    /// Step 5a: logs the trace and keeps it among the recent ones.
    fn record(&self, trace: &TrimTrace) {
        tracing::info!(
            target: "poolguard::object::trim",
            pool = %trace.pool,
            cycle = trace.cycle,
            cause = %trace.cause,
            before_objects = trace.before.0,
            before_bytes = trace.before.1,
            after_objects = trace.after.0,
            after_bytes = trace.after.1,
            freed = trace.freed,
            freed_bytes = trace.freed_bytes,
            deferred = trace.deferred,
            max_pause_s = trace.max_pause.as_secs_f64(),
            took_s = trace.took.as_secs_f64(),
            "{trace}"
        );
        let mut recent = self.trim.recent.lock();
        if recent.len() == RECENT_TRIMS {
            recent.pop_front();
        }
        recent.push_back(trace.clone());
    }

    /// Step 5b: reports (once each) the checkouts held past the threshold.
    fn scan_holds(&self) {
        if let Some(h) = &self.hold {
            h.scan(&self.name);
        }
    }
}

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{OnceLock, Weak};

    use super::*;
    use crate::object::Pool;

    /// The pool the probes look at, and what they saw.
    static POOL: OnceLock<Weak<Inner<Probe>>> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static UNDER_LOCK: AtomicUsize = AtomicUsize::new(0);

    /// An object whose `heap_bytes` and `Drop` (user code) note whether the trim lock is held.
    struct Probe;

    fn look() {
        if let Some(inner) = POOL.get().and_then(Weak::upgrade) {
            CALLS.fetch_add(1, Relaxed);
            if inner.trim.lock.is_locked() {
                UNDER_LOCK.fetch_add(1, Relaxed);
            }
        }
    }

    impl Recycle for Probe {
        fn reset(&mut self) -> bool {
            true
        }
        fn heap_bytes(&self) -> usize {
            look();
            8
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            look();
        }
    }

    #[test]
    fn no_user_code_runs_under_the_trim_lock() {
        let pool = Pool::builder(|| Probe)
            .name("trim-lock-probe")
            .build()
            .expect("valid");
        assert!(POOL.set(pool.downgrade()).is_ok());
        drop(pool.get()); // cached in this thread's cell
        let first = pool.trim(); // steals it (measures it: `heap_bytes`) into a victim generation
        assert_eq!(first.freed, 0);
        let second = pool.trim(); // frees it (`Drop`)
        assert_eq!(second.freed, 1);
        assert!(
            CALLS.load(Relaxed) >= 2,
            "the cycle measured and dropped the object"
        );
        assert_eq!(
            UNDER_LOCK.load(Relaxed),
            0,
            "user code ran under the trim lock"
        );
    }
}
