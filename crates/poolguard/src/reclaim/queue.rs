//! The engine's state: one bounded FIFO of deferred drops, the workers' slots and the
//! sequence numbers that make `flush` exact.
//!
//! # Implementation details
//!
//! Everything that decides *who runs what* lives in [`State`], under one `parking_lot`
//! mutex held only for O(1) work (push, pop, slot update): no drop ever runs under it, so a
//! caller of `defer` waits for the lock at most as long as another caller's push.
//!
//! Every accepted job (drop or async close) takes the next sequence number under the lock,
//! and the queue is FIFO, so "everything deferred before `flush` was called has finished" is
//! exactly: the queue's front, every running job and every close in flight carry a sequence
//! number at or above the one `flush` read. Jobs deferred after the call do not hold `flush`
//! back, so it returns even under a continuous load.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::sync::pl::{Condvar, Mutex, MutexGuard};

use super::config::Config;
use super::stats::{Counters, Gauges, ShutdownReport, SlowJob};

/// A deferred drop waiting in the queue.
pub(crate) struct Job {
    /// The value to drop; dropping the box runs its destructor.
    pub(crate) value: Box<dyn Send>,
    pub(crate) label: &'static str,
    pub(crate) seq: u64,
    pub(crate) enqueued: Instant,
}

/// A job a worker is running, as the watchdog sees it.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) seq: u64,
    pub(crate) label: &'static str,
    pub(crate) started: Instant,
    /// Set by the watchdog once it reported the job slow (reported once).
    pub(crate) slow_reported: bool,
    /// Set by the watchdog once it counted the job stuck (counted once).
    pub(crate) stuck: bool,
}

/// One worker thread's slot. Slots are never removed, so a worker's id is its index.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) running: Option<Running>,
    /// Set by the watchdog when the job is stuck: the worker exits after that job, and a
    /// replacement takes its place.
    pub(crate) retired: bool,
    /// Set by the worker as its last act.
    pub(crate) exited: bool,
}

/// Everything under the queue lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) jobs: VecDeque<Job>,
    /// The next sequence number; only ever grows.
    pub(crate) next_seq: u64,
    pub(crate) slots: Vec<Slot>,
    /// Sequence numbers of async closes running on the runtime.
    pub(crate) closes: BTreeSet<u64>,
    /// Workers parked on `work_ready`.
    pub(crate) idle: usize,
    /// The watchdog sleeps until a job starts (no timed rounds while nothing runs).
    pub(crate) watchdog_parked: bool,
    /// Callers in `flush`/`flush_async` (workers only notify when non-zero).
    pub(crate) flush_waiters: usize,
    pub(crate) peak_queued: usize,
    /// Queued now and peak, per label (a handful of labels: searched linearly, pointer first).
    pub(crate) label_queues: Vec<LabelQueue>,
    /// Threads alive (workers, retired workers still in their job), at most `max_threads`.
    pub(crate) live_threads: usize,
    /// No new work is accepted (set by shutdown).
    pub(crate) closed: bool,
    /// Workers and watchdog exit (set by shutdown after its flush).
    pub(crate) stopping: bool,
}

/// One label's share of the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelQueue {
    pub(crate) label: &'static str,
    pub(crate) queued: usize,
    pub(crate) peak: usize,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("label", &self.label)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl State {
    fn label_queue(&mut self, label: &'static str) -> &mut LabelQueue {
        let pos = self
            .label_queues
            .iter()
            .position(|q| std::ptr::eq(q.label, label) || q.label == label);
        let i = pos.unwrap_or_else(|| {
            self.label_queues.push(LabelQueue {
                label,
                queued: 0,
                peak: 0,
            });
            self.label_queues.len() - 1
        });
        &mut self.label_queues[i]
    }

    /// Appends a job, keeping the per-label gauges.
    fn push_job(&mut self, job: Job) {
        let q = self.label_queue(job.label);
        q.queued += 1;
        q.peak = q.peak.max(q.queued);
        self.jobs.push_back(job);
        self.peak_queued = self.peak_queued.max(self.jobs.len());
    }

    /// Takes the oldest job, keeping the per-label gauges.
    pub(crate) fn pop_job(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front()?;
        let q = self.label_queue(job.label);
        q.queued = q.queued.saturating_sub(1);
        Some(job)
    }

    /// Whether every job numbered below `target` has finished.
    pub(crate) fn done_before(&self, target: u64) -> bool {
        self.drops_done_before(target) && self.closes.first().is_none_or(|&s| s >= target)
    }

    /// Whether every deferred drop (closes aside) numbered below `target` has finished.
    pub(crate) fn drops_done_before(&self, target: u64) -> bool {
        self.jobs.front().is_none_or(|j| j.seq >= target)
            && self
                .slots
                .iter()
                .all(|s| s.running.as_ref().is_none_or(|r| r.seq >= target))
    }

    /// Workers that will take new jobs (not retired, not exited).
    pub(crate) fn healthy(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.retired && !s.exited)
            .count()
    }

    fn gauges(&self, now: Instant, slow: Duration) -> Gauges {
        Gauges {
            queued: self.jobs.len(),
            peak_queued: self.peak_queued,
            running: self.slots.iter().filter(|s| s.running.is_some()).count(),
            live_threads: self.live_threads,
            closes_in_flight: self.closes.len(),
            waiting_flushes: self.flush_waiters,
            label_queues: self.label_queues.clone(),
            running_slow: self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(worker, s)| {
                    let r = s.running.as_ref()?;
                    let elapsed = now.saturating_duration_since(r.started);
                    (elapsed >= slow).then_some(SlowJob {
                        label: r.label,
                        worker,
                        elapsed,
                        stuck: r.stuck,
                    })
                })
                .collect(),
        }
    }
}

