//! Object pool benches, modelled on Go's `src/sync/pool_test.go`, peers in the same run.
//!
//! Time per iteration is wall time over all operations of all threads (Go's `RunParallel`).
//! Run: `cargo bench -p poolguard-bench --bench object_pool`.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use poolguard::object::Pool;
use poolguard_bench::object::{run_parallel, spin_for, tl_get, tl_put, BufAlloc, NaivePool, BUF};

const THREADS: [usize; 3] = [1, 2, 8];

fn short<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    g
}

fn poolguard_bufs() -> Pool<Vec<u8>> {
    Pool::builder(|| Vec::with_capacity(BUF))
        .build()
        .expect("valid config")
}

/// get + use + return, nothing else (Go's BenchmarkPool).
fn round_trip(c: &mut Criterion) {
    let mut g = short(c, "object/round_trip");
    for t in THREADS {
        let p = poolguard_bufs();
        g.bench_with_input(BenchmarkId::new("poolguard", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.get();
                    v.push(1);
                    black_box(&mut *v);
                })
            })
        });
        let p = object_pool::Pool::new(64, || Vec::<u8>::with_capacity(BUF));
        g.bench_with_input(BenchmarkId::new("object-pool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.pull(|| Vec::with_capacity(BUF));
                    v.clear();
                    v.push(1);
                    black_box(&mut *v);
                })
            })
        });
        let p = lockfree_object_pool::LinearObjectPool::new(
            || Vec::<u8>::with_capacity(BUF),
            |v| v.clear(),
        );
        g.bench_with_input(BenchmarkId::new("lockfree-object-pool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.pull();
                    v.push(1);
                    black_box(&mut *v);
                })
            })
        });
        let p = lockfree_object_pool::SpinLockObjectPool::new(
            || Vec::<u8>::with_capacity(BUF),
            |v| v.clear(),
        );
        g.bench_with_input(
            BenchmarkId::new("lockfree-object-pool-spinlock", t),
            &t,
            |b, &t| {
                b.iter_custom(|n| {
                    run_parallel(t, n, |_| {
                        let mut v = p.pull();
                        v.push(1);
                        black_box(&mut *v);
                    })
                })
            },
        );
        let p = opool::Pool::new(64, BufAlloc);
        g.bench_with_input(BenchmarkId::new("opool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.get();
                    v.push(1);
                    black_box(&mut *v);
                })
            })
        });
        let p: sharded_slab::Pool<Vec<u8>> = sharded_slab::Pool::new();
        g.bench_with_input(BenchmarkId::new("sharded-slab", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let key = match p.create() {
                        Some(mut v) => {
                            if v.capacity() < BUF {
                                v.reserve(BUF);
                            }
                            v.push(1);
                            black_box(&mut *v);
                            v.key()
                        }
                        None => return,
                    };
                    p.clear(key);
                })
            })
        });
        let p = NaivePool::<Vec<u8>>::new();
        g.bench_with_input(BenchmarkId::new("naive-mutex-vec", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = p.get(|| Vec::with_capacity(BUF));
                    v.push(1);
                    black_box(&mut v);
                    v.clear();
                    p.put(v);
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("alloc-system", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let mut v = Vec::<u8>::with_capacity(BUF);
                    v.push(1);
                    black_box(&mut v);
                })
            })
        });
        g.bench_with_input(
            BenchmarkId::new("floor-thread-local-box", t),
            &t,
            |b, &t| {
                b.iter_custom(|n| {
                    run_parallel(t, n, |_| {
                        let mut v = tl_get();
                        v.push(1);
                        black_box(&mut *v);
                        tl_put(v);
                    })
                })
            },
        );
        if t == 1 {
            g.bench_with_input(BenchmarkId::new("floor-opool-local", t), &t, |b, _| {
                let p = opool::LocalPool::new(64, BufAlloc);
                b.iter(|| {
                    let mut v = p.get();
                    v.push(1);
                    black_box(&mut *v);
                })
            });
        }
    }
    g.finish();
}

