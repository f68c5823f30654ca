//! The engine: `Pool`, its guard, and the get / return / trim paths over the tiers.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::builder::{system_clock, Factory, PoolBuilder, PoolConfig};
use super::hold::{HoldStart, HoldTracker};
use super::layout::Layout;
use super::local::{bump, thread_index, HotCell};
use super::shared::Shards;
use super::stats::{Counters, Discards, LongHold, PoolStats, TrimCause, TrimTrace};
use super::victim::Entry;
use super::Recycle;
use crate::diag::labels::{default_label, short_type_name, Engine, LiveLabel};
use crate::diag::Histogram;
use crate::reclaim::{Deferred, Reclaimer};

const RECENT_TRIMS: usize = 16;
/// Outstanding long holds listed in a stats snapshot.
const HELD_NOW_SHOWN: usize = 16;

/// A bounded, self-trimming object pool. Cheap to clone (all clones share one pool).
///
/// ```
/// use poolguard::object::Pool;
///
/// let pool = Pool::builder(|| Vec::<u8>::with_capacity(4096))
///     .max_idle(256)
///     .max_object_bytes(64 * 1024)
///     .build()?;
/// {
///     let mut buf = pool.get();
///     buf.extend_from_slice(b"hello");
/// } // reset (cleared) and returned here
/// assert!(pool.get().is_empty());
/// # Ok::<(), poolguard::object::BuildError>(())
/// ```
pub struct Pool<T: Recycle + Send + 'static> {
    inner: Arc<Inner<T>>,
}

impl<T: Recycle + Send + 'static> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Recycle + Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why a returned object was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscardReason {
    /// It reported more heap bytes than `max_object_bytes`.
    Oversized,
    /// `Recycle::reset` returned false.
    RefusedByReset,
    /// `Recycle::reset` panicked (the object was dropped, the pool is unharmed).
    ResetPanicked,
    /// Every tier was at its cap.
    OverCap,
}

/// A [`Pool::put`] that was refused: the reason, and the object back (reset) unless its
/// reset panicked.
#[non_exhaustive]
pub struct Refused<T> {
    /// Why it was refused.
    pub reason: DiscardReason,
    /// The object, handed back to the caller (`None` if its reset panicked).
    pub object: Option<T>,
}

impl<T> fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("reason", &self.reason)
            .field("object", &self.object.as_ref().map(|_| "..."))
            .finish()
    }
}

struct TrimState {
    /// Serialises cycles (a budget cycle skips when one is running).
    lock: parking_lot::Mutex<()>,
    cycles: AtomicU64,
    /// Returns refused over cap since the last cycle; a pool's worth starts a budget cycle.
    refused_since_cycle: AtomicU64,
    recent: parking_lot::Mutex<VecDeque<TrimTrace>>,
    pauses: Histogram,
}

pub(crate) struct Inner<T> {
    factory: Factory<T>,
    config: PoolConfig,
    name: String,
    /// The per-thread tier: cell `i` belongs to the thread with index `i`.
    cells: Box<[CachePadded<HotCell<T>>]>,
    /// Largest object a per-thread cell may hold (its share of `max_idle_bytes`).
    cell_bytes: usize,
    /// The split of the caps between the tiers (`cell_bytes` is its field, copied here).
    layout: Layout,
    shards: Shards<T>,
    counters: Counters,
    hold: Option<HoldTracker>,
    trim: TrimState,
    /// Where freed batches go instead of the caller's thread (see [`Inner::dispose`]).
    reclaimer: Option<Reclaimer>,
    /// The label's registration among live pools, released when the last handle drops.
    _label: LiveLabel,
}

/// A batch of freed objects, dropped as one: on a reclaimer worker, or on the caller when
/// there is no reclaimer or it refused. A panicking `Drop` of an object is contained.
struct Freed<T>(Vec<Entry<T>>);

impl<T> Drop for Freed<T> {
    fn drop(&mut self) {
        let batch = std::mem::take(&mut self.0);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(batch)));
    }
}

/// A checked-out object; returns it to the pool (reset) when dropped.
///
/// The guard borrows its pool; to hand an object to another thread, move the guard within a
/// scope (`std::thread::scope`) or [`detach`](Self::detach) it and [`put`](Pool::put) it back.
pub struct PoolGuard<'a, T: Recycle + Send + 'static> {
    pool: &'a Pool<T>,
    /// `Some` until the guard is dropped or detached.
    obj: Option<Box<T>>,
    hold: Option<HoldStart>,
}

