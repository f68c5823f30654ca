//! Every builder takes any input without a panic or an abort: sizes from 0 to `usize::MAX`,
//! durations from zero to `Duration::MAX`, arbitrary strings. What `build()` accepts is
//! exercised briefly (a get and a return, a trim, stats, doctor; for connection pools inside
//! a paused-clock runtime); what it refuses comes back as a typed error that names the fix.
//!
//! Allocation stays bounded by construction: every size that `build()` turns into memory is
//! checked against a documented limit first, so an accepted configuration allocates at most
//! `MAX_SHARDS` shards and `MAX_LOCAL_SLOTS` cells, and a connection pool opens at most
//! `MAX_SIZE` connections.

use std::time::Duration;

use poolguard::conn;
use poolguard::diag::NameError;
use poolguard::object::{self, BuildError};
use poolguard::reclaim::{self, Reclaimer};
use poolguard_testkit::sim::SimManager;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// The inputs of the bug reports, as plain regression tests.

#[test]
fn an_object_pool_named_with_a_nul_byte_is_refused_not_a_panic_in_trimmer() {
    let e = object::Pool::builder(Vec::<u8>::new)
        .name("bufs\0")
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::Name(NameError::ControlChar { at: 4 }));
    assert!(e.to_string().contains("control character"), "{e}");
    // Same rule, same answer, on every engine.
    let e = Reclaimer::builder().name("bufs\0").build().unwrap_err();
    assert!(
        matches!(
            e,
            reclaim::BuildError::Name(NameError::ControlChar { at: 4 })
        ),
        "{e}"
    );
    let rt = paused_runtime();
    rt.block_on(async {
        let e = conn::Pool::builder(SimManager::new())
            .name("bufs\0")
            .build()
            .unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.problem.contains("control character"), "{e}");
    });
}

#[test]
fn huge_object_pool_sizes_are_refused_before_anything_is_allocated() {
    let e = object::Pool::builder(Vec::<u8>::new)
        .max_idle(usize::MAX)
        .shards(usize::MAX)
        .local_slots(usize::MAX)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, BuildError::TooLarge { field: "max_idle", max, .. } if max == object::MAX_IDLE),
        "{e}"
    );
    let e = object::Pool::builder(Vec::<u8>::new)
        .shards(100_000_000)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, BuildError::TooLarge { field: "shards", value: 100_000_000, max, .. } if max == object::MAX_SHARDS),
        "{e}"
    );
    assert!(e.to_string().contains("1024"), "{e}");
    let e = object::Pool::builder(Vec::<u8>::new)
        .local_slots(100_000_000)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, BuildError::TooLarge { field: "local_slots", max, .. } if max == object::MAX_LOCAL_SLOTS),
        "{e}"
    );
    // The limits themselves are accepted and serve.
    let p = object::Pool::builder(Vec::<u8>::new)
        .max_idle(object::MAX_IDLE)
        .shards(object::MAX_SHARDS)
        .local_slots(object::MAX_LOCAL_SLOTS)
        .build()
        .expect("at the limits");
    drop(p.get());
    assert_eq!(p.stats().returns, 1);
}

