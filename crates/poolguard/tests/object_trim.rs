//! Object pool trimming: two generations, idle per-thread caches, the background trimmer,
//! budget cycles, the golang/go#23199 pattern and trim traces.

use std::sync::mpsc;
use std::time::Duration;

use poolguard::object::{Pool, Recycle, TrimCause};
use poolguard_testkit::drops::{DropCounter, Tracked};

struct Obj {
    _t: Tracked<()>,
    bytes: usize,
}

impl Recycle for Obj {
    fn reset(&mut self) -> bool {
        true
    }
    fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

/// Tests in this binary run one at a time. A thread takes the lowest free thread index on its
/// first pool use, and a thread that takes an exited thread's index inherits its cell (the
/// documented exception); under `cargo test`, whose tests share a process as threads, another
/// test's thread could take the index an exit test just freed. Serialised, no other thread
/// touches a pool while a test runs (nextest runs each test in its own process anyway).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pool(c: &DropCounter) -> Pool<Obj> {
    let c = c.clone();
    Pool::builder(move || Obj {
        _t: c.track(()),
        bytes: 100,
    })
    .local_slots(64)
    .build()
    .expect("valid")
}

#[test]
fn an_object_unused_for_two_cycles_is_freed() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    drop(p.get());
    assert_eq!(p.stats().retained_objects, 1);
    let t1 = p.trim();
    assert_eq!((t1.freed, c.dropped()), (0, 0), "one cycle only demotes");
    assert_eq!(t1.after.0, 1);
    let t2 = p.trim();
    assert_eq!((t2.freed, t2.freed_bytes, c.dropped()), (1, 100, 1));
    assert_eq!(t2.after, (0, 0));
    assert_eq!(t2.cycle, 2);
    let line = t2.to_string();
    assert!(line.starts_with("pool "), "{line}");
    assert!(line.contains("trim #2 (manual)"), "{line}");
    assert!(line.contains("freed 1 objs"), "{line}");
    let s = p.stats();
    assert_eq!((s.trims, s.trim_freed), (2, 1));
    assert_eq!(s.recent_trims.len(), 2);
    assert_eq!(s.recent_trims[1], t2);
    assert_eq!(s.peak_objects, 1);
}

#[test]
fn an_object_used_between_cycles_survives_as_a_victim_hit() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    drop(p.get());
    let _ = p.trim();
    // Demoted to the victim generation: the next get finds it there.
    drop(p.get());
    let s = p.stats();
    assert_eq!((s.misses, s.hits_victim), (1, 1), "{s:?}");
    let _ = p.trim();
    assert_eq!(c.dropped(), 0, "used in the last cycle: kept");
}

/// The per-thread tier's one exception: a live thread that stopped using the pool keeps
/// its one cached object (of at most the cell's byte share) through the trims; the trims it
/// missed are applied at its next use of the pool, or at its exit.
#[test]
fn an_idle_live_threads_object_is_aged_at_its_next_use() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (used_tx, used_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let p = &p;
        let t = s.spawn(move || {
            drop(p.get()); // cached in this thread's slot
            parked_tx.send(()).expect("main waits");
            release_rx.recv().expect("main releases"); // idle, alive
            drop(p.get()); // the next use: the two missed cycles free the cached object
            used_tx.send(()).expect("main waits");
            release_rx.recv().expect("main releases");
        });
        parked_rx.recv().expect("thread parked");
        let _ = p.trim();
        let t2 = p.trim();
        assert_eq!(
            (t2.freed, c.alive()),
            (0, 1),
            "the idle thread's object is kept"
        );
        let s2 = p.stats();
        assert_eq!(s2.retained_by_tier.local.objects, 1);
        assert!(s2.retained_by_tier.local.bytes <= p.layout().cell_bytes);
        release_tx.send(()).expect("thread waits");
        used_rx.recv().expect("thread used the pool");
        let st = p.stats();
        assert_eq!((c.created(), c.dropped()), (2, 1), "freed at the next use");
        assert_eq!((st.misses, st.trim_freed, st.retained_objects), (2, 1, 1));
        release_tx.send(()).expect("thread waits");
        t.join().expect("thread");
    });
    // It exited: its cell has no owner any more, so trims reach the object again.
    assert_eq!(p.stats().retained_by_tier.local.objects, 1);
    let _ = p.trim();
    assert_eq!(p.trim().freed, 1);
    assert_eq!(c.alive(), 0);
}