/// 100 gets, then 100 returns (Go's BenchmarkPoolOverflow): beyond any per-thread cache.
fn overflow(c: &mut Criterion) {
    let mut g = short(c, "object/overflow_100");
    for t in THREADS {
        let p = poolguard_bufs();
        g.bench_with_input(BenchmarkId::new("poolguard", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] = std::array::from_fn(|_| p.get());
                    black_box(&held);
                })
            })
        });
        let p = object_pool::Pool::new(1024, || Vec::<u8>::with_capacity(BUF));
        g.bench_with_input(BenchmarkId::new("object-pool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] =
                        std::array::from_fn(|_| p.pull(|| Vec::with_capacity(BUF)));
                    black_box(&held);
                })
            })
        });
        let p = lockfree_object_pool::LinearObjectPool::new(
            || Vec::<u8>::with_capacity(BUF),
            |v| v.clear(),
        );
        g.bench_with_input(BenchmarkId::new("lockfree-object-pool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] = std::array::from_fn(|_| p.pull());
                    black_box(&held);
                })
            })
        });
        let p = opool::Pool::new(1024, BufAlloc);
        g.bench_with_input(BenchmarkId::new("opool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] = std::array::from_fn(|_| p.get());
                    black_box(&held);
                })
            })
        });
        let p = NaivePool::<Vec<u8>>::new();
        g.bench_with_input(BenchmarkId::new("naive-mutex-vec", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] = std::array::from_fn(|_| p.get(|| Vec::with_capacity(BUF)));
                    for mut v in black_box(held) {
                        v.clear();
                        p.put(v);
                    }
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("alloc-system", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    let held: [_; 100] = std::array::from_fn(|_| Vec::<u8>::with_capacity(BUF));
                    black_box(&held);
                })
            })
        });
    }
    g.finish();
}

/// 67 returns of fresh objects, then 100 gets that are kept (Go's BenchmarkPoolStarvation):
/// the pool runs dry and must steal or call the factory.
fn starvation(c: &mut Criterion) {
    let mut g = short(c, "object/starvation");
    for t in THREADS {
        let p = Pool::builder(|| Vec::<u8>::with_capacity(64))
            .build()
            .expect("valid");
        g.bench_with_input(BenchmarkId::new("poolguard", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    for _ in 0..67 {
                        let _ = p.put(Vec::with_capacity(64));
                    }
                    for _ in 0..100 {
                        black_box(p.get().detach());
                    }
                })
            })
        });
        let p = object_pool::Pool::new(0, || Vec::<u8>::with_capacity(64));
        g.bench_with_input(BenchmarkId::new("object-pool", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    for _ in 0..67 {
                        p.attach(Vec::with_capacity(64));
                    }
                    for _ in 0..100 {
                        black_box(p.pull(|| Vec::with_capacity(64)).detach().1);
                    }
                })
            })
        });
        let p = NaivePool::<Vec<u8>>::new();
        g.bench_with_input(BenchmarkId::new("naive-mutex-vec", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    for _ in 0..67 {
                        p.put(Vec::with_capacity(64));
                    }
                    for _ in 0..100 {
                        black_box(p.get(|| Vec::with_capacity(64)));
                    }
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("alloc-system", t), &t, |b, &t| {
            b.iter_custom(|n| {
                run_parallel(t, n, |_| {
                    for _ in 0..167 {
                        black_box(Vec::<u8>::with_capacity(64));
                    }
                })
            })
        });
    }
    g.finish();
}

/// Sends `n` objects from this thread to a consumer through a bounded channel.
fn pipe<T: Send>(n: u64, make: impl Fn() -> T + Sync, consume: impl Fn(T) + Sync) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<T>(1024);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            for v in rx {
                consume(v);
            }
        });
        let t = Instant::now();
        for _ in 0..n {
            if tx.send(make()).is_err() {
                break;
            }
        }
        drop(tx);
        let _ = consumer.join();
        t.elapsed()
    })
}

/// Producer gets, a channel carries the object, the consumer drops (returns) it.
fn cross_thread(c: &mut Criterion) {
    let mut g = short(c, "object/cross_thread");
    g.bench_function("channel-only", |b| {
        b.iter_custom(|n| {
            pipe(
                n,
                || 1usize,
                |v| {
                    black_box(v);
                },
            )
        })
    });
    let p = poolguard_bufs();
    g.bench_function("poolguard", |b| {
        b.iter_custom(|n| pipe(n, || p.get(), drop))
    });
    let p = object_pool::Pool::new(1024, || Vec::<u8>::with_capacity(BUF));
    g.bench_function("object-pool", |b| {
        b.iter_custom(|n| pipe(n, || p.pull(|| Vec::with_capacity(BUF)), drop))
    });
    let p = lockfree_object_pool::LinearObjectPool::new(
        || Vec::<u8>::with_capacity(BUF),
        |v| v.clear(),
    );
    g.bench_function("lockfree-object-pool", |b| {
        b.iter_custom(|n| pipe(n, || p.pull(), drop))
    });
    let p = lockfree_object_pool::SpinLockObjectPool::new(
        || Vec::<u8>::with_capacity(BUF),
        |v| v.clear(),
    );
    g.bench_function("lockfree-object-pool-spinlock", |b| {
        b.iter_custom(|n| pipe(n, || p.pull(), drop))
    });
    let p = opool::Pool::new(1024, BufAlloc);
    g.bench_function("opool", |b| b.iter_custom(|n| pipe(n, || p.get(), drop)));
    let p = NaivePool::<Vec<u8>>::new();
    g.bench_function("naive-mutex-vec", |b| {
        b.iter_custom(|n| {
            pipe(
                n,
                || p.get(|| Vec::with_capacity(BUF)),
                |mut v| {
                    v.clear();
                    p.put(v)
                },
            )
        })
    });
    g.bench_function("alloc-system", |b| {
        b.iter_custom(|n| pipe(n, || Vec::<u8>::with_capacity(BUF), drop))
    });
    g.finish();
}

