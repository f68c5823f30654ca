//! The engine behind [`Pool`](super::Pool): the tiers, and the get and return paths over
//! them. The trim cycle is in `trim.rs`; the public front (`Pool`, `PoolGuard`) in `pool.rs`.
//!
//! # Locks and their order
//!
//! The object pool has these locks (every other shared word is an atomic):
//!
//! 1. the **trim lock** (`TrimState::lock`): serialises trim cycles;
//! 2. a **shard lock** (one per shard of the shared tier, `Shards`);
//! 3. the **recent-trims lock** (`TrimState::recent`);
//! 4. a **hold-slab lock** (one per slab of the hold tracker) and the tracker's
//!    **recent-holds lock**;
//! 5. the process-wide **thread-index lock** (`local::Indices`), taken once per thread.
//!
//! Order: only the trim lock is ever held while another is taken, and then only a shard
//! lock or the thread-index lock (a cycle rotates the shards, and empties exited threads'
//! cells under the thread-index lock, under it). Every other lock is a
//! leaf: nothing is taken while it is held, and no two shard locks are ever held at once.
//! No user code runs under any of them: `Recycle::reset`, `Recycle::heap_bytes`, the factory,
//! an object's `Drop`, the clock and the `tracing` subscriber all run with no pool lock held
//! (a cycle collects under its lock and measures, re-files, drops and reports after it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;

use crossbeam_utils::CachePadded;

use super::config::{system_clock, Builder, Config, Factory};
use super::hold::HoldTracker;
use super::layout::Layout;
use super::local::{bump, thread_index, Cells, Mine};
use super::pool::DiscardReason;
use super::shared::{ShardTotals, Shards};
use super::stats::{Counters, Discards, PoolStats, Retained, RetainedByTier, TrimCause};
use super::trim::TrimState;
use super::victim::Entry;
use super::Recycle;
use crate::diag::labels::{default_label, short_type_name, Engine, LiveLabel};
use crate::reclaim::{Deferred, Reclaimer};

/// Outstanding long holds listed in a stats snapshot.
const HELD_NOW_SHOWN: usize = 16;

pub(crate) struct Inner<T> {
    pub(super) factory: Factory<T>,
    pub(super) config: Config,
    pub(super) name: String,
    /// The per-thread tier: cell `i` belongs to the thread with index `i`.
    pub(super) cells: Cells<T>,
    /// Trim cycles started; a cached object stamped with an older value has been through
    /// that many cycles (read with one relaxed load on every take from a magazine).
    pub(super) gen: CachePadded<crate::sync::atomic::AtomicU64>,

    /// Largest object a per-thread cell may hold (its share of `max_idle_bytes`).
    pub(super) cell_bytes: usize,
    /// `min(cell_bytes, max_object_bytes)`: a return this small takes the fast path.
    fast_bytes: usize,
    /// The split of the caps between the tiers (`cell_bytes` is its field, copied here).
    pub(super) layout: Layout,
    pub(super) shards: Shards<T>,
    pub(super) counters: Counters,
    pub(super) hold: Option<HoldTracker>,
    pub(super) trim: TrimState,
    /// Where freed batches go instead of the caller's thread (see [`Inner::dispose`]).
    pub(super) reclaimer: Option<Reclaimer>,
    /// The label's registration among live pools, released when the last handle drops.
    _label: LiveLabel,
}

/// A batch of freed objects, dropped as one: on a reclaimer worker, or on the caller when
/// there is no reclaimer or it refused. A panicking `Drop` of an object is contained.
pub(super) struct Freed<T>(Vec<Entry<T>>);

impl<T> Drop for Freed<T> {
    fn drop(&mut self) {
        let batch = std::mem::take(&mut self.0);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(batch)));
    }
}

