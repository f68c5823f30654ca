//! The shared tier: `N` independently locked stacks, each holding two generations
//! ([`Generations`]). A thread starts at its home shard (its thread index modulo `N`) and
//! walks the others, skipping shards whose length hint says they are empty, so a get on one
//! thread finds what another thread returned (the producer/consumer case) and a full home
//! shard spills to its neighbours before an object is refused.
//!
//! Each walk is made twice at most: first with `try_lock`, skipping shards another thread
//! holds (a return lands in a free shard, a get takes from a free non-empty one, so a thread
//! does not sleep in the futex behind a peer while another shard would do); then, only if
//! some shard was skipped as busy and nothing was found, with a blocking lock, so a refusal
//! still means every shard was full, and a miss that no shard looked non-empty.
//!
//! Caps are split over the shards when the pool is built, so each lock guards its own share
//! of the budget and no global counter is touched on this path: the sum of the shares is the
//! pool's cap, whatever the threads do.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::victim::{Entry, Gen, Generations};
use crate::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use crate::sync::{Mutex, MutexGuard, TryLockError};

struct Shard<T> {
    gens: Mutex<Generations<T>>,
    /// `gens.len()` as of the last unlock: lets a get skip empty shards without locking.
    /// Written only while `gens` is locked; a stale value costs a miss, never an object.
    len: AtomicUsize,
}

/// Sums over all shards, for stats.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardTotals {
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
    /// Of `objects` and `bytes`, those in the primary generations.
    pub(crate) primary: (usize, usize),
    /// Of `objects` and `bytes`, those in the victim generations.
    pub(crate) victim: (usize, usize),
    pub(crate) hits_primary: u64,
    pub(crate) hits_victim: u64,
    pub(crate) evicted: u64,
}

