//! Object pool: checkout, return, reset, detach, put, refusals, builder errors, hold
//! tracking, doctor and Prometheus output (single-threaded behaviour).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use poolguard::diag::PrometheusWriter;
use poolguard::object::{BuildError, DiscardReason, Pool, Recycle};
use poolguard_testkit::drops::{DropCounter, Tracked};

/// A pooled object whose drop is counted and whose reported size is chosen by the test.
struct Obj {
    t: Tracked<Vec<u8>>,
    bytes: usize,
    keep: bool,
    panic_on_reset: Arc<AtomicBool>,
}

impl Recycle for Obj {
    fn reset(&mut self) -> bool {
        if self.panic_on_reset.load(SeqCst) {
            panic!("reset exploded");
        }
        self.t.payload.clear();
        self.keep
    }
    fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

fn obj(c: &DropCounter, bytes: usize) -> Obj {
    Obj {
        t: c.track(Vec::new()),
        bytes,
        keep: true,
        panic_on_reset: Arc::new(AtomicBool::new(false)),
    }
}

fn vec_pool() -> Pool<Vec<u8>> {
    Pool::builder(|| Vec::with_capacity(1024))
        .local_slots(64)
        .build()
        .expect("valid config")
}

#[test]
fn returned_object_is_reset_and_reused() {
    let pool = vec_pool();
    let ptr = {
        let mut b = pool.get();
        b.extend_from_slice(b"secret");
        b.as_ptr()
    };
    let b = pool.get();
    assert!(b.is_empty(), "the previous user's data must be cleared");
    assert_eq!(b.as_ptr(), ptr, "the same allocation is reused");
    drop(b);
    let s = pool.stats();
    assert_eq!((s.gets, s.misses, s.hits_local, s.returns), (2, 1, 1, 2));
    assert!(s.type_name.contains("Vec<u8>"));
    assert!(s.name.starts_with("Vec<u8>-"), "default label: {}", s.name);
}

#[test]
fn detach_takes_the_object_out_for_good() {
    let pool = vec_pool();
    let mut b = pool.get();
    b.push(7);
    let v = b.detach();
    assert_eq!(v, vec![7]);
    let s = pool.stats();
    assert_eq!((s.detached, s.returns, s.retained_objects), (1, 0, 0));
    let _again = pool.get();
    assert_eq!(
        pool.stats().misses,
        2,
        "nothing was returned, so a second miss"
    );
}

#[test]
fn put_accepts_foreign_objects_and_hands_back_refused_ones() {
    let pool = vec_pool();
    assert!(pool.put(Vec::with_capacity(100)).is_ok());
    let big: Vec<u8> = Vec::with_capacity(1 << 20);
    let refused = pool.put(big).expect_err("over max_object_bytes");
    assert_eq!(refused.reason, DiscardReason::Oversized);
    assert!(refused.object.expect("handed back").capacity() >= 1 << 20);
    let s = pool.stats();
    assert_eq!(s.discards.oversized, 1);
    assert_eq!(s.returns, 2);
    assert_eq!(s.retained_objects, 1);
}

#[test]
fn reset_refusal_and_panic_drop_the_object_without_poisoning() {
    let c = DropCounter::new();
    let pool = Pool::builder({
        let c = c.clone();
        move || obj(&c, 10)
    })
    .local_slots(64)
    .build()
    .expect("valid");
    let mut g = pool.get();
    g.keep = false;
    drop(g);
    assert_eq!(c.dropped(), 1, "refused by reset: dropped");
    let g = pool.get();
    g.panic_on_reset.store(true, SeqCst);
    drop(g); // must not propagate the panic
    assert_eq!(c.dropped(), 2, "panicked reset: dropped");
    let s = pool.stats();
    assert_eq!(s.discards.refused_by_reset, 2);
    assert_eq!(s.discards.reset_panics, 1);
    // The pool still works and its accounting is exact.
    drop(pool.get());
    let s = pool.stats();
    assert_eq!(
        (s.gets, s.misses, s.returns, s.retained_objects),
        (3, 3, 3, 1)
    );
    let bad = obj(&c, 10);
    bad.panic_on_reset.store(true, SeqCst);
    let r = pool.put(bad).expect_err("panicking reset");
    assert_eq!(r.reason, DiscardReason::ResetPanicked);
    assert!(r.object.is_none());
    drop(pool);
    assert_eq!(c.alive(), 0);
}

#[test]
fn caps_refuse_objects_and_hand_them_back() {
    let c = DropCounter::new();
    let pool = Pool::builder({
        let c = c.clone();
        move || obj(&c, 10)
    })
    .max_idle(4)
    .max_idle_bytes(1000)
    .max_object_bytes(500)
    .shards(2)
    .build()
    .expect("valid");
    let mut refused = 0;
    for _ in 0..10 {
        if let Err(r) = pool.put(obj(&c, 100)) {
            assert_eq!(r.reason, DiscardReason::OverCap);
            assert!(r.object.is_some());
            refused += 1;
        }
    }
    let s = pool.stats();
    assert!(s.retained_objects <= 4, "{s:?}");
    assert!(s.retained_bytes <= 1000);
    // Every object is accounted for: retained, refused (handed back), or freed by the budget
    // (victims evicted, or a budget-triggered trim cycle after a pool's worth of refusals).
    let freed = (s.trim_freed + s.discards.evicted_by_budget) as usize;
    assert_eq!(refused + s.retained_objects + freed, 10, "{s:?}");
    assert!(s.trims >= 1, "4 refusals in a row start a budget cycle");
    assert_eq!(s.discards.over_cap, refused as u64);
    // Alive = retained only (refused ones were handed back and dropped here).
    assert_eq!(c.alive() as usize, s.retained_objects);
}

#[test]
fn byte_cap_is_hard() {
    let c = DropCounter::new();
    let pool = Pool::builder({
        let c = c.clone();
        move || obj(&c, 10)
    })
    .max_idle(100)
    .max_idle_bytes(1000)
    .max_object_bytes(400)
    .shards(1)
    .build()
    .expect("valid");
    for _ in 0..20 {
        let _ = pool.put(obj(&c, 300));
    }
    let s = pool.stats();
    assert!(s.retained_bytes <= 1000, "{s:?}");
    assert_eq!(c.alive() as usize, s.retained_objects);
    assert!(s.retained_objects <= 3);
}

#[test]
fn builder_rejects_bad_configs_with_a_fix() {
    let e = Pool::builder(Vec::<u8>::new)
        .max_idle(0)
        .build()
        .expect_err("zero");
    assert_eq!(e, BuildError::ZeroMaxIdle);
    assert!(e.to_string().contains("at least 1"));
    let e = Pool::builder(Vec::<u8>::new)
        .shards(0)
        .build()
        .expect_err("zero shards");
    assert_eq!(e, BuildError::ZeroShards);
    let e = Pool::builder(Vec::<u8>::new)
        .max_idle_bytes(100)
        .max_object_bytes(200)
        .build()
        .expect_err("object larger than budget");
    assert!(e
        .to_string()
        .contains("lower max_object_bytes or raise max_idle_bytes"));
    let e = Pool::builder(Vec::<u8>::new)
        .hold_threshold(Duration::ZERO)
        .build()
        .expect_err("zero threshold");
    assert_eq!(e, BuildError::ZeroHoldThreshold);
}

fn manual_clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> Duration + Send + Sync + 'static,
) {
    let now = Arc::new(AtomicU64::new(0));
    let n = Arc::clone(&now);
    (now, move || Duration::from_millis(n.load(SeqCst)))
}

