//! The split of the caps between the tiers: visible in stats and metrics, warned about at
//! build when a tier cannot hold an object, diagnosed by the doctor when returns skip the
//! per-thread tier, and sized so that a small byte cap still serves from the per-thread tier.

use std::io::Write;
use std::sync::{Arc, Mutex};

use poolguard::diag::PrometheusWriter;
use poolguard::object::{Builder, Layout, Pool};

const BUF: usize = 4096;

/// 4 KiB buffers under a 16-object cap of `bytes`, with 8 per-thread slots and 8 shards.
fn small_cap(bytes: usize) -> Builder<Vec<u8>> {
    Pool::builder(|| Vec::<u8>::with_capacity(BUF))
        .max_idle(16)
        .max_idle_bytes(bytes)
        .local_slots(8)
        .shards(8)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `poolguard::object` warnings logged on this thread while `f` runs.
fn warnings_of<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let out = Captured::default();
    let writer = out.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("poolguard::object"))
        .map(str::to_owned)
        .collect();
    (r, lines)
}

#[test]
fn a_64k_cap_with_4k_buffers_serves_from_the_per_thread_tier() {
    let pool = small_cap(64 << 10).build().expect("valid");
    let l = pool.layout();
    // Each object's fair share of the budget (64 KiB / 16) fits a 4 KiB buffer.
    assert_eq!((l.local_slots, l.cell_bytes), (8, BUF));
    for _ in 0..100 {
        let mut b = pool.get();
        b.push(1);
    }
    let s = pool.stats();
    assert_eq!(s.misses, 1);
    assert_eq!(
        s.hits_local, 99,
        "every get after the first is served by the thread's cell"
    );
    assert_eq!(s.skipped_local, 0);
    assert_eq!(s.layout, l);
}

#[test]
fn the_tiers_hold_what_the_layout_says_and_stay_within_the_caps() {
    let pool = small_cap(64 << 10).build().expect("valid");
    let l = pool.layout();
    let held: Vec<_> = (0..16).map(|_| pool.get()).collect();
    drop(held);
    let s = pool.stats();
    // This thread's cell and the shards, full: one object in the cell, the shards' share.
    assert_eq!(s.retained_objects, 1 + l.shared_objects, "{l:?}");
    assert_eq!(s.retained_bytes, s.retained_objects * BUF);
    assert!(s.retained_objects <= 16 && s.retained_bytes <= 64 << 10);
    assert_eq!(s.discards.over_cap, 16 - s.retained_objects as u64);
}

#[test]
fn build_warns_when_a_tier_cannot_hold_an_object_of_max_object_bytes() {
    let (_pool, w) = warnings_of(|| {
        small_cap(64 << 10)
            .name("small-cap")
            .build()
            .expect("valid")
    });
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w.iter().all(|l| l.contains("small-cap")), "{w:?}");
    assert!(
        w[0].contains("per-thread cells holds an object of at most 4096 bytes"),
        "{w:?}"
    );
    assert!(w[1].contains("shards holds at most 32768 bytes"), "{w:?}");
    // max_object_bytes set to the objects' size: the same budget is laid out without a
    // warning, over all 8 shards.
    let (pool, w) = warnings_of(|| {
        small_cap(64 << 10)
            .max_object_bytes(BUF)
            .build()
            .expect("valid")
    });
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(pool.layout().shards, 8);
    let (_pool, w) = warnings_of(|| Pool::builder(Vec::<u8>::new).build().expect("defaults"));
    assert!(w.is_empty(), "defaults: {w:?}");
}

#[test]
fn the_doctor_names_a_per_thread_tier_too_small_for_the_objects() {
    // 40 KiB for 16 objects: a cell's share is 2.5 KiB, below a 4 KiB buffer.
    let pool = small_cap(40 << 10)
        .max_object_bytes(32 << 10)
        .build()
        .expect("valid");
    let l: Layout = pool.layout();
    assert_eq!(l.cell_bytes, 2560);
    for _ in 0..200 {
        drop(pool.get());
    }
    let s = pool.stats();
    assert_eq!(s.hits_local, 0);
    assert_eq!(s.skipped_local, 200);
    let f = pool
        .doctor()
        .into_iter()
        .find(|f| f.code == "object.local-tier-too-small")
        .expect("finding");
    assert!(f.message.contains("200 of 200 returns"), "{f:?}");
    assert!(f.fix.contains("at least 64.0 KiB"), "{f:?}");
    // The figures are in the metrics too.
    let mut w = PrometheusWriter::new();
    pool.write_prometheus(&mut w);
    let text = w.finish();
    assert!(
        text.contains("poolguard_object_skipped_local_total"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_object_tier_cap_bytes{pool=\"Vec<u8>-"),
        "{text}"
    );
    assert!(text.contains("tier=\"cell\"} 2560"), "{text}");
    // The fix it names works: 64 KiB lets the cells hold the buffers.
    let fixed = small_cap(64 << 10).build().expect("valid");
    for _ in 0..200 {
        drop(fixed.get());
    }
    assert!(fixed
        .doctor()
        .iter()
        .all(|f| f.code != "object.local-tier-too-small"));
    assert_eq!(fixed.stats().hits_local, 199);
}