impl<T: Recycle + Send + 'static> Inner<T> {
    /// Splits the caps between the tiers ([`Layout`]), registers the label, and builds the
    /// tiers empty.
    pub(super) fn new(b: Builder<T>) -> Self {
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
            factory: b.factory,
            cells: Cells::new(layout.local_slots),
            gen: CachePadded::new(crate::sync::atomic::AtomicU64::new(0)),
            cell_bytes: layout.cell_bytes,
            fast_bytes: layout.cell_bytes.min(c.max_object_bytes),
            layout,
            shards: Shards::new(layout.shards, layout.shared_objects, layout.shared_bytes),
            counters: Counters::default(),
            hold,
            trim: TrimState::new(),
            name,
            config: c,
            reclaimer: b.reclaimer,
            _label: label,
        }
    }

    #[inline]
    pub(super) fn take(&self) -> Box<T> {
        let Some(mine) = self.cells.mine() else {
            Counters::add(&self.counters.gets_unslotted, 1);
            return self.take_slow(thread_index().unwrap_or(0), false);
        };
        let c = mine.stats();
        bump(&c.gets);
        if let Some((o, cached_in)) = mine.replace(None) {
            c.set_held(None);
            let age = self.gen.load(Relaxed).wrapping_sub(cached_in);
            if age == 0 {
                return o; // a local hit: counted as `gets - missed`
            }
            self.age_out(mine.i, o, age);
        }
        bump(&c.missed);
        self.take_slow(mine.i, true)
    }

    #[cold]
    fn take_slow(&self, home: usize, slotted: bool) -> Box<T> {
        // The caller's slot is empty (its take just failed): refill it with a spare taken
        // under the same shard lock.
        let spare_bytes = slotted.then_some(self.cell_bytes);
        if let Some(((o, _), _, spare)) = self.shards.pop_with_spare(home, spare_bytes) {
            if let Some((s, bytes)) = spare {
                if let Some(back) = self.stash(s, bytes) {
                    // Unreachable (the slot was just found empty); never lose it.
                    let b = T::heap_bytes(&back);
                    if let Err((_, Some(d))) = self.give_back_shared(home, back, b) {
                        self.dispose(vec![(d, b)], false);
                    }
                }
            }
            return o;
        }
        Counters::add(&self.counters.misses, 1);
        Box::new((self.factory)())
    }

    /// What the trims this thread missed would have done to `o` (cached `age` cycles ago):
    /// one cycle demotes it to a victim generation, two free it.
    #[cold]
    fn age_out(&self, home: usize, o: Box<T>, age: u64) {
        let b = T::heap_bytes(&o);
        if age == 1 {
            if let Err(e) = self.shards.push_victim(home, (o, b)) {
                self.dispose(vec![e], true);
            }
        } else {
            Counters::add(&self.counters.trim_freed, 1);
            self.dispose(vec![(o, b)], true);
        }
    }

    /// Puts `obj` (of `bytes`) into this thread's slot if it is empty; otherwise hands it back.
    #[cold]
    fn stash(&self, obj: Box<T>, bytes: usize) -> Option<Box<T>> {
        let Some(mine) = self.cells.mine() else {
            return Some(obj);
        };
        match mine.replace(Some((obj, self.gen.load(Relaxed)))) {
            None => {
                mine.stats().set_held(Some(bytes));
                None
            }
            // Unreachable (callers stash only into a slot they just emptied): put the older
            // one back and hand this one back.
            Some((older, cached_in)) => mine.replace(Some((older, cached_in))).map(|(o, _)| o),
        }
    }

    /// Resets `obj` and keeps it if the caps allow; otherwise the reason and (unless its
    /// reset panicked) an object to dispose of or hand back.
    #[inline]
    pub(super) fn give_back(&self, mut obj: Box<T>) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        match catch_unwind(AssertUnwindSafe(|| T::reset(&mut obj))) {
            Ok(true) => {}
            Ok(false) => {
                self.count_return();
                Counters::add(&self.counters.discard_reset, 1);
                return Err((DiscardReason::RefusedByReset, Some(obj)));
            }
            Err(_) => {
                self.count_return();
                Counters::add(&self.counters.discard_reset, 1);
                Counters::add(&self.counters.reset_panics, 1);
                self.dispose(vec![(obj, 0)], false);
                return Err((DiscardReason::ResetPanicked, None));
            }
        }
        let bytes = T::heap_bytes(&obj);
        if bytes <= self.fast_bytes {
            if let Some(mine) = self.cells.mine() {
                bump(&mine.stats().returns);
                return match mine.replace(Some((obj, self.gen.load(Relaxed)))) {
                    None => {
                        mine.stats().set_held(Some(bytes));
                        Ok(())
                    }
                    Some((older, cached_in)) => {
                        self.give_back_overflow(&mine, older, cached_in, bytes)
                    }
                };
            }
        }
        self.give_back_checked(obj, bytes)
    }

    /// A return that is oversized, too large for a cell, or from a thread without a cell.
    #[cold]
    fn give_back_checked(
        &self,
        obj: Box<T>,
        bytes: usize,
    ) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        if bytes > self.config.max_object_bytes {
            self.count_return();
            Counters::add(&self.counters.discard_oversized, 1);
            return Err((DiscardReason::Oversized, Some(obj)));
        }
        let Some(mine) = self.cells.mine() else {
            Counters::add(&self.counters.returns_unslotted, 1);
            return self.give_back_shared(thread_index().unwrap_or(0), obj, bytes);
        };
        // Too large for the cell's byte share: to the shards (counted for the doctor).
        bump(&mine.stats().returns);
        bump(&mine.stats().skipped);
        self.give_back_shared(mine.i, obj, bytes)
    }

    /// The caller's slot was full (`older`, cached in generation `cached_in`, came out and
    /// the object just returned went in): this thread returns more than it gets (e.g. the
    /// consumer of a producer/consumer pair). Both go to the shards together, under one lock,
    /// and the slot is left empty for the next return, so a run of returns takes half the
    /// shard locks (the mirror of a get's spare).
    #[cold]
    fn give_back_overflow(
        &self,
        mine: &Mine<'_, T>,
        older: Box<T>,
        cached_in: u64,
        bytes: usize,
    ) -> Result<(), (DiscardReason, Option<Box<T>>)> {
        mine.stats().set_held(None);
        let Some((obj, _)) = mine.replace(None) else {
            // Unreachable (the object was just put there); never lose `older`.
            let ob = T::heap_bytes(&older);
            return self.give_back_shared(mine.i, older, ob);
        };
        match self.gen.load(Relaxed).wrapping_sub(cached_in) {
            0 => self.give_back_pair(mine.i, older, obj, bytes),
            age => {
                self.age_out(mine.i, older, age);
                match self.stash(obj, bytes) {
                    None => Ok(()),
                    Some(obj) => self.give_back_shared(mine.i, obj, bytes),
                }
            }
        }
    }

    /// Counts a return that is refused before it reaches a tier.
    #[cold]
    fn count_return(&self) {
        match self.cells.mine() {
            Some(mine) => bump(&mine.stats().returns),
            None => Counters::add(&self.counters.returns_unslotted, 1),
        }
    }

    /// The overflow return: `older` (just taken from the caller's own slot) and `obj` go to
    /// the shards under one lock. If the shards refuse `older`, it goes back into the
    /// (empty, owned) slot, so a full pool keeps what it kept before; a refused `obj` is
    /// counted and handed back like any refusal.
    #[cold]
    fn give_back_pair(
        &self,
        home: usize,
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
            if let Some(back) = self.stash(o, ob) {
                // Unreachable (the slot was just emptied); never lose it.
                if let Err((_, Some(d))) = self.give_back_shared(home, back, ob) {
                    self.dispose(vec![(d, ob)], false);
                }
            }
        }
        match b {
            None => Ok(()),
            Some((o, _)) => self.refuse_over_cap(o),
        }
    }

    /// Trim step 2: empties the calling thread's own slot and the slots of exited threads
    /// (other live threads' slots are aged through the generation, at their next use).
    pub(super) fn steal_cells(&self) -> Vec<(usize, Box<T>)> {
        let mut out = Vec::new();
        if let Some(mine) = self.cells.mine() {
            if let Some((o, _)) = mine.replace(None) {
                mine.stats().set_held(None);
                out.push((mine.i, o));
            }
        }
        self.cells.steal_unowned(&mut out);
        out
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
    pub(super) fn refuse_over_cap(
        &self,
        obj: Box<T>,
    ) -> Result<(), (DiscardReason, Option<Box<T>>)> {
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
    pub(super) fn dispose(&self, batch: Vec<Entry<T>>, offload: bool) -> usize {
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
    pub(super) fn retained_except(&self, skip: &[bool]) -> (usize, usize) {
        let t = self.shards.totals();
        let (mut objs, mut bytes) = (t.objects, t.bytes);
        for (i, c) in self.cells.stats().enumerate() {
            if skip.get(i).copied().unwrap_or(false) {
                continue;
            }
            if let Some(b) = c.held() {
                objs += 1;
                bytes += b;
            }
        }
        self.note_peak(objs, bytes);
        (objs, bytes)
    }

    fn note_peak(&self, objs: usize, bytes: usize) {
        self.counters.peak_objects.fetch_max(objs as u64, Relaxed);
        self.counters.peak_bytes.fetch_max(bytes as u64, Relaxed);
    }

    /// What each tier retains: the cells from their gauges, the shards from `t` (one pass
    /// over their locks, so the shared and victim figures are each shard's at one instant).
    fn retained_by_tier(&self, t: &ShardTotals) -> RetainedByTier {
        let mut local = (0, 0);
        for c in self.cells.stats() {
            if let Some(b) = c.held() {
                local = (local.0 + 1, local.1 + b);
            }
        }
        RetainedByTier {
            local: Retained::new(local),
            shared: Retained::new(t.primary),
            victim: Retained::new(t.victim),
        }
    }

    pub(super) fn retained(&self) -> (usize, usize) {
        self.retained_except(&[])
    }
    pub(super) fn stats(&self) -> PoolStats {
        let t = self.shards.totals();
        let retained_by_tier = self.retained_by_tier(&t);
        let Retained {
            objects: retained_objects,
            bytes: retained_bytes,
        } = retained_by_tier.total();
        self.note_peak(retained_objects, retained_bytes);
        let c = &self.counters;
        let (mut gets, mut hits_local, mut returns, mut skipped_local) = (0, 0, 0, 0);
        for cell in self.cells.stats() {
            // `missed` first: it never exceeds `gets`, which only grows.
            let missed = cell.missed.load(Relaxed);
            let cell_gets = cell.gets.load(Relaxed);
            gets += cell_gets;
            hits_local += cell_gets.saturating_sub(missed);
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
            retained_by_tier,
            peak_objects: c.peak_objects.load(Relaxed) as usize,
            peak_bytes: c.peak_bytes.load(Relaxed) as usize,
            long_holds: self.hold.as_ref().map_or(0, |h| h.long_holds.load(Relaxed)),
            recent_long_holds: self.hold.as_ref().map_or_else(Vec::new, |h| h.recent()),
            recent_trims: self.trim.recent.lock().iter().cloned().collect(),
            trim_pauses: self.trim.pauses.snapshot(),
        }
    }
}
