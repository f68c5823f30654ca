//! Every public API that takes a `Duration`, called with `Duration::MAX` and `Duration::ZERO`.
//!
//! None may panic ("overflow when adding duration to instant"), and each has a defined
//! meaning: at run time `MAX` is "as long as it takes" and `ZERO` is "do not wait"; a setting
//! checked when something is built may instead be refused with a typed error naming it.
//! Async waits run on tokio's paused clock, so the waits below are exact, not timed.

mod reclaim_common;

use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{Builder, Error, Phase, Pool, MAX_DURATION};
use poolguard::diag::Histogram;
use poolguard::object::{self, Trimmer};
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::drops::DropCounter;
use poolguard_testkit::sim::{Behavior, Faults, Op, SimManager};
use reclaim_common::{blocker, quiet, EVENTUALLY};
use tokio::time::Instant;

const EXTREMES: [Duration; 2] = [Duration::MAX, Duration::ZERO];

type Setter = fn(Builder<SimManager>, Duration) -> Builder<SimManager>;

/// Every duration setting of the connection pool: name, setter.
fn conn_settings() -> Vec<(&'static str, Setter)> {
    vec![
        ("acquire_timeout", |b, d| b.acquire_timeout(d)),
        ("connect_timeout", |b, d| b.connect_timeout(d)),
        ("validation_timeout", |b, d| b.validation_timeout(d)),
        ("reset_timeout", |b, d| b.reset_timeout(d)),
        ("close_timeout", |b, d| b.close_timeout(d)),
        ("validation_bypass", |b, d| b.validation_bypass(d)),
        ("keepalive_interval", |b, d| b.keepalive_interval(Some(d))),
        ("idle_timeout", |b, d| b.idle_timeout(Some(d))),
        ("max_lifetime", |b, d| b.max_lifetime(Some(d))),
        ("leak_threshold", |b, d| b.leak_threshold(Some(d))),
        ("abandon_timeout", |b, d| b.abandon_timeout(Some(d))),
        ("breaker_backoff", |b, d| b.breaker_backoff(d)),
        ("breaker_max_backoff", |b, d| b.breaker_max_backoff(d)),
        ("maintenance_interval", |b, d| b.maintenance_interval(d)),
    ]
}

