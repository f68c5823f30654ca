//! The public front: the [`Reclaimer`] handle, its [`ReclaimMonitor`], and what `defer` and
//! `flush` answer. The queue, workers, watchdog and shutdown are in their own files.

use std::any::type_name;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tokio")]
use super::close;
use super::config::{BuildError, Builder, Config, WhenFull};
use super::queue::{Refusal, Shared};
use super::stats::{ReclaimStats, ShutdownReport};
use super::{shutdown, watchdog, worker};
use crate::diag::labels::{Engine, LiveLabel};
use crate::diag::{Finding, PrometheusWriter};

/// What became of a value given to [`Reclaimer::defer`] or [`Reclaimer::close_async`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Deferred<T> {
    /// Queued: a worker (or the runtime, for a close) will drop it.
    Queued,
    /// Refused and dropped on the caller's thread ([`WhenFull::DropInline`]); counted in
    /// `inline_drops`.
    DroppedInline(Refusal),
    /// Refused and given back ([`WhenFull::HandBack`]); counted in `handed_back`.
    HandedBack(T, Refusal),
}

impl<T> Deferred<T> {
    /// Whether the value was queued.
    pub fn is_queued(&self) -> bool {
        matches!(self, Self::Queued)
    }

    /// The value, if it was handed back.
    pub fn handed_back(self) -> Option<T> {
        match self {
            Self::HandedBack(v, _) => Some(v),
            _ => None,
        }
    }
}

/// `flush` ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "reclaimer flush timed out with {pending} jobs deferred before it still pending; a drop is \
     slow or stuck (see `stats().running_slow`) or the timeout is too short"
)]
#[non_exhaustive]
pub struct FlushTimeout {
    /// Jobs deferred before the flush that had not finished.
    pub pending: usize,
}

/// Shuts the reclaimer down when the last [`Reclaimer`] clone is dropped.
pub(super) struct Owner {
    pub(super) shared: Arc<Shared>,
    /// The name's registration among live reclaimers (released after the shutdown).
    _label: LiveLabel,
}

impl Drop for Owner {
    fn drop(&mut self) {
        shutdown::run(&self.shared, self.shared.cfg.shutdown_timeout);
    }
}

/// A handle to a reclaimer: clone it freely (every clone shares the same workers). The
/// workers run until the last clone is dropped, which flushes within `shutdown_timeout`,
/// drops what is left on the dropping thread and joins the threads.
#[derive(Clone)]
pub struct Reclaimer {
    pub(super) owner: Arc<Owner>,
}

impl fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reclaimer")
            .field("name", &self.shared().cfg.name)
            .field("workers", &self.shared().cfg.workers)
            .finish_non_exhaustive()
    }
}

impl Reclaimer {
    /// A builder with the defaults (2 workers, capacity 4096, slow 100 ms, stuck 2 s).
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn start(cfg: Config) -> Result<Self, BuildError> {
        let shared = Arc::new(Shared::new(cfg));
        // Built first, so that a failed spawn below shuts down the threads already started.
        let owner = Arc::new(Owner {
            _label: LiveLabel::register(Engine::Reclaim, &shared.cfg.name),
            shared: Arc::clone(&shared),
        });
        for _ in 0..shared.cfg.workers {
            // One at a time: a failed spawn leaves no reserved slot without a thread.
            let id = worker::reserve_slot(&mut shared.state.lock());
            worker::spawn(&shared, id).map_err(BuildError::Spawn)?;
        }
        watchdog::spawn(&shared).map_err(BuildError::Spawn)?;
        Ok(Self { owner })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// Drops `value` on a worker, labelled with its type name. Never blocks on a job: when
    /// the queue is full the configured [`WhenFull`] policy applies.
    pub fn defer<T: Send + 'static>(&self, value: T) -> Deferred<T> {
        self.defer_labelled(type_name::<T>(), value)
    }