/// Once an idle thread exits, the next two cycles free what it cached (its cell's index is
/// free, so a trim may empty the cell). No other thread may take the freed index first (see
/// [`serial`]): it would inherit the cell, the documented case that leaves the object to it.
#[test]
fn an_idle_thread_that_exits_is_reached_by_the_next_two_cycles() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let p = &p;
        let t = s.spawn(move || {
            drop(p.get());
            parked_tx.send(()).expect("main waits");
            release_rx.recv().expect("main releases");
        });
        parked_rx.recv().expect("thread parked");
        let _ = p.trim();
        let _ = p.trim();
        assert_eq!(c.alive(), 1);
        release_tx.send(()).expect("thread waits");
        t.join().expect("thread");
    });
    assert_eq!(c.alive(), 1);
    assert_eq!(p.trim().freed, 0, "the first cycle demotes it");
    let t = p.trim();
    assert_eq!((t.freed, t.after.0, c.alive()), (1, 0, 0));
}

#[test]
fn objects_of_an_exited_thread_stay_owned_and_are_trimmed() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    std::thread::scope(|s| {
        // Joined: its thread-local destructors (which hand the object back) have run.
        s.spawn(|| drop(p.get())).join().expect("thread");
    });
    assert_eq!(c.alive(), 1, "the pool owns it, not the exited thread");
    assert_eq!(p.stats().retained_objects, 1);
    let _ = p.trim();
    let _ = p.trim();
    assert_eq!(c.alive(), 0);
}

#[test]
fn dropping_the_pool_drops_everything_once() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    let held: Vec<_> = (0..50).map(|_| p.get()).collect();
    drop(held);
    let _ = p.trim();
    for _ in 0..10 {
        drop(p.get());
    }
    assert_eq!(c.created(), 50);
    drop(p);
    assert_eq!(c.dropped(), 50);
}

#[test]
fn the_background_trimmer_runs_and_stops_when_dropped() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    drop(p.get());
    let trimmer = p.trimmer(Duration::from_millis(1));
    assert!(trimmer.wait_for_cycles(2, Duration::from_secs(60)));
    drop(trimmer); // joins the thread
                   // This thread's cached object is aged by its next use: two cycles free it.
    assert_eq!(c.alive(), 1);
    drop(p.get());
    assert_eq!(
        (c.dropped(), p.stats().trim_freed),
        (1, 1),
        "two background cycles freed the unused object"
    );
    let s = p.stats();
    assert!(s
        .recent_trims
        .iter()
        .all(|t| t.cause == TrimCause::Background));
    let before = s.trims;
    let _ = p.trim();
    assert_eq!(
        p.stats().trims,
        before + 1,
        "no background cycles after the drop"
    );
}

#[test]
fn the_trimmer_does_not_keep_the_pool_alive() {
    let _serial = serial();
    let c = DropCounter::new();
    let p = pool(&c);
    drop(p.get());
    let trimmer = p.trimmer(Duration::from_secs(3600));
    drop(p);
    assert_eq!(c.alive(), 0, "the pool was freed although its trimmer runs");
    drop(trimmer);
}

