//! Cost of one `GET /pools` answer of the diagnostics endpoint over 20 registered pools of
//! mixed kinds (7 object pools after trims, 7 connection pools with two holders each, 6
//! reclaimers with traffic): `poolguard_http::pools_json`, i.e. every snapshot and finding
//! read through the registry, serialized, redacted. The target: under a millisecond.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use poolguard::conn;
use poolguard::diag::Registry;
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::{Op, SimManager};

fn pools_json_20_pools(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let registry = Registry::new();
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
            for _ in 0..4 {
                p.trim();
            }
            registry.register(&p);
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
            registry.register(&r);
            r
        })
        .collect();
    let mut held = Vec::new();
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
                held.push(p.get().await.expect("held"));
                held.push(p.get().await.expect("held"));
            });
            registry.register(&p);
            p
        })
        .collect();
    assert_eq!(registry.len(), 20);
    let doc = poolguard_http::pools_json(&registry);
    eprintln!("diag_http bench: /pools of 20 pools is {} bytes", doc.len());
    c.bench_function("diag_http/pools-json-20-pools", |b| {
        b.iter(|| black_box(poolguard_http::pools_json(black_box(&registry))))
    });
    drop((held, conns, objects, reclaimers));
}

criterion_group!(benches, pools_json_20_pools);
criterion_main!(benches);
