//! What the reclaimer reports: counters, per-label latency, watchdog events, the shutdown
//! report, and their rendering as doctor findings and Prometheus text.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::diag::{Finding, Histogram, HistogramSnapshot, PrometheusWriter, Severity};

/// Counters of one label (a label names a kind of deferred value; by default its type name).
#[derive(Debug, Default)]
pub(crate) struct LabelCell {
    pub(crate) completed: AtomicU64,
    pub(crate) inline_drops: AtomicU64,
    pub(crate) handed_back: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) stuck: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) closes_timed_out: AtomicU64,
    pub(crate) queue_wait: Histogram,
    pub(crate) run_time: Histogram,
}

/// Per-label cells; read-locked on every lookup, write-locked once per new label.
#[derive(Debug, Default)]
pub(crate) struct Labels {
    map: RwLock<HashMap<&'static str, Arc<LabelCell>>>,
}

impl Labels {
    pub(crate) fn get(&self, label: &'static str) -> Arc<LabelCell> {
        if let Some(c) = self.map.read().get(label) {
            return Arc::clone(c);
        }
        Arc::clone(self.map.write().entry(label).or_default())
    }

    /// Runs `f` on the label's cell without cloning its `Arc` (the read lock is held).
    pub(crate) fn with<R>(&self, label: &'static str, f: impl FnOnce(&LabelCell) -> R) -> R {
        if let Some(c) = self.map.read().get(label) {
            return f(c);
        }
        f(&self.get(label))
    }

    fn snapshot(&self, queues: &[super::queue::LabelQueue]) -> Vec<LabelStats> {
        for q in queues {
            self.get(q.label);
        }
        let mut v: Vec<LabelStats> = self
            .map
            .read()
            .iter()
            .map(|(label, c)| LabelStats {
                label,
                queued: queues
                    .iter()
                    .find(|q| q.label == *label)
                    .map_or(0, |q| q.queued),
                peak_queued: queues
                    .iter()
                    .find(|q| q.label == *label)
                    .map_or(0, |q| q.peak),
                completed: c.completed.load(Relaxed),
                inline_drops: c.inline_drops.load(Relaxed),
                handed_back: c.handed_back.load(Relaxed),
                slow: c.slow.load(Relaxed),
                stuck: c.stuck.load(Relaxed),
                panicked: c.panicked.load(Relaxed),
                closes_timed_out: c.closes_timed_out.load(Relaxed),
                queue_wait: c.queue_wait.snapshot(),
                run_time: c.run_time.snapshot(),
            })
            .collect();
        v.sort_by_key(|l| l.label);
        v
    }
}

/// Whole-reclaimer counters (monotonic unless named a gauge).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) deferred: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) inline_drops: AtomicU64,
    pub(crate) handed_back: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) stuck: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) replacements_refused: AtomicU64,
    pub(crate) spawn_failures: AtomicU64,
    pub(crate) closes_started: AtomicU64,
    pub(crate) closes_completed: AtomicU64,
    pub(crate) closes_timed_out: AtomicU64,
    pub(crate) closes_cancelled: AtomicU64,
    pub(crate) queue_wait: Histogram,
    pub(crate) run_time: Histogram,
    pub(crate) labels: Labels,
}

/// Gauges read under the queue lock, joined with the counters by [`Counters::snapshot`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Gauges {
    pub(crate) queued: usize,
    pub(crate) peak_queued: usize,
    pub(crate) running: usize,
    pub(crate) live_threads: usize,
    pub(crate) closes_in_flight: usize,
    pub(crate) waiting_flushes: usize,
    pub(crate) running_slow: Vec<SlowJob>,
    pub(crate) label_queues: Vec<super::queue::LabelQueue>,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        name: &str,
        capacity: usize,
        g: Gauges,
        shutdown: Option<ShutdownReport>,
    ) -> ReclaimStats {
        ReclaimStats {
            name: name.to_owned(),
            capacity,
            queued: g.queued,
            peak_queued: g.peak_queued,
            running: g.running,
            live_threads: g.live_threads,
            closes_in_flight: g.closes_in_flight,
            waiting_flushes: g.waiting_flushes,
            running_slow: g.running_slow,
            deferred: self.deferred.load(Relaxed),
            completed: self.completed.load(Relaxed),
            inline_drops: self.inline_drops.load(Relaxed),
            handed_back: self.handed_back.load(Relaxed),
            slow: self.slow.load(Relaxed),
            stuck: self.stuck.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            workers_replaced: self.replaced.load(Relaxed),
            replacements_refused: self.replacements_refused.load(Relaxed),
            spawn_failures: self.spawn_failures.load(Relaxed),
            closes_started: self.closes_started.load(Relaxed),
            closes_completed: self.closes_completed.load(Relaxed),
            closes_timed_out: self.closes_timed_out.load(Relaxed),
            closes_cancelled: self.closes_cancelled.load(Relaxed),
            queue_wait: self.queue_wait.snapshot(),
            run_time: self.run_time.snapshot(),
            labels: self.labels.snapshot(&g.label_queues),
            shutdown,
        }
    }
}

