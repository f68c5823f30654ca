//! Object pool across threads: producer/consumer returns, threads that only return,
//! thread-local teardown, and conservation under concurrent gets, puts and trims.

use std::sync::{mpsc, Barrier, OnceLock};

use poolguard::object::{Pool, Recycle};
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

fn pool(c: &DropCounter, max_idle: usize, max_bytes: usize) -> Pool<Obj> {
    let c = c.clone();
    Pool::builder(move || Obj {
        _t: c.track(()),
        bytes: 64,
    })
    .max_idle(max_idle)
    .max_idle_bytes(max_bytes)
    .max_object_bytes(1024)
    .build()
    .expect("valid")
}

#[test]
fn returns_from_another_thread_are_reused_and_bounded() {
    let c = DropCounter::new();
    let p = pool(&c, 64, 64 * 1024);
    const N: usize = 5_000;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(16);
        let p = &p;
        s.spawn(move || {
            for _ in 0..N {
                tx.send(p.get()).expect("consumer alive");
            }
        });
        s.spawn(move || {
            for g in rx {
                drop(g); // returned on the consumer thread
            }
        });
    });
    let st = p.stats();
    assert_eq!(st.gets, N as u64);
    assert_eq!(st.returns, N as u64);
    assert!(st.retained_objects <= 64);
    // The channel holds at most 16 + a few in flight: the producer reuses the consumer's
    // returns instead of calling the factory for every get.
    assert!(
        st.misses < (N / 10) as u64,
        "cross-thread returns should be found: {st:?}"
    );
    assert_eq!(c.created(), st.misses);
    drop(p);
    assert_eq!(c.alive(), 0);
}

#[test]
fn threads_that_only_return_never_exceed_the_caps() {
    let c = DropCounter::new();
    let p = pool(&c, 32, 32 * 64);
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..2_000 {
                    let _ = p.put(Obj {
                        _t: c.track(()),
                        bytes: 64,
                    });
                }
            });
        }
    });
    // Nothing is checked out: everything alive is retained by the pool.
    assert!(c.alive() <= 32, "retained {} > max_idle", c.alive());
    let st = p.stats();
    assert!(st.retained_bytes <= 32 * 64);
    assert_eq!(st.returns, 8_000);
    assert!(st.discards.over_cap > 0);
    drop(p);
    assert_eq!(c.alive(), 0);
}

static TEARDOWN_POOL: OnceLock<Pool<Vec<u8>>> = OnceLock::new();

struct UsesPoolOnExit;

impl Drop for UsesPoolOnExit {
    fn drop(&mut self) {
        if let Some(p) = TEARDOWN_POOL.get() {
            let mut b = p.get();
            b.push(1);
            drop(b);
            let _ = p.put(Vec::with_capacity(8));
        }
    }
}

thread_local! {
    static ON_EXIT: UsesPoolOnExit = const { UsesPoolOnExit };
}

#[test]
fn pool_access_during_thread_local_teardown_does_not_panic() {
    let p = TEARDOWN_POOL.get_or_init(|| Pool::builder(Vec::new).build().expect("valid"));
    for _ in 0..4 {
        std::thread::spawn(|| {
            drop(p.get()); // registers this thread's index
            ON_EXIT.with(|_| {}); // registers the destructor that uses the pool
        })
        .join()
        .expect("thread exit must not panic");
    }
    let s = p.stats();
    assert_eq!(s.gets, 8);
    assert_eq!(s.returns, 12);
}

#[test]
fn concurrent_gets_puts_and_trims_conserve_every_object() {
    let c = DropCounter::new();
    let p = pool(&c, 16, 16 * 64);
    let barrier = Barrier::new(5);
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for t in 0..4 {
            let (p, c, barrier) = (&p, &c, &barrier);
            workers.push(s.spawn(move || {
                barrier.wait();
                let mut held = Vec::new();
                for i in 0..3_000 {
                    match (i + t) % 5 {
                        0 | 1 => held.push(p.get()),
                        2 => drop(held.pop()),
                        3 => {
                            let _ = p.put(Obj {
                                _t: c.track(()),
                                bytes: 64,
                            });
                        }
                        _ => {
                            if let Some(g) = held.pop() {
                                drop(g.detach());
                            }
                        }
                    }
                    assert!(held.len() <= 3_000);
                }
            }));
        }
        s.spawn(|| {
            barrier.wait();
            for _ in 0..200 {
                let _ = p.trim();
            }
        });
        // Joined: their thread-local destructors handed their cached objects back.
        for w in workers {
            w.join().expect("worker");
        }
    });
    let st = p.stats();
    // Nothing is checked out any more: every live object is retained by the pool.
    assert!(c.alive() <= 16, "retained {} > max_idle", c.alive());
    assert_eq!(
        st.gets,
        st.hits_local + st.hits_shared + st.hits_victim + st.misses
    );
    drop(p);
    assert_eq!(c.alive(), 0, "every object dropped exactly once");
}

#[test]
fn a_panic_while_holding_a_guard_returns_the_object() {
    let c = DropCounter::new();
    let p = pool(&c, 8, 8 * 1024);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = p.get();
            panic!("user code failed while holding a pooled object");
        })
        .join()
    });
    assert!(r.is_err(), "the thread panicked");
    let st = p.stats();
    assert_eq!((st.gets, st.returns, st.retained_objects), (1, 1, 1));
    // The pool is not poisoned: the object is handed out again.
    drop(p.get());
    assert_eq!(p.stats().misses, 1);
    drop(p);
    assert_eq!(c.alive(), 0);
}
