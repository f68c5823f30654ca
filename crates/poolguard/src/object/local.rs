//! The per-thread tier: dense thread indices and one stealable cached object per thread.
//!
//! Every thread that touches any pool takes a small index from a process-wide free list (the
//! lowest free one) and gives it back when it exits, so live threads have distinct indices
//! and the indices stay small. A pool owns `local_slots` [`HotCell`]s; thread `i` uses cell
//! `i` (threads with larger indices skip the tier). A cell holds at most one object in a
//! `crossbeam_utils::atomic::AtomicCell<Option<Box<T>>>`: the owner takes and swaps it with
//! one atomic exchange each, and a trim can steal it with the same exchange from any thread,
//! so objects idling in the cache of a thread that stopped using the pool (or exited) are
//! still aged and freed. The cells belong to the pool, not to the thread: a thread that
//! exits leaves its object in the pool's cell, where it is counted, capped and trimmed.
//!
//! Counters in a cell are written only by the thread that owns the index (a relaxed load and
//! store, no read-modify-write) and read by snapshots.

use std::any::Any;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
// The free list is a process-wide static: real primitives (loom's cannot live in a static).
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

// The cells' counters: through `crate::sync`, like every atomic in the pool.
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A free list of dense indices: the lowest released one first, a fresh one only when none
/// is free.
struct Indices {
    /// Indices released by exited threads, lowest first.
    free: Mutex<BinaryHeap<Reverse<usize>>>,
    /// The next never-used index.
    next: AtomicUsize,
}

impl Indices {
    const fn new() -> Self {
        Self {
            free: Mutex::new(BinaryHeap::new()),
            next: AtomicUsize::new(0),
        }
    }

    fn acquire(&self) -> usize {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match reused {
            Some(Reverse(i)) => i,
            None => self.next.fetch_add(1, Relaxed),
        }
    }

    fn release(&self, i: usize) {
        if let Ok(mut free) = self.free.lock() {
            free.push(Reverse(i));
        }
    }
}

/// The process-wide indices of threads that touched a pool.
static INDICES: Indices = Indices::new();

/// A thread's index; given back to its [`Indices`] when the thread exits.
struct ThreadIndex {
    i: usize,
    from: &'static Indices,
}

impl ThreadIndex {
    fn acquire(from: &'static Indices) -> Self {
        Self {
            i: from.acquire(),
            from,
        }
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        self.from.release(self.i);
    }
}

/// The process-wide dense indices of live pools (a pool's slot in every thread's magazine).
static POOL_INDICES: Indices = Indices::new();

/// Never reused: tells a live pool from a dropped one that had the same dense index.
static POOL_UIDS: AtomicUsize = AtomicUsize::new(1);

/// A pool's place in every thread's magazine: a dense index (given back when the pool is
/// dropped) and a unique id.
pub(crate) struct PoolIndex {
    pub(crate) i: usize,
    pub(crate) uid: usize,
}

impl PoolIndex {
    pub(crate) fn acquire() -> Self {
        Self {
            i: POOL_INDICES.acquire(),
            uid: POOL_UIDS.fetch_add(1, Relaxed),
        }
    }
}

impl Drop for PoolIndex {
    fn drop(&mut self) {
        POOL_INDICES.release(self.i);
    }
}

/// One pool's entry in a thread's magazine: its typed slot behind `dyn Any`, and what the
/// thread's exit does with it.
pub(crate) struct Entry {
    uid: usize,
    slot: Box<dyn Any>,
    /// Hands the slot's object back to its pool (or drops it if the pool is gone).
    flush: fn(Box<dyn Any>),
    /// Whether the slot's pool has been dropped.
    dead: fn(&dyn Any) -> bool,
}

impl Entry {
    pub(crate) fn new<S: 'static>(
        uid: usize,
        slot: S,
        flush: fn(Box<dyn Any>),
        dead: fn(&dyn Any) -> bool,
    ) -> Self {
        Self {
            uid,
            slot: Box::new(slot),
            flush,
            dead,
        }
    }
}

/// A thread's per-pool slots, indexed by the pools' dense indices. Only its thread touches
/// it: no atomic operation, no lock.
#[derive(Default)]
pub(crate) struct Magazine {
    entries: Vec<Option<Entry>>,
}

impl Magazine {
    /// The slot of the pool `(i, uid)`, if this thread has one.
    #[inline]
    pub(crate) fn get<S: 'static>(&mut self, i: usize, uid: usize) -> Option<&mut S> {
        match self.entries.get_mut(i) {
            Some(Some(e)) if e.uid == uid => e.slot.downcast_mut::<S>(),
            _ => None,
        }
    }

    /// Installs `e` at index `i`. Returns what must be dropped after the magazine is released
    /// (it may run user code): the entry it replaced (a dropped pool's) and the entries of
    /// dropped pools found on the way.
    pub(crate) fn install(&mut self, i: usize, e: Entry) -> Vec<Entry> {
        let mut gone: Vec<Entry> = Vec::new();
        for slot in self.entries.iter_mut() {
            if slot.as_ref().is_some_and(|x| (x.dead)(&*x.slot)) {
                gone.extend(slot.take());
            }
        }
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        gone.extend(self.entries[i].replace(e));
        gone
    }

    /// Removes the pool `(i, uid)`'s entry (to be dropped after the magazine is released).
    pub(crate) fn remove(&mut self, i: usize, uid: usize) -> Option<Entry> {
        match self.entries.get_mut(i) {
            Some(slot) if slot.as_ref().is_some_and(|e| e.uid == uid) => slot.take(),
            _ => None,
        }
    }
}

