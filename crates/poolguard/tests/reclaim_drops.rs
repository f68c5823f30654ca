//! Every deferred value is dropped exactly once: on a worker, on the caller when the queue is
//! full, or handed back; a panicking drop does not take a worker down.

mod reclaim_common;

use std::time::Duration;

use poolguard::reclaim::{Deferred, Refusal, WhenFull};
use poolguard_testkit::drops::DropCounter;
use proptest::prelude::*;
use reclaim_common::{blocker, quiet, Announcer, EVENTUALLY};

#[test]
fn deferred_values_are_dropped_once_on_workers() {
    let r = quiet("drops-basic").workers(2).build().unwrap();
    let counter = DropCounter::new();
    for i in 0..500u32 {
        assert!(r.defer(counter.track(vec![i; 16])).is_queued());
    }
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.dropped(), 500);
    let s = r.stats();
    assert_eq!((s.deferred, s.completed, s.inline_drops), (500, 500, 0));
    assert_eq!(s.queued, 0);
    assert_eq!(s.queue_wait.count(), 500);
    assert_eq!(s.run_time.count(), 500);
    let label = std::any::type_name::<poolguard_testkit::drops::Tracked<Vec<u32>>>();
    let l = s.labels.iter().find(|l| l.label == label).expect("label");
    assert_eq!(l.completed, 500);
}

#[test]
fn drops_run_off_the_callers_thread() {
    let r = quiet("drops-thread").workers(1).build().unwrap();
    struct Where(crossbeam_channel::Sender<std::thread::ThreadId>);
    impl Drop for Where {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    r.defer(Where(tx));
    let id = rx.recv_timeout(EVENTUALLY).unwrap();
    assert_ne!(id, std::thread::current().id());
}

#[test]
fn full_queue_drops_inline_and_counts() {
    let r = quiet("drops-full").workers(1).capacity(4).build().unwrap();
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    r.defer_labelled("blocker", b);
    ctl.wait_started();
    for _ in 0..4 {
        assert!(r.defer(counter.track(0u8)).is_queued());
    }
    let before = counter.dropped();
    match r.defer(counter.track(1u8)) {
        Deferred::DroppedInline(Refusal::Full) => {}
        other => panic!("expected an inline drop, got {other:?}"),
    }
    // Dropped right away, on this thread, while the worker is still blocked.
    assert_eq!(counter.dropped(), before + 1);
    let s = r.stats();
    assert_eq!((s.queued, s.peak_queued, s.inline_drops), (4, 4, 1));
    let per_label: Vec<_> = s
        .labels
        .iter()
        .map(|l| (l.label, l.queued, l.peak_queued, l.inline_drops))
        .collect();
    let tracked = std::any::type_name::<poolguard_testkit::drops::Tracked<u8>>();
    assert_eq!(per_label, [("blocker", 0, 1, 0), (tracked, 4, 4, 1)]);
    assert!(r.doctor().iter().any(|f| f.code == "reclaim.queue-full"));
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.alive(), 0);
    assert_eq!(counter.created(), 6);
}

#[test]
fn full_queue_hands_the_value_back() {
    let r = quiet("drops-handback")
        .workers(1)
        .capacity(2)
        .when_full(WhenFull::HandBack)
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let (b, ctl) = blocker(&counter);
    r.defer(b);
    ctl.wait_started();
    r.defer(counter.track(1));
    r.defer(counter.track(2));
    let back = match r.defer(counter.track(3)) {
        Deferred::HandedBack(v, Refusal::Full) => v,
        other => panic!("expected the value back, got {other:?}"),
    };
    assert_eq!(back.payload, 3);
    assert_eq!(counter.alive(), 4, "nothing handed back was dropped");
    assert_eq!(r.stats().handed_back, 1);
    ctl.release();
    // The caller retries once there is room.
    r.flush(EVENTUALLY).unwrap();
    assert!(r.defer(back).is_queued());
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.alive(), 0);
}

#[test]
fn a_panicking_drop_is_caught_and_the_worker_survives() {
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            panic!("boom in drop");
        }
    }
    let r = quiet("drops-panic").workers(1).build().unwrap();
    r.defer(Boom);
    let counter = DropCounter::new();
    r.defer(counter.track(()));
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.dropped(), 1);
    let s = r.stats();
    assert_eq!((s.panicked, s.completed, s.live_threads), (1, 2, 1));
    assert!(r
        .doctor()
        .iter()
        .any(|f| f.code == "reclaim.panicking-drops"));
}

