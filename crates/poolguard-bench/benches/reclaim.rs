//! Caller cost of `Reclaimer::defer(value)` versus dropping inline, and versus the
//! `defer-drop` crate (one background thread, unbounded queue), in the same run.
//!
//! * `large`: a `HashMap<u64, String>` with 1M entries (1M heap allocations to free), built
//!   in setup by cloning a prototype (`iter_batched`, one map per iteration).
//! * `small`: a `Vec<u64>` of 8 entries (one allocation).
//!
//! What is timed is only the caller's side: the drop, `defer`, or dropping a `DeferDrop`.
//! The reclaimer's queue is bounded, so when the workers fall behind a small-value flood,
//! values are dropped inline (counted); the figures printed after each group say how many.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use defer_drop::DeferDrop;
use poolguard::reclaim::Reclaimer;

fn big_map() -> HashMap<u64, String> {
    (0..1_000_000u64)
        .map(|i| (i, format!("value-{i}")))
        .collect()
}

fn report(r: &Reclaimer, group: &str) {
    let _ = r.flush(Duration::from_secs(60));
    let s = r.stats();
    eprintln!(
        "reclaim bench {group}: deferred {} completed {} inline {} peak queued {} (capacity {})",
        s.deferred, s.completed, s.inline_drops, s.peak_queued, s.capacity
    );
}

fn large(c: &mut Criterion) {
    let proto = big_map();
    let r = Reclaimer::builder()
        .name("bench-large")
        .workers(1)
        .capacity(4)
        .build()
        .expect("reclaimer");
    let mut g = c.benchmark_group("reclaim/large-hashmap-1M");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("inline-drop", |b| {
        b.iter_batched(|| proto.clone(), drop, BatchSize::PerIteration)
    });
    g.bench_function("poolguard-defer", |b| {
        b.iter_batched(
            || proto.clone(),
            |m| black_box(r.defer(m).is_queued()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("poolguard-defer-idle-worker", |b| {
        b.iter_batched(
            || {
                let m = proto.clone();
                let _ = r.flush(Duration::from_secs(60));
                m
            },
            |m| black_box(r.defer(m).is_queued()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("defer-drop", |b| {
        b.iter_batched(
            || DeferDrop::new(proto.clone()),
            drop,
            BatchSize::PerIteration,
        )
    });
    g.finish();
    report(&r, "large");
}

fn small(c: &mut Criterion) {
    let r = Reclaimer::builder()
        .name("bench-small")
        .workers(1)
        .build()
        .expect("reclaimer");
    let mut g = c.benchmark_group("reclaim/small-vec-8");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let make = || vec![7u64; 8];
    g.bench_function("inline-drop", |b| {
        b.iter_batched(make, drop, BatchSize::SmallInput)
    });
    g.bench_function("poolguard-defer", |b| {
        b.iter_batched(
            make,
            |v| black_box(r.defer(v).is_queued()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("defer-drop", |b| {
        b.iter_batched(|| DeferDrop::new(make()), drop, BatchSize::SmallInput)
    });
    g.finish();
    report(&r, "small");
}

criterion_group!(benches, large, small);
criterion_main!(benches);
