//! The handle owns the threads: dropping the last clone flushes (bounded), joins every
//! thread and leaves a report; nothing deferred is lost on the way.

mod reclaim_common;

use std::time::Duration;

use poolguard::reclaim::Reclaimer;
use poolguard_testkit::drops::DropCounter;
use reclaim_common::{blocker, quiet};

#[test]
fn no_thread_outlives_the_last_handle() {
    let r = quiet("sd-last").workers(3).build().unwrap();
    let monitor = r.monitor();
    assert_eq!(monitor.stats().live_threads, 3);
    let counter = DropCounter::new();
    let clones: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            let vals: Vec<_> = (0..100).map(|i| counter.track(i)).collect();
            std::thread::spawn(move || {
                for v in vals {
                    r.defer(v);
                }
                // Each thread drops its clone; only the last drop shuts down.
            })
        })
        .collect();
    drop(r);
    for c in clones {
        c.join().unwrap();
    }
    let s = monitor.stats();
    assert_eq!(s.live_threads, 0);
    let report = s.shutdown.expect("the last handle shut the reclaimer down");
    assert!(report.flushed);
    assert_eq!(report.threads_abandoned, 0, "every thread was joined");
    assert_eq!(report.dropped_on_shutdown, 0);
    assert_eq!(counter.alive(), 0);
    assert_eq!(s.completed, 400);
}

#[test]
fn dropping_the_last_handle_waits_for_queued_drops() {
    let r = quiet("sd-flush").workers(1).build().unwrap();
    let monitor = r.monitor();
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    r.defer(b);
    ctl.wait_started();
    for i in 0..100 {
        r.defer(counter.track(i));
    }
    // Release the blocker only once the shutdown is waiting in its flush.
    let releaser = {
        let monitor = monitor.clone();
        std::thread::spawn(move || {
            while monitor.stats().waiting_flushes == 0 {
                std::thread::yield_now();
            }
            ctl.release();
        })
    };
    drop(r);
    releaser.join().unwrap();
    assert_eq!(counter.alive(), 0);
    let s = monitor.stats();
    assert_eq!(
        (s.completed, s.inline_drops),
        (101, 0),
        "all ran on the worker"
    );
    assert!(s.shutdown.unwrap().flushed);
}

#[test]
fn a_handle_dropped_by_its_own_worker_does_not_deadlock() {
    let r = quiet("sd-self")
        .workers(1)
        .shutdown_timeout(Duration::from_millis(5))
        .build()
        .unwrap();
    let monitor = r.monitor();
    let counter = DropCounter::new();
    r.defer(counter.track(()));
    // The last handle itself is deferred: its drop runs on the worker.
    let last = r.clone();
    drop(r);
    last.clone().defer(last);
    while monitor.stats().shutdown.is_none() || monitor.stats().live_threads > 0 {
        std::thread::yield_now();
    }
    assert_eq!(counter.alive(), 0);
}

#[test]
fn shutdown_is_shared_by_every_handle_and_idempotent() {
    let r = Reclaimer::builder().name("sd-twice").build().unwrap();
    let other = r.clone();
    let first = r.shutdown(Duration::from_secs(1));
    let second = other.shutdown(Duration::from_secs(1));
    assert_eq!(first, second);
    assert_eq!(r.stats().live_threads, 0);
}

#[test]
fn wait_forever_timeouts_do_not_overflow() {
    // `Duration::MAX` as "wait as long as it takes" must not panic computing a deadline.
    let counter = DropCounter::new();
    let r = quiet("sd-max").build().unwrap();
    r.defer(counter.track(1));
    r.flush(Duration::MAX)
        .expect("flush with an unbounded timeout");
    assert_eq!(counter.alive(), 0);
    let report = r.shutdown(Duration::MAX);
    assert!(report.flushed);
}

/// A value whose drop looks at the reclaimer: whether the shutdown report is readable (the
/// shutdown lock is free) and whether a second `shutdown` call returns.
struct Peek {
    r: Reclaimer,
    saw: crossbeam_channel::Sender<(bool, bool)>,
}

impl Drop for Peek {
    fn drop(&mut self) {
        let report_visible = self.r.monitor().stats().shutdown.is_some();
        // Under the shutdown lock this would deadlock (the lock is not reentrant).
        let again = if report_visible {
            self.r.shutdown(Duration::ZERO).dropped_on_shutdown == 1
        } else {
            false
        };
        let _ = self.saw.send((report_visible, again));
    }
}

#[test]
fn leftover_drops_run_with_no_shutdown_lock_held() {
    let r = quiet("sd-leftover-lock").workers(1).build().unwrap();
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    r.defer(b);
    ctl.wait_started();
    // Queued behind the blocked worker: still queued at shutdown, so dropped by it.
    let (saw, seen) = crossbeam_channel::bounded(1);
    r.defer(Peek { r: r.clone(), saw });
    let report = r.shutdown(Duration::from_millis(20));
    assert_eq!(report.dropped_on_shutdown, 1);
    let (report_visible, again) = seen
        .try_recv()
        .expect("the leftover was dropped by shutdown");
    assert!(
        report_visible,
        "a leftover's drop ran while the shutdown lock was held"
    );
    assert!(
        again,
        "a second shutdown from a leftover's drop returns the first report"
    );
    ctl.release();
}