pub(crate) struct Shards<T> {
    shards: Box<[CachePadded<Shard<T>>]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never happens while a shard is locked (no user code runs under it), but be
    // robust anyway: the data is always consistent between two statements.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lock if it is free right now; `None` when another thread holds it.
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl<T> Shards<T> {
    /// `n` shards sharing `cap_objects` and `cap_bytes` (split evenly, remainders to the
    /// first shards). `n` is lowered so that each shard may hold at least one object.
    pub(crate) fn new(n: usize, cap_objects: usize, cap_bytes: usize) -> Self {
        let n = n.clamp(1, cap_objects.max(1));
        let shards = (0..n)
            .map(|i| {
                let objs = cap_objects / n + usize::from(i < cap_objects % n);
                let bytes = cap_bytes / n + usize::from(i < cap_bytes % n);
                CachePadded::new(Shard {
                    gens: Mutex::new(Generations::new(objs, bytes)),
                    len: AtomicUsize::new(0),
                })
            })
            .collect();
        Self { shards }
    }

    #[cfg(all(test, not(poolguard_loom)))]
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    fn order(&self, home: usize) -> impl Iterator<Item = &Shard<T>> {
        let n = self.shards.len();
        (0..n).map(move |i| &*self.shards[(home + i) % n])
    }

    /// The freshest object of the first non-empty shard, starting at `home`.
    #[cfg(test)]
    pub(crate) fn pop(&self, home: usize) -> Option<(Entry<T>, Gen)> {
        self.pop_with_spare(home, None).map(|(e, g, _)| (e, g))
    }

    /// Like `pop` (a test helper), and when `spare_bytes` is `Some(max)`, also takes a second
    /// object of at most `max` bytes under the same lock (to refill the caller's empty
    /// per-thread cell, halving the lock acquisitions of a run of gets).
    pub(crate) fn pop_with_spare(
        &self,
        home: usize,
        spare_bytes: Option<usize>,
    ) -> Option<(Entry<T>, Gen, Option<Entry<T>>)> {
        // First pass: only shards that are free right now, so a get never sleeps on a lock
        // held by a returning thread while another non-empty shard would do. Second pass
        // (only when some non-empty shard was busy): wait for the lock, as before.
        let mut busy = false;
        for blocking in [false, true] {
            for s in self.order(home) {
                if s.len.load(Relaxed) == 0 {
                    continue;
                }
                let mut g = if blocking {
                    lock(&s.gens)
                } else {
                    match try_lock(&s.gens) {
                        Some(g) => g,
                        None => {
                            busy = true;
                            continue;
                        }
                    }
                };
                let got = g.pop();
                let spare = match (&got, spare_bytes) {
                    (Some(_), Some(max)) => g.pop_spare(max),
                    _ => None,
                };
                s.len.store(g.len(), Relaxed);
                drop(g);
                if let Some((e, gen)) = got {
                    return Some((e, gen, spare));
                }
            }
            if !busy {
                break;
            }
        }
        None
    }

    /// Inserts into the first shard with room (evicting victims there if needed); hands the
    /// entry back when every shard is at its cap.
    pub(crate) fn push(
        &self,
        home: usize,
        e: Entry<T>,
        evicted: &mut Vec<Entry<T>>,
    ) -> Result<(), Entry<T>> {
        let mut items = [Some(e)];
        self.push_each(home, &mut items, evicted);
        match items {
            [None] => Ok(()),
            [Some(back)] => Err(back),
        }
    }

    /// Like [`push`](Self::push) for two entries, both under one lock when one shard has
    /// room for both (`older` below `fresher`, so a get takes `fresher` first). Hands back
    /// each entry no shard had room for.
    pub(crate) fn push_pair(
        &self,
        home: usize,
        older: Entry<T>,
        fresher: Entry<T>,
        evicted: &mut Vec<Entry<T>>,
    ) -> [Option<Entry<T>>; 2] {
        let mut items = [Some(older), Some(fresher)];
        self.push_each(home, &mut items, evicted);
        items
    }

    /// Places every `Some` of `items` (in order), leaving `None` where it succeeded.
    fn push_each(&self, home: usize, items: &mut [Option<Entry<T>>], evicted: &mut Vec<Entry<T>>) {
        // First pass: free shards with room (a return spreads to a free one instead of
        // sleeping behind a get). Second pass, for what the first did not place: wait for
        // each lock and evict victims as needed, so a refusal means every shard was full.
        for blocking in [false, true] {
            for s in self.order(home) {
                let mut g = if blocking {
                    lock(&s.gens)
                } else {
                    match try_lock(&s.gens) {
                        Some(g) => g,
                        None => continue,
                    }
                };
                for slot in items.iter_mut() {
                    let Some(e) = slot.take() else { continue };
                    // The free-shard pass never evicts, so skipping a busy home that had
                    // room never costs a neighbour's victim; the waiting pass evicts as it
                    // always did.
                    let r = if blocking {
                        g.push(e, evicted)
                    } else {
                        g.push_if_fits(e)
                    };
                    if let Err(back) = r {
                        *slot = Some(back);
                    }
                }
                s.len.store(g.len(), Relaxed);
                drop(g);
                if items.iter().all(Option::is_none) {
                    return;
                }
            }
        }
    }

    /// Puts a demoted per-thread object into a victim generation (home first).
    pub(crate) fn push_victim(&self, home: usize, mut e: Entry<T>) -> Result<(), Entry<T>> {
        for s in self.order(home) {
            let mut g = lock(&s.gens);
            let r = g.push_victim(e);
            s.len.store(g.len(), Relaxed);
            drop(g);
            match r {
                Ok(()) => return Ok(()),
                Err(back) => e = back,
            }
        }
        Err(e)
    }

    /// One trim cycle on every shard, one lock at a time: each shard's victim generation is
    /// appended to `dead` (one batch per shard) and its primary generation demoted.
    /// `pause` receives how long each lock was held.
    pub(crate) fn rotate(&self, dead: &mut Vec<Vec<Entry<T>>>, mut pause: impl FnMut(Duration)) {
        for s in self.shards.iter() {
            let t = Instant::now();
            let mut g = lock(&s.gens);
            let batch = g.rotate();
            s.len.store(g.len(), Relaxed);
            drop(g);
            pause(t.elapsed());
            if !batch.is_empty() {
                dead.push(batch);
            }
        }
    }

    pub(crate) fn totals(&self) -> ShardTotals {
        let mut t = ShardTotals::default();
        for s in self.shards.iter() {
            let g = lock(&s.gens);
            t.objects += g.len();
            t.bytes += g.bytes();
            let (p, v) = (g.primary_held(), g.victim_held());
            t.primary = (t.primary.0 + p.0, t.primary.1 + p.1);
            t.victim = (t.victim.0 + v.0, t.victim.1 + v.1);
            t.hits_primary += g.hits_primary;
            t.hits_victim += g.hits_victim;
            t.evicted += g.evicted;
        }
        t
    }
}

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn caps_are_split_and_spill_to_neighbours() {
        let s: Shards<u32> = Shards::new(4, 6, 600);
        let mut ev = Vec::new();
        for i in 0..6 {
            s.push(0, (Box::new(i), 75), &mut ev).expect("room");
        }
        assert!(s.push(0, (Box::new(9), 1), &mut ev).is_err());
        let t = s.totals();
        assert_eq!((t.objects, t.bytes), (6, 450));
        // A get from another home finds objects returned elsewhere.
        for _ in 0..6 {
            assert!(s.pop(3).is_some());
        }
        assert!(s.pop(1).is_none());
    }