#[test]
fn values_deferred_after_shutdown_follow_the_policy() {
    let r = quiet("drops-closed").build().unwrap();
    let counter = DropCounter::new();
    let report = r.shutdown(EVENTUALLY);
    assert!(report.flushed);
    assert!(matches!(
        r.defer(counter.track(())),
        Deferred::DroppedInline(Refusal::Closed)
    ));
    assert_eq!(counter.dropped(), 1);
    assert_eq!(r.stats().shutdown, Some(report));
}

#[test]
fn flush_waits_for_earlier_jobs_only() {
    let r = quiet("drops-flush").workers(2).build().unwrap();
    let counter = DropCounter::new();
    let (early, early_ctl) = blocker(&counter);
    r.defer_labelled("early", early);
    early_ctl.wait_started();
    // Times out while the earlier job is held, naming how many are pending.
    let err = r.flush(Duration::from_millis(1)).unwrap_err();
    assert_eq!(err.pending, 1);
    let flusher = {
        let r = r.clone();
        std::thread::spawn(move || r.flush(EVENTUALLY))
    };
    while r.stats().waiting_flushes == 0 {
        std::thread::yield_now();
    }
    // Deferred after the flush began: must not hold it back.
    let (late, late_ctl) = blocker(&counter);
    r.defer_labelled("late", late);
    late_ctl.wait_started();
    early_ctl.release();
    flusher
        .join()
        .unwrap()
        .expect("flush waited for a later job");
    assert_eq!(counter.dropped(), 1);
    late_ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(counter.alive(), 0);
}

#[test]
fn many_producers_lose_nothing() {
    let r = quiet("drops-mpsc").workers(2).capacity(64).build().unwrap();
    let a = Announcer::default();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let r = r.clone();
            let vals: Vec<_> = (0..250).map(|i| a.make(t * 1000 + i)).collect();
            std::thread::spawn(move || {
                for v in vals {
                    r.defer(v);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut ids = a.expect(1000);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "a value was dropped twice or not at all");
    // A drop announces itself before its worker counts it: flush, then count.
    r.flush(EVENTUALLY).unwrap();
    let s = r.stats();
    assert_eq!(s.completed + s.inline_drops, 1000);
    assert!(s.peak_queued <= 64);
}

#[derive(Debug, Clone)]
enum Op {
    Defer(u8),
    Flush,
    Clone,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4).prop_map(Op::Defer),
        1 => Just(Op::Flush),
        1 => Just(Op::Clone),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the sequence of defers, flushes and clones, every value created is dropped
    /// exactly once by the time the last handle is gone, and the counters add up.
    #[test]
    fn every_value_is_dropped_exactly_once(
        workers in 1usize..4,
        capacity in 1usize..8,
        hand_back in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let counter = DropCounter::new();
        let r = quiet("drops-prop")
            .workers(workers)
            .capacity(capacity)
            .when_full(if hand_back { WhenFull::HandBack } else { WhenFull::DropInline })
            .build()
            .unwrap();
        let monitor = r.monitor();
        let mut handles = vec![r];
        let mut kept = Vec::new();
        for o in ops {
            match o {
                Op::Defer(n) => {
                    let h = &handles[usize::from(n) % handles.len()];
                    if let Some(v) = h.defer(counter.track(n)).handed_back() {
                        kept.push(v);
                    }
                }
                Op::Flush => handles[0].flush(EVENTUALLY).unwrap(),
                Op::Clone => {
                    let c = handles[0].clone();
                    handles.push(c);
                }
            }
        }
        let handed = kept.len() as u64;
        drop(kept);
        drop(handles);
        prop_assert_eq!(counter.alive(), 0);
        let s = monitor.stats();
        prop_assert_eq!(s.completed + s.inline_drops + s.handed_back, counter.created());
        prop_assert_eq!(s.handed_back, handed);
        prop_assert_eq!(s.live_threads, 0);
        let report = s.shutdown.expect("shut down");
        prop_assert!(report.flushed);
        prop_assert_eq!(report.threads_abandoned, 0);
    }
}
