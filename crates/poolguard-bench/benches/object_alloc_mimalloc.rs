//! Plain allocation under mimalloc against the pool (one global allocator per binary).
//! Run: `cargo bench -p poolguard-bench --bench object_alloc_mimalloc`.
#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn groups(c: &mut Criterion) {
    poolguard_bench::object::allocator_groups(c, "mimalloc");
}

criterion_group!(benches, groups);
criterion_main!(benches);