#[tokio::test(start_paused = true)]
async fn conn_settings_take_max_and_zero_without_panicking() {
    for (field, set) in conn_settings() {
        // MAX is past MAX_DURATION: always refused, naming the field.
        let err = set(Pool::builder(SimManager::new()), Duration::MAX)
            .build()
            .expect_err(field);
        // (A MAX breaker_backoff is also above breaker_max_backoff; either rule names it.)
        assert!(
            err.field == field || err.to_string().contains(field),
            "{err}"
        );
        // ZERO: either refused naming the field, or a pool that serves.
        match set(Pool::builder(SimManager::new()), Duration::ZERO).build() {
            Err(err) => assert_eq!(err.field, field, "{err}"),
            Ok(pool) => {
                let c = pool
                    .get()
                    .await
                    .unwrap_or_else(|e| panic!("{field}=0: {e}"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(5)).await;
                let c = pool
                    .get()
                    .await
                    .unwrap_or_else(|e| panic!("{field}=0: {e}"));
                drop(c);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn conn_settings_at_the_limit_serve_and_fail_without_overflow() {
    let m = SimManager::new();
    let mut b = Pool::builder(m.clone()).min_idle(1).max_size(2);
    for (_, set) in conn_settings() {
        b = set(b, MAX_DURATION);
    }
    let pool = b
        .breaker_threshold(Some(1))
        .build()
        .expect("one year is accepted");
    let c = pool.get().await.expect("get");
    let second = pool.get().await.expect("second");
    drop((c, second));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    drop(pool.get().await.expect("after an hour idle"));
    // A breaker backoff of a year: opening it computes `now + 1 year` without overflow.
    m.set_refuse(true);
    let held = (
        pool.get().await.expect("idle"),
        pool.get().await.expect("idle"),
    );
    pool.resize(3).expect("resize");
    let err = pool.get().await.expect_err("refused");
    assert!(err.to_string().contains("refused"), "{err}");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn wait_closed_max_waits_for_the_last_close_and_zero_does_not_wait() {
    // Nothing to close: both return at once.
    let pool = Pool::builder(SimManager::new()).build().expect("valid");
    pool.close();
    for d in EXTREMES {
        let t0 = Instant::now();
        assert!(pool.wait_closed(d).await);
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    // A close that hangs until close_timeout (5 s) cuts it off.
    let m = SimManager::new();
    m.set(Op::Close, Behavior::Hang);
    let pool = Pool::builder(m.clone())
        .close_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    drop(pool.get().await.expect("get"));
    pool.close();
    let t0 = Instant::now();
    assert!(
        !pool.wait_closed(Duration::ZERO).await,
        "a close is pending"
    );
    assert_eq!(t0.elapsed(), Duration::ZERO, "ZERO does not wait");
    assert!(
        pool.wait_closed(Duration::MAX).await,
        "MAX waits until it is done"
    );
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "...which is close_timeout"
    );
    assert_eq!(pool.stats().close_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn simulated_latency_of_max_is_cut_by_the_pool_deadlines() {
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::MAX);
    m.set_extra_latency(Duration::from_millis(1)); // MAX + 1 ms saturates
    let pool = Pool::builder(m.clone())
        .connect_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .expect("valid");
    let err = pool.get().await.expect_err("the connect never finishes");
    // Cut off by connect_timeout (not a panicked connect task leaving the get to time out).
    assert!(
        matches!(
            err,
            Error::PhaseTimeout {
                phase: Phase::Connect,
                ..
            }
        ),
        "{err}"
    );
}

/// `Pool::trimmer` returns the handle, or (when an interval is refused) a typed error;
/// this test accepts both shapes.
trait TrimmerOutcome: std::fmt::Debug {
    fn handle(&self) -> Option<&Trimmer>;
}

impl TrimmerOutcome for Trimmer {
    fn handle(&self) -> Option<&Trimmer> {
        Some(self)
    }
}

impl<E: std::fmt::Debug> TrimmerOutcome for Result<Trimmer, E> {
    fn handle(&self) -> Option<&Trimmer> {
        self.as_ref().ok()
    }
}

fn check_trimmer(outcome: &dyn TrimmerOutcome, interval: Duration) {
    let shown = format!("{outcome:?}");
    let Some(t) = outcome.handle() else {
        assert!(!shown.is_empty(), "a refusal says why");
        return;
    };
    // ZERO is "do not wait": answered at once.
    assert!(t.wait_for_cycles(0, Duration::ZERO));
    if interval == Duration::MAX {
        assert!(!t.wait_for_cycles(1, Duration::ZERO), "no cycle yet");
        assert_eq!(t.cycles(), 0);
    } else {
        // A zero interval accepted as such (or clamped to a floor) still runs cycles.
        assert!(t.wait_for_cycles(2, EVENTUALLY), "{shown}");
    }
    // MAX is "as long as it takes": returns as soon as the condition holds.
    assert!(t.wait_for_cycles(t.cycles(), Duration::MAX));
}

#[test]
fn object_trimmer_and_its_waits_take_max_and_zero() {
    let pool = object::Pool::builder(String::new).build().expect("valid");
    for interval in EXTREMES {
        let outcome = pool.trimmer(interval);
        check_trimmer(&outcome, interval);
        drop(outcome); // stops and joins the thread, even one waiting a century
    }
}

#[test]
fn object_hold_threshold_max_never_reports_and_zero_is_refused() {
    assert!(object::Pool::builder(String::new)
        .hold_threshold(Duration::ZERO)
        .build()
        .is_err());
    // A clock at its extremes (and going backwards) with the largest threshold.
    let ticks = Arc::new(parking_lot::Mutex::new(vec![Duration::ZERO, Duration::MAX]));
    let clock = Arc::clone(&ticks);
    let pool = object::Pool::builder(String::new)
        .hold_threshold(Duration::MAX)
        .clock(move || clock.lock().pop().unwrap_or(Duration::ZERO))
        .build()
        .expect("valid");
    let g = pool.get(); // at MAX
    assert!(pool.long_holds().is_empty());
    drop(g); // at ZERO: held for "less than nothing", saturated
    assert_eq!(pool.stats().long_holds, 0);
}

#[test]
fn reclaimer_flush_and_shutdown_take_max_and_zero() {
    let r = quiet("dur-flush").build().expect("valid");
    for d in EXTREMES {
        assert!(r.flush(d).is_ok(), "nothing pending");
    }
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    assert!(r.defer(b).is_queued());
    ctl.wait_started();
    assert_eq!(
        r.flush(Duration::ZERO).unwrap_err().pending,
        1,
        "ZERO does not wait"
    );
    ctl.release();
    assert!(r.flush(Duration::MAX).is_ok(), "MAX waits until it is done");
    assert_eq!(counter.dropped(), 1);
    let report = r.shutdown(Duration::MAX);
    assert!(report.flushed);

    // shutdown(ZERO) with a drop still running: returns (bounded), naming it.
    let r = quiet("dur-shutdown").build().expect("valid");
    let (b, ctl) = blocker(&counter);
    assert!(r.defer(b).is_queued());
    ctl.wait_started();
    let report = r.shutdown(Duration::ZERO);
    assert!(!report.flushed);
    assert_eq!(report.threads_abandoned, 1, "{report:?}");
    ctl.release();
}

#[test]
fn reclaimer_builder_durations_at_the_extremes_build_or_refuse() {
    for d in EXTREMES {
        for b in [
            quiet("dur-slow").slow_threshold(d),
            quiet("dur-stuck").stuck_threshold(d),
            Reclaimer::builder()
                .name("dur-pair")
                .slow_threshold(d)
                .stuck_threshold(d),
            quiet("dur-shut").shutdown_timeout(d),
        ] {
            match b.build() {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(r) => {
                    assert!(r.defer(String::from("x")).is_queued());
                    assert!(r.flush(EVENTUALLY).is_ok());
                    drop(r); // shuts down under its own shutdown_timeout
                }
            }
        }
    }
    // The refusals the rules promise.
    assert!(quiet("z").shutdown_timeout(Duration::ZERO).build().is_err());
    assert!(quiet("z").slow_threshold(Duration::ZERO).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn reclaimer_async_closes_and_flush_take_max_and_zero() {
    let r = quiet("dur-async")
        .runtime(tokio::runtime::Handle::current())
        .build()
        .expect("valid");
    // ZERO: the close is cut off at once; a flush with MAX waits for exactly that.
    assert!(r
        .close_async("zero", Duration::ZERO, std::future::pending())
        .is_queued());
    let t0 = Instant::now();
    r.flush_async(Duration::MAX).await.expect("flushed");
    assert_eq!(t0.elapsed(), Duration::ZERO, "cut off at once");
    assert_eq!(r.stats().closes_timed_out, 1);
    // MAX: the close runs until it finishes.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    assert!(r
        .close_async("max", Duration::MAX, async move {
            let _ = rx.await;
        })
        .is_queued());
    assert_eq!(
        r.flush_async(Duration::ZERO).await.unwrap_err().pending,
        1,
        "the MAX close is still running; ZERO does not wait"
    );
    assert_eq!(t0.elapsed(), Duration::ZERO);
    let flush = tokio::spawn({
        let r = r.clone();
        async move { r.flush_async(Duration::MAX).await }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!flush.is_finished(), "MAX keeps waiting");
    tx.send(()).expect("close still running");
    flush.await.expect("join").expect("flushed");
    let s = r.stats();
    assert_eq!((s.closes_timed_out, s.closes_completed), (1, 1), "{s:?}");
    drop(r);
}

#[test]
fn histogram_records_max_and_zero() {
    let h = Histogram::new();
    for d in EXTREMES {
        h.record(d);
    }
    let s = h.snapshot();
    assert_eq!(s.count(), 2);
    assert!(
        s.max() >= Duration::from_secs(500 * 365 * 86_400),
        "saturated, not wrapped"
    );
    let _ = (s.p50(), s.p99(), s.mean(), s.sum());
}
