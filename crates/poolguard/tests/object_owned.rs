//! Object pool: the owned guard (`Pool::get_owned`). It holds the pool, so it is `'static`
//! and crosses threads; its return path is the borrowed guard's: reset, caps, refusals,
//! detach, hold tracking. Drop counters prove every object is dropped exactly once.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use poolguard::object::{OwnedPoolGuard, Pool, Recycle};
use poolguard_testkit::drops::{DropCounter, Tracked};

struct Obj {
    t: Tracked<Vec<u8>>,
    bytes: usize,
    keep: bool,
}

impl Recycle for Obj {
    fn reset(&mut self) -> bool {
        self.t.payload.clear();
        self.keep
    }
    fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

fn counted_pool(c: &DropCounter) -> Pool<Obj> {
    let c = c.clone();
    Pool::builder(move || Obj {
        t: c.track(Vec::new()),
        bytes: 8,
        keep: true,
    })
    .max_idle(4)
    .max_object_bytes(1024)
    .build()
    .expect("valid config")
}

fn assert_static<T: 'static + Send>(_: &T) {}

#[test]
fn owned_guard_is_static_resets_and_returns_the_same_object() {
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(64))
        .build()
        .expect("valid");
    let mut g = pool.get_owned();
    assert_static(&g);
    g.extend_from_slice(b"secret");
    let ptr = g.as_ptr();
    drop(g);
    let again = pool.get_owned();
    assert!(again.is_empty(), "the previous user's data is cleared");
    assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
    drop(again);
    let s = pool.stats();
    assert_eq!((s.gets, s.returns), (2, 2));
}

#[test]
fn owned_guard_moves_to_another_thread_and_returns_there() {
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(64))
        .build()
        .expect("valid");
    let mut g = pool.get_owned();
    let t = std::thread::spawn(move || {
        g.extend_from_slice(b"from another thread");
        assert_eq!(g.pool().stats().returns, 0, "still out");
        g.len()
    });
    assert_eq!(t.join().expect("thread"), 19);
    assert_eq!(
        pool.stats().returns,
        1,
        "returned when the other thread dropped it"
    );
    assert!(pool.get().is_empty());
}

#[test]
fn owned_guard_keeps_the_pool_alive_after_the_last_handle_drops() {
    let c = DropCounter::new();
    let pool = counted_pool(&c);
    let g: OwnedPoolGuard<Obj> = pool.get_owned();
    let weak_stats = pool.clone();
    drop(pool);
    drop(weak_stats);
    assert_eq!(
        c.alive(),
        1,
        "the object is out, the pool still exists through the guard"
    );
    assert_eq!(g.pool().stats().gets, 1);
    drop(g);
    // The guard held the last handle: the object went back, then the pool dropped it.
    assert_eq!((c.created(), c.dropped()), (1, 1), "dropped exactly once");
}

#[test]
fn refused_returns_are_disposed_and_counted_like_the_borrowed_guard() {
    let c = DropCounter::new();
    let pool = counted_pool(&c);
    let mut big = pool.get_owned();
    big.bytes = 4096; // over max_object_bytes
    drop(big);
    let mut refusing = pool.get_owned();
    refusing.keep = false;
    drop(refusing);
    let s = pool.stats();
    assert_eq!(s.discards.oversized, 1);
    assert_eq!(s.discards.refused_by_reset, 1);
    assert_eq!(
        c.dropped(),
        2,
        "both refused objects were dropped, nothing kept"
    );
    assert_eq!(s.retained_objects, 0);
}

#[test]
fn detach_takes_the_object_for_good_and_put_gives_it_back() {
    let c = DropCounter::new();
    let pool = counted_pool(&c);
    let mut g = pool.get_owned();
    g.t.payload.push(7);
    let obj = g.detach();
    assert_eq!(obj.t.payload, [7]);
    let s = pool.stats();
    assert_eq!((s.detached, s.returns), (1, 0));
    assert!(pool.put(obj).is_ok());
    assert_eq!(pool.stats().retained_objects, 1);
    drop(pool);
    assert_eq!((c.created(), c.dropped()), (1, 1));
}

#[test]
fn owned_checkouts_are_hold_tracked_with_the_callers_site() {
    let now = Arc::new(AtomicU64::new(0));
    let n = Arc::clone(&now);
    let pool = Pool::builder(Vec::<u8>::new)
        .hold_threshold(Duration::from_secs(1))
        .clock(move || Duration::from_millis(n.load(SeqCst)))
        .build()
        .expect("valid");
    let g = pool.get_owned();
    let line = line!() - 1;
    now.store(5_000, SeqCst);
    let held = pool.long_holds();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].held, Duration::from_secs(5));
    let site = format!("{}", held[0].site);
    assert!(
        site.contains("object_owned.rs") && site.contains(&format!(":{line}:")),
        "the site is the caller of get_owned: {site}"
    );
    drop(g);
    assert!(pool.long_holds().is_empty());
    assert_eq!(pool.stats().long_holds, 1);
}
