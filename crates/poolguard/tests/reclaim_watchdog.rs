//! One blocking drop never stalls the others: other workers keep draining, the watchdog
//! reports the job while it runs, and a stuck worker is replaced within `max_threads`.
//!
//! Thresholds are tiny so the watchdog fires quickly; every wait is on an event (a channel
//! the test controls or the watchdog hook), never on a duration.

mod reclaim_common;

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use poolguard::reclaim::{Builder, Reclaimer, WatchdogEvent, WatchdogKind};
use poolguard_testkit::drops::DropCounter;
use reclaim_common::{blocker, quiet, Announcer, EVENTUALLY};

/// A builder with tiny thresholds whose watchdog reports go to the returned channel.
fn watched(name: &str) -> (Builder, Receiver<WatchdogEvent>) {
    let (tx, rx) = unbounded();
    let b = Reclaimer::builder()
        .name(name)
        .slow_threshold(Duration::from_millis(1))
        .stuck_threshold(Duration::from_millis(4))
        .on_watchdog(move |e| {
            let _ = tx.send(e.clone());
        });
    (b, rx)
}

fn next(rx: &Receiver<WatchdogEvent>) -> WatchdogEvent {
    rx.recv_timeout(EVENTUALLY)
        .expect("the watchdog never reported")
}

#[test]
fn a_blocking_drop_does_not_delay_drops_on_other_workers() {
    // The watchdog stays quiet: the other worker drains on its own.
    let r = quiet("wd-other").workers(2).build().unwrap();
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    r.defer_labelled("blocking-read", b);
    ctl.wait_started();
    let a = Announcer::default();
    for i in 0..200 {
        r.defer(a.make(i));
    }
    // All 200 drops run while the blocking one still holds its worker.
    let ids = a.expect(200);
    assert_eq!(ids.len(), 200);
    assert_eq!(counter.dropped(), 0, "the blocker is still running");
    assert_eq!(r.stats().running, 1);
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn the_watchdog_reports_a_slow_job_while_it_runs() {
    let (b, events) = watched("wd-slow");
    // Stuck is far away here: only the slow report is expected.
    let r = b
        .stuck_threshold(Duration::from_secs(3600))
        .workers(1)
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("socket-goodbye", v);
    ctl.wait_started();
    let e = next(&events);
    assert_eq!(e.kind, WatchdogKind::Slow);
    assert_eq!(e.label, "socket-goodbye");
    assert_eq!(e.reclaimer, "wd-slow");
    assert!(e.elapsed >= Duration::from_millis(1));
    // Still running: visible in the stats and the doctor.
    let s = r.stats();
    assert_eq!(s.slow, 1);
    assert_eq!(s.running_slow.len(), 1);
    assert_eq!(s.running_slow[0].label, "socket-goodbye");
    assert!(!s.running_slow[0].stuck);
    let findings = r.doctor();
    assert!(
        findings
            .iter()
            .any(|f| f.code == "reclaim.slow-now" && f.message.contains("socket-goodbye")),
        "{findings:?}"
    );
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert!(r.stats().running_slow.is_empty());
    assert_eq!(counter.dropped(), 1);
    // Reported once, not on every watchdog round.
    assert!(events.try_recv().is_err());
}

#[test]
fn a_stuck_worker_is_replaced_and_the_queue_keeps_draining() {
    let (b, events) = watched("wd-stuck");
    let r = b.workers(1).max_threads(2).build().unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("stuck-close", v);
    ctl.wait_started();
    let stuck = loop {
        let e = next(&events);
        if matches!(e.kind, WatchdogKind::Stuck { .. }) {
            break e;
        }
    };
    assert_eq!(stuck.kind, WatchdogKind::Stuck { replaced: true });
    assert_eq!(stuck.label, "stuck-close");
    // The single worker is stuck, yet new drops run: on the replacement.
    let a = Announcer::default();
    for i in 0..50 {
        r.defer(a.make(i));
    }
    a.expect(50);
    // (On a loaded machine an ordinary job may also cross the tiny thresholds: the blocking
    // job's own label is what is asserted exactly.)
    let s = r.stats();
    let l = s.labels.iter().find(|l| l.label == "stuck-close").unwrap();
    assert_eq!((l.slow, l.stuck), (1, 1));
    assert!(s.workers_replaced >= 1 && s.live_threads >= 2, "{s:?}");
    assert!(s
        .running_slow
        .iter()
        .any(|j| j.stuck && j.label == "stuck-close"));
    assert!(r.doctor().iter().any(|f| f.code == "reclaim.stuck-now"));
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.dropped(), 1);
    let monitor = r.monitor();
    drop(r);
    let s = monitor.stats();
    assert_eq!(s.live_threads, 0, "the retired worker exited after its job");
    assert_eq!(s.shutdown.unwrap().threads_abandoned, 0);
}

