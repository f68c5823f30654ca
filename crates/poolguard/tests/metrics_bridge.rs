//! The `metrics` bridge reports every registered engine under its names, with exact counts:
//! counters grow by what happened, histograms get each recorded value once, and a dropped
//! engine is no longer reported.
#![cfg(all(
    feature = "metrics",
    feature = "conn",
    feature = "object",
    feature = "reclaim"
))]

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use poolguard::conn;
use poolguard::diag::{MetricsBridge, Registry, BUCKET_EDGES};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;

/// `kind name{k=v,...}` -> value, for one tick into a fresh or given recorder. A snapshot
/// takes what the recorder holds: a counter gives what it was increased by since the
/// previous snapshot, a histogram the values recorded since then, a gauge its value.
type Captured = BTreeMap<String, DebugValue>;

fn tick_into(recorder: &DebuggingRecorder, bridge: &mut MetricsBridge) -> Captured {
    metrics::with_local_recorder(recorder, || bridge.tick());
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _desc, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let kind = match kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            (
                format!("{kind} {}{{{}}}", key.name(), labels.join(",")),
                value,
            )
        })
        .collect()
}

fn counter(c: &Captured, key: &str) -> u64 {
    match c.get(&format!("counter {key}")) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("counter {key}: {other:?} in {c:#?}"),
    }
}

fn gauge(c: &Captured, key: &str) -> f64 {
    match c.get(&format!("gauge {key}")) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("gauge {key}: {other:?} in {c:#?}"),
    }
}

fn histogram(c: &Captured, key: &str) -> Vec<f64> {
    match c.get(&format!("histogram {key}")) {
        Some(DebugValue::Histogram(v)) => {
            let mut v: Vec<f64> = v.iter().map(|x| x.into_inner()).collect();
            v.sort_by(f64::total_cmp);
            v
        }
        other => panic!("histogram {key}: {other:?} in {c:#?}"),
    }
}

/// A replayed value stands for the middle of its bucket: within 6.25 % of what was recorded.
/// Replayed values (seconds) counted per Prometheus bucket of `BUCKET_EDGES` (not
/// cumulative; `le` semantics), as a recorder with those buckets would.
fn per_edge(values: &[f64]) -> Vec<u64> {
    let mut c = vec![0; BUCKET_EDGES.len() + 1];
    for &v in values {
        let i = BUCKET_EDGES
            .iter()
            .position(|&e| v <= e as f64 / 1e9)
            .unwrap_or(BUCKET_EDGES.len());
        c[i] += 1;
    }
    c
}

fn near(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.0625
}