#[test]
fn unbounded_connection_pool_sizes_are_refused_before_any_connect() {
    let rt = paused_runtime();
    rt.block_on(async {
        for n in [usize::MAX, 1_000_000] {
            let m = SimManager::new();
            let e = conn::Pool::builder(m.clone())
                .max_size(n)
                .min_idle(n)
                .max_concurrent_opens(n)
                .build()
                .unwrap_err();
            assert_eq!(e.field, "max_size", "{e}");
            assert!(e.problem.contains("10000"), "{e}");
            tokio::task::yield_now().await;
            assert_eq!(m.attempts(), 0, "no connect was started");
        }
        let e = conn::Pool::builder(SimManager::new())
            .max_size(4)
            .max_concurrent_opens(5)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_concurrent_opens");
        let e = conn::Pool::builder(SimManager::new())
            .max_waiters(usize::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_waiters");
    });
}

#[test]
fn huge_reclaimer_sizes_are_refused() {
    let e = Reclaimer::builder()
        .capacity(usize::MAX)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, reclaim::BuildError::TooLarge { field: "capacity", max, .. } if max == reclaim::MAX_CAPACITY),
        "{e}"
    );
    let e = Reclaimer::builder()
        .max_closes_in_flight(usize::MAX)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            reclaim::BuildError::TooLarge {
                field: "max_closes_in_flight",
                ..
            }
        ),
        "{e}"
    );
    let e = Reclaimer::builder()
        .workers(usize::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(e, reclaim::BuildError::ThreadLimit { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------
// The fuzz loop.

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Sizes: small ones (the edges 0, 1, 2...), around the documented limits, and anything up
/// to `usize::MAX`.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0..8usize,
        2 => 0..20_000usize,
        1 => (1usize << 16)..(1usize << 25),
        2 => any::<usize>(),
        1 => Just(usize::MAX),
    ]
}

/// Durations from zero to `Duration::MAX`.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
        3 => (0u64..5_000_000_000).prop_map(Duration::from_nanos),
        2 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        2 => any::<String>().prop_map(Some),
        2 => "[a-z:<>_-]{0,24}".prop_map(Some),
        1 => "[a-z]{120,140}".prop_map(Some),
        1 => "[a-z]{0,4}[\\x00\\n\\t][a-z]{0,4}".prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
struct ObjectInput {
    max_idle: usize,
    max_idle_bytes: usize,
    max_object_bytes: usize,
    shards: usize,
    local_slots: usize,
    hold: Option<Duration>,
    name: Option<String>,
    buffer: usize,
    trim_every: Duration,
}

fn object_input() -> impl Strategy<Value = ObjectInput> {
    (
        (size(), size(), size(), size(), size()),
        proptest::option::of(duration()),
        name(),
        0..70_000usize,
        duration(),
    )
        .prop_map(
            |(
                (max_idle, max_idle_bytes, max_object_bytes, shards, local_slots),
                hold,
                name,
                buffer,
                trim_every,
            )| ObjectInput {
                max_idle,
                max_idle_bytes,
                max_object_bytes,
                shards,
                local_slots,
                hold,
                name,
                buffer,
                trim_every,
            },
        )
}

#[derive(Debug, Clone)]
struct ConnInput {
    sizes: (usize, usize, usize, usize),
    timeouts: [Duration; 6],
    optional: [Option<Duration>; 5],
    breaker: (Option<u32>, Duration, Duration),
    maintenance: Duration,
    jitter: f64,
    label: Option<String>,
}

fn conn_input() -> impl Strategy<Value = ConnInput> {
    (
        (size(), size(), size(), size()),
        proptest::array::uniform6(duration()),
        proptest::array::uniform5(proptest::option::of(duration())),
        (proptest::option::of(any::<u32>()), duration(), duration()),
        duration(),
        prop_oneof![Just(0.05f64), any::<f64>()],
        name(),
    )
        .prop_map(
            |(sizes, timeouts, optional, breaker, maintenance, jitter, label)| ConnInput {
                sizes,
                timeouts,
                optional,
                breaker,
                maintenance,
                jitter,
                label,
            },
        )
}

#[derive(Debug, Clone)]
struct ReclaimInput {
    workers: usize,
    max_threads: usize,
    capacity: usize,
    closes: usize,
    slow: Duration,
    stuck: Duration,
    shutdown: Duration,
    name: Option<String>,
}

fn reclaim_input() -> impl Strategy<Value = ReclaimInput> {
    (
        // Threads are real: keep the accepted counts small enough for CI.
        prop_oneof![3 => 0..6usize, 1 => size()],
        prop_oneof![3 => 0..10usize, 1 => size()],
        size(),
        size(),
        duration(),
        duration(),
        duration(),
        name(),
    )
        .prop_map(
            |(workers, max_threads, capacity, closes, slow, stuck, shutdown, name)| ReclaimInput {
                workers,
                max_threads,
                capacity,
                closes,
                slow,
                stuck,
                shutdown,
                name,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_object_pool_config_builds_or_is_refused_without_a_panic(i in object_input()) {
        let buffer = i.buffer;
        let mut b = object::Pool::builder(move || Vec::<u8>::with_capacity(buffer))
            .max_idle(i.max_idle)
            .max_idle_bytes(i.max_idle_bytes)
            .max_object_bytes(i.max_object_bytes)
            .shards(i.shards)
            .local_slots(i.local_slots);
        if let Some(h) = i.hold {
            b = b.hold_threshold(h);
        }
        if let Some(n) = &i.name {
            b = b.name(n.clone());
        }
        match b.build() {
            Ok(pool) => {
                let trimmer = pool.trimmer(i.trim_every);
                prop_assert!(trimmer.interval() >= object::MIN_TRIM_INTERVAL);
                let a = pool.get();
                let b = pool.get();
                drop(a);
                drop(b);
                let _ = pool.put(Vec::with_capacity(buffer));
                let _ = pool.trim();
                let s = pool.stats();
                prop_assert!(s.retained_objects <= i.max_idle);
                prop_assert!(s.retained_bytes <= i.max_idle_bytes);
                let _ = pool.doctor();
                drop(trimmer);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_reclaimer_config_builds_or_is_refused_without_a_panic(i in reclaim_input()) {
        let mut b = Reclaimer::builder()
            .workers(i.workers)
            .max_threads(i.max_threads)
            .capacity(i.capacity)
            .max_closes_in_flight(i.closes)
            .slow_threshold(i.slow)
            .stuck_threshold(i.stuck)
            .shutdown_timeout(i.shutdown);
        if let Some(n) = &i.name {
            b = b.name(n.clone());
        }
        match b.build() {
            Ok(r) => {
                let _ = r.defer(vec![0u8; 64]);
                let _ = r.flush(Duration::from_secs(20));
                let _ = r.stats();
                let _ = r.doctor();
                let report = r.shutdown(Duration::from_secs(20));
                prop_assert_eq!(report.threads_abandoned, 0);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    // Each accepted case runs a runtime and may open up to `MAX_SIZE` simulated connections.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_connection_pool_config_builds_or_is_refused_without_a_panic(i in conn_input()) {
        let rt = paused_runtime();
        let res: Result<(), TestCaseError> = rt.block_on(async {
            let (max_size, min_idle, max_waiters, opens) = i.sizes;
            let [acquire, connect, validation, reset, close, bypass] = i.timeouts;
            let [keepalive, idle, lifetime, leak, abandon] = i.optional;
            let (threshold, backoff, max_backoff) = i.breaker;
            let mut b = conn::Pool::builder(SimManager::new())
                .max_size(max_size)
                .min_idle(min_idle)
                .max_waiters(max_waiters)
                .max_concurrent_opens(opens)
                .acquire_timeout(acquire)
                .connect_timeout(connect)
                .validation_timeout(validation)
                .reset_timeout(reset)
                .close_timeout(close)
                .validation_bypass(bypass)
                .keepalive_interval(keepalive)
                .idle_timeout(idle)
                .max_lifetime(lifetime)
                .leak_threshold(leak)
                .abandon_timeout(abandon)
                .breaker_threshold(threshold)
                .breaker_backoff(backoff)
                .breaker_max_backoff(max_backoff)
                .maintenance_interval(i.maintenance)
                .jitter(i.jitter);
            if let Some(l) = &i.label {
                b = b.name(l.clone());
            }
            match b.build() {
                Ok(pool) => {
                    prop_assert!(pool.config().max_size <= conn::MAX_SIZE);
                    // Bounded on the paused clock: maintenance ticks at most every 10 ms.
                    let got = tokio::time::timeout(Duration::from_secs(1), pool.get()).await;
                    if let Ok(Ok(c)) = got {
                        drop(c);
                    }
                    let s = pool.status();
                    prop_assert!(s.size <= s.max_size);
                    let _ = pool.doctor();
                    pool.close();
                    let _ = pool.wait_closed(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    prop_assert!(!e.field.is_empty());
                    prop_assert!(!e.fix.is_empty());
                }
            }
            Ok(())
        });
        res?;
    }
}