/// Everything a thread keeps for the pools: its index and its magazine. One thread-local,
/// so the index is given back only after the magazine has been flushed.
struct Local {
    mags: RefCell<Magazine>,
    index: ThreadIndex,
}

impl Drop for Local {
    fn drop(&mut self) {
        // The thread exits: every cached object goes back to its pool (the index is still
        // held, so no other thread writes this thread's cells meanwhile).
        let entries = std::mem::take(&mut self.mags.get_mut().entries);
        for e in entries.into_iter().flatten() {
            (e.flush)(e.slot);
        }
    }
}

thread_local! {
    static LOCAL: Local = Local {
        mags: RefCell::new(Magazine::default()),
        index: ThreadIndex::acquire(&INDICES),
    };
}

/// This thread's index, or `None` during thread-local teardown (the caller then uses the
/// shared tier only, so pool access from other thread-local destructors never panics).
#[inline]
pub(crate) fn thread_index() -> Option<usize> {
    LOCAL.try_with(|l| l.index.i).ok()
}

/// Runs `f` on this thread's index and magazine; `None` during thread-local teardown or if
/// the magazine is in use further up the stack (never from the pool's own paths: no user
/// code runs while it is borrowed).
#[inline]
pub(crate) fn with_local<R>(f: impl FnOnce(usize, &mut Magazine) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| match l.mags.try_borrow_mut() {
            Ok(mut m) => Some(f(l.index.i, &mut m)),
            Err(_) => None,
        })
        .ok()
        .flatten()
}

/// One thread's counters and occupancy gauge in a pool, written only by that thread.
pub(crate) struct HotCell {
    /// The cached object's heap bytes plus one (saturating), or 0 when the thread caches
    /// none. Written by the owner after each take and put; read by snapshots and trims.
    /// Feeds the retained gauge, never a cap (the cap is one object per cell by construction).
    held: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) returns: AtomicU64,
    /// Returns larger than the cell's byte share (they went to the shards).
    pub(crate) skipped: AtomicU64,
}

/// Adds one to a counter written by a single thread (no read-modify-write).
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

impl HotCell {
    pub(crate) fn new() -> Self {
        Self {
            held: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Owner: the thread now caches an object of `bytes` heap bytes (`None`: nothing).
    #[inline]
    pub(crate) fn set_held(&self, bytes: Option<usize>) {
        let v = bytes.map_or(0, |b| (b as u64).saturating_add(1));
        self.held.store(v, Relaxed);
    }

    /// The gauge: `Some(bytes)` when the thread caches an object.
    pub(crate) fn held(&self) -> Option<usize> {
        match self.held.load(Relaxed) {
            0 => None,
            n => Some((n - 1) as usize),
        }
    }
}

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn indices_reuse_the_lowest_released_one_exactly() {
        let ix = Indices::new();
        let (a, b, c) = (ix.acquire(), ix.acquire(), ix.acquire());
        assert_eq!((a, b, c), (0, 1, 2));
        ix.release(b);
        assert_eq!(
            ix.acquire(),
            1,
            "a released index is reused before a fresh one"
        );
        ix.release(c);
        ix.release(a);
        assert_eq!(ix.acquire(), 0, "the lowest released index first");
        assert_eq!(ix.acquire(), 2);
        assert_eq!(ix.acquire(), 3, "fresh only when none is free");
    }

    #[test]
    fn an_exited_threads_index_is_taken_by_the_next_thread() {
        // A private free list, so no other test's threads take indices from it meanwhile.
        static IX: Indices = Indices::new();
        thread_local! {
            static MINE: ThreadIndex = ThreadIndex::acquire(&IX);
        }
        let index = || MINE.with(|t| t.i);
        let main = index();
        let (a, b) = std::thread::scope(|s| {
            // `a` takes its index and stays alive while `b` takes one: distinct indices.
            let (took, taken) = std::sync::mpsc::channel::<usize>();
            let (done, wait) = std::sync::mpsc::channel::<()>();
            let a = s.spawn(move || {
                let _ = took.send(index());
                let _ = wait.recv();
            });
            let a_index = taken.recv().expect("a's index");
            let b = s.spawn(index).join().expect("b");
            drop(done);
            a.join().expect("a");
            (a_index, b)
        });
        assert_eq!(main, 0);
        assert_eq!((a, b), (1, 2));
        // Both exited (their thread-local destructors ran before join returned): the next
        // thread reuses the lowest of their indices, not a fresh one.
        let c = std::thread::spawn(index).join().expect("c");
        assert_eq!(c, 1);
        let d = std::thread::spawn(index).join().expect("d");
        assert_eq!(d, 1, "c gave 1 back when it exited");
    }
}