/// What the workers, the watchdog, close tasks and every handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) state: Mutex<State>,
    /// Workers wait here for jobs (and for `stopping`).
    pub(crate) work_ready: Condvar,
    /// Flushers and the shutdown wait here for jobs and threads to finish.
    pub(crate) progress: Condvar,
    /// Async flushers wait here (notified together with `progress`).
    #[cfg(feature = "tokio")]
    pub(crate) progress_async: tokio::sync::Notify,
    /// The watchdog waits here between rounds (and for `stopping`).
    pub(crate) watchdog_wake: Condvar,
    pub(crate) counters: Counters,
    /// Join handles of every thread started: `Some(worker id)` or `None` for the watchdog.
    pub(crate) threads: Mutex<Vec<(Option<usize>, std::thread::JoinHandle<()>)>>,
    /// Set once by shutdown.
    pub(crate) shutdown: Mutex<Option<ShutdownReport>>,
}

/// Why a value was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The queue (or the closes in flight) was at capacity.
    Full,
    /// The reclaimer has shut down.
    Closed,
    /// `close_async` was called but the builder was given no tokio runtime.
    NoRuntime,
}

impl Shared {
    /// The configured clock's time (the system clock unless one was injected).
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match &self.cfg.clock {
            Some(c) => c(),
            None => Instant::now(),
        }
    }

    pub(crate) fn new(cfg: Config) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
            work_ready: Condvar::new(),
            progress: Condvar::new(),
            #[cfg(feature = "tokio")]
            progress_async: tokio::sync::Notify::new(),
            watchdog_wake: Condvar::new(),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
            shutdown: Mutex::new(None),
        }
    }

    /// Queues `value` or gives it back with the reason. Never blocks on a running job.
    pub(crate) fn push<T: Send + 'static>(
        &self,
        label: &'static str,
        value: Box<T>,
    ) -> Result<(), (Box<T>, Refusal)> {
        let enqueued = self.now();
        let mut st = self.state.lock();
        if st.closed {
            return Err((value, Refusal::Closed));
        }
        if st.jobs.len() >= self.cfg.capacity {
            return Err((value, Refusal::Full));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.push_job(Job {
            value,
            label,
            seq,
            enqueued,
        });
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.work_ready.notify_one();
        }
        Ok(())
    }

    /// Registers an async close; its sequence number, or the reason it was refused.
    pub(crate) fn begin_close(&self) -> Result<u64, Refusal> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(Refusal::Closed);
        }
        if st.closes.len() >= self.cfg.max_closes_in_flight {
            return Err(Refusal::Full);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.closes.insert(seq);
        Ok(seq)
    }

    /// Forgets a finished (or cancelled) async close.
    pub(crate) fn end_close(&self, seq: u64) {
        let mut st = self.state.lock();
        st.closes.remove(&seq);
        self.notify_progress(&st);
    }

    /// Wakes flushers (blocking and async) if any wait.
    pub(crate) fn notify_progress(&self, st: &MutexGuard<'_, State>) {
        if st.flush_waiters > 0 || st.closed {
            self.progress.notify_all();
            #[cfg(feature = "tokio")]
            self.progress_async.notify_waiters();
        }
    }

    /// Blocks until every job numbered below the current sequence has finished, or until
    /// `deadline`. Returns whether it finished, with the jobs still pending when it did not.
    pub(crate) fn flush_until(&self, deadline: Instant) -> Result<(), usize> {
        self.flush_until_with(deadline, true)
    }

    /// [`flush_until`](Self::flush_until), optionally ignoring async closes (when the caller
    /// may be blocking the very runtime those closes need).
    pub(crate) fn flush_until_with(
        &self,
        deadline: Instant,
        with_closes: bool,
    ) -> Result<(), usize> {
        let done = |st: &State, target| {
            if with_closes {
                st.done_before(target)
            } else {
                st.drops_done_before(target)
            }
        };
        let mut st = self.state.lock();
        let target = st.next_seq;
        st.flush_waiters += 1;
        while !done(&st, target) {
            if self.progress.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.flush_waiters -= 1;
        if done(&st, target) {
            Ok(())
        } else {
            Err(pending_before(&st, target))
        }
    }

    pub(crate) fn gauges(&self) -> Gauges {
        self.state
            .lock()
            .gauges(self.now(), self.cfg.slow_threshold)
    }
}