    #[test]
    fn a_put_skips_a_busy_home_shard() {
        let s: Shards<u32> = Shards::new(2, 4, 400);
        let mut ev = Vec::new();
        let held = lock(&s.shards[0].gens);
        // Home 0 is locked (by this very thread: a blocking lock would never return).
        s.push(0, (Box::new(7), 10), &mut ev)
            .expect("room in shard 1");
        drop(held);
        assert_eq!(s.shards[0].len.load(Relaxed), 0);
        assert_eq!(s.shards[1].len.load(Relaxed), 1);
    }

    #[test]
    fn a_get_prefers_a_free_shard_over_a_busy_home() {
        let s: Shards<u32> = Shards::new(2, 4, 400);
        let mut ev = Vec::new();
        s.push(0, (Box::new(1), 10), &mut ev).expect("room");
        s.push(1, (Box::new(2), 10), &mut ev).expect("room");
        let held = lock(&s.shards[0].gens);
        let ((got, _), _) = s.pop(0).expect("shard 1 is free and holds one");
        drop(held);
        assert_eq!(*got, 2);
        // Once free, the home shard is the first choice again.
        let ((got, _), _) = s.pop(0).expect("shard 0 holds one");
        assert_eq!(*got, 1);
    }

    #[test]
    fn shards_never_exceed_object_count() {
        let s: Shards<u8> = Shards::new(64, 3, 300);
        assert_eq!(s.len(), 3);
    }
}

