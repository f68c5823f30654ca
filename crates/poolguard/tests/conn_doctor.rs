//! The doctor tells a saturated pool from a cold one from one that waits for connects, and
//! names connect failures before the breaker opens. Each finding is checked on a scenario
//! that produces it and on one that must not. Paused clock: the scenarios are deterministic.

use std::time::Duration;

use poolguard::conn::Pool;
use poolguard::diag::{Finding, Severity};
use poolguard_testkit::sim::{Behavior, Faults, Op, SimManager};

fn find<'a>(findings: &'a [Finding], code: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.code == code)
}

fn codes(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.code).collect()
}

/// `tasks` tasks each do `rounds` gets, holding each connection for `hold`.
async fn load(pool: &Pool<SimManager>, tasks: usize, rounds: usize, hold: Duration) {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let c = pool.get().await.expect("get");
                tokio::time::sleep(hold).await;
                drop(c);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
}

fn sim() -> SimManager {
    let m = SimManager::new();
    m.with_reset(false)
        .latency(Op::Connect, Duration::from_millis(20));
    m
}

#[tokio::test(start_paused = true)]
async fn a_saturated_pool_is_saturated_not_cold() {
    for min_idle in [0, 2] {
        let p = Pool::builder(sim())
            .max_size(2)
            .min_idle(min_idle)
            .build()
            .expect("valid");
        load(&p, 8, 50, Duration::from_millis(10)).await;
        let t = p.stats();
        let f = p.doctor();
        let sat =
            find(&f, "conn.saturated").unwrap_or_else(|| panic!("min_idle {min_idle}: {f:?}"));
        assert!(
            sat.message
                .contains(&format!("{} of {} gets", t.waited_saturated, t.gets)),
            "evidence: {sat}"
        );
        assert!(sat.message.contains("all 2 connections"), "{sat}");
        assert!(sat.fix.contains("max_size"), "{sat}");
        assert!(t.waited_saturated * 10 > t.gets * 9, "{t:?}");
        assert!(find(&f, "conn.cold-start").is_none(), "{:?}", codes(&f));
        assert!(
            find(&f, "conn.waits-for-connect").is_none(),
            "{:?}",
            codes(&f)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_with_room_gets_no_wait_finding() {
    let p = Pool::builder(sim()).max_size(8).build().expect("valid");
    load(&p, 2, 50, Duration::from_millis(10)).await;
    let t = p.stats();
    assert!(t.waited > 0 && t.waited_saturated == 0, "{t:?}");
    let f = p.doctor();
    assert!(f.is_empty(), "{f:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pool_emptied_between_bursts_is_a_cold_start_unless_min_idle_keeps_it_warm() {
    for min_idle in [0, 1] {
        let p = Pool::builder(sim())
            .min_idle(min_idle)
            .idle_timeout(Some(Duration::from_secs(1)))
            .maintenance_interval(Duration::from_millis(100))
            .build()
            .expect("valid");
        tokio::time::sleep(Duration::from_millis(50)).await; // min_idle's open
        for _ in 0..10 {
            drop(p.get().await.expect("get"));
            tokio::time::sleep(Duration::from_secs(3)).await; // idle past idle_timeout
        }
        let t = p.stats();
        let f = p.doctor();
        if min_idle == 0 {
            assert_eq!(t.waited_cold, 10, "every get found the pool empty: {t:?}");
            let cold = find(&f, "conn.cold-start").expect("cold start");
            assert!(cold.message.contains("10 of 10 gets"), "{cold}");
            assert!(cold.fix.contains("min_idle"), "{cold}");
        } else {
            assert_eq!(t.waited, 0, "{t:?}");
            assert!(f.is_empty(), "{f:?}");
        }
        assert!(find(&f, "conn.saturated").is_none(), "{:?}", codes(&f));
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_that_keeps_opening_below_max_size_says_it_waits_for_connects() {
    let m = sim();
    let p = Pool::builder(m.clone())
        .max_size(8)
        .min_idle(1)
        .build()
        .expect("valid");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Four tasks, each connection thrown away after one use: gets wait for new connects.
    let mut handles = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..20 {
                let mut c = p.get().await.expect("get");
                tokio::time::sleep(Duration::from_millis(5)).await;
                c.mark_broken();
            }
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
    let t = p.stats();
    let f = p.doctor();
    let w = find(&f, "conn.waits-for-connect").unwrap_or_else(|| panic!("{t:?} {f:?}"));
    assert!(
        w.message
            .contains(&format!("{} of {} gets", t.waited_growing, t.gets)),
        "{w}"
    );
    assert!(find(&f, "conn.saturated").is_none(), "{:?}", codes(&f));
}

#[tokio::test(start_paused = true)]
async fn connect_failures_are_named_before_the_breaker_opens() {
    for threshold in [Some(5), None] {
        let m = sim();
        let p = Pool::builder(m.clone())
            .breaker_threshold(threshold)
            .acquire_timeout(Duration::from_secs(1))
            .build()
            .expect("valid");
        assert!(
            find(&p.doctor(), "conn.connect-failures").is_none(),
            "healthy"
        );
        m.set_refuse(true);
        for _ in 0..2 {
            let e = p.get().await.expect_err("refused");
            assert!(e.to_string().contains("refused"), "{e}");
        }
        let f = p.doctor();
        assert!(find(&f, "conn.breaker-open").is_none(), "not open yet");
        let c = find(&f, "conn.connect-failures").unwrap_or_else(|| panic!("{f:?}"));
        assert_eq!(c.severity, Severity::Critical, "no connection at all: {c}");
        assert!(c.message.contains("2 consecutive connect failures"), "{c}");
        assert!(
            c.message
                .contains("last error: connect: connection refused"),
            "names the last error: {c}"
        );
        match threshold {
            Some(_) => assert!(c.message.contains("opens after 5"), "{c}"),
            None => assert!(c.message.contains("breaker is off"), "{c}"),
        }
        // Back: the first success clears it.
        m.set_refuse(false);
        drop(p.get().await.expect("served again"));
        let f = p.doctor();
        assert!(find(&f, "conn.connect-failures").is_none(), "{f:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn validation_failures_are_named_before_anything_else_fails() {
    let m = sim();
    let p = Pool::builder(m.clone())
        .max_size(2)
        .keepalive_interval(Some(Duration::from_secs(1)))
        .build()
        .expect("valid");
    // Two idle connections, validated by keepalive from now on.
    let (a, b) = (p.get().await.expect("a"), p.get().await.expect("b"));
    drop((a, b));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        find(&p.doctor(), "conn.connect-failures").is_none(),
        "validations that pass are no finding: {:?}",
        codes(&p.doctor())
    );

    m.set(Op::Validate, Behavior::Err);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = p.stats();
    assert!(t.validation_failures >= 1, "keepalive validated: {t:?}");
    let f = p.doctor();
    let c = find(&f, "conn.connect-failures").unwrap_or_else(|| panic!("{:?}", codes(&f)));
    assert!(
        c.message.contains(&format!(
            "{} failed validations since the last success",
            t.validation_failures
        )),
        "{c}"
    );
    assert!(c.message.contains("last error: "), "{c}");
    assert!(!c.message.contains("last error: none"), "names it: {c}");

    // The next success clears it.
    m.set(Op::Validate, Behavior::Ok);
    drop(p.get().await.expect("a fresh connection"));
    let f = p.doctor();
    assert!(
        find(&f, "conn.connect-failures").is_none(),
        "{:?}",
        codes(&f)
    );
}

/// A pool whose idle connections hang on validation (a node that died under them) while new
/// connects hang too; `validation` is the pool's `validation_timeout`, acquire_timeout 3 s.
/// Returns the doctor's findings after one get, and that get's outcome.
async fn dead_node(validation: Duration) -> (Vec<Finding>, bool) {
    let m = sim();
    let p = Pool::builder(m.clone())
        .max_size(2)
        .min_idle(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(1))
        .validation_timeout(validation)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    p.ready(Duration::from_secs(5)).await.expect("warm");
    m.set(Op::Validate, Behavior::Hang);
    m.set(Op::Connect, Behavior::Hang);
    // Idle past the bypass window: the next checkout validates.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ok = p.get().await.is_ok();
    (p.doctor(), ok)
}

#[tokio::test(start_paused = true)]
async fn a_validation_timeout_near_the_acquire_timeout_is_named_first() {
    let (f, ok) = dead_node(Duration::from_secs(3)).await;
    assert!(!ok, "nothing answers: the get cannot succeed");
    let first = f.first().unwrap_or_else(|| panic!("no finding"));
    assert_eq!(first.code, "conn.slow-validation", "{:?}", codes(&f));
    assert_eq!(first.severity, Severity::Critical);
    assert!(first.message.contains("validation_timeout (3s)"), "{first}");
    assert!(
        first
            .message
            .contains("at least all of acquire_timeout (3s)"),
        "{first}"
    );
    assert!(first.fix.contains("validation_timeout"), "{first}");

    // The same dead node with a short validation timeout: the timeouts are the node's fault,
    // not the setting's, and the other findings say so.
    let (f, _) = dead_node(Duration::from_millis(200)).await;
    assert!(
        find(&f, "conn.slow-validation").is_none(),
        "a 200 ms validation_timeout is no trap: {:?}",
        codes(&f)
    );
    assert!(!f.is_empty(), "the dead node is still named: {f:?}");
}
