//! Soft-evict and retain: idle connections closed now, held ones on return, connects in
//! flight when they finish; the refill is paced by `max_concurrent_opens` and the breaker,
//! so a fleet of pools soft-evicting at once does not stampede the database (measured on
//! the simulator's own count of connects in progress).

use std::time::Duration;

use poolguard::conn::{CloseReason, ConnMetrics, Pool};
use poolguard_testkit::sim::{Faults, Op, SimManager};
use tokio::time::Instant;

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn pool(m: &SimManager, max: usize) -> Pool<SimManager> {
    m.with_reset(false);
    Pool::builder(m.clone())
        .max_size(max)
        .acquire_timeout(Duration::from_secs(5))
        .keepalive_interval(None)
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn soft_evict_closes_idle_now_and_held_on_return() {
    let m = SimManager::new();
    let p = pool(&m, 4);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(p.get().await.expect("get"));
    }
    let held: Vec<_> = all.drain(2..).collect();
    drop(all);
    assert_eq!(p.status().idle, 2);
    assert_eq!(p.soft_evict_all(), 2, "the two idle ones, now");
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Evicted), 2);
    assert_eq!(p.stats().soft_evictions, 1);
    let s = p.status();
    assert_eq!((s.idle, s.in_use, s.size), (0, 2, 2), "{s:?}");
    let old_ids: Vec<u64> = held.iter().map(|c| c.id()).collect();
    drop(held);
    settle().await;
    assert_eq!(
        p.stats().closed_by(CloseReason::Evicted),
        4,
        "held ones closed on return"
    );
    assert_eq!(p.status().size, 0);
    assert_eq!(m.alive(), 0, "every old connection is gone");
    // Connections opened after the call are kept.
    let c = p.get().await.expect("a new connection");
    assert!(!old_ids.contains(&c.id()));
    drop(c);
    assert_eq!(p.status().idle, 1, "a new-epoch connection goes back idle");
    assert_eq!(p.stats().closed_by(CloseReason::Evicted), 4);
}

#[tokio::test(start_paused = true)]
async fn a_connect_in_flight_during_the_evict_is_evicted_and_its_waiter_still_served() {
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_millis(100));
    let p = pool(&m, 2);
    let p2 = p.clone();
    let getter = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    settle().await;
    assert_eq!(p.status().opening, 1);
    p.soft_evict_all();
    let id = getter
        .await
        .expect("task")
        .expect("served by a replacement");
    assert_eq!(
        m.created(),
        2,
        "the pre-evict connect was thrown away, one more opened"
    );
    assert_eq!(id, 1, "the second connection");
    assert_eq!(p.stats().closed_by(CloseReason::Evicted), 1);
}

