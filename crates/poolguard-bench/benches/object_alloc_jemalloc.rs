//! Plain allocation under jemalloc against the pool (one global allocator per binary).
//! Run: `cargo bench -p poolguard-bench --bench object_alloc_jemalloc`.
#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn groups(c: &mut Criterion) {
    poolguard_bench::object::allocator_groups(c, "jemalloc");
}

criterion_group!(benches, groups);
criterion_main!(benches);
