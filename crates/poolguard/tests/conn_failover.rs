//! Automatic soft-evict on a failover signature (`failover_burst`): off by default; a burst
//! of errors of one failover class within the window soft-evicts once; the cooldown keeps a
//! sustained signature from evicting in a loop; classes do not add up; the refill is paced
//! by `max_concurrent_opens` (measured on the simulator's own count of connects in
//! progress); the doctor names the class, the count and the window. Paused clock.

use std::time::Duration;

use poolguard::conn::{CloseReason, ErrorClass, Manager, Pool, MAX_FAILOVER_BURST};
use poolguard::diag::Finding;
use poolguard_testkit::sim::{Op, SimConn, SimError, SimManager, Workload};

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn find<'a>(findings: &'a [Finding], code: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.code == code)
}

fn sim() -> SimManager {
    let m = SimManager::new();
    m.with_reset(false);
    m
}

fn builder<M: Manager>(m: M, max: usize) -> poolguard::conn::Builder<M> {
    Pool::builder(m)
        .max_size(max)
        .min_idle(max)
        .acquire_timeout(Duration::from_secs(5))
        .keepalive_interval(None)
        .validation_bypass(Duration::from_secs(3600))
}

/// Fills the pool to `n` idle connections.
async fn warm<M: Manager>(p: &Pool<M>, n: usize) {
    for _ in 0..200 {
        if p.status().idle >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pool did not warm up: {:?}", p.status());
}

/// One query on each of `n` connections held at once, each reporting its error.
async fn query_all(p: &Pool<SimManager>, m: &SimManager, n: usize) -> Vec<ErrorClass> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(p.get().await.expect("get"));
    }
    let mut classes = Vec::new();
    for c in &mut held {
        if let Err(e) = m.work(c).await {
            classes.push(c.report(&e));
        }
    }
    classes
}