impl<T: Recycle + Send + fmt::Debug + 'static> fmt::Debug for PoolGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&self.obj).finish()
    }
}

impl<T: Recycle + Send + 'static> Deref for PoolGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> DerefMut for PoolGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> PoolGuard<'_, T> {
    /// Takes the object out of the pool for good (it will not be returned).
    pub fn detach(mut self) -> T {
        self.end_hold();
        Counters::add(&self.pool.inner.counters.detached, 1);
        match self.obj.take() {
            Some(o) => *o,
            None => unreachable!("a live guard always holds its object"),
        }
    }

    fn end_hold(&mut self) {
        if let (Some(start), Some(t)) = (self.hold.take(), &self.pool.inner.hold) {
            t.end(start, &self.pool.inner.name);
        }
    }
}

impl<T: Recycle + Send + 'static> Drop for PoolGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.hold.is_some() {
            self.end_hold();
        }
        if let Some(o) = self.obj.take() {
            let inner = &self.pool.inner;
            if let Err((reason, Some(o))) = inner.give_back(o) {
                // Only an oversized object is worth a reclaimer job: it is the big drop.
                let offload = reason == DiscardReason::Oversized;
                inner.dispose(vec![(o, 0)], offload);
            }
        }
    }
}

impl<T: Recycle + Send + 'static> Pool<T> {
    /// A builder around `factory`, the function called on a miss (Go's `New`).
    pub fn builder(factory: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder::new(factory)
    }

    pub(crate) fn from_builder(b: PoolBuilder<T>) -> Self {
        let c = b.config;
        let layout = Layout::of(&c);
        let name = c.name.clone().unwrap_or_else(|| {
            default_label(Engine::Object, &short_type_name(std::any::type_name::<T>()))
        });
        for w in layout.warnings(c.max_object_bytes) {
            tracing::warn!(target: "poolguard::object", pool = %name, "{w}");
        }
        let label = LiveLabel::register(Engine::Object, &name);
        let hold = c
            .hold_threshold
            .map(|t| HoldTracker::new(t, b.clock.unwrap_or_else(system_clock)));
        Self {
            inner: Arc::new(Inner {
                factory: b.factory,
                cells: (0..layout.local_slots)
                    .map(|_| CachePadded::new(HotCell::new()))
                    .collect(),
                cell_bytes: layout.cell_bytes,
                layout,
                shards: Shards::new(layout.shards, layout.shared_objects, layout.shared_bytes),
                counters: Counters::default(),
                hold,
                trim: TrimState {
                    lock: parking_lot::Mutex::new(()),
                    cycles: AtomicU64::new(0),
                    refused_since_cycle: AtomicU64::new(0),
                    recent: parking_lot::Mutex::new(VecDeque::with_capacity(RECENT_TRIMS)),
                    pauses: Histogram::new(),
                },
                name,
                config: c,
                reclaimer: b.reclaimer,
                _label: label,
            }),
        }
    }

    /// Checks out an object: the calling thread's cached one, else one from the shared
    /// stacks, else a new one from the factory. Returned (reset) when the guard drops.
    #[track_caller]
    #[inline]
    pub fn get(&self) -> PoolGuard<'_, T> {
        let obj = self.inner.take();
        // `Location::caller()` is a constant here (track_caller); read it outside the closure,
        // which would otherwise report this file.
        let site = Location::caller();
        let hold = self.inner.hold.as_ref().map(|h| h.start(site));
        PoolGuard {
            pool: self,
            obj: Some(obj),
            hold,
        }
    }

    /// Gives the pool an object obtained elsewhere (e.g. from [`PoolGuard::detach`] on
    /// another thread). It is reset first; when refused it is handed back with the reason,
    /// and the discard is counted.
    pub fn put(&self, obj: T) -> Result<(), Refused<T>> {
        self.inner
            .give_back(Box::new(obj))
            .map_err(|(reason, o)| Refused {
                reason,
                object: o.map(|b| *b),
            })
    }

    /// Runs one trim cycle now: frees what was unused since the previous cycle, demotes the
    /// rest (including objects cached by threads that no longer use the pool). Concurrent
    /// gets and puts wait at most for one shard's O(1) generation swap.
    pub fn trim(&self) -> TrimTrace {
        match self.inner.trim_cycle(TrimCause::Manual, false) {
            Some(t) => t,
            None => unreachable!("a blocking trim always runs"),
        }
    }

    pub(crate) fn trim_background(&self) -> TrimTrace {
        match self.inner.trim_cycle(TrimCause::Background, false) {
            Some(t) => t,
            None => unreachable!("a blocking trim always runs"),
        }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner<T>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(w: &std::sync::Weak<Inner<T>>) -> Option<Self> {
        w.upgrade().map(|inner| Self { inner })
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// How the caps were split between the tiers when the pool was built (see [`Layout`]
    /// for the formula).
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// The pool's label (unless named: the type's short name and a sequence number, e.g.
    /// `Vec<u8>-1`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// Checkouts held past `hold_threshold` right now, longest first, with their call sites
    /// (empty when hold tracking is off). Unlike the stats' `recent_long_holds`, these have
    /// not come back — maybe they never will. Trim cycles report each once via `tracing`.
    pub fn long_holds(&self) -> Vec<LongHold> {
        self.inner
            .hold
            .as_ref()
            .map_or_else(Vec::new, HoldTracker::outstanding)
    }
}

impl<T: Recycle + Send + 'static> Inner<T> {
    #[inline]
    fn take(&self) -> Box<T> {
        let tid = thread_index();
        let cell = tid.and_then(|i| self.cells.get(i));
        match cell {
            Some(c) => {
                bump(&c.gets);
                if let Some(o) = c.take() {
                    bump(&c.hits);
                    return o;
                }
            }
            None => Counters::add(&self.counters.gets_unslotted, 1),
        }
        self.take_slow(tid.unwrap_or(0), cell.map(|c| &**c))
    }

    #[cold]
    fn take_slow(&self, home: usize, cell: Option<&HotCell<T>>) -> Box<T> {
        // The caller's cell is empty (its take just failed): refill it with a spare taken
        // under the same shard lock.
        let spare_bytes = cell.map(|_| self.cell_bytes);
        if let Some(((o, _), _, spare)) = self.shards.pop_with_spare(home, spare_bytes) {
            if let (Some(c), Some((s, bytes))) = (cell, spare) {
                if let Some(displaced) = c.swap(s, bytes) {
                    // Unreachable while only the owner puts into its cell; never lose it.
                    let b = T::heap_bytes(&displaced);
                    if let Err((_, Some(d))) = self.give_back_shared(home, displaced, b) {
                        self.dispose(vec![(d, b)], false);
                    }
                }
            }
            return o;
        }
        Counters::add(&self.counters.misses, 1);
        Box::new((self.factory)())
    }

    /// Resets `obj` and keeps it if the caps allow; otherwise the reason and (unless its
    /// reset panicked) an object to dispose of or hand back.
    #[inline]
    fn give_back(&self, mut obj: Box<T>) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        let tid = thread_index();
        let cell = tid.and_then(|i| self.cells.get(i));
        match cell {
            Some(c) => bump(&c.returns),
            None => Counters::add(&self.counters.returns_unslotted, 1),
        }
        match catch_unwind(AssertUnwindSafe(|| T::reset(&mut obj))) {
            Ok(true) => {}
            Ok(false) => {
                Counters::add(&self.counters.discard_reset, 1);
                return Err((DiscardReason::RefusedByReset, Some(obj)));
            }
            Err(_) => {
                Counters::add(&self.counters.discard_reset, 1);
                Counters::add(&self.counters.reset_panics, 1);
                self.dispose(vec![(obj, 0)], false);
                return Err((DiscardReason::ResetPanicked, None));
            }
        }
        let mut bytes = T::heap_bytes(&obj);
        if bytes > self.config.max_object_bytes {
            Counters::add(&self.counters.discard_oversized, 1);
            return Err((DiscardReason::Oversized, Some(obj)));
        }
        let home = tid.unwrap_or(0);
        if let Some(c) = cell {
            if bytes > self.cell_bytes {
                // Too large for the cell's byte share: to the shards (counted for the doctor).
                bump(&c.skipped);
            } else {
                // Into the own cell when it is empty. A full cell means this thread returns
                // more than it gets (overflow, e.g. the consumer of a producer/consumer
                // pair): its object and this one go to the shards together, under one lock,
                // and the cell is left empty for the next return, so a run of returns takes
                // half the shard locks (the mirror of a get's spare).
                if !c.maybe_full() {
                    match c.swap(obj, bytes) {
                        None => return Ok(()),
                        Some(prev) => {
                            bytes = T::heap_bytes(&prev);
                            obj = prev;
                        }
                    }
                } else if let Some(prev) = c.take() {
                    return self.give_back_pair(home, c, prev, obj, bytes);
                }
            }
        }
        self.give_back_shared(home, obj, bytes)
    }

    /// The overflow return: `older` (just taken from the caller's own cell `cell`) and
    /// `obj` go to the shards under one lock. If the shards refuse `older`, it goes back
    /// into the (empty, owned) cell, so a full pool keeps what it kept before; a refused
    /// `obj` is counted and handed back like any refusal.
    #[cold]
    fn give_back_pair(
        &self,
        home: usize,
        cell: &HotCell<T>,
        older: Box<T>,
        obj: Box<T>,
        bytes: usize,
    ) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        let older_bytes = T::heap_bytes(&older);
        let mut evicted = Vec::new();
        let [a, b] = self
            .shards
            .push_pair(home, (older, older_bytes), (obj, bytes), &mut evicted);
        if !evicted.is_empty() {
            self.dispose(evicted, true);
        }
        if let Some((o, ob)) = a {
            if let Some(displaced) = cell.swap(o, ob) {
                // Unreachable while only the owner puts into its cell; never lose it.
                let db = T::heap_bytes(&displaced);
                if let Err((_, Some(d))) = self.give_back_shared(home, displaced, db) {
                    self.dispose(vec![(d, db)], false);
                }
            }
        }
        match b {
            None => Ok(()),
            Some((o, _)) => self.refuse_over_cap(o),
        }
    }

    #[cold]
    fn give_back_shared(
        &self,
        home: usize,
        obj: Box<T>,
        bytes: usize,
    ) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        let mut evicted = Vec::new();
        let r = self.shards.push(home, (obj, bytes), &mut evicted);
        if !evicted.is_empty() {
            self.dispose(evicted, true);
        }
        match r {
            Ok(()) => Ok(()),
            Err((obj, _)) => self.refuse_over_cap(obj),
        }
    }

    /// Every shard refused `obj`: count it and hand it back.
    fn refuse_over_cap(&self, obj: Box<T>) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        Counters::add(&self.counters.discard_over_cap, 1);
        let refused = self.trim.refused_since_cycle.fetch_add(1, Relaxed) + 1;
        if refused >= self.config.max_idle as u64 {
            // A pool's worth of returns found no room: what it retains is not being
            // used. Run a cycle (unless one is running) so the victims go.
            let _ = self.trim_cycle(TrimCause::Budget, true);
        }
        Err((DiscardReason::OverCap, Some(obj)))
    }

    /// The one place where objects the pool lets go of are dropped: outside every lock of
    /// the pool, with a panicking `Drop` contained. With `offload` and a reclaimer, the whole
    /// batch goes to it as ONE job (labelled with the type name) and the caller pays one
    /// queue push; when the reclaimer refuses, its policy has dropped the batch here (or
    /// handed it back, and it is dropped here): counted, never lost. Returns how many
    /// objects were deferred.
    fn dispose(&self, batch: Vec<Entry<T>>, offload: bool) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let n = batch.len();
        let freed = Freed(batch);
        match (&self.reclaimer, offload) {
            (Some(r), true) => match r.defer_labelled(std::any::type_name::<T>(), freed) {
                Deferred::Queued => {
                    Counters::add(&self.counters.reclaim_deferred, n as u64);
                    n
                }
                refused => {
                    Counters::add(&self.counters.reclaim_refused, n as u64);
                    drop(refused);
                    0
                }
            },
            _ => {
                drop(freed);
                0
            }
        }
    }

    /// Objects and bytes retained on every tier (cells from their gauges, except the cells
    /// in `skip`: just emptied by a trim).
    fn retained_except(&self, skip: &[bool]) -> (usize, usize) {
        let t = self.shards.totals();
        let (mut objs, mut bytes) = (t.objects, t.bytes);
        for (i, c) in self.cells.iter().enumerate() {
            if skip.get(i).copied().unwrap_or(false) {
                continue;
            }
            if let Some(b) = c.held() {
                objs += 1;
                bytes += b;
            }
        }
        self.counters.peak_objects.fetch_max(objs as u64, Relaxed);
        self.counters.peak_bytes.fetch_max(bytes as u64, Relaxed);
        (objs, bytes)
    }

    fn retained(&self) -> (usize, usize) {
        self.retained_except(&[])
    }

    fn trim_cycle(&self, cause: TrimCause, skip_if_busy: bool) -> Option<TrimTrace> {
        let _serial = if skip_if_busy {
            self.trim.lock.try_lock()?
        } else {
            self.trim.lock.lock()
        };
        let t0 = Instant::now();
        let before = self.retained();
        self.trim.refused_since_cycle.store(0, Relaxed);
        let mut dead: Vec<Vec<Entry<T>>> = Vec::new();
        let mut max_pause = Duration::ZERO;
        let pauses = &self.trim.pauses;
        let mut note = |p: Duration| {
            pauses.record(p);
            max_pause = max_pause.max(p);
        };
        // 1. Free every shard's victim generation and demote its primary one.
        self.shards.rotate(&mut dead, &mut note);
        // 2. Demote the per-thread objects into a victim generation: unused until the next
        //    cycle, they are freed then, also when their thread has stopped using the pool.
        let mut homeless = Vec::new();
        let mut stolen = vec![false; self.cells.len()];
        for (i, c) in self.cells.iter().enumerate() {
            if let Some(o) = c.steal() {
                stolen[i] = true;
                let b = T::heap_bytes(&o);
                let t = Instant::now();
                let r = self.shards.push_victim(i, (o, b));
                note(t.elapsed());
                if let Err(e) = r {
                    homeless.push(e);
                }
            }
        }
        if !homeless.is_empty() {
            dead.push(homeless);
        }
        let freed: usize = dead.iter().map(Vec::len).sum();
        let freed_bytes: usize = dead.iter().flatten().map(|e| e.1).sum();
        // One batch, so a reclaimer gets one job per cycle whatever the number of shards.
        let mut all = Vec::with_capacity(freed);
        for batch in dead {
            all.extend(batch);
        }
        let deferred = self.dispose(all, true);
        let after = self.retained_except(&stolen);
        drop(stolen);
        let cycle = self.trim.cycles.fetch_add(1, Relaxed) + 1;
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
            max_pause,
            took: t0.elapsed(),
        };
        tracing::info!(target: "poolguard::object::trim", "{trace}");
        if let Some(h) = &self.hold {
            h.scan(&self.name);
        }
        let mut recent = self.trim.recent.lock();
        if recent.len() == RECENT_TRIMS {
            recent.pop_front();
        }
        recent.push_back(trace.clone());
        Some(trace)
    }

    fn stats(&self) -> PoolStats {
        let (retained_objects, retained_bytes) = self.retained();
        let t = self.shards.totals();
        let c = &self.counters;
        let (mut gets, mut hits_local, mut returns, mut skipped_local) = (0, 0, 0, 0);
        for cell in self.cells.iter() {
            gets += cell.gets.load(Relaxed);
            hits_local += cell.hits.load(Relaxed);
            returns += cell.returns.load(Relaxed);
            skipped_local += cell.skipped.load(Relaxed);
        }
        gets += c.gets_unslotted.load(Relaxed);
        returns += c.returns_unslotted.load(Relaxed);
        let mut held_now = self
            .hold
            .as_ref()
            .map_or_else(Vec::new, HoldTracker::outstanding);
        let held_now_count = held_now.len();
        held_now.truncate(HELD_NOW_SHOWN);
        PoolStats {
            held_now,
            held_now_count,
            name: self.name.clone(),
            type_name: std::any::type_name::<T>(),
            gets,
            hits_local,
            hits_shared: t.hits_primary,
            hits_victim: t.hits_victim,
            misses: c.misses.load(Relaxed),
            returns,
            skipped_local,
            layout: self.layout,
            detached: c.detached.load(Relaxed),
            discards: Discards {
                oversized: c.discard_oversized.load(Relaxed),
                refused_by_reset: c.discard_reset.load(Relaxed),
                reset_panics: c.reset_panics.load(Relaxed),
                over_cap: c.discard_over_cap.load(Relaxed),
                evicted_by_budget: t.evicted,
            },
            trims: c.trims.load(Relaxed),
            trim_freed: c.trim_freed.load(Relaxed),
            reclaim_deferred: c.reclaim_deferred.load(Relaxed),
            reclaim_refused: c.reclaim_refused.load(Relaxed),
            retained_objects,
            retained_bytes,
            peak_objects: c.peak_objects.load(Relaxed) as usize,
            peak_bytes: c.peak_bytes.load(Relaxed) as usize,
            long_holds: self.hold.as_ref().map_or(0, |h| h.long_holds.load(Relaxed)),
            recent_long_holds: self.hold.as_ref().map_or_else(Vec::new, |h| h.recent()),
            recent_trims: self.trim.recent.lock().iter().cloned().collect(),
            trim_pauses: self.trim.pauses.snapshot(),
        }
    }
}
