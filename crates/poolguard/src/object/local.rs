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
// The free list is a process-wide static: real primitives (loom's cannot live in a static).
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

// The cells: through `crate::sync`, so loom models them.
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};
use crate::sync::AtomicCell;

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

thread_local! {
    static INDEX: ThreadIndex = ThreadIndex::acquire(&INDICES);
}

/// This thread's index, or `None` during thread-local teardown (the caller then uses the
/// shared tier only, so pool access from other thread-local destructors never panics).
#[inline]
pub(crate) fn thread_index() -> Option<usize> {
    INDEX.try_with(|i| i.i).ok()
}

/// One thread's cached object and the counters only that thread writes.
pub(crate) struct HotCell<T> {
    obj: AtomicCell<Option<Box<T>>>,
    /// Occupancy gauge: a version (high 32 bits) and the cached object's heap bytes plus one
    /// (low 32 bits, saturating), or 0 in the low bits when empty. The owner writes it after
    /// each take/swap. Only the owner puts into its cell, and only when the gauge says empty,
    /// so an empty gauge means an empty cell, except after a rare race of a steal with the
    /// owner's take and put (found by loom), which costs the owner one miss: its next swap
    /// hands the object back, never loses it. A trim that steals the object clears the gauge
    /// with a compare-exchange against the full value it read before stealing, which fails
    /// if the owner wrote since (it is then stale-full until the owner's next get, which
    /// finds the cell empty and clears it). Feeds the retained gauge, never a cap.
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
            skipped: AtomicU64::new(0),
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

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn cell_is_lock_free() {
        assert!(AtomicCell::<Option<Box<Vec<u8>>>>::is_lock_free());
    }

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

#[cfg(all(test, poolguard_loom))]
mod loom_tests {
    use super::HotCell;
    use crate::sync::{thread, Arc};

    /// The owner caches an object, takes it back and caches another while a trim steals
    /// from the cell: every object ends up in exactly one place (the owner's hands, the
    /// thief's, or the cell).
    #[test]
    fn loom_hot_cell_owner_put_take_vs_steal() {
        loom::model(|| {
            let cell = Arc::new(HotCell::<u32>::new());
            let thief = {
                let c = Arc::clone(&cell);
                thread::spawn(move || c.steal().map(|b| *b))
            };
            let mut seen = Vec::new();
            // The owner's return: only into a cell its gauge says is empty.
            assert!(!cell.maybe_full());
            if let Some(d) = cell.swap(Box::new(1), 10) {
                seen.push(*d);
            }
            // The owner's get.
            if let Some(o) = cell.take() {
                seen.push(*o);
            }
            // Another return.
            if !cell.maybe_full() {
                if let Some(d) = cell.swap(Box::new(2), 20) {
                    seen.push(*d);
                }
            } else {
                seen.push(2); // kept by the owner (it would go to the shards)
            }
            if let Some(s) = thief.join().expect("thief") {
                seen.push(s);
            }
            // The gauge is not checked: loom finds interleavings of the relaxed gauge with a
            // steal that leave it reading empty over an object. That costs a miss (the next
            // return's swap hands the object back, and it goes to the shards), never an object.
            seen.extend(cell.steal().map(|b| *b));
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2], "an object was lost or duplicated");
        });
    }

    /// Two trims steal at once while the owner puts: exactly one of them gets the object.
    #[test]
    fn loom_hot_cell_two_steals_one_object() {
        loom::model(|| {
            let cell = Arc::new(HotCell::<u32>::new());
            let steal = || {
                let c = Arc::clone(&cell);
                thread::spawn(move || c.steal().map(|b| *b))
            };
            let (a, b) = (steal(), steal());
            assert!(cell.swap(Box::new(7), 1).is_none());
            let mut seen: Vec<u32> = Vec::new();
            seen.extend(a.join().expect("a"));
            seen.extend(b.join().expect("b"));
            seen.extend(cell.steal().map(|b| *b));
            assert_eq!(seen, vec![7]);
        });
    }
}