/// A 1 ms factory and a trim cycle every 1000 ops: two generations keep the objects in use,
/// a pool that clears everything at each cycle (Go before 1.13) calls the factory again.
fn expensive_factory(c: &mut Criterion) {
    let mut g = short(c, "object/expensive_factory");
    const CYCLE: u64 = 1000;
    let make = || {
        spin_for(Duration::from_millis(1));
        Vec::<u8>::with_capacity(BUF)
    };
    let p = Pool::builder(make).build().expect("valid");
    g.bench_function("poolguard-trim-every-1000", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                black_box(&mut *p.get()).push(1);
                if i % CYCLE == CYCLE - 1 {
                    let _ = p.trim();
                }
            }
            t.elapsed()
        })
    });
    let s = p.stats();
    eprintln!(
        "expensive_factory poolguard: {} factory calls for {} gets ({:.5} per op), {} trims",
        s.misses,
        s.gets,
        s.misses as f64 / s.gets.max(1) as f64,
        s.trims
    );
    let naive = NaivePool::<Vec<u8>>::new();
    let calls = AtomicU64::new(0);
    let ops = AtomicU64::new(0);
    g.bench_function("clear-all-every-1000", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                let mut v = naive.get(|| {
                    calls.fetch_add(1, Relaxed);
                    make()
                });
                v.push(1);
                v.clear();
                naive.put(black_box(v));
                ops.fetch_add(1, Relaxed);
                if i % CYCLE == CYCLE - 1 {
                    naive.clear();
                }
            }
            t.elapsed()
        })
    });
    let (calls, ops) = (calls.into_inner(), ops.into_inner());
    eprintln!(
        "expensive_factory clear-all: {calls} factory calls for {ops} gets ({:.5} per op)",
        calls as f64 / ops.max(1) as f64
    );
    g.finish();
}

/// Trim with 100k retained objects: the latency of a concurrent get while another thread
/// refills 100k objects and runs cycles (each second cycle frees them), against the same
/// gets with no trims; plus how long a cycle freeing 100k objects takes.
fn trim_pause(c: &mut Criterion) {
    const N: usize = 100_000;
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(16))
        .max_idle(2 * N)
        .max_idle_bytes(1 << 30)
        .build()
        .expect("valid");
    let fill = |p: &Pool<Vec<u8>>| {
        for _ in 0..N {
            let _ = p.put(Vec::with_capacity(16));
        }
    };
    let mut g = short(c, "object/trim_100k");
    for trimming in [false, true] {
        let lat = poolguard::diag::Histogram::new();
        let name = if trimming {
            "get-during-trims"
        } else {
            "get-no-trims"
        };
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let stop = AtomicBool::new(false);
                std::thread::scope(|s| {
                    if trimming {
                        s.spawn(|| {
                            while !stop.load(Relaxed) {
                                fill(&pool);
                                let _ = pool.trim();
                                let _ = pool.trim();
                            }
                        });
                    }
                    let t0 = Instant::now();
                    for _ in 0..n {
                        let t = Instant::now();
                        let g = pool.get();
                        lat.record(t.elapsed());
                        drop(black_box(g));
                    }
                    let d = t0.elapsed();
                    stop.store(true, Relaxed);
                    d
                })
            })
        });
        let h = lat.snapshot();
        eprintln!(
            "trim_100k {name}: get latency {h} p99.9={:?}",
            h.quantile(0.999)
        );
    }
    let s = pool.stats();
    eprintln!(
        "trim_100k: lock holds of {} cycles: {} (what a concurrent get or put can wait for)",
        s.trims, s.trim_pauses
    );
    g.bench_function("cycle-freeing-100k", |b| {
        b.iter_batched(
            || {
                fill(&pool);
                let _ = pool.trim();
            },
            |()| pool.trim(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The system allocator against the pool for a cheap buffer and for an object that is costly
/// to grow (the same groups run under jemalloc and mimalloc in their own binaries).
fn allocator_baseline(c: &mut Criterion) {
    poolguard_bench::object::allocator_groups(c, "system");
}

criterion_group!(
    benches,
    allocator_baseline,
    round_trip,
    overflow,
    starvation,
    cross_thread,
    expensive_factory,
    trim_pause
);
criterion_main!(benches);
