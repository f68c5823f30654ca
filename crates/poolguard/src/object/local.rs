//! The per-thread tier: dense thread indices and one owner-only cached object per thread.
//!
//! This is the crate's one module with `unsafe` code (three blocks, each with its `SAFETY`
//! argument); the loom models at the end check the protocol they rely on.
//!
//! Every thread that touches any pool takes a small index from a process-wide free list (the
//! lowest free one) and gives it back when it exits, so live threads have distinct indices
//! and the indices stay small. A pool owns `local_slots` [`Cell`]s; thread `i` uses cell `i`
//! (threads with larger indices skip the tier). A cell holds at most one object in a plain
//! [`Slot`] that only one thread at a time may touch:
//!
//! * the thread that holds index `i` (its owner), through [`Cells::mine`] and
//!   [`Mine::replace`]: no atomic operation, no lock, just the object moved in or out;
//! * a trim, through [`Cells::steal_unowned`], only while it holds the free-list lock and only
//!   for indices on the free list: no thread holds them, and none can take them before the
//!   lock is released. A thread gives its index back (under that lock) as the last thing it
//!   does with the pools, and takes one under it too, so the lock orders every access of a
//!   cell by an exited owner, a trim and the next owner.
//!
//! A trim cannot touch a live thread's slot. Instead it advances the pool's generation;
//! each slot is stamped with the generation its object was cached in, and the owner applies
//! the cycles it missed at its next use (one missed cycle demotes the object to a victim
//! generation, two free it). So an idle live thread keeps at most one object of at most
//! `cell_bytes` per pool until its next use of that pool or its exit (after its exit the
//! next cycle reaches it, unless a new thread has taken the index first and so inherited the
//! cell): `local_slots x cell_bytes` per pool at most, as before.
//!
//! Counters in a cell are written only by its owner (a relaxed load and store, no
//! read-modify-write) and read by snapshots.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
// The free list is a process-wide static: real primitives (loom's cannot live in a static).
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

// The cells' counters and the slot cell: through `crate::sync`, so loom models them.
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};
use crate::sync::UnsafeCell;

/// A free list of dense indices: the lowest released one first, a fresh one only when none
/// is free.
pub(crate) struct Indices {
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
        // On a poisoned lock the index is never reused (so never on the free list either).
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
        // From here on this thread has no index (`CACHED` says none, and `INDEX` is gone, so
        // it never gets one again): it never touches a cell again.
        let _ = CACHED.try_with(|c| c.set(NONE));
        self.from.release(self.i);
    }
}

/// `CACHED` before the thread took its index, and after it gave it back.
const NONE: usize = usize::MAX;

thread_local! {
    /// Holds the index (and gives it back at thread exit).
    static INDEX: ThreadIndex = ThreadIndex::acquire(&INDICES);
    /// A copy of `INDEX`'s index while the thread holds it, else `NONE`: a constant-
    /// initialised cell without a destructor, so reading it is one load.
    static CACHED: std::cell::Cell<usize> = const { std::cell::Cell::new(NONE) };
}

/// This thread's index, or `None` during thread-local teardown (the caller then uses the
/// shared tier only, so pool access from other thread-local destructors never panics).
#[inline]
pub(crate) fn thread_index() -> Option<usize> {
    match CACHED.try_with(std::cell::Cell::get) {
        Ok(i) if i != NONE => Some(i),
        _ => first_index(),
    }
}

/// Takes this thread's index (its first pool access) or finds it gone (teardown).
#[cold]
fn first_index() -> Option<usize> {
    let i = INDEX.try_with(|t| t.i).ok()?;
    let _ = CACHED.try_with(|c| c.set(i));
    Some(i)
}

/// What a cell caches: at most one object, stamped with the trim generation it was cached in.
pub(crate) struct Slot<T> {
    pub(crate) obj: Option<Box<T>>,
    pub(crate) gen: u64,
}

/// One thread's cell in a pool: its counters (read by anyone) and its slot (see the module
/// docs for who may touch it).
pub(crate) struct Cell<T> {
    pub(crate) stats: HotCell,
    slot: UnsafeCell<Slot<T>>,
}

/// The per-thread tier of one pool.
pub(crate) struct Cells<T> {
    cells: Box<[CachePadded<Cell<T>>]>,
}

