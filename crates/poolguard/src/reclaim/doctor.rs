//! The reclaimer's figures rendered for people and machines: doctor findings (what is wrong,
//! the evidence, the fix) and Prometheus text.

use crate::diag::{Finding, PrometheusWriter, Severity};

use super::stats::ReclaimStats;

impl ReclaimStats {
    /// The doctor's findings: misuse visible in these figures, each with the fix.
    pub fn doctor(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let pool = &self.name;
        for j in &self.running_slow {
            let (sev, code) = if j.stuck {
                (Severity::Critical, "reclaim.stuck-now")
            } else {
                (Severity::Warning, "reclaim.slow-now")
            };
            out.push(Finding::new(
                sev,
                code,
                pool,
                format!(
                    "`{}` has been running for {:?} on worker {}",
                    j.label, j.elapsed, j.worker
                ),
                "a drop must not wait on I/O: send goodbyes through `close_async` with a timeout",
            ));
        }
        for l in &self.labels {
            if l.stuck > 0 || l.slow > 0 {
                out.push(Finding::new(
                    if l.stuck > 0 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    "reclaim.slow-drops",
                    pool,
                    format!(
                        "`{}`: {} slow and {} stuck jobs; run time p99 {:?}, max {:?}",
                        l.label,
                        l.slow,
                        l.stuck,
                        l.run_time.p99(),
                        l.run_time.max()
                    ),
                    "find what this drop blocks on (lock, socket, file) and move it to \
                     `close_async` with a timeout, or split the value",
                ));
            }
        }
        if self.inline_drops > 0 || self.handed_back > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "reclaim.queue-full",
                pool,
                format!(
                    "{} values dropped on the caller and {} handed back: the queue (capacity {}, \
                     peak {}) was full or closed",
                    self.inline_drops, self.handed_back, self.capacity, self.peak_queued
                ),
                "raise `capacity` or `workers`, or find the producer that defers faster than \
                 the workers drop (see the per-label run times)",
            ));
        }
        if self.replacements_refused > 0 || self.spawn_failures > 0 {
            out.push(Finding::new(
                Severity::Critical,
                "reclaim.thread-limit",
                pool,
                format!(
                    "{} stuck workers could not be replaced (`max_threads` reached) and {} \
                     spawns failed",
                    self.replacements_refused, self.spawn_failures
                ),
                "fix the stuck drops first; raise `max_threads` only to absorb rare stalls",
            ));
        }
        if self.closes_timed_out > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "reclaim.close-timeouts",
                pool,
                format!("{} async closes hit their timeout", self.closes_timed_out),
                "the peer is slow to say goodbye: check it, or shorten the close and accept it",
            ));
        }
        if self.panicked > 0 {
            out.push(Finding::new(
                Severity::Warning,
                "reclaim.panicking-drops",
                pool,
                format!("{} drops panicked (caught on the worker)", self.panicked),
                "a Drop impl panics: fix it; a panic in drop aborts when it happens during unwinding",
            ));
        }
        if let Some(r) = &self.shutdown {
            if !r.flushed || r.threads_abandoned > 0 {
                out.push(Finding::new(
                    Severity::Warning,
                    "reclaim.shutdown-incomplete",
                    pool,
                    format!(
                        "shutdown ran {} drops on the closing thread, left {} closes running and \
                         {} threads in jobs {:?}",
                        r.dropped_on_shutdown,
                        r.closes_outstanding,
                        r.threads_abandoned,
                        r.abandoned_labels
                    ),
                    "raise `shutdown_timeout` or remove the blocking drops",
                ));
            }
        }
        out
    }

    /// Appends these figures to `w`, with label `reclaimer="<name>"` (and `job="<label>"`
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
            let lr = [("reclaimer", self.name.as_str()), ("job", l.label)];
            w.summary(
                "poolguard_reclaim_queue_wait_seconds",
                "Time from defer to drop start.",
                &lr,
                &l.queue_wait,
            );
            w.summary(
                "poolguard_reclaim_run_seconds",
                "Time spent in the drop or close.",
                &lr,
                &l.run_time,
            );
        }
    }
}