#[test]
fn long_holds_are_reported_with_the_call_site() {
    let (now, clock) = manual_clock();
    let pool = Pool::builder(Vec::<u8>::new)
        .hold_threshold(Duration::from_secs(1))
        .clock(clock)
        .name("scratch")
        .build()
        .expect("valid");
    let short = pool.get();
    now.fetch_add(500, SeqCst);
    drop(short);
    let line = line!() + 1;
    let long = pool.get();
    now.fetch_add(5_000, SeqCst);
    drop(long);
    let s = pool.stats();
    assert_eq!(s.long_holds, 1);
    let h = &s.recent_long_holds[0];
    assert!(h.site.file().ends_with("object_basic.rs"), "{}", h.site);
    assert_eq!(h.site.line(), line);
    assert_eq!(h.held, Duration::from_secs(5));
    let findings = pool.doctor();
    let f = findings
        .iter()
        .find(|f| f.code == "object.long-holds")
        .expect("doctor reports long holds");
    assert_eq!(f.pool, "scratch");
    assert!(f.message.contains("object_basic.rs"), "{}", f.message);
}

#[test]
fn hold_tracking_is_off_by_default() {
    let pool = vec_pool();
    drop(pool.get());
    let s = pool.stats();
    assert_eq!(s.long_holds, 0);
    assert!(s.recent_long_holds.is_empty());
    assert!(pool.config().hold_threshold.is_none());
}