// SAFETY: `Cells` moves `T`s between threads (a slot filled by one thread may be emptied by
// the next owner of the index or by a trim on another thread), hence `T: Send`. It is shared
// between threads, and every access to a slot is exclusive by the protocol in the module
// docs: the owner's accesses through `Mine::replace` and a trim's through `steal_unowned` are
// ordered by the free-list lock, and no `&T` ever leaves a slot (only whole `Box<T>`s move).
unsafe impl<T: Send> Sync for Cells<T> {}

/// The calling thread's own cell in one pool (see [`Cells::mine`]). Not `Send` (it holds
/// a `&Cell`, and `Cell` is not `Sync`): it stays on the thread that holds the index.
pub(crate) struct Mine<'a, T> {
    /// The thread's index (its home shard too).
    pub(crate) i: usize,
    cell: &'a Cell<T>,
}

impl<T> Mine<'_, T> {
    /// The cell's counters and gauge.
    #[inline]
    pub(crate) fn stats(&self) -> &HotCell {
        &self.cell.stats
    }

    /// Replaces what the slot caches (an object and the generation it was cached in) and
    /// returns what it cached before. Moves boxes only: no user code runs in here.
    #[inline]
    pub(crate) fn replace(&self, new: Option<(Box<T>, u64)>) -> Option<(Box<T>, u64)> {
        self.cell.slot.with_mut(|p| {
            // SAFETY: a `Mine` for cell `i` exists only on the thread that holds index `i`
            // (`Cells::mine` reads it from this thread's `CACHED`, which holds the index of
            // this thread's `INDEX` from its first access until `INDEX`'s destructor resets it
            // just before giving the index back, and a `Mine` cannot move to another thread). While a thread holds `i`, no other thread is its owner, and a
            // trim touches only cells whose index is on the free list, which `i` is not. The
            // thread's own accesses never overlap: this `&mut` lives only inside this block,
            // which calls no other code (moving a `Box` runs none, and the old value is moved
            // out, not dropped). Accesses by the index's previous owner or by a trim
            // happened-before this one: they released the free-list lock that this thread's
            // `Indices::acquire` took afterwards.
            let slot = unsafe { &mut *p };
            match new {
                Some((o, gen)) => {
                    let old_gen = std::mem::replace(&mut slot.gen, gen);
                    slot.obj.replace(o).map(|old| (old, old_gen))
                }
                None => slot.obj.take().map(|o| (o, slot.gen)),
            }
        })
    }
}

impl<T> Cells<T> {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            cells: (0..n)
                .map(|_| {
                    CachePadded::new(Cell {
                        stats: HotCell::new(),
                        slot: UnsafeCell::new(Slot { obj: None, gen: 0 }),
                    })
                })
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// The cells' counters, in index order.
    pub(crate) fn stats(&self) -> impl Iterator<Item = &HotCell> {
        self.cells.iter().map(|c| &c.stats)
    }

    /// The calling thread's own cell; `None` when it has none here (its index is past
    /// `local_slots`, or its thread-locals are being torn down).
    #[inline]
    pub(crate) fn mine(&self) -> Option<Mine<'_, T>> {
        let i = thread_index()?;
        self.cells.get(i).map(|c| Mine { i, cell: c })
    }

    /// A trim: takes the objects cached in the cells of indices no thread holds (threads
    /// that exited), appending `(index, object)` to `out`.
    pub(crate) fn steal_unowned(&self, out: &mut Vec<(usize, Box<T>)>) {
        let free = INDICES
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.steal_free(free.iter().map(|r| r.0), out);
    }

    /// `steal_unowned` over an explicit free list; the caller holds the lock that guards it
    /// (loom drives this with its own list).
    fn steal_free(&self, free: impl Iterator<Item = usize>, out: &mut Vec<(usize, Box<T>)>) {
        for i in free {
            let Some(c) = self.cells.get(i) else { continue };
            let got = c.slot.with_mut(|p| {
                // SAFETY: index `i` is on the free list and the caller holds the list's lock:
                // no thread holds `i` (its last owner released it under this lock after its
                // last access), and none can take it before the lock is released (`acquire`
                // takes it), so this is the only access to the slot.
                let slot = unsafe { &mut *p };
                slot.obj.take()
            });
            if let Some(o) = got {
                c.stats.set_held(None);
                out.push((i, o));
            }
        }
    }
}