/// Loom: the shard operations keep every object exactly once and never exceed the caps under
/// every interleaving of a get, a put and a trim cycle.
#[cfg(all(test, poolguard_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{thread, Arc};

    fn count(s: &Shards<u32>, dead: &[Vec<Entry<u32>>]) -> usize {
        s.totals().objects + dead.iter().map(Vec::len).sum::<usize>()
    }

    #[test]
    fn loom_shared_put_get_trim_conserve_objects() {
        loom::model(|| {
            let s = Arc::new(Shards::<u32>::new(2, 2, 200));
            let mut ev = Vec::new();
            s.push(0, (Box::new(1), 50), &mut ev).expect("room");
            let a = {
                let s = Arc::clone(&s);
                thread::spawn(move || s.pop(1).map(|(e, _)| e))
            };
            let b = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut ev = Vec::new();
                    let r = s.push(1, (Box::new(2), 50), &mut ev);
                    (r.is_ok(), ev.len())
                })
            };
            let mut dead = Vec::new();
            s.rotate(&mut dead, |_| {});
            let got = a.join().expect("a");
            let (pushed, evicted) = b.join().expect("b");
            assert!(pushed);
            assert_eq!(evicted, 0);
            let t = s.totals();
            assert!(t.objects <= 2 && t.bytes <= 200);
            // Two objects went in; each is either retained, taken, or freed by the cycle.
            assert_eq!(count(&s, &dead) + usize::from(got.is_some()), 2);
        });
    }

    #[test]
    fn loom_get_with_spare_races_a_cycle_and_a_put() {
        loom::model(|| {
            let s = Arc::new(Shards::<u32>::new(1, 3, 300));
            let mut ev = Vec::new();
            s.push(0, (Box::new(1), 10), &mut ev).expect("room");
            s.push(0, (Box::new(2), 10), &mut ev).expect("room");
            let getter = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    s.pop_with_spare(0, Some(10))
                        .map_or(0, |(_, _, spare)| 1 + usize::from(spare.is_some()))
                })
            };
            let putter = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut ev = Vec::new();
                    usize::from(s.push(0, (Box::new(3), 10), &mut ev).is_ok())
                })
            };
            let mut dead = Vec::new();
            s.rotate(&mut dead, |_| {});
            let taken = getter.join().expect("getter");
            let added = putter.join().expect("putter");
            let t = s.totals();
            assert!(t.objects <= 3 && t.bytes <= 300);
            assert_eq!(count(&s, &dead) + taken, 2 + added);
        });
    }

    #[test]
    fn loom_pair_push_races_a_get_and_a_cycle() {
        loom::model(|| {
            // Two shards of two: a pair lands together, or splits when a shard is busy.
            let s = Arc::new(Shards::<u32>::new(2, 4, 400));
            let mut ev = Vec::new();
            s.push(0, (Box::new(1), 10), &mut ev).expect("room");
            let getter = {
                let s = Arc::clone(&s);
                thread::spawn(move || usize::from(s.pop(1).is_some()))
            };
            let pusher = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut ev = Vec::new();
                    let back = s.push_pair(1, (Box::new(2), 10), (Box::new(3), 10), &mut ev);
                    (back.iter().flatten().count(), ev.len())
                })
            };
            let mut dead = Vec::new();
            s.rotate(&mut dead, |_| {});
            let taken = getter.join().expect("getter");
            let (refused, evicted) = pusher.join().expect("pusher");
            // Room for all three: nothing refused or evicted, whatever the interleaving.
            assert_eq!((refused, evicted), (0, 0));
            let t = s.totals();
            assert!(t.objects <= 4 && t.bytes <= 400);
            assert_eq!(count(&s, &dead) + taken, 3);
        });
    }

    #[test]
    fn loom_victim_eviction_respects_caps() {
        loom::model(|| {
            // One shard of one object: the cycle demotes, the concurrent puts evict or refuse.
            let s = Arc::new(Shards::<u32>::new(1, 1, 100));
            let mut ev = Vec::new();
            s.push(0, (Box::new(1), 60), &mut ev).expect("room");
            let h = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut ev = Vec::new();
                    let r = s.push(0, (Box::new(2), 60), &mut ev);
                    (r.is_ok(), ev.len())
                })
            };
            let mut dead = Vec::new();
            s.rotate(&mut dead, |_| {});
            let (ok, evicted) = h.join().expect("put");
            let t = s.totals();
            assert!(t.objects <= 1 && t.bytes <= 100, "caps: {t:?}");
            let freed: usize = dead.iter().map(Vec::len).sum();
            // Conservation: 2 objects = retained + evicted + freed + refused.
            assert_eq!(t.objects + evicted + freed + usize::from(!ok), 2);
        });
    }
}