#[tokio::test(start_paused = true)]
async fn off_by_default_a_burst_evicts_nothing() {
    let m = sim();
    let p = builder(m.clone(), 4).build().expect("valid");
    assert_eq!(p.config().failover_burst, None, "off by default");
    warm(&p, 4).await;
    m.fail_over();
    let classes = query_all(&p, &m, 4).await;
    assert_eq!(classes, [ErrorClass::Fatal; 4], "read-only is fatal");
    settle().await;
    let t = p.stats();
    assert_eq!((t.soft_evictions, t.auto_soft_evicts), (0, 0));
    assert_eq!(t.closed_by(CloseReason::Evicted), 0);
    assert_eq!(
        t.closed_by(CloseReason::Broken),
        4,
        "each reported one closed"
    );
    assert!(find(&p.doctor(), "conn.failover").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_one_class_soft_evicts_once_and_the_doctor_names_it() {
    let m = sim();
    let p = builder(m.clone(), 5)
        .failover_burst(Some(3))
        .failover_window(Duration::from_secs(10))
        .build()
        .expect("valid");
    warm(&p, 5).await;
    m.fail_over();
    // Three held connections fail; two stay idle (old server too).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(p.get().await.expect("get"));
    }
    for (i, c) in held.iter_mut().enumerate() {
        let e = m.work(c).await.expect_err("read-only");
        assert_eq!(e, SimError::ReadOnly);
        c.report(&e);
        let t = p.stats();
        let want = u64::from(i == 2);
        assert_eq!(t.auto_soft_evicts, want, "after error {}", i + 1);
    }
    settle().await;
    let t = p.stats();
    assert_eq!((t.soft_evictions, t.auto_soft_evicts), (1, 1));
    assert_eq!(
        t.closed_by(CloseReason::Evicted),
        2,
        "the idle ones, at once"
    );
    drop(held);
    settle().await;
    // The refill: min_idle new connections, all on the new primary.
    warm(&p, 5).await;
    assert_eq!(m.alive(), 5);
    let classes = query_all(&p, &m, 5).await;
    assert!(
        classes.is_empty(),
        "every new connection works: {classes:?}"
    );
    let doctor = p.doctor();
    let f = find(&doctor, "conn.failover").expect("reported");
    for needle in [
        "3 `read-only` errors",
        "failover_window 10s",
        "met in report",
        "1 automatic",
    ] {
        assert!(f.message.contains(needle), "{needle:?} in {}", f.message);
    }
    let text = p.prometheus();
    assert!(
        text.contains("poolguard_conn_auto_soft_evictions_total{pool=\""),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cooldown_keeps_a_sustained_signature_from_evicting_in_a_loop() {
    let m = sim();
    let p = builder(m.clone(), 2)
        .failover_burst(Some(2))
        .failover_window(Duration::from_secs(10))
        .failover_cooldown(Duration::from_secs(60))
        .build()
        .expect("valid");
    warm(&p, 2).await;
    m.fail_over();
    query_all(&p, &m, 2).await;
    settle().await;
    assert_eq!(p.stats().auto_soft_evicts, 1);
    // The "new primary" is read-only too (a replica that keeps answering so): every
    // connection fails, again and again, within the cooldown.
    for _ in 0..5 {
        warm(&p, 2).await;
        m.fail_over();
        query_all(&p, &m, 2).await;
        settle().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(p.stats().auto_soft_evicts, 1, "none during the cooldown");
    let doctor = p.doctor();
    let f = find(&doctor, "conn.failover").expect("reported");
    assert!(f.message.contains("10 more such errors"), "{}", f.message);
    // Past the cooldown a new burst evicts again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    warm(&p, 2).await;
    m.fail_over();
    query_all(&p, &m, 2).await;
    settle().await;
    assert_eq!(p.stats().auto_soft_evicts, 2);
}

/// The simulator with two failover classes: `read-only` and `admin-shutdown` (its lost
/// connection).
#[derive(Debug, Clone)]
struct TwoClasses(SimManager);

impl Manager for TwoClasses {
    type Connection = SimConn;
    type Error = SimError;
    async fn connect(&self) -> Result<SimConn, SimError> {
        self.0.connect().await
    }
    async fn validate(&self, conn: &mut SimConn) -> Result<(), SimError> {
        self.0.validate(conn).await
    }
    fn needs_reset(&self, _conn: &mut SimConn) -> bool {
        false
    }
    fn failover_class(&self, error: &SimError) -> Option<&'static str> {
        match error {
            SimError::ReadOnly => Some("read-only"),
            SimError::ConnectionLost => Some("admin-shutdown"),
            _ => None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn errors_of_mixed_classes_do_not_trigger() {
    let m = sim();
    let p = builder(TwoClasses(m.clone()), 6)
        .failover_burst(Some(3))
        .build()
        .expect("valid");
    warm(&p, 6).await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(p.get().await.expect("get"));
    }
    // Two of each class, and errors of no class at all: nothing adds up to 3 of one.
    for (i, c) in held.iter_mut().enumerate() {
        let e = match i % 3 {
            0 => SimError::ReadOnly,
            1 => SimError::ConnectionLost,
            _ => SimError::Injected(Op::Query),
        };
        assert_eq!(c.report(&e), ErrorClass::Fatal);
    }
    drop(held);
    settle().await;
    assert_eq!(p.stats().auto_soft_evicts, 0);
    assert!(find(&p.doctor(), "conn.failover").is_none());
    // A third of one class does.
    let mut c = p.get().await.expect("get");
    c.report(&SimError::ConnectionLost);
    assert_eq!(p.stats().auto_soft_evicts, 1);
    let doctor = p.doctor();
    let f = find(&doctor, "conn.failover").expect("reported");
    assert!(f.message.contains("`admin-shutdown`"), "{}", f.message);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_not_a_signature() {
    let m = sim();
    let p = builder(m.clone(), 2)
        .failover_burst(Some(1))
        .build()
        .expect("valid");
    let mut c = p.get().await.expect("get");
    assert_eq!(c.report(&SimError::BadQuery), ErrorClass::Transient);
    assert_eq!(p.stats().auto_soft_evicts, 0);
}

#[tokio::test(start_paused = true)]
async fn failed_validations_count_and_the_refill_is_paced() {
    let m = sim();
    m.latency(Op::Connect, Duration::from_millis(100));
    let p = builder(m.clone(), 8)
        .max_concurrent_opens(2)
        .validation_bypass(Duration::from_millis(1))
        .failover_burst(Some(3))
        .build()
        .expect("valid");
    warm(&p, 8).await;
    assert_eq!(m.created(), 8);
    tokio::time::sleep(Duration::from_millis(10)).await;
    m.fail_over();
    m.reset_connecting_max();
    // The checkout validates idle connections: three fail read-only, the burst evicts the
    // rest, and the get is served by a new connection.
    let c = p.get().await.expect("served by a replacement");
    let t = p.stats();
    assert_eq!(t.auto_soft_evicts, 1);
    assert_eq!(
        t.validation_failures, 3,
        "three validations, then the evict"
    );
    assert_eq!(t.closed_by(CloseReason::Validation), 3);
    assert_eq!(t.closed_by(CloseReason::Evicted), 5, "the other idle ones");
    let doctor = p.doctor();
    let f = find(&doctor, "conn.failover").expect("reported");
    assert!(f.message.contains("met in validate"), "{}", f.message);
    drop(c);
    warm(&p, 8).await;
    assert!(
        m.connecting_max() <= 2,
        "refill paced by max_concurrent_opens: peak {} connects at once",
        m.connecting_max()
    );
    assert_eq!(m.created(), 16, "one replacement per evicted connection");
    assert_eq!(m.alive(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_closed_pool_does_not_evict() {
    let m = sim();
    let p = builder(m.clone(), 1)
        .failover_burst(Some(1))
        .build()
        .expect("valid");
    let mut c = p.get().await.expect("get");
    p.close();
    c.report(&SimError::ReadOnly);
    assert_eq!(p.stats().auto_soft_evicts, 0);
}

#[tokio::test(start_paused = true)]
async fn build_validates_the_policy() {
    for (burst, window, cooldown, field) in [
        (Some(0), 10, 60, "failover_burst"),
        (Some(MAX_FAILOVER_BURST + 1), 10, 60, "failover_burst"),
        (Some(5), 0, 60, "failover_window"),
        (Some(5), 10, 0, "failover_cooldown"),
        (Some(5), 400 * 86_400, 60, "failover_window"),
    ] {
        let e = Pool::builder(sim())
            .failover_burst(burst)
            .failover_window(Duration::from_secs(window))
            .failover_cooldown(Duration::from_secs(cooldown))
            .build()
            .expect_err("refused");
        assert_eq!(e.field, field, "{e}");
    }
    Pool::builder(sim())
        .failover_burst(Some(MAX_FAILOVER_BURST))
        .build()
        .expect("the limit itself is accepted");
}
