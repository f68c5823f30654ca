//! Async closes: a connection's goodbye, run as a task on the runtime the reclaimer was
//! given, under its own timeout, counted among the closes in flight.
//!
//! # Cancel safety
//!
//! The task is the crate's one close engine (`close_task`, shared with the connection
//! pool): its guard ends a close exactly once, whether it completes, times out, or is
//! dropped unfinished because the runtime shut down; [`CloseGuard`]'s `end` then removes
//! the close from the in-flight set, counts the outcome and wakes flushers.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Shared;
use crate::close_task::{self, CloseEnd, Outcome};

/// One close's place in the in-flight set, ended by the close engine.
#[derive(Debug)]
struct CloseGuard {
    shared: Arc<Shared>,
    seq: u64,
    label: &'static str,
    started: Instant,
}

impl CloseEnd for CloseGuard {
    fn end(&mut self, outcome: Outcome) {
        let c = &self.shared.counters;
        let cell = c.labels.get(self.label);
        let ran = self.shared.now().saturating_duration_since(self.started);
        match outcome {
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
    let guard = CloseGuard {
        shared: Arc::clone(shared),
        seq,
        label,
        started: shared.now(),
    };
    close_task::spawn(rt, timeout, fut, guard);
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
