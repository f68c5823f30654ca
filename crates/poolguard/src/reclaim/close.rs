//! Async closes: a connection's goodbye, run as a task on the runtime the reclaimer was
//! given, under its own timeout, counted among the closes in flight.
//!
//! # Cancel safety
//!
//! The close's bookkeeping lives in a [`CloseGuard`] created before the task is spawned and
//! moved into it: however the task ends (completes, times out, or is dropped unfinished
//! because the runtime shut down) the guard's `Drop` removes the close from the in-flight
//! set, counts the outcome and wakes flushers. The future itself is dropped by the task, so
//! whatever it owns (the connection) is dropped exactly once.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Still running, or dropped unfinished by its runtime.
    Cancelled,
    Completed,
    TimedOut,
}

/// Owns one close's place in the in-flight set.
#[derive(Debug)]
struct CloseGuard {
    shared: Arc<Shared>,
    seq: u64,
    label: &'static str,
    started: Instant,
    outcome: Outcome,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        let c = &self.shared.counters;
        let cell = c.labels.get(self.label);
        let ran = self.shared.now().saturating_duration_since(self.started);
        match self.outcome {
            Outcome::Completed => {
                c.closes_completed.fetch_add(1, Relaxed);
                cell.completed.fetch_add(1, Relaxed);
                c.run_time.record(ran);
                cell.run_time.record(ran);
            }
            Outcome::TimedOut => {
                c.closes_timed_out.fetch_add(1, Relaxed);
                cell.closes_timed_out.fetch_add(1, Relaxed);
                tracing::warn!(reclaimer = %self.shared.cfg.name, job_label = self.label,
                    "async close timed out and was dropped");
            }
            Outcome::Cancelled => {
                c.closes_cancelled.fetch_add(1, Relaxed);
            }
        }
        self.shared.end_close(self.seq);
    }
}

/// Spawns `fut` on `rt` under `timeout`, once [`Shared::begin_close`] gave it `seq`.
pub(crate) fn spawn<F>(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    seq: u64,
    label: &'static str,
    timeout: Duration,
    fut: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    shared.counters.closes_started.fetch_add(1, Relaxed);
    let mut guard = CloseGuard {
        shared: Arc::clone(shared),
        seq,
        label,
        started: shared.now(),
        outcome: Outcome::Cancelled,
    };
    // The guard moves into the task before it is spawned: if the runtime is already shut
    // down, `spawn` drops the task, and with it the guard and the future.
    drop(rt.spawn(async move {
        guard.outcome = match tokio::time::timeout(timeout, fut).await {
            Ok(()) => Outcome::Completed,
            Err(_) => Outcome::TimedOut,
        };
        drop(guard);
    }));
}

/// Waits (asynchronously) until every job numbered below the current sequence finished.
pub(crate) async fn flush(shared: &Shared, timeout: Duration) -> Result<(), usize> {
    let deadline = crate::deadline::after_tokio(timeout);
    let target = {
        let mut st = shared.state.lock();
        st.flush_waiters += 1;
        st.next_seq
    };
    // Decrements `flush_waiters` however this future ends, cancellation included.
    struct Waiter<'a>(&'a Shared);
    impl Drop for Waiter<'_> {
        fn drop(&mut self) {
            self.0.state.lock().flush_waiters -= 1;
        }
    }
    let _w = Waiter(shared);
    loop {
        let notified = shared.progress_async.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = shared.state.lock();
            if st.done_before(target) {
                return Ok(());
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let st = shared.state.lock();
            return if st.done_before(target) {
                Ok(())
            } else {
                Err(super::queue::pending_before(&st, target))
            };
        }
    }
}
