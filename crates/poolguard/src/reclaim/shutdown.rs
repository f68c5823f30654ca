//! Shutdown: stop accepting work, flush within the timeout, take what is left, stop and
//! join the threads, record the report; then drop what was left on the shutting-down thread
//! with no lock held (those drops are user code).
//!
//! Exactly-once is kept on every path: a job is either popped by a worker (which drops it)
//! or drained here (and dropped here), both under the queue lock, never both. The only
//! threads not joined are those still inside a job that outlasted the timeout (a drop that
//! never returns cannot be interrupted from safe Rust); they are counted and named in the
//! report, and exit on their own when the job returns.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Job, Shared};
use super::stats::ShutdownReport;

/// How long idle workers may take to exit once the deadline has passed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Shuts down once; later calls return the first report.
pub(crate) fn run(shared: &Arc<Shared>, timeout: Duration) -> ShutdownReport {
    // Held throughout, so concurrent shutdowns wait for the first one and share its report.
    let mut done = shared.shutdown.lock();
    if let Some(r) = &*done {
        return r.clone();
    }
    let deadline = crate::deadline::after(timeout);
    shared.state.lock().closed = true;
    // On a tokio runtime thread, waiting for async closes could wait for the very thread we
    // block: only the queued drops are waited for; closes still running are reported.
    #[cfg(feature = "tokio")]
    let on_runtime = tokio::runtime::Handle::try_current().is_ok();
    #[cfg(not(feature = "tokio"))]
    let on_runtime = false;
    let flushed = shared.flush_until_with(deadline, !on_runtime).is_ok();

    let leftovers: Vec<_> = {
        let mut st = shared.state.lock();
        st.stopping = true;
        std::iter::from_fn(|| st.pop_job()).collect()
    };
    shared.work_ready.notify_all();
    shared.watchdog_wake.notify_all();

    let dropped_on_shutdown = leftovers.len() as u64;

    // The watchdog exits as soon as it sees `stopping`; after it is joined no thread is
    // spawned any more.
    let me = std::thread::current().id();
    let mut handles = std::mem::take(&mut *shared.threads.lock());
    if let Some(pos) = handles.iter().position(|(id, _)| id.is_none()) {
        let (_, h) = handles.swap_remove(pos);
        if h.thread().id() != me {
            let _ = h.join();
        }
    }
    handles.append(&mut shared.threads.lock());

    // Idle workers exit at once; busy ones when their job returns, waited for until the
    // deadline. Past it, idle workers still get a short grace to exit (they only need to be
    // scheduled), so the whole shutdown is bounded by `timeout + EXIT_GRACE`.
    let grace_end = crate::deadline::add(Instant::now().max(deadline), EXIT_GRACE);
    let (abandoned_labels, closes_outstanding, exited) = {
        let mut st = shared.state.lock();
        loop {
            let busy = st
                .slots
                .iter()
                .filter(|s| !s.exited && s.running.is_some())
                .count();
            let now = Instant::now();
            if st.live_threads == 0
                || (st.live_threads <= busy && now >= deadline)
                || now >= grace_end
            {
                break;
            }
            let until = if now < deadline { deadline } else { grace_end };
            let _ = shared.progress.wait_until(&mut st, until);
        }
        let labels: Vec<&'static str> = st
            .slots
            .iter()
            .filter(|s| !s.exited)
            .filter_map(|s| s.running.as_ref().map(|r| r.label))
            .collect();
        let exited: Vec<bool> = st.slots.iter().map(|s| s.exited).collect();
        (labels, st.closes.len(), exited)
    };
    let mut threads_abandoned = 0;
    for (id, h) in handles {
        let joinable = id.is_some_and(|i| exited.get(i).copied().unwrap_or(false));
        if joinable && h.thread().id() != me {
            let _ = h.join();
        } else {
            threads_abandoned += 1;
        }
    }

    let report = ShutdownReport {
        flushed,
        dropped_on_shutdown,
        closes_outstanding,
        threads_abandoned,
        abandoned_labels,
    };
    if !flushed || threads_abandoned > 0 {
        tracing::warn!(reclaimer = %shared.cfg.name, ?report,
            "reclaimer shut down before all queued work ran on its workers");
    }
    *done = Some(report.clone());
    // The leftovers' drops are user code: run them with no lock held (a drop may read the
    // stats, or even call `shutdown` again, which then returns this report).
    drop(done);
    drop_leftovers(shared, leftovers);
    report
}

/// Drops what was still queued at shutdown on this thread, counted as inline drops.
fn drop_leftovers(shared: &Shared, leftovers: Vec<Job>) {
    for job in leftovers {
        let c = &shared.counters;
        let cell = c.labels.get(job.label);
        c.inline_drops.fetch_add(1, Relaxed);
        cell.inline_drops.fetch_add(1, Relaxed);
        let value = job.value;
        if catch_unwind(AssertUnwindSafe(move || drop(value))).is_err() {
            c.panicked.fetch_add(1, Relaxed);
            cell.panicked.fetch_add(1, Relaxed);
        }
    }
}