const P: &str = "db.client.connection.pool.name=m-conn";

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn conn_pool_reports_the_semantic_convention_names_with_exact_counts() {
    let registry = Registry::new();
    let pool = conn::Pool::builder(NoopManager)
        .name("m-conn")
        .max_size(1)
        .acquire_timeout(Duration::from_millis(100))
        .build()
        .expect("conn pool");
    registry.register(&pool);
    let mut bridge = registry.metrics_bridge();

    // Use 1: held 210 ms, while two gets time out (100 ms each) and one waits 10 ms.
    let held = pool.get().await.expect("a connection");
    for _ in 0..2 {
        assert!(pool.get().await.is_err(), "the only connection is out");
    }
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await.expect("the handed-off connection")) }
        // use 2
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(held);
    waiter.await.expect("waiter");
    // Uses 3 to 9: held for no time (the clock is paused). Use 9 is the second sampled one.
    for _ in 0..7 {
        drop(pool.get().await.expect("a connection"));
    }
    assert_eq!(pool.stats().gets, 11);

    let recorder = DebuggingRecorder::new();
    let first = tick_into(&recorder, &mut bridge);
    let ours: Vec<&String> = first.keys().filter(|k| k.contains(P)).collect();
    assert_eq!(
        ours,
        [
            &format!("counter db.client.connection.timeouts{{{P}}}"),
            &format!("gauge db.client.connection.count{{{P},db.client.connection.state=idle}}"),
            &format!("gauge db.client.connection.count{{{P},db.client.connection.state=used}}"),
            &format!("gauge db.client.connection.idle.min{{{P}}}"),
            &format!("gauge db.client.connection.max{{{P}}}"),
            &format!("gauge db.client.connection.pending_requests{{{P}}}"),
            &format!("histogram db.client.connection.create_time{{{P}}}"),
            &format!("histogram db.client.connection.use_time{{{P}}}"),
            &format!("histogram db.client.connection.wait_time{{{P}}}"),
        ],
        "every series of the pool, and no other"
    );
    assert_eq!(
        counter(&first, &format!("db.client.connection.timeouts{{{P}}}")),
        2
    );
    let idle = format!("db.client.connection.count{{{P},db.client.connection.state=idle}}");
    let used = format!("db.client.connection.count{{{P},db.client.connection.state=used}}");
    assert_eq!(gauge(&first, &idle), 1.0);
    assert_eq!(gauge(&first, &used), 0.0);
    assert_eq!(
        gauge(&first, &format!("db.client.connection.max{{{P}}}")),
        1.0
    );
    assert_eq!(
        gauge(&first, &format!("db.client.connection.idle.min{{{P}}}")),
        0.0
    );
    assert_eq!(
        gauge(
            &first,
            &format!("db.client.connection.pending_requests{{{P}}}")
        ),
        0.0
    );
    // The get that waited 10 ms for the handoff (and any that waited no time at all for a
    // connection on its way back).
    let wait = histogram(&first, &format!("db.client.connection.wait_time{{{P}}}"));
    assert_eq!(
        wait.len() as u64,
        pool.stats().wait_time.count(),
        "{wait:?}"
    );
    let (longest, rest) = wait.split_last().expect("the handoff waited");
    assert!(near(*longest, 0.010), "{wait:?}");
    assert!(rest.iter().all(|&w| w == 0.0), "{wait:?}");
    let creates = histogram(&first, &format!("db.client.connection.create_time{{{P}}}"));
    assert_eq!(
        creates.len() as u64,
        pool.stats().connect_time.count(),
        "one sample per connect: {creates:?}"
    );
    assert_eq!(creates.len() as u64, pool.stats().created, "{creates:?}");
    // Every replayed value lands in the Prometheus bucket its original was counted in.
    let st = pool.stats();
    assert_eq!(per_edge(&wait), st.wait_time.edge_counts().to_vec());
    assert_eq!(per_edge(&creates), st.connect_time.edge_counts().to_vec());
    let uses = histogram(&first, &format!("db.client.connection.use_time{{{P}}}"));
    assert_eq!(uses.len(), 2, "uses 1 and 9 are sampled: {uses:?}");
    assert_eq!(uses[0], 0.0);
    assert!(near(uses[1], 0.210), "{uses:?}");

    // One more get, held across the tick: the gauges follow; nothing else changed.
    let out = pool.get().await.expect("a connection");
    let second = tick_into(&recorder, &mut bridge);
    assert_eq!(
        counter(&second, &format!("db.client.connection.timeouts{{{P}}}")),
        0,
        "no new timeout, no increment"
    );
    assert_eq!(gauge(&second, &idle), 0.0);
    assert_eq!(gauge(&second, &used), 1.0);
    assert!(histogram(&second, &format!("db.client.connection.wait_time{{{P}}}")).is_empty());
    assert!(histogram(&second, &format!("db.client.connection.use_time{{{P}}}")).is_empty());
    assert!(histogram(&second, &format!("db.client.connection.create_time{{{P}}}")).is_empty());
    drop(out);

    // One more timeout: the counter grows by exactly one.
    let out = pool.get().await.expect("a connection");
    assert!(pool.get().await.is_err());
    drop(out);
    let third = tick_into(&recorder, &mut bridge);
    assert_eq!(
        counter(&third, &format!("db.client.connection.timeouts{{{P}}}")),
        1
    );

    // Dropped: a fresh recorder sees nothing of it.
    drop(pool);
    let after = tick_into(&DebuggingRecorder::new(), &mut bridge);
    assert!(after.keys().all(|k| !k.contains("m-conn")), "{after:#?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn object_pools_and_reclaimers_report_their_main_figures() {
    let registry = Registry::new();
    let objects = object::Pool::builder(Vec::<u8>::new)
        .name("m-object")
        .build()
        .expect("object pool");
    let reclaimer = Reclaimer::builder()
        .name("m-reclaim")
        .build()
        .expect("reclaimer");
    registry.register(&objects);
    registry.register(&reclaimer);
    let mut bridge = registry.metrics_bridge();

    let (a, b) = (objects.get(), objects.get());
    drop((a, b));
    drop(objects.get());
    for _ in 0..3 {
        let _ = reclaimer.defer(vec![0u8; 64]);
    }
    reclaimer.flush(Duration::from_secs(30)).expect("flushed");
    let s = objects.stats();
    assert_eq!((s.gets, s.misses, s.returns), (3, 2, 3));

    let recorder = DebuggingRecorder::new();
    let c = tick_into(&recorder, &mut bridge);
    let o = "poolguard.pool.name=m-object";
    assert_eq!(counter(&c, &format!("poolguard.object.gets{{{o}}}")), 3);
    assert_eq!(counter(&c, &format!("poolguard.object.misses{{{o}}}")), 2);
    assert_eq!(counter(&c, &format!("poolguard.object.returns{{{o}}}")), 3);
    let hits: u64 = ["local", "shared", "victim"]
        .iter()
        .map(|t| counter(&c, &format!("poolguard.object.hits{{{o},tier={t}}}")))
        .sum();
    assert_eq!(hits, 1);
    for (tier, r) in s.retained_by_tier.tiers() {
        assert_eq!(
            gauge(
                &c,
                &format!("poolguard.object.retained.objects{{{o},tier={tier}}}")
            ),
            r.objects as f64
        );
        assert_eq!(
            gauge(
                &c,
                &format!("poolguard.object.retained.bytes{{{o},tier={tier}}}")
            ),
            r.bytes as f64
        );
    }
    assert_eq!(s.retained_by_tier.total().objects, s.retained_objects);
    assert!(histogram(&c, &format!("poolguard.object.trim_pause{{{o}}}")).is_empty());

    let r = "poolguard.reclaimer.name=m-reclaim";
    assert_eq!(
        counter(&c, &format!("poolguard.reclaim.deferred{{{r}}}")),
        3
    );
    assert_eq!(
        counter(&c, &format!("poolguard.reclaim.completed{{{r}}}")),
        3
    );
    assert_eq!(gauge(&c, &format!("poolguard.reclaim.queued{{{r}}}")), 0.0);
    assert_eq!(
        histogram(&c, &format!("poolguard.reclaim.run_time{{{r}}}")).len(),
        3,
        "one value per drop"
    );

    // A tick with nothing new adds nothing.
    let again = tick_into(&recorder, &mut bridge);
    assert_eq!(counter(&again, &format!("poolguard.object.gets{{{o}}}")), 0);
    assert_eq!(
        counter(&again, &format!("poolguard.reclaim.deferred{{{r}}}")),
        0
    );
    assert!(histogram(&again, &format!("poolguard.reclaim.run_time{{{r}}}")).is_empty());

    drop(objects);
    let after = tick_into(&DebuggingRecorder::new(), &mut bridge);
    assert!(after.keys().all(|k| !k.contains("m-object")), "{after:#?}");
    assert!(after.keys().any(|k| k.contains("m-reclaim")));
}

