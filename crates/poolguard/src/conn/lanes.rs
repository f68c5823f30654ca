//! Per-thread lanes: the checkout cycle without the pool lock.
//!
//! A pool has a few lanes (twice the machine's parallelism, rounded up to a power of two, at
//! most 64), each a small mutex of its own on its own cache line; a thread uses lane
//! `seed & mask`, its seed taken from a process-wide counter on its first use of any pool,
//! and a new one whenever it finds its lane locked by another thread.
//! A lane holds at most one idle connection, at most one hold record (the call site, time
//! and task of a connection checked out from it), a count of the gets it served, and its
//! own reference to the pool ([`LaneRef`]): a guard from a lane holds the lane's reference,
//! whose count only that lane's thread touches, instead of the pool's shared one, which
//! every worker would otherwise write on every get and return.
//!
//! # The rule that keeps lanes invisible
//!
//! A critical section of the state lock taken through `Shared::lock` starts by **closing
//! the gate** (an atomic the lanes' fast paths read under their own lane lock) and
//! **draining** every lane: its idle connection goes to the pool's idle list, its hold
//! record into the pool's holders (the lane keeps the slot it moved to, for the guard to
//! find), its get count into the pool's. When the critical section ends, the gate is opened
//! again, stamped with the pool's epoch, if and only if the pool is open, not paused, within
//! `max_size` and nobody waits. So code under that lock sees every connection, hold and get
//! exactly as if there were no lanes, and the fast paths only run while none of the
//! conditions that need the shared path holds.
//!
//! Two exceptions keep the drain off the paths that do not need it. The shared fast paths
//! (`Shared::lock_quick`: a get that takes an idle connection from the shared list, a return
//! that makes its connection idle) neither count nor walk idle connections or holders, so
//! they skip the drain and leave the gate as it is. And a drain is skipped while the gate
//! stayed closed and nothing was parked under the lock since the last one (`lanes_dirty`):
//! the gate only goes from open to closed in a draining section, so no fast path has added
//! anything since.
//!
//! Lock order: state, then a lane. The fast paths take their lane only and never the state
//! lock while they hold it.
//!
//! Why no lost connection or stranded waiter: a get queues under the state lock, whose
//! critical section drained every lane after closing the gate and leaves the gate closed
//! while the queue is not empty. A return that parks a connection in a lane does so under
//! the lane lock after reading an open gate; the drain takes the same lane lock after
//! storing the closed gate. Either the return's critical section comes first (the drain then
//! sees the parked connection) or the drain's does (the return then reads the closed gate,
//! ordered by the lane lock, and takes the shared path). The same argument covers close,
//! pause, soft-evict (the epoch in the gate) and a smaller `max_size`.
//!
//! Lanes are off (no lanes at all) with FIFO idle order, leak detection, or a
//! `before_acquire` or `after_release` hook: each needs every checkout or return to go
//! through the shared path.

use std::cell::Cell;
use std::mem;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::engine::{Shared, State};
use super::internals::Conn;
use super::leak::Hold;
use super::Manager;

/// Marks a guard's slot as a lane's (the low bits: the lane); other slots are the holders'.
pub(crate) const LANE_BIT: usize = 1 << (usize::BITS - 1);

/// The gate's closed value (bit 0 set); an open gate is `epoch << 1`.
const CLOSED: u64 = 1;

/// The hold record of a lane: none, a connection checked out from it, or that record moved
/// to the pool's holders at `slot` by a drain (the guard's return or detach takes it there).
#[derive(Debug, Default)]
pub(crate) enum LaneHold {
    #[default]
    Free,
    Held(Hold),
    Moved(usize),
}

pub(crate) struct Lane<M: Manager> {
    /// An idle connection; only while `hold` is `Free`.
    pub(crate) conn: Option<Conn<M::Connection>>,
    pub(crate) hold: LaneHold,
    /// Gets served by this lane since the last drain.
    pub(crate) gets: u64,
    /// The lane's reference to the pool (made on its first get; dropped when the pool
    /// closes, which breaks the pool -> lane -> pool cycle).
    pub(crate) handle: Option<Arc<CachePadded<LaneRef<M>>>>,
}

impl<M: Manager> Default for Lane<M> {
    fn default() -> Self {
        Self {
            conn: None,
            hold: LaneHold::Free,
            gets: 0,
            handle: None,
        }
    }
}

/// A lane's reference to its pool.
pub(crate) struct LaneRef<M: Manager> {
    shared: Arc<Shared<M>>,
}

/// How a guard holds its pool. A lane's reference is cache-padded (with its reference
/// count, which precedes it in the same allocation), so two lanes' counts never share a line.
pub(crate) enum PoolRef<M: Manager> {
    Shared(Arc<Shared<M>>),
    Lane(Arc<CachePadded<LaneRef<M>>>),
}