#[test]
fn doctor_flags_oversized_low_hit_rate_and_only_puts() {
    let pool = Pool::builder(Vec::<u8>::new)
        .max_object_bytes(1024)
        .build()
        .expect("valid");
    for _ in 0..200 {
        let mut b = pool.get();
        b.reserve(4096); // every user grows the buffer past the cap
    }
    for _ in 0..500 {
        let _ = pool.put(Vec::with_capacity(16));
    }
    let codes: Vec<&str> = pool.doctor().iter().map(|f| f.code).collect();
    assert!(codes.contains(&"object.oversized"), "{codes:?}");
    assert!(codes.contains(&"object.low-hit-rate"), "{codes:?}");
    assert!(codes.contains(&"object.only-puts"), "{codes:?}");
    // A healthy pool has nothing to say.
    let ok = vec_pool();
    for _ in 0..500 {
        ok.get().push(1);
    }
    assert!(ok.doctor().is_empty(), "{:?}", ok.doctor());
}

#[test]
fn prometheus_text_has_tiers_and_reasons() {
    let pool = Pool::builder(Vec::<u8>::new)
        .name("bufs")
        .build()
        .expect("valid");
    drop(pool.get());
    drop(pool.get());
    let _ = pool.trim();
    let mut w = PrometheusWriter::new();
    pool.write_prometheus(&mut w);
    let text = w.finish();
    assert!(
        text.contains("poolguard_object_gets_total{pool=\"bufs\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_object_hits_total{pool=\"bufs\",tier=\"local\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_object_discards_total{pool=\"bufs\",reason=\"oversized\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_object_trims_total{pool=\"bufs\"} 1"),
        "{text}"
    );
}

/// Objects with a chosen heap size, so each tier's bytes are known.
fn sized_pool(c: &DropCounter) -> Pool<Obj> {
    let c = c.clone();
    Pool::builder(move || obj(&c, 100))
        .name("tiers")
        .local_slots(64)
        .build()
        .expect("valid")
}

