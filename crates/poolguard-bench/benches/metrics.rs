//! Cost of rendering the Prometheus text of 20 pools of mixed kinds (7 object pools, 7
//! connection pools, 6 reclaimers, each with some traffic so every series has figures) with
//! `diag::render`: what one scrape of a service that owns them costs its scraping thread.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use poolguard::conn;
use poolguard::diag::{render, Diagnose};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::{Op, SimManager};

fn render_20_pools(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let objects: Vec<_> = (0..7)
        .map(|i| {
            let p = object::Pool::builder(Vec::<u8>::new)
                .name(format!("bench-object-{i}"))
                .build()
                .expect("object pool");
            for _ in 0..100 {
                let mut v = p.get();
                v.reserve(256);
            }
            p.trim();
            p
        })
        .collect();
    let reclaimers: Vec<_> = (0..6)
        .map(|i| {
            let r = Reclaimer::builder()
                .name(format!("bench-reclaim-{i}"))
                .build()
                .expect("reclaimer");
            for j in 0..100 {
                r.defer_labelled(["buffers", "sockets"][j % 2], vec![0u8; 64]);
            }
            r.flush(Duration::from_secs(10)).expect("flushed");
            r
        })
        .collect();
    let conns: Vec<_> = (0..7)
        .map(|i| {
            let m = SimManager::new();
            m.latency(Op::Connect, Duration::from_micros(50));
            let p = conn::Pool::builder(m)
                .name(format!("bench-conn-{i}"))
                .max_size(4)
                .build()
                .expect("conn pool");
            rt.block_on(async {
                for _ in 0..100 {
                    drop(p.get().await.expect("a connection"));
                }
            });
            p
        })
        .collect();
    let mut all: Vec<&dyn Diagnose> = Vec::new();
    all.extend(objects.iter().map(|p| p as &dyn Diagnose));
    all.extend(conns.iter().map(|p| p as &dyn Diagnose));
    all.extend(reclaimers.iter().map(|p| p as &dyn Diagnose));
    assert_eq!(all.len(), 20);
    let text = render(&all);
    eprintln!(
        "metrics bench: 20 pools render to {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    c.bench_function("metrics/render-20-pools", |b| {
        b.iter(|| black_box(render(black_box(&all))))
    });
}

criterion_group!(benches, render_20_pools);
criterion_main!(benches);