#[test]
fn a_pool_worth_of_refusals_starts_a_budget_cycle() {
    let _serial = serial();
    let c = DropCounter::new();
    let maker = c.clone();
    let p = Pool::builder(move || Obj {
        _t: maker.track(()),
        bytes: 10,
    })
    .max_idle(8)
    .local_slots(0)
    .shards(1)
    .build()
    .expect("valid");
    for _ in 0..100 {
        let _ = p.put(Obj {
            _t: c.track(()),
            bytes: 10,
        });
    }
    let s = p.stats();
    assert!(s.retained_objects <= 8);
    assert!(s.trims >= 1, "{s:?}");
    assert!(s.recent_trims.iter().any(|t| t.cause == TrimCause::Budget));
    assert_eq!(c.alive() as usize, s.retained_objects);
}

/// golang/go#23199: a few huge buffers put back once stay pinned while a stream of small
/// requests flows. Here they are freed within two cycles, or never kept at all.
#[test]
fn huge_buffers_do_not_stay_pinned_by_small_requests() {
    let _serial = serial();
    const BIG: usize = 4 << 20;
    // A pool that accepts the big buffers (its cap allows them).
    let p = Pool::builder(|| Vec::<u8>::with_capacity(1024))
        .max_object_bytes(8 << 20)
        .max_idle_bytes(64 << 20)
        .shards(2)
        .build()
        .expect("valid");
    for _ in 0..10 {
        let _ = p.put(vec![0u8; BIG]);
    }
    assert!(p.stats().retained_bytes >= 9 * BIG);
    let mut traces = Vec::new();
    for round in 0..3 {
        for _ in 0..100 {
            let mut b = p.get();
            b.extend_from_slice(&[1u8; 1024]);
        }
        if round < 2 {
            traces.push(p.trim());
        }
    }
    let s = p.stats();
    assert!(
        s.retained_bytes <= BIG + 4096,
        "after two cycles only the buffer in use remains: {s:?}"
    );
    // With the default 64 KiB object cap they are never kept in the first place.
    let strict = Pool::builder(|| Vec::<u8>::with_capacity(1024))
        .build()
        .expect("valid");
    for _ in 0..10 {
        let _ = strict.put(vec![0u8; BIG]);
    }
    let s = strict.stats();
    assert_eq!((s.discards.oversized, s.retained_objects), (10, 0));
}

#[test]
fn a_trim_over_many_objects_holds_each_lock_once() {
    let _serial = serial();
    let c = DropCounter::new();
    let maker = c.clone();
    let p = Pool::builder(move || Obj {
        _t: maker.track(()),
        bytes: 1,
    })
    .max_idle(20_000)
    .max_idle_bytes(1 << 20)
    .max_object_bytes(1)
    .shards(4)
    .local_slots(0)
    .build()
    .expect("valid");
    let held: Vec<_> = (0..20_000).map(|_| p.get()).collect();
    drop(held);
    assert_eq!(p.stats().retained_objects, 20_000);
    let _ = p.trim();
    let t = p.trim();
    assert_eq!(t.freed, 20_000);
    // One O(1) generation swap per shard per cycle: 4 lock holds per cycle, whatever the
    // number of objects (the bench measures how long they are).
    assert_eq!(p.stats().trim_pauses.count(), 8);
}

#[test]
fn a_trimmer_interval_below_the_floor_is_raised_to_it() {
    let _serial = serial();
    use poolguard::object::MIN_TRIM_INTERVAL;
    let c = DropCounter::new();
    let p = pool(&c);
    for asked in [
        Duration::ZERO,
        Duration::from_nanos(1),
        MIN_TRIM_INTERVAL - Duration::from_nanos(1),
    ] {
        let t = p.trimmer(asked);
        assert_eq!(t.interval(), MIN_TRIM_INTERVAL, "asked {asked:?}");
    }
    for asked in [MIN_TRIM_INTERVAL, Duration::from_secs(1), Duration::MAX] {
        let t = p.trimmer(asked);
        assert_eq!(t.interval(), asked);
        // Dropping stops and joins the thread, whatever the interval (MAX included).
        drop(t);
    }
}
