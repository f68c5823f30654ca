//! The reclaimer explains itself: per-label percentiles, Prometheus text, doctor findings.

mod reclaim_common;

use poolguard::diag::PrometheusWriter;
use poolguard_testkit::drops::DropCounter;
use reclaim_common::{quiet, EVENTUALLY};

#[test]
fn per_label_percentiles_and_prometheus_text() {
    let r = quiet("report").build().unwrap();
    let counter = DropCounter::new();
    for i in 0..50u64 {
        r.defer_labelled("small", counter.track(i));
        r.defer_labelled("big", counter.track(vec![0u8; 1 << 16]));
    }
    r.flush(EVENTUALLY).unwrap();
    let s = r.stats();
    let labels: Vec<_> = s.labels.iter().map(|l| l.label).collect();
    assert_eq!(labels, ["big", "small"]);
    for l in &s.labels {
        assert_eq!(l.completed, 50);
        assert_eq!(l.run_time.count(), 50);
        assert!(l.run_time.p50() <= l.run_time.p95());
        assert!(l.run_time.p95() <= l.run_time.p99());
        assert!(l.run_time.p99() <= l.run_time.max());
    }
    assert!(r.doctor().is_empty(), "healthy: {:?}", r.doctor());
    let mut w = PrometheusWriter::new();
    r.write_prometheus(&mut w);
    let text = w.finish();
    assert!(
        text.contains("poolguard_reclaim_completed_total{reclaimer=\"report\"} 100"),
        "{text}"
    );
    assert!(
        text.contains("poolguard_reclaim_run_seconds_count{reclaimer=\"report\",job=\"big\"} 50"),
        "{text}"
    );
    assert!(text.contains("poolguard_reclaim_queued_peak"), "{text}");
}