impl<M: Manager> PoolRef<M> {
    #[inline]
    pub(crate) fn get(&self) -> &Arc<Shared<M>> {
        match self {
            PoolRef::Shared(s) => s,
            PoolRef::Lane(l) => &l.shared,
        }
    }
}

impl<M: Manager> Lane<M> {
    /// The lane's reference for a new guard (made once per lane).
    #[inline]
    pub(crate) fn handle(&mut self, shared: &Arc<Shared<M>>) -> PoolRef<M> {
        let h = self.handle.get_or_insert_with(|| {
            Arc::new(CachePadded::new(LaneRef {
                shared: Arc::clone(shared),
            }))
        });
        PoolRef::Lane(Arc::clone(h))
    }
}

pub(crate) struct Lanes<M: Manager> {
    gate: CachePadded<AtomicU64>,
    lanes: Box<[CachePadded<Mutex<Lane<M>>>]>,
    mask: usize,
}

/// How many lanes a pool gets when lanes are on.
fn lane_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // Twice the cores: threads that first used the pool in an interleaved order, or more
    // threads than cores, still mostly find a lane of their own.
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_mul(2)
            .next_power_of_two()
            .min(64)
    })
}

thread_local! {
    /// This thread's lane seed (`usize::MAX` until its first use): a constant-initialised
    /// cell without a destructor, so reading it is one load.
    static SEED: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Where seeds come from: threads take consecutive seeds in the order they first use a pool
/// (and a new one when they find their lane busy), so a runtime's workers spread over the
/// lanes.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// This thread's lane seed.
#[inline]
fn seed() -> usize {
    SEED.try_with(|s| match s.get() {
        usize::MAX => reseed_cell(s),
        n => n,
    })
    .unwrap_or(0)
}

fn reseed_cell(s: &Cell<usize>) -> usize {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & !LANE_BIT;
    s.set(n);
    n
}

/// This thread found its lane held by another thread: it moves to the next seed (so two
/// threads that share a lane part after their first collisions, as `LongAdder`'s cells do).
#[cold]
pub(crate) fn reseed() {
    let _ = SEED.try_with(reseed_cell);
}

impl<M: Manager> Lanes<M> {
    /// `on`: lanes for this pool (see the module rules), else none.
    pub(crate) fn new(on: bool) -> Self {
        let n = if on { lane_count() } else { 0 };
        Self {
            gate: CachePadded::new(AtomicU64::new(CLOSED)),
            lanes: (0..n).map(|_| CachePadded::new(Mutex::default())).collect(),
            mask: n.saturating_sub(1),
        }
    }

    #[inline]
    pub(crate) fn on(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// This thread's lane index.
    #[inline]
    pub(crate) fn mine(&self) -> usize {
        seed() & self.mask
    }

    /// Lane `i`, locked.
    #[inline]
    pub(crate) fn lock(&self, i: usize) -> parking_lot::MutexGuard<'_, Lane<M>> {
        self.lanes[i & self.mask].lock()
    }

    /// Lane `i`, locked, or `None` when another thread holds it.
    #[inline]
    pub(crate) fn try_lock(&self, i: usize) -> Option<parking_lot::MutexGuard<'_, Lane<M>>> {
        self.lanes[i & self.mask].try_lock()
    }

    /// The gate as a fast path reads it (under its lane lock): `Some(epoch)` when open.
    #[inline]
    pub(crate) fn open_epoch(&self) -> Option<u64> {
        let g = self.gate.load(Ordering::Acquire);
        (g & CLOSED == 0).then_some(g >> 1)
    }

    /// Starts a critical section of the state lock (held by the caller): closes the gate,
    /// then drains every lane into `st`.
    pub(crate) fn enter(&self, st: &mut State<M>) {
        if !self.on() {
            return;
        }
        // Only state-lock holders write the gate, so this reads the last one's value. Closed
        // (by the last drain, or by the last critical section's end) and nothing parked
        // under the lock since: no fast path has run since the lanes were last drained
        // (one that read an open gate did so under its lane lock, before that drain took
        // it), so they hold nothing new. This keeps an exhausted pool, whose gate stays
        // closed while callers wait, from locking every lane twice per cycle.
        if self.gate.load(Ordering::Relaxed) == CLOSED && !st.lanes_dirty {
            return;
        }
        st.lanes_dirty = false;
        self.gate.store(CLOSED, Ordering::Release);
        for lane in self.lanes.iter() {
            let mut l = lane.lock();
            if let Some(conn) = l.conn.take() {
                st.put_idle(conn);
            }
            if let LaneHold::Held(h) = l.hold {
                l.hold = LaneHold::Moved(st.holders.insert(h.site, h.since, h.task));
            }
            st.gets += mem::take(&mut l.gets);
        }
    }

    /// Ends a critical section of the state lock (still held): opens the gate when the
    /// fast paths may run.
    pub(crate) fn leave(&self, st: &State<M>) {
        if !self.on() {
            return;
        }
        let open = !st.is_closed()
            && st.paused().is_none()
            && st.waiters_len() == 0
            && st.size() <= st.max_size();
        let g = if open { st.epoch() << 1 } else { CLOSED };
        if self.gate.load(Ordering::Relaxed) != g {
            self.gate.store(g, Ordering::Release);
        }
    }

    /// Under the state lock: the holders' slot of a guard's `slot`, taking the lane's record
    /// out of the lane (which is free again): moved there by a drain, or still in the lane
    /// (the return's quick lock does not drain), when it joins the holders now.
    pub(crate) fn resolve(&self, st: &mut State<M>, slot: usize) -> usize {
        if slot & LANE_BIT == 0 {
            return slot;
        }
        let mut l = self.lock(slot & !LANE_BIT);
        match mem::take(&mut l.hold) {
            LaneHold::Moved(s) => s,
            LaneHold::Held(h) => st.holders.insert(h.site, h.since, h.task),
            // No record (a guard's lane always has its record): a slot the holders do not
            // have, so the return takes its full path.
            LaneHold::Free => usize::MAX & !LANE_BIT,
        }
    }

    /// Under the state lock, for a connection the shared return path made idle: parks it in
    /// this thread's lane when the lane holds no checkout, so the thread's next get takes the
    /// lane's path. A connection already parked there goes to the idle list instead: the
    /// lane is the top of the thread's LIFO order (the most recently returned connection is
    /// the next one it reuses).
    pub(crate) fn park(&self, st: &mut State<M>, conn: Conn<M::Connection>) {
        let lane = if self.on() {
            self.try_lock(self.mine())
                .filter(|l| matches!(l.hold, LaneHold::Free))
        } else {
            None
        };
        let Some(mut lane) = lane else {
            st.put_idle(conn);
            return;
        };
        // Parked under the lock: the next draining section must look even if the gate
        // stayed closed.
        st.lanes_dirty = true;
        if let Some(older) = lane.conn.replace(conn) {
            st.put_idle(older);
        }
    }

    /// Takes every lane's reference to the pool (the pool is closing: breaks the pool ->
    /// lane -> pool cycle).
    pub(crate) fn take_handles(&self) -> Vec<Arc<CachePadded<LaneRef<M>>>> {
        self.lanes
            .iter()
            .filter_map(|lane| lane.lock().handle.take())
            .collect()
    }

    /// Idle connections and hold records now in lanes (tests: zero under the state lock).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> (usize, usize) {
        self.lanes.iter().fold((0, 0), |(c, h), lane| {
            let l = lane.lock();
            (
                c + usize::from(l.conn.is_some()),
                h + usize::from(matches!(l.hold, LaneHold::Held(_))),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use crate::conn::{Manager, Pool};

    struct Noop;

    impl Manager for Noop {
        type Connection = ();
        type Error = io::Error;
        async fn connect(&self) -> Result<(), io::Error> {
            Ok(())
        }
        async fn validate(&self, _: &mut ()) -> Result<(), io::Error> {
            Ok(())
        }
        fn needs_reset(&self, _: &mut ()) -> bool {
            false
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_lock_sees_every_lane_drained() {
        let p = Pool::builder(Noop).max_size(2).build().expect("valid");
        drop(p.get().await.expect("get"));
        drop(p.get().await.expect("get"));
        assert_eq!(
            p.shared.lanes.parked(),
            (1, 0),
            "parked in this thread's lane"
        );
        let c = p.get().await.expect("get");
        assert_eq!(p.shared.lanes.parked(), (0, 1), "held from the lane");
        {
            let st = p.shared.lock();
            assert_eq!(p.shared.lanes.parked(), (0, 0), "drained under the lock");
            assert_eq!((st.idle_len(), st.holders.len()), (0, 1));
        }
        drop(c);
        let st = p.shared.lock();
        assert_eq!((st.idle_len(), st.holders.len(), st.gets), (1, 0, 3));
    }

    #[test]
    fn lanes_are_off_where_every_cycle_needs_the_shared_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _in = rt.enter();
        let fifo = Pool::builder(Noop)
            .idle_order(crate::conn::IdleOrder::Fifo)
            .build()
            .expect("valid");
        assert!(!fifo.shared.lanes.on());
        let leak = Pool::builder(Noop)
            .leak_threshold(Some(std::time::Duration::from_secs(1)))
            .build()
            .expect("valid");
        assert!(!leak.shared.lanes.on());
        let plain = Pool::builder(Noop).build().expect("valid");
        assert!(plain.shared.lanes.on());
    }
}