/// The only test of this file that reports into the global recorder (the spawned task
/// cannot see a test-local one).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_spawned_bridge_ticks_into_the_global_recorder_until_dropped() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other global recorder in this test binary");
    let gets = |snapshotter: &metrics_util::debugging::Snapshotter| {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| {
                let key = key.key().clone();
                let ours = key.name() == "poolguard.object.gets"
                    && key.labels().any(|l| l.value() == "m-spawned");
                match (ours, value) {
                    (true, DebugValue::Counter(n)) => Some(n),
                    _ => None,
                }
            })
    };

    let registry = Registry::new();
    assert_eq!(
        registry.spawn_metrics_bridge(Duration::ZERO).err(),
        Some(poolguard::diag::BridgeError::ZeroPeriod)
    );
    let objects = object::Pool::builder(String::new)
        .name("m-spawned")
        .build()
        .expect("object pool");
    registry.register(&objects);
    drop(objects.get());
    let task = registry
        .spawn_metrics_bridge(Duration::from_secs(1))
        .expect("spawned");
    tokio::time::sleep(Duration::from_millis(10)).await; // the first tick: right away
    assert_eq!(gets(&snapshotter), Some(1));
    drop(objects.get());
    drop(objects.get());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(gets(&snapshotter), Some(2), "the next tick, a second later");

    task.stop();
    drop(objects.get());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        gets(&snapshotter),
        Some(0),
        "no tick after the handle is gone"
    );
}

#[test]
fn the_spawned_bridge_needs_a_runtime() {
    assert_eq!(
        Registry::new()
            .spawn_metrics_bridge(Duration::from_secs(1))
            .err(),
        Some(poolguard::diag::BridgeError::NoRuntime)
    );
}