#[test]
fn retained_objects_and_bytes_are_split_by_tier() {
    let c = DropCounter::new();
    let pool = sized_pool(&c);
    let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
    drop(held); // one into this thread's cell, two to the shared stacks
    let s = pool.stats();
    let t = s.retained_by_tier;
    assert_eq!((t.local.objects, t.local.bytes), (1, 100), "{s:?}");
    assert_eq!((t.shared.objects, t.shared.bytes), (2, 200), "{s:?}");
    assert_eq!((t.victim.objects, t.victim.bytes), (0, 0), "{s:?}");
    assert_eq!((s.retained_objects, s.retained_bytes), (3, 300));

    // A trim steals the cell's object and demotes every shared object: all three are
    // victims now (the next cycle frees them unless a get takes them first).
    let _ = pool.trim();
    let s = pool.stats();
    let t = s.retained_by_tier;
    assert_eq!(
        (t.local.objects, t.shared.objects, t.victim.objects),
        (0, 0, 3),
        "{s:?}"
    );
    assert_eq!((t.victim.bytes, t.total().bytes), (300, s.retained_bytes));
    let before_get = s.clone();
    // A get takes a victim; what comes back is fresh (the cell or the shared stacks).
    drop(pool.get());
    let after = pool.stats();
    let t = after.retained_by_tier;
    assert!(t.victim.objects < 3, "{after:?}");
    assert_eq!(t.local.objects + t.shared.objects + t.victim.objects, 3);
    assert_eq!(t.local.bytes + t.shared.bytes + t.victim.bytes, 300);
    let s = before_get;
    let mut w = PrometheusWriter::new();
    s.write_prometheus(&mut w);
    let text = w.finish();
    for line in [
        "poolguard_object_retained_objects{pool=\"tiers\",tier=\"local\"} 0",
        "poolguard_object_retained_objects{pool=\"tiers\",tier=\"shared\"} 0",
        "poolguard_object_retained_objects{pool=\"tiers\",tier=\"victim\"} 3",
        "poolguard_object_retained_bytes{pool=\"tiers\",tier=\"local\"} 0",
        "poolguard_object_retained_bytes{pool=\"tiers\",tier=\"victim\"} 300",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    // No unlabelled total beside the tiers (a `sum by (pool)` would count it twice).
    assert!(
        !text.contains("poolguard_object_retained_bytes{pool=\"tiers\"}"),
        "{text}"
    );
}

#[cfg(feature = "bytes")]
#[test]
fn bytes_mut_is_poolable() {
    let pool = Pool::builder(|| bytes::BytesMut::with_capacity(512))
        .build()
        .expect("valid");
    pool.get().extend_from_slice(b"abc");
    let b = pool.get();
    assert!(b.is_empty());
    assert!(b.capacity() >= 512);
}

#[test]
fn a_get_from_the_shared_tier_refills_the_thread_cell() {
    let pool = vec_pool();
    let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
    drop(held); // the first into this thread's cell, the other two to the shared stacks
    let a = pool.get(); // the cell
    let b = pool.get(); // a shared stack, which also hands over a spare for the cell
    let c = pool.get(); // the spare, from the cell
    let s = pool.stats();
    assert_eq!((s.hits_local, s.hits_shared, s.misses), (2, 1, 3), "{s:?}");
    drop((a, b, c));
    assert_eq!(pool.stats().retained_objects, 3);
}

#[test]
fn a_pool_without_local_slots_uses_the_shared_tier_only() {
    let pool = Pool::builder(Vec::<u8>::new)
        .local_slots(0)
        .build()
        .expect("valid");
    drop(pool.get());
    drop(pool.get());
    let s = pool.stats();
    assert_eq!((s.hits_local, s.hits_shared, s.misses), (0, 1, 1));
}

/// A thread that only returns sends its cell's object and the returned one to the shards
/// together; when the shards are full the cell keeps its object, the new one is handed back,
/// and nothing is lost or reordered.
#[test]
fn overflow_returns_go_in_pairs_and_a_full_pool_keeps_the_cell() {
    // 64 cells (this thread's index is below 64, as in the other tests) and one shard of 64.
    let pool: Pool<Vec<u8>> = Pool::builder(Vec::new)
        .max_idle(128)
        .local_slots(64)
        .shards(1)
        .build()
        .expect("valid");
    // The capacity names each object (reset clears, capacity stays).
    for k in 1..=65 {
        pool.put(Vec::with_capacity(k)).expect("room");
    }
    let refused = pool
        .put(Vec::with_capacity(66))
        .expect_err("shard and cell are full");
    assert_eq!(refused.object.map(|v| v.capacity()), Some(66));
    let s = pool.stats();
    assert_eq!((s.retained_objects, s.discards.over_cap), (65, 1));
    // Freshest first: the cell's object, then the shard's stack top down.
    let got: Vec<usize> = (0..4).map(|_| pool.get().detach().capacity()).collect();
    assert_eq!(got, [65, 64, 63, 62]);
}
