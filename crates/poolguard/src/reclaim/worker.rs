//! A worker thread: takes the oldest job, drops it outside the lock, records the figures.
//!
//! A worker exits when the reclaimer stops or when the watchdog retired it (its job was
//! stuck; a replacement already took its place). A panicking `Drop` is caught and counted:
//! the worker keeps serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::queue::{Running, Shared, Slot};
use super::stats::LabelCell;

/// Registers a new worker slot and counts its thread; the caller then calls [`spawn`] with the
/// returned id (which marks the slot exited if the OS refuses the thread).
pub(crate) fn reserve_slot(st: &mut super::queue::State) -> usize {
    st.slots.push(Slot {
        running: None,
        retired: false,
        exited: false,
    });
    st.live_threads += 1;
    st.slots.len() - 1
}

/// Spawns worker `id`, recording its join handle. On failure the slot is marked exited.
pub(crate) fn spawn(shared: &Arc<Shared>, id: usize) -> std::io::Result<()> {
    let s = Arc::clone(shared);
    let res = std::thread::Builder::new()
        .name(format!("{}-w{id}", shared.cfg.name))
        .spawn(move || run(&s, id));
    match res {
        Ok(h) => {
            shared.threads.lock().push((Some(id), h));
            Ok(())
        }
        Err(e) => {
            shared.counters.spawn_failures.fetch_add(1, Relaxed);
            let mut st = shared.state.lock();
            st.slots[id].exited = true;
            st.slots[id].retired = true;
            st.live_threads -= 1;
            shared.progress.notify_all();
            Err(e)
        }
    }
}

pub(crate) fn run(shared: &Shared, id: usize) {
    // The previous job's slot is cleared in the same lock acquisition that takes the next
    // one: one lock per job on the worker side.
    let mut finished_one = false;
    // Jobs of one label tend to come in runs: keep its cell instead of looking it up.
    let mut cell: Option<(&'static str, Arc<LabelCell>)> = None;
    loop {
        let job = {
            let mut st = shared.state.lock();
            if finished_one {
                st.slots[id].running = None;
                shared.notify_progress(&st);
            }
            loop {
                if st.stopping || st.slots[id].retired {
                    break None;
                }
                if let Some(job) = st.pop_job() {
                    st.slots[id].running = Some(Running {
                        seq: job.seq,
                        label: job.label,
                        started: shared.now(),
                        slow_reported: false,
                        stuck: false,
                    });
                    if st.watchdog_parked {
                        st.watchdog_parked = false;
                        shared.watchdog_wake.notify_one();
                    }
                    break Some(job);
                }
                st.idle += 1;
                shared.work_ready.wait(&mut st);
                st.idle -= 1;
            }
        };
        let Some(job) = job else { break };

        let started = shared.now();
        let wait = started.saturating_duration_since(job.enqueued);
        let label = job.label;
        let value = job.value;
        let panicked = catch_unwind(AssertUnwindSafe(move || drop(value))).is_err();
        let ran = shared.now().saturating_duration_since(started);
        // Figures first, then the slot: a flush that returns sees this job counted.
        let c = &shared.counters;
        let lc = match cell.take() {
            Some((l, lc)) if l == label => lc,
            _ => c.labels.get(label),
        };
        c.queue_wait.record(wait);
        c.run_time.record(ran);
        lc.queue_wait.record(wait);
        lc.run_time.record(ran);
        if panicked {
            c.panicked.fetch_add(1, Relaxed);
            lc.panicked.fetch_add(1, Relaxed);
            tracing::error!(reclaimer = %shared.cfg.name, job_label = label, "a deferred drop panicked");
        }
        c.completed.fetch_add(1, Relaxed);
        lc.completed.fetch_add(1, Relaxed);
        cell = Some((label, lc));
        finished_one = true;
    }
    let mut st = shared.state.lock();
    st.slots[id].running = None;
    st.slots[id].exited = true;
    st.live_threads -= 1;
    shared.progress.notify_all();
    #[cfg(feature = "tokio")]
    shared.progress_async.notify_waiters();
    shared.watchdog_wake.notify_all();
}
