//! Helpers for the object pool benches: a parallel runner in the style of Go's
//! `b.RunParallel` and the baselines every peer is compared with.

use std::cell::RefCell;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Size of the pooled buffers in the round-trip workloads.
pub const BUF: usize = 4096;

/// Runs `iters` operations split over `threads` threads, all released together; returns the
/// wall time over all of them (so criterion's time per iteration is wall time per op).
pub fn run_parallel<F>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let per = (iters / threads as u64).max(1);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for i in 0..per {
                    op(i);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let t = Instant::now();
        barrier.wait();
        t.elapsed()
    })
}

/// The naive pool many crates ship: a `Mutex<Vec<T>>` free list, no caps, no trimming.
#[derive(Debug, Default)]
pub struct NaivePool<T> {
    free: Mutex<Vec<T>>,
}

impl<T> NaivePool<T> {
    /// An empty pool.
    pub fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
        }
    }
    /// Takes a free object or makes one.
    pub fn get(&self, make: impl FnOnce() -> T) -> T {
        let got = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        got.unwrap_or_else(make)
    }
    /// Returns an object (never refused).
    pub fn put(&self, t: T) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    }
    /// Drops everything (a pre-Go-1.13 `sync.Pool` cleared at every GC).
    pub fn clear(&self) {
        let all = std::mem::take(&mut *self.free.lock().unwrap_or_else(|e| e.into_inner()));
        drop(all);
    }
}

thread_local! {
    // Boxed on purpose: see `tl_get` (the unboxed form is the slow floor this replaced).
    #[allow(clippy::vec_box)]
    static TL_FREE: RefCell<Vec<Box<Vec<u8>>>> = const { RefCell::new(Vec::new()) };
}

/// The floor: a raw thread-local free list of boxed buffers (not shareable, no caps, no
/// stats, no trimming), written as a plain `match` on the list.
///
/// Boxed, like the pool's own cached objects, because that is the fastest form of the list
/// measured here: moving the 24-byte `Vec` itself in and out of the list costs about 3.5x as
/// much per round trip (17 ns against 4.7 ns on the benchmark machine), which made an earlier
/// unboxed floor slower than the pool it was meant to bound.
#[inline]
pub fn tl_get() -> Box<Vec<u8>> {
    match TL_FREE.with(|f| f.borrow_mut().pop()) {
        Some(v) => v,
        None => Box::new(Vec::with_capacity(BUF)),
    }
}

/// Returns a buffer to the thread-local free list.
#[inline]
pub fn tl_put(mut v: Box<Vec<u8>>) {
    v.clear();
    TL_FREE.with(|f| f.borrow_mut().push(v));
}

/// opool's allocator for `Vec<u8>` buffers.
#[derive(Debug, Clone, Copy)]
pub struct BufAlloc;

impl opool::PoolAllocator<Vec<u8>> for BufAlloc {
    fn allocate(&self) -> Vec<u8> {
        Vec::with_capacity(BUF)
    }
    fn reset(&self, v: &mut Vec<u8>) {
        v.clear();
    }
}

/// Burns `d` of CPU (an expensive factory), without sleeping.
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Plain allocation against the pool for two kinds of objects, under whatever global
/// allocator the calling bench binary installed (`label` names it): a 4 KiB buffer (cheap
/// to allocate: pooling saves little against a good allocator) and a `HashMap` grown to
/// 1024 entries (costly to grow: pooling keeps the table).
pub fn allocator_groups(c: &mut criterion::Criterion, label: &str) {
    use criterion::BenchmarkId;
    use std::collections::HashMap;
    use std::hint::black_box;

    let mut g = c.benchmark_group(format!("object/alloc_vs_pool_{label}"));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    for t in [1usize, 2, 8] {
        g.bench_with_input(BenchmarkId::new("buf4k-alloc", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = Vec::<u8>::with_capacity(BUF);
                    v.push(1);
                    black_box(&mut v);
                })
            })
        });
        let p = poolguard::object::Pool::builder(|| Vec::<u8>::with_capacity(BUF))
            .build()
            .expect("valid");
        g.bench_with_input(BenchmarkId::new("buf4k-poolguard", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.get();
                    v.push(1);
                    black_box(&mut *v);
                })
            })
        });
    }
    g.bench_function("map1k-alloc", |b| {
        b.iter(|| {
            let mut m: HashMap<u64, u64> = HashMap::new();
            for i in 0..1024 {
                m.insert(i, i);
            }
            black_box(&m);
        })
    });
    let p = poolguard::object::Pool::builder(HashMap::<u64, u64>::new)
        .max_object_bytes(1 << 20)
        .build()
        .expect("valid");
    g.bench_function("map1k-poolguard", |b| {
        b.iter(|| {
            let mut m = p.get();
            for i in 0..1024 {
                m.insert(i, i);
            }
            black_box(&*m);
        })
    });
    g.finish();
}
