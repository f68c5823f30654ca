//! The reclaimer explains itself: per-label percentiles, Prometheus text, doctor findings.
//!
//! The figures are asserted against a distribution the test makes: the reclaimer runs on a
//! manual clock that only the jobs' drops (and the test) advance, so every queue wait and run
//! time is known exactly.

mod reclaim_common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::diag::{HistogramSnapshot, PrometheusWriter};
use poolguard_testkit::drops::DropCounter;
use reclaim_common::{blocker, quiet, EVENTUALLY};

/// A clock that stands still until advanced.
#[derive(Clone)]
struct ManualClock {
    base: Instant,
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(SeqCst))
    }
    fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, SeqCst);
    }
}

/// A value whose drop takes exactly `0` on the manual clock: it advances the clock by it.
struct Takes(Duration, ManualClock);

impl Drop for Takes {
    fn drop(&mut self) {
        self.1.advance(self.0);
    }
}

/// The `q` quantile by nearest rank (what the histogram estimates).
fn nearest_rank(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// The histogram's quantiles are the true ones or at most 12.5 % above, never above the max.
fn assert_matches(what: &str, h: &HistogramSnapshot, mut values: Vec<Duration>) {
    values.sort();
    assert_eq!(h.count(), values.len() as u64, "{what}: count");
    assert_eq!(
        h.max(),
        *values.last().expect("values"),
        "{what}: max is exact"
    );
    for (q, got) in [(0.5, h.p50()), (0.95, h.p95()), (0.99, h.p99())] {
        let want = nearest_rank(&values, q);
        assert!(
            got >= want && got.as_nanos() * 8 <= want.as_nanos() * 9,
            "{what}: q{q} is {got:?}, the true value is {want:?}"
        );
    }
}

#[test]
fn figures_match_the_distribution_of_waits_and_run_times_the_test_made() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let r = quiet("report")
        .workers(1)
        .clock(move || c.now())
        .build()
        .unwrap();
    let counter = DropCounter::new();
    // The one worker is held by a gate job started at t = 0, so everything below queues.
    let (gate, ctl) = blocker(&counter);
    r.defer_labelled("gate", gate);
    ctl.wait_started();
    // Queued at t = 0: job i of "uniform" runs (i + 1) ms; "instant" jobs run 0.
    for i in 0..100u64 {
        r.defer_labelled(
            "uniform",
            Takes(Duration::from_millis(i + 1), clock.clone()),
        );
    }
    for _ in 0..50 {
        r.defer_labelled("instant", Takes(Duration::ZERO, clock.clone()));
    }
    // The gate runs 1 s, then the queue drains in order on the one worker.
    clock.advance(Duration::from_secs(1));
    ctl.release();
    r.flush(EVENTUALLY).unwrap();

    let ms = Duration::from_millis;
    let uniform_run: Vec<Duration> = (1..=100).map(ms).collect();
    // Job i starts once the gate and jobs 0..i have run: 1000 + (1 + 2 + ... + i) ms.
    let uniform_wait: Vec<Duration> = (0..100u64).map(|i| ms(1000 + i * (i + 1) / 2)).collect();
    let instant_wait = ms(1000 + 5050);

    let s = r.stats();
    let labels: Vec<_> = s.labels.iter().map(|l| l.label).collect();
    assert_eq!(labels, ["gate", "instant", "uniform"]);
    let label = |name: &str| s.labels.iter().find(|l| l.label == name).expect("label");
    let u = label("uniform");
    assert_eq!(u.completed, 100);
    assert_matches("uniform run time", &u.run_time, uniform_run.clone());
    assert_matches("uniform queue wait", &u.queue_wait, uniform_wait.clone());
    let i = label("instant");
    assert_matches("instant run time", &i.run_time, vec![Duration::ZERO; 50]);
    assert_matches("instant queue wait", &i.queue_wait, vec![instant_wait; 50]);
    let g = label("gate");
    assert_matches("gate run time", &g.run_time, vec![ms(1000)]);
    assert_matches("gate queue wait", &g.queue_wait, vec![Duration::ZERO]);
    // The whole reclaimer: every job of every label.
    let all_run = [uniform_run, vec![Duration::ZERO; 50], vec![ms(1000)]].concat();
    assert_matches("run time", &s.run_time, all_run);
    let all_wait = [uniform_wait, vec![instant_wait; 50], vec![Duration::ZERO]].concat();
    assert_matches("queue wait", &s.queue_wait, all_wait);

    assert!(r.doctor().is_empty(), "healthy: {:?}", r.doctor());
    let mut w = PrometheusWriter::new();
    r.write_prometheus(&mut w);
    let text = w.finish();
    assert!(
        text.contains("poolguard_reclaim_completed_total{reclaimer=\"report\"} 151"),
        "{text}"
    );
    assert!(
        text.contains(
            "poolguard_reclaim_run_seconds_count{reclaimer=\"report\",job_label=\"uniform\"} 100"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "poolguard_reclaim_run_seconds_sum{reclaimer=\"report\",job_label=\"uniform\"} 5.05"
        ),
        "the sum of 1..=100 ms: {text}"
    );
    assert!(text.contains("poolguard_reclaim_queued_peak"), "{text}");
}