/// One thread's counters and occupancy gauge in a pool, written only by that thread (or by
/// a trim, for a cell whose index no thread holds).
pub(crate) struct HotCell {
    /// The cached object's heap bytes plus one (saturating), or 0 when the cell caches
    /// none. Feeds the retained gauge, never a cap (the cap is one object per cell).
    held: AtomicU64,
    pub(crate) gets: AtomicU64,
    /// Gets that found nothing usable in the cell (the cell's hits are `gets - missed`, so a
    /// hit writes one counter).
    pub(crate) missed: AtomicU64,
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
            missed: AtomicU64::new(0),
            returns: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// The cell now caches an object of `bytes` heap bytes (`None`: nothing).
    #[inline]
    pub(crate) fn set_held(&self, bytes: Option<usize>) {
        let v = bytes.map_or(0, |b| (b as u64).saturating_add(1));
        self.held.store(v, Relaxed);
    }

    /// The gauge: `Some(bytes)` when the cell caches an object.
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

#[cfg(all(test, poolguard_loom))]
mod loom_tests {
    //! The protocol the `unsafe` blocks rely on, with loom's `UnsafeCell` (which reports any
    //! two accesses to a slot that are not ordered by happens-before) and a loom mutex in
    //! place of the process-wide free list: the owner of an index, a trim that may only touch
    //! cells of free indices under the list's lock, and the index's next owner.
    use super::{Cells, Mine};
    use crate::sync::{thread, Arc, Mutex};

    impl<T> Cells<T> {
        /// The `Mine` that `Cells::mine` would give the thread holding index `i`.
        fn mine_as(&self, i: usize) -> Mine<'_, T> {
            Mine {
                i,
                cell: &self.cells[i],
            }
        }
    }

    fn steal(cells: &Cells<u32>, free: &Mutex<Vec<usize>>) -> Vec<u32> {
        let mut out = Vec::new();
        let list = free.lock().expect("free list");
        cells.steal_free(list.iter().copied(), &mut out);
        out.into_iter().map(|(_, b)| *b).collect()
    }

    /// The owner caches, takes and caches again, then exits (gives its index back) while a
    /// trim steals from free cells: every object ends up in exactly one place.
    #[test]
    fn loom_owner_exit_vs_trim() {
        loom::model(|| {
            let cells = Arc::new(Cells::<u32>::new(1));
            let free = Arc::new(Mutex::new(Vec::<usize>::new()));
            let owner = {
                let (cells, free) = (Arc::clone(&cells), Arc::clone(&free));
                thread::spawn(move || {
                    let m = cells.mine_as(0);
                    assert!(m.replace(Some((Box::new(1), 0))).is_none());
                    let got = m.replace(None).map(|(b, _)| *b);
                    assert!(m.replace(Some((Box::new(2), 0))).is_none());
                    free.lock().expect("free list").push(0); // the thread exits
                    got
                })
            };
            let mut seen = steal(&cells, &free);
            seen.extend(owner.join().expect("owner"));
            seen.extend(steal(&cells, &free));
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2], "an object was lost or duplicated");
        });
    }

    /// An index passes from an exited owner to a new thread while a trim steals: the object
    /// the first owner cached goes to exactly one of them.
    #[test]
    fn loom_index_handoff_vs_trim() {
        loom::model(|| {
            let cells = Arc::new(Cells::<u32>::new(1));
            let free = Arc::new(Mutex::new(Vec::<usize>::new()));
            {
                let m = cells.mine_as(0);
                assert!(m.replace(Some((Box::new(7), 0))).is_none());
                free.lock().expect("free list").push(0); // the first owner exits
            }
            let next = {
                let (cells, free) = (Arc::clone(&cells), Arc::clone(&free));
                thread::spawn(move || {
                    let taken = free.lock().expect("free list").pop();
                    taken.and_then(|i| cells.mine_as(i).replace(None).map(|(b, _)| *b))
                })
            };
            let mut seen = steal(&cells, &free);
            seen.extend(next.join().expect("next owner"));
            seen.extend(steal(&cells, &free));
            assert_eq!(seen, vec![7], "an object was lost or duplicated");
        });
    }
}