/// How many jobs numbered below `target` have not finished.
pub(crate) fn pending_before(st: &State, target: u64) -> usize {
    st.jobs.iter().take_while(|j| j.seq < target).count()
        + st.closes.range(..target).count()
        + st.slots
            .iter()
            .filter(|s| s.running.as_ref().is_some_and(|r| r.seq < target))
            .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64) -> Job {
        Job {
            value: Box::new(()),
            label: "t",
            seq,
            enqueued: Instant::now(),
        }
    }

    fn running(seq: u64) -> Slot {
        Slot {
            running: Some(Running {
                seq,
                label: "t",
                started: Instant::now(),
                slow_reported: false,
                stuck: false,
            }),
            retired: false,
            exited: false,
        }
    }

    #[test]
    fn done_before_looks_at_queue_front_running_slots_and_closes() {
        let mut st = State::default();
        assert!(st.done_before(10), "empty is done");
        st.push_job(job(5));
        st.push_job(job(7));
        assert!(!st.done_before(6));
        assert!(
            st.done_before(5),
            "jobs at or after the target do not count"
        );
        assert_eq!(pending_before(&st, 8), 2);
        let j = st.pop_job().unwrap();
        st.slots.push(running(j.seq));
        assert!(!st.done_before(6), "a running job before the target counts");
        st.slots[0].running = None;
        assert!(st.done_before(6));
        st.closes.insert(3);
        assert!(!st.done_before(4));
        assert_eq!(pending_before(&st, 8), 2, "the close and job 7");
        st.closes.remove(&3);
        assert!(st.done_before(7));
    }

    #[test]
    fn per_label_gauges_follow_push_and_pop() {
        let mut st = State::default();
        st.push_job(job(0));
        st.push_job(job(1));
        assert_eq!((st.label_queues[0].queued, st.label_queues[0].peak), (2, 2));
        st.pop_job();
        st.pop_job();
        assert!(st.pop_job().is_none());
        assert_eq!((st.label_queues[0].queued, st.label_queues[0].peak), (0, 2));
        assert_eq!(st.peak_queued, 2);
    }
}

#[cfg(all(test, poolguard_loom))]
mod loom_tests {
    use std::time::{Duration, Instant};

    use super::{Config, Shared};
    use crate::reclaim::worker;
    use crate::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use crate::sync::{thread, Arc};

    /// Counts its drop in the slot of its id.
    struct Tracked(Arc<[AtomicUsize; 2]>, usize);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0[self.1].fetch_add(1, SeqCst);
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// A defer, a concurrent defer from another thread, a worker popping and dropping, and
    /// a flush: the job deferred before the flush has been dropped when the flush returns
    /// (flush is exact), and every job is dropped exactly once.
    #[test]
    fn loom_reclaim_defer_pop_flush_exactly_once() {
        loom::model(|| {
            let shared = Arc::new(Shared::new(Config {
                workers: 1,
                capacity: 4,
                ..Config::default()
            }));
            let drops = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
            let id = worker::reserve_slot(&mut shared.state.lock());
            let w = {
                let s = Arc::clone(&shared);
                thread::spawn(move || worker::run(&s, id))
            };
            let other = {
                let (s, d) = (Arc::clone(&shared), Arc::clone(&drops));
                thread::spawn(move || {
                    assert!(s.push("b", Box::new(Tracked(d, 1))).is_ok());
                })
            };
            assert!(shared
                .push("a", Box::new(Tracked(Arc::clone(&drops), 0)))
                .is_ok());
            assert_eq!(shared.flush_until(far()), Ok(()));
            assert_eq!(
                drops[0].load(SeqCst),
                1,
                "flush returned before the job deferred first"
            );
            other.join().expect("other");
            assert_eq!(shared.flush_until(far()), Ok(()));
            {
                let mut st = shared.state.lock();
                st.stopping = true;
            }
            shared.work_ready.notify_all();
            w.join().expect("worker");
            assert_eq!(drops[0].load(SeqCst), 1, "job a dropped exactly once");
            assert_eq!(drops[1].load(SeqCst), 1, "job b dropped exactly once");
        });
    }
}