/// A fleet of `pools` pools (`size` connections each, `min_idle = size`) on one simulated
/// database, each with two request loops, soft-evicting at the same instant. Returns the
/// peak number of connects in progress at the database and the time until every pool is
/// full again.
async fn fleet_rollover(pools: usize, size: usize, max_opens: usize) -> (u64, Duration) {
    let m = SimManager::new();
    m.with_reset(false);
    m.latency(Op::Connect, Duration::from_millis(50));
    m.latency(Op::Query, Duration::from_millis(2));
    let fleet: Vec<Pool<SimManager>> = (0..pools)
        .map(|i| {
            Pool::builder(m.clone())
                .name(format!("fleet-{max_opens}-{i}"))
                .max_size(size)
                .min_idle(size)
                .max_concurrent_opens(max_opens)
                .keepalive_interval(None)
                .acquire_timeout(Duration::from_secs(30))
                .build()
                .expect("valid")
        })
        .collect();
    // Every connection open (none still being opened).
    let full = |fleet: &[Pool<SimManager>]| {
        fleet.iter().all(|p| {
            let s = p.status();
            s.size == size && s.opening == 0
        })
    };
    while !full(&fleet) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for p in &fleet {
        for _ in 0..2 {
            let (p, m, stop) = (p.clone(), m.clone(), stop_rx.clone());
            load.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    let mut c = p.get().await.expect("served during the rollover");
                    use poolguard_testkit::sim::Workload as _;
                    m.work(&mut c).await.expect("query");
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let created_before = m.created();
    m.reset_connecting_max();
    let t0 = Instant::now();
    for p in &fleet {
        p.soft_evict_all();
    }
    // Full again: every pool has `size` connections, all of the new epoch.
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let replaced = m.created() - created_before;
        if replaced >= (pools * size) as u64 && full(&fleet) {
            break;
        }
    }
    let refill = t0.elapsed();
    let _ = stop_tx.send(true);
    for t in load {
        t.await.expect("load task");
    }
    let evicted: u64 = fleet
        .iter()
        .map(|p| p.stats().closed_by(CloseReason::Evicted))
        .sum();
    assert_eq!(
        evicted,
        (pools * size) as u64,
        "every old connection retired"
    );
    (m.connecting_max(), refill)
}

#[tokio::test(start_paused = true)]
async fn a_fleet_soft_evicting_at_once_stays_within_max_concurrent_opens() {
    let (pools, size) = (8, 10);
    let (paced_peak, paced_refill) = fleet_rollover(pools, size, 2).await;
    let (storm_peak, storm_refill) = fleet_rollover(pools, size, size).await;
    eprintln!(
        "fleet of {pools} pools x {size}: paced (max_concurrent_opens 2): peak {paced_peak} connects in progress, refilled in {paced_refill:?}; unpaced (max_concurrent_opens {size}): peak {storm_peak}, refilled in {storm_refill:?}"
    );
    assert!(
        paced_peak <= (pools * 2) as u64,
        "peak concurrent connects {paced_peak} above the fleet's limit {}",
        pools * 2
    );
    assert_eq!(
        paced_peak,
        (pools * 2) as u64,
        "the limit is reached: the measure measures"
    );
    assert!(
        storm_peak > paced_peak,
        "without pacing the same rollover is a storm"
    );
    // 10 connections two at a time at 50 ms each: five rounds.
    assert!(
        paced_refill >= Duration::from_millis(250),
        "{paced_refill:?}"
    );
    assert!(
        paced_refill < Duration::from_millis(400),
        "{paced_refill:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_refill_after_an_evict_stops_at_the_open_breaker() {
    let m = SimManager::new();
    m.with_reset(false);
    let p = Pool::builder(m.clone())
        .max_size(10)
        .min_idle(10)
        .max_concurrent_opens(4)
        .breaker_threshold(Some(3))
        .keepalive_interval(None)
        .build()
        .expect("valid");
    while p.status().idle < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m.set_refuse(true);
    let before = m.attempts();
    p.soft_evict_all();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = m.attempts() - before;
    // The first wave (4 at once) opens the breaker; then only half-open probes, backing
    // off from 25 ms (doubling), i.e. a handful in two seconds.
    assert!(
        attempts <= 4 + 8,
        "{attempts} connects against a refusing database"
    );
    assert!(p.stats().breaker_opened >= 1);
    m.set_refuse(false);
    while p.status().idle < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn retain_closes_what_the_predicate_refuses_and_sees_the_metrics() {
    let m = SimManager::new();
    let p = pool(&m, 4);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(p.get().await.expect("get"));
    }
    drop(all);
    // Use connection 0 three more times (LIFO: the last returned comes first).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let first = p.get().await.expect("get");
    let used = first.id();
    drop(first);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut seen: Vec<ConnMetrics> = Vec::new();
    let closed = p.retain(|_conn, metrics| {
        // The pool's lock is not held: calling the pool is fine.
        assert_eq!(
            p.status().idle,
            0,
            "idle ones are out while the predicate runs"
        );
        seen.push(metrics);
        metrics.id % 2 == 0
    });
    assert_eq!(closed, 2);
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.age, Duration::from_secs(15));
        if s.id == used {
            assert_eq!((s.uses, s.idle_for), (2, Duration::from_secs(5)));
        } else {
            assert_eq!((s.uses, s.idle_for), (1, Duration::from_secs(15)));
        }
    }
    settle().await;
    let s = p.status();
    assert_eq!((s.idle, s.size), (2, 2), "{s:?}");
    assert_eq!(p.stats().closed_by(CloseReason::Evicted), 2);
    let ids: Vec<u64> = {
        let a = p.get().await.expect("get");
        let b = p.get().await.expect("get");
        vec![a.id(), b.id()]
    };
    assert!(ids.iter().all(|id| id % 2 == 0), "the kept ones: {ids:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_retain_predicate_keeps_the_connection() {
    let m = SimManager::new();
    let p = pool(&m, 2);
    let (a, b) = (p.get().await.expect("get"), p.get().await.expect("get"));
    drop((a, b));
    let closed = p.retain(|_, metrics| {
        if metrics.id == 0 {
            panic!("predicate bug");
        }
        false
    });
    assert_eq!(closed, 1);
    settle().await;
    let s = p.status();
    assert_eq!(
        (s.idle, s.size),
        (1, 1),
        "the panicking verdict kept it: {s:?}"
    );
}