/// A job the watchdog saw running past the slow threshold, still running when the stats
/// were taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlowJob {
    /// The job's label (its type name unless labelled).
    pub label: &'static str,
    /// The worker running it.
    pub worker: usize,
    /// How long it has been running.
    pub elapsed: Duration,
    /// Whether it also crossed the stuck threshold (its worker was retired).
    pub stuck: bool,
}

/// What the watchdog reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchdogKind {
    /// The job crossed `slow_threshold` and is still running.
    Slow,
    /// The job crossed `stuck_threshold`; its worker was retired (it exits when the job ends).
    Stuck {
        /// Whether a replacement worker was started (false when `max_threads` was reached).
        replaced: bool,
    },
}

/// One watchdog report, given to the `on_watchdog` hook and logged as a `tracing` warning.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchdogEvent {
    /// The reclaimer's name.
    pub reclaimer: String,
    /// Slow or stuck.
    pub kind: WatchdogKind,
    /// The job's label (its type name unless labelled).
    pub label: &'static str,
    /// The worker running it.
    pub worker: usize,
    /// How long it had been running when seen.
    pub elapsed: Duration,
}

/// What happened when the reclaimer shut down (last handle dropped or
/// [`Reclaimer::shutdown`](super::Reclaimer::shutdown)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether everything deferred ran before the timeout (on a runtime thread: every
    /// deferred drop; elsewhere: drops and async closes).
    pub flushed: bool,
    /// Queued drops that had not run by the timeout and were dropped on the shutting-down
    /// thread instead (none is lost).
    pub dropped_on_shutdown: u64,
    /// Async closes still running on the runtime at shutdown (each ends at its own timeout).
    /// A shutdown that runs on a tokio runtime thread does not wait for closes (it could be
    /// blocking the thread they need): call `flush_async` first to wait for them.
    pub closes_outstanding: usize,
    /// Threads still running a job at shutdown that could not be joined (a drop that never
    /// returns cannot be stopped from safe Rust); their labels are in `abandoned_labels`.
    pub threads_abandoned: usize,
    /// Labels of the jobs those threads were running.
    pub abandoned_labels: Vec<&'static str>,
}

/// One label's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LabelStats {
    /// The label (type name unless labelled).
    pub label: &'static str,
    /// Gauge: this label's drops waiting in the queue.
    pub queued: usize,
    /// Highest `queued` seen for this label.
    pub peak_queued: usize,
    /// Drops and closes completed by the reclaimer.
    pub completed: u64,
    /// Dropped on the caller because the queue was full or closed, or at shutdown.
    pub inline_drops: u64,
    /// Handed back because the queue was full or closed.
    pub handed_back: u64,
    /// Jobs reported slow.
    pub slow: u64,
    /// Jobs reported stuck.
    pub stuck: u64,
    /// Drops that panicked (the worker survived).
    pub panicked: u64,
    /// Async closes that hit their timeout.
    pub closes_timed_out: u64,
    /// Time from `defer` to the start of the drop.
    pub queue_wait: HistogramSnapshot,
    /// Time spent in the drop or close itself.
    pub run_time: HistogramSnapshot,
}

/// A reclaimer's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReclaimStats {
    /// The reclaimer's name.
    pub name: String,
    /// Configured queue capacity.
    pub capacity: usize,
    /// Gauge: drops waiting in the queue.
    pub queued: usize,
    /// Highest `queued` seen.
    pub peak_queued: usize,
    /// Gauge: drops running on workers now.
    pub running: usize,
    /// Gauge: worker threads alive, retired stuck workers still in their job included (the
    /// watchdog thread is not counted).
    pub live_threads: usize,
    /// Gauge: async closes running on the runtime.
    pub closes_in_flight: usize,
    /// Gauge: callers waiting in `flush`/`flush_async`.
    pub waiting_flushes: usize,
    /// Jobs running past the slow threshold right now.
    pub running_slow: Vec<SlowJob>,
    /// Values accepted into the queue.
    pub deferred: u64,
    /// Drops completed on workers.
    pub completed: u64,
    /// Values dropped on the caller (queue full or closed) or on the shutting-down thread.
    pub inline_drops: u64,
    /// Values handed back to the caller.
    pub handed_back: u64,
    /// Jobs reported slow.
    pub slow: u64,
    /// Jobs reported stuck.
    pub stuck: u64,
    /// Drops that panicked (caught; the worker survived).
    pub panicked: u64,
    /// Replacement workers started for stuck ones.
    pub workers_replaced: u64,
    /// Replacements not started because `max_threads` was reached.
    pub replacements_refused: u64,
    /// Threads the OS refused to spawn.
    pub spawn_failures: u64,
    /// Async closes accepted.
    pub closes_started: u64,
    /// Async closes that finished within their timeout.
    pub closes_completed: u64,
    /// Async closes cut off by their timeout.
    pub closes_timed_out: u64,
    /// Async closes dropped unfinished by their runtime (runtime shut down).
    pub closes_cancelled: u64,
    /// Queue wait (defer to drop start), all labels.
    pub queue_wait: HistogramSnapshot,
    /// Run time of drops and closes, all labels.
    pub run_time: HistogramSnapshot,
    /// Per-label figures, sorted by label.
    pub labels: Vec<LabelStats>,
    /// Set once the reclaimer has shut down.
    pub shutdown: Option<ShutdownReport>,
}

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
