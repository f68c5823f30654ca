//! What the reclaimer reports: counters, per-label latency, watchdog events and the shutdown
//! report (rendered as doctor findings and Prometheus text in `report.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::pl::RwLock;

use crate::diag::{Histogram, HistogramSnapshot};

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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlowJob {
    /// The job's label (its type name unless labelled).
    pub label: &'static str,
    /// The worker running it.
    pub worker: usize,
    /// How long it has been running.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::secs"))]
    pub elapsed: Duration,
    /// Whether it also crossed the stuck threshold (its worker was retired).
    pub stuck: bool,
}

/// What the watchdog reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::diag::ser::secs"))]
    pub elapsed: Duration,
}

/// What happened when the reclaimer shut down (last handle dropped or
/// [`Reclaimer::shutdown`](super::Reclaimer::shutdown)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
