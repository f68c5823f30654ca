//! The reclaimer's doctor: findings (what is wrong, the evidence, the fix) from its figures.

use crate::diag::{Finding, Severity};

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
}
