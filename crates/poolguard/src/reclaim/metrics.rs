//! The reclaimer's figures as Prometheus text (metric names `poolguard_reclaim_*`, label
//! `reclaimer`).

use super::stats::ReclaimStats;
use crate::diag::PrometheusWriter;

impl ReclaimStats {
    /// Appends these figures to `w`, with label `reclaimer="<name>"` (and `job_label="<label>"`
    /// on per-label series).
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        let r = [("reclaimer", self.name.as_str())];
        let gauges = [
            (
                "poolguard_reclaim_queued",
                "Drops waiting.",
                self.queued as f64,
            ),
            (
                "poolguard_reclaim_queued_peak",
                "Peak drops waiting.",
                self.peak_queued as f64,
            ),
            (
                "poolguard_reclaim_running",
                "Drops running.",
                self.running as f64,
            ),
            (
                "poolguard_reclaim_threads",
                "Threads alive.",
                self.live_threads as f64,
            ),
            (
                "poolguard_reclaim_closes_in_flight",
                "Async closes running.",
                self.closes_in_flight as f64,
            ),
        ];
        for (name, help, v) in gauges {
            w.gauge(name, help, &r, v);
        }
        let counters = [
            (
                "poolguard_reclaim_deferred_total",
                "Values queued.",
                self.deferred,
            ),
            (
                "poolguard_reclaim_completed_total",
                "Drops completed on workers.",
                self.completed,
            ),
            (
                "poolguard_reclaim_inline_drops_total",
                "Values dropped on the caller.",
                self.inline_drops,
            ),
            (
                "poolguard_reclaim_handed_back_total",
                "Values handed back.",
                self.handed_back,
            ),
            (
                "poolguard_reclaim_slow_total",
                "Jobs past the slow threshold.",
                self.slow,
            ),
            (
                "poolguard_reclaim_stuck_total",
                "Jobs past the stuck threshold.",
                self.stuck,
            ),
            (
                "poolguard_reclaim_workers_replaced_total",
                "Stuck workers replaced.",
                self.workers_replaced,
            ),
            (
                "poolguard_reclaim_closes_timed_out_total",
                "Async closes timed out.",
                self.closes_timed_out,
            ),
        ];
        for (name, help, v) in counters {
            w.counter(name, help, &r, v);
        }
        for l in &self.labels {
            let lr = [("reclaimer", self.name.as_str()), ("job_label", l.label)];
            w.histogram(
                "poolguard_reclaim_queue_wait_seconds",
                "Time from defer to drop start.",
                &lr,
                &l.queue_wait,
            );
            w.histogram(
                "poolguard_reclaim_run_seconds",
                "Time spent in the drop or close.",
                &lr,
                &l.run_time,
            );
        }
    }
}
