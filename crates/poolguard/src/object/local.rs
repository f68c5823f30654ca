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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crossbeam_utils::atomic::AtomicCell;

/// Indices released by exited threads, lowest first.
static FREE: Mutex<BinaryHeap<Reverse<usize>>> = Mutex::new(BinaryHeap::new());
/// The next never-used index.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A thread's index; returned to [`FREE`] when the thread exits.
struct ThreadIndex(usize);

impl ThreadIndex {
    fn acquire() -> Self {
        let reused = FREE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match reused {
            Some(Reverse(i)) => Self(i),
            None => Self(NEXT.fetch_add(1, Relaxed)),
        }
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        if let Ok(mut free) = FREE.lock() {
            free.push(Reverse(self.0));
        }
    }
}

thread_local! {
    static INDEX: ThreadIndex = ThreadIndex::acquire();
}

/// This thread's index, or `None` during thread-local teardown (the caller then uses the
/// shared tier only, so pool access from other thread-local destructors never panics).
#[inline]
pub(crate) fn thread_index() -> Option<usize> {
    INDEX.try_with(|i| i.0).ok()
}

/// One thread's cached object and the counters only that thread writes.
pub(crate) struct HotCell<T> {
    obj: AtomicCell<Option<Box<T>>>,
    /// Occupancy gauge: a version (high 32 bits) and the cached object's heap bytes plus one
    /// (low 32 bits, saturating), or 0 in the low bits when empty. The owner writes it after
    /// each take/swap. Only the owner puts into its cell, and only when the gauge says empty,
    /// so an empty gauge means an empty cell. A trim that steals the object clears the gauge
    /// with a compare-exchange against the full value it read before stealing, which fails
    /// if the owner wrote since (it is then stale-full until the owner's next get, which
    /// finds the cell empty and clears it). Feeds the retained gauge, never a cap.
    held: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) returns: AtomicU64,
}

/// Adds one to a counter written by a single thread (no read-modify-write).
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

const LOW: u64 = u32::MAX as u64;

#[inline]
fn next(cur: u64, low: u64) -> u64 {
    ((cur >> 32).wrapping_add(1) << 32) | low
}

impl<T> HotCell<T> {
    pub(crate) fn new() -> Self {
        Self {
            obj: AtomicCell::new(None),
            held: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            returns: AtomicU64::new(0),
        }
    }

    #[inline]
    fn set(&self, low: u64) {
        let cur = self.held.load(Relaxed);
        self.held.store(next(cur, low), Relaxed);
    }

    /// Owner: whether the cell may hold an object (`false` is exact, see `held`).
    #[inline]
    pub(crate) fn maybe_full(&self) -> bool {
        self.held.load(Relaxed) & LOW != 0
    }

    /// Owner: takes the cached object, if any.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        if !self.maybe_full() {
            return None;
        }
        let got = self.obj.take();
        self.set(0);
        got
    }

    /// Owner, only when `!maybe_full()`: caches `obj` (of `bytes` heap bytes) and returns
    /// whatever the cell held (nothing, unless the gauge was wrong).
    #[inline]
    pub(crate) fn swap(&self, obj: Box<T>, bytes: usize) -> Option<Box<T>> {
        let prev = self.obj.swap(Some(obj));
        self.set((bytes as u64).saturating_add(1).min(LOW));
        prev
    }

    /// Any thread (a trim): takes the cached object out of the cell and clears the gauge
    /// unless the owner wrote it meanwhile.
    pub(crate) fn steal(&self) -> Option<Box<T>> {
        let seen = self.held.load(Relaxed);
        let got = self.obj.take();
        if got.is_some() && seen & LOW != 0 {
            let _ = self
                .held
                .compare_exchange(seen, next(seen, 0), Relaxed, Relaxed);
        }
        got
    }

    /// The gauge: `Some(bytes)` when the cell appears to hold an object.
    pub(crate) fn held(&self) -> Option<usize> {
        match self.held.load(Relaxed) & LOW {
            0 => None,
            n => Some((n - 1) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_is_lock_free() {
        assert!(AtomicCell::<Option<Box<Vec<u8>>>>::is_lock_free());
    }

    #[test]
    fn live_threads_have_distinct_indices_and_reuse_them() {
        let mine = thread_index().expect("index");
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| thread_index().expect("index"));
            let b = s.spawn(|| thread_index().expect("index"));
            (a.join().expect("a"), b.join().expect("b"))
        });
        assert_ne!(a, mine);
        assert_ne!(b, mine);
        // Exited threads give their index back: a new thread gets one of the freed ones or
        // a small one, never an ever-growing sequence.
        let c = std::thread::spawn(|| thread_index().expect("index"))
            .join()
            .expect("c");
        assert!(c <= a.max(b) + 64, "indices should be reused");
    }

    #[test]
    fn swap_returns_displaced_object() {
        let cell = HotCell::new();
        assert!(cell.take().is_none());
        assert!(cell.swap(Box::new(1u8), 10).is_none());
        assert_eq!(cell.held(), Some(10));
        assert_eq!(cell.swap(Box::new(2u8), 20).as_deref(), Some(&1));
        assert_eq!(cell.steal().as_deref(), Some(&2));
        assert_eq!(cell.held(), None, "a steal clears the gauge");
        assert!(cell.take().is_none());
        assert!(cell.swap(Box::new(3u8), 30).is_none());
        assert!(cell.maybe_full());
    }
}