#[test]
fn replacement_stops_at_the_thread_limit() {
    let (b, events) = watched("wd-limit");
    let r = b.workers(1).max_threads(1).build().unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("never-returns", v);
    ctl.wait_started();
    let stuck = loop {
        let e = next(&events);
        if matches!(e.kind, WatchdogKind::Stuck { .. }) {
            break e;
        }
    };
    assert_eq!(stuck.kind, WatchdogKind::Stuck { replaced: false });
    // Nothing runs now, and nothing grows past the limit: values wait in the queue.
    for _ in 0..10 {
        assert!(r.defer(counter.track(())).is_queued());
    }
    let s = r.stats();
    assert_eq!(
        (s.live_threads, s.replacements_refused, s.queued),
        (1, 1, 10)
    );
    assert!(r.doctor().iter().any(|f| f.code == "reclaim.thread-limit"));
    // When the stuck job returns, its thread exits and a fresh worker drains the queue.
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.alive(), 0);
    assert!(r.stats().workers_replaced >= 1);
}

#[test]
fn a_stuck_drop_at_shutdown_is_reported_and_nothing_is_lost() {
    let r = quiet("wd-shutdown")
        .workers(1)
        .max_threads(1)
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("hung-finalizer", v);
    ctl.wait_started();
    for _ in 0..10 {
        r.defer(counter.track(()));
    }
    let monitor = r.monitor();
    let report = r.shutdown(Duration::from_millis(2));
    // The ten queued values were dropped by the shutdown itself, exactly once.
    assert!(!report.flushed);
    assert_eq!(report.dropped_on_shutdown, 10);
    assert_eq!(report.threads_abandoned, 1);
    assert_eq!(report.abandoned_labels, vec!["hung-finalizer"]);
    assert_eq!(counter.dropped(), 10);
    assert!(monitor
        .doctor()
        .iter()
        .any(|f| f.code == "reclaim.shutdown-incomplete"));
    drop(r);
    // The abandoned thread finishes its job once released; the blocker is dropped once.
    ctl.release();
    while counter.alive() > 0 {
        std::thread::yield_now();
    }
    assert_eq!(counter.dropped(), 11);
}

#[test]
fn a_panicking_hook_does_not_stop_the_watchdog() {
    let (tx, rx) = unbounded();
    let r = Reclaimer::builder()
        .name("wd-hook-panic")
        .workers(1)
        .slow_threshold(Duration::from_millis(1))
        .stuck_threshold(Duration::from_millis(4))
        .on_watchdog(move |e| {
            if e.kind == WatchdogKind::Slow {
                panic!("hook fails on the slow report");
            }
            let _ = tx.send(e.clone());
        })
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("after-panic", v);
    ctl.wait_started();
    // The slow report's hook panicked; the stuck report still arrives.
    let e = next(&rx);
    assert_eq!(e.kind, WatchdogKind::Stuck { replaced: true });
    let s = r.stats();
    let l = s.labels.iter().find(|l| l.label == "after-panic").unwrap();
    assert_eq!((l.slow, l.stuck), (1, 1));
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.alive(), 0);
}