    /// [`defer`](Self::defer) with an explicit label for the stats, watchdog and doctor.
    pub fn defer_labelled<T: Send + 'static>(&self, label: &'static str, value: T) -> Deferred<T> {
        let shared = self.shared();
        match shared.push(label, Box::new(value)) {
            Ok(()) => {
                shared.counters.deferred.fetch_add(1, Relaxed);
                Deferred::Queued
            }
            Err((value, why)) => self.refuse(label, *value, why),
        }
    }

    fn refuse<T>(&self, label: &'static str, value: T, why: Refusal) -> Deferred<T> {
        let c = &self.shared().counters;
        match self.shared().cfg.when_full {
            WhenFull::HandBack => {
                c.handed_back.fetch_add(1, Relaxed);
                c.labels
                    .with(label, |l| l.handed_back.fetch_add(1, Relaxed));
                Deferred::HandedBack(value, why)
            }
            _ => {
                c.inline_drops.fetch_add(1, Relaxed);
                c.labels
                    .with(label, |l| l.inline_drops.fetch_add(1, Relaxed));
                drop(value);
                Deferred::DroppedInline(why)
            }
        }
    }

    /// Runs an async close (`fut`, e.g. a connection's goodbye) on the builder's runtime,
    /// cut off after `timeout`. Refused (per [`WhenFull`]; a dropped future is an abandoned
    /// goodbye) when no runtime was given, when `max_closes_in_flight` closes are running,
    /// or after shutdown. The runtime's time driver must be enabled.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn close_async<F>(&self, label: &'static str, timeout: Duration, fut: F) -> Deferred<F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shared = self.shared();
        let Some(rt) = &shared.cfg.runtime else {
            return self.refuse(label, fut, Refusal::NoRuntime);
        };
        match shared.begin_close() {
            Ok(seq) => {
                close::spawn(shared, rt, seq, label, timeout, fut);
                Deferred::Queued
            }
            Err(why) => self.refuse(label, fut, why),
        }
    }

    /// Blocks until everything deferred (and every close started) before this call has
    /// finished, or `timeout` passed. Do not call it from a deferred drop or from the
    /// runtime's threads while closes are pending (use [`flush_async`](Self::flush_async)).
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushTimeout> {
        let deadline = crate::deadline::after(timeout);
        self.shared()
            .flush_until(deadline)
            .map_err(|pending| FlushTimeout { pending })
    }

    /// [`flush`](Self::flush) for async callers: waits without blocking the thread, under
    /// tokio's clock. Cancel safe: dropping the future at any await leaves nothing behind.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn flush_async(&self, timeout: Duration) -> Result<(), FlushTimeout> {
        close::flush(self.shared(), timeout)
            .await
            .map_err(|pending| FlushTimeout { pending })
    }

    /// Shuts the reclaimer down for every handle now: refuses new work, flushes within
    /// `timeout`, drops what is left on this thread, joins the threads. Later calls (and
    /// dropping the last handle) return or keep the first report.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        shutdown::run(self.shared(), timeout)
    }

    /// The reclaimer's name (given to the builder, or its default label).
    pub fn name(&self) -> &str {
        &self.shared().cfg.name
    }

    /// The figures now.
    pub fn stats(&self) -> ReclaimStats {
        stats_of(self.shared())
    }

    /// The doctor's findings (slow and stuck drops, a full queue, refused replacements,
    /// close timeouts, an incomplete shutdown), each with its fix.
    pub fn doctor(&self) -> Vec<Finding> {
        self.stats().doctor()
    }

    /// Appends the figures to a Prometheus text writer (label `reclaimer="<name>"`).
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        self.stats().write_prometheus(w);
    }

    /// A view of the figures that does not keep the workers alive (for metrics endpoints,
    /// and to read the shutdown report after the last handle is gone).
    pub fn monitor(&self) -> ReclaimMonitor {
        ReclaimMonitor {
            shared: Arc::clone(self.shared()),
        }
    }
}

fn stats_of(shared: &Shared) -> ReclaimStats {
    let g = shared.gauges();
    let report = shared.shutdown.try_lock().and_then(|r| r.clone());
    shared
        .counters
        .snapshot(&shared.cfg.name, shared.cfg.capacity, g, report)
}

/// Reads a reclaimer's figures without owning it: holding a monitor does not keep the
/// workers running, and it still answers after the last [`Reclaimer`] is dropped.
#[derive(Clone)]
pub struct ReclaimMonitor {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for ReclaimMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReclaimMonitor")
            .field("name", &self.shared.cfg.name)
            .finish_non_exhaustive()
    }
}

impl ReclaimMonitor {
    /// The reclaimer's name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The figures now (including the shutdown report once shut down).
    pub fn stats(&self) -> ReclaimStats {
        stats_of(&self.shared)
    }

    /// The doctor's findings.
    pub fn doctor(&self) -> Vec<Finding> {
        self.stats().doctor()
    }
}
