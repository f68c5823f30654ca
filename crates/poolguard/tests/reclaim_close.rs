//! Async closes: run on the given runtime, cut off by their timeout (tokio's paused clock),
//! bounded in number, and cancel safe: a runtime that shuts down at any await point, or a
//! flusher aborted at any await point, leaves nothing behind.

mod reclaim_common;

use std::time::Duration;

use poolguard::reclaim::{Deferred, Reclaimer, Refusal, WhenFull};
use poolguard_testkit::drops::DropCounter;
use rand::{Rng, SeedableRng};
use reclaim_common::{quiet, EVENTUALLY};
use tokio::sync::oneshot;

#[tokio::test(start_paused = true)]
async fn a_close_runs_on_the_runtime_and_is_counted() {
    let r = quiet("close-ok")
        .runtime(tokio::runtime::Handle::current())
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let conn = counter.track("conn");
    let (tx, rx) = oneshot::channel::<()>();
    let d = r.close_async("pg-goodbye", Duration::from_secs(5), async move {
        let _ = rx.await;
        drop(conn);
    });
    assert!(d.is_queued());
    assert_eq!(r.stats().closes_in_flight, 1);
    // Not finished yet: flush times out (on the paused clock) naming one pending close.
    assert_eq!(
        r.flush_async(Duration::from_millis(10))
            .await
            .unwrap_err()
            .pending,
        1
    );
    tx.send(()).unwrap();
    r.flush_async(EVENTUALLY).await.unwrap();
    let s = r.stats();
    assert_eq!((s.closes_started, s.closes_completed), (1, 1));
    assert_eq!(s.closes_in_flight, 0);
    assert_eq!(counter.dropped(), 1);
    let l = s.labels.iter().find(|l| l.label == "pg-goodbye").unwrap();
    assert_eq!(l.completed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_close_that_hangs_is_cut_off_by_its_timeout() {
    let r = quiet("close-timeout")
        .runtime(tokio::runtime::Handle::current())
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let conn = counter.track("silent server");
    r.close_async("silent-goodbye", Duration::from_secs(30), async move {
        let _conn = conn;
        std::future::pending::<()>().await;
    });
    // The paused clock jumps to the close's deadline; the flush sees it end.
    r.flush_async(Duration::from_secs(3600)).await.unwrap();
    let s = r.stats();
    assert_eq!((s.closes_timed_out, s.closes_completed), (1, 0));
    assert_eq!(
        counter.dropped(),
        1,
        "the connection was dropped with the close"
    );
    assert!(r
        .doctor()
        .iter()
        .any(|f| f.code == "reclaim.close-timeouts"));
}

#[tokio::test(start_paused = true)]
async fn closes_in_flight_are_bounded() {
    let r = quiet("close-bound")
        .runtime(tokio::runtime::Handle::current())
        .max_closes_in_flight(2)
        .when_full(WhenFull::HandBack)
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let close = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    assert!(r
        .close_async("c", Duration::from_secs(60), close())
        .is_queued());
    assert!(r
        .close_async("c", Duration::from_secs(60), close())
        .is_queued());
    match r.close_async("c", Duration::from_secs(60), close()) {
        Deferred::HandedBack(_, Refusal::Full) => {}
        other => panic!("expected the close back, queued: {}", other.is_queued()),
    }
    tx.send(true).unwrap();
    r.flush_async(EVENTUALLY).await.unwrap();
    let s = r.stats();
    assert_eq!((s.closes_completed, s.handed_back), (2, 1));
}

#[test]
fn without_a_runtime_a_close_is_refused_by_policy() {
    let r = quiet("close-nort").build().unwrap();
    let counter = DropCounter::new();
    let conn = counter.track(());
    let d = r.close_async("c", Duration::from_secs(1), async move { drop(conn) });
    assert!(matches!(d, Deferred::DroppedInline(Refusal::NoRuntime)));
    assert_eq!(
        counter.dropped(),
        1,
        "the abandoned close dropped its connection"
    );
    assert_eq!(r.stats().inline_drops, 1);
}

/// A close that goes through several await points before it finishes, holding a tracked
/// connection all along.
async fn staged_close(
    conn: poolguard_testkit::drops::Tracked<u32>,
    gate: oneshot::Receiver<()>,
    stages: u32,
) {
    for _ in 0..stages {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(u64::from(conn.payload % 3))).await;
    let _ = gate.await;
    drop(conn);
}

#[test]
fn a_runtime_shut_down_at_any_point_leaks_no_close() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c105e);
    let counter = DropCounter::new();
    let mut seen = [0u64; 3];
    for round in 0..40u32 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let r = Reclaimer::builder()
            .name("close-cancel-round")
            .runtime(rt.handle().clone())
            .max_closes_in_flight(16)
            .build()
            .unwrap();
        let monitor = r.monitor();
        let n = rng.random_range(1..12u32);
        let mut gates = Vec::new();
        for i in 0..n {
            let (tx, rx) = oneshot::channel();
            // Some gates open, some never do, some are dropped (the close then finishes).
            match rng.random_range(0..3) {
                0 => drop(tx),
                1 => gates.push(tx),
                _ => {
                    let _ = tx.send(());
                }
            }
            let stages = rng.random_range(0..6);
            let timeout = Duration::from_millis(rng.random_range(1..20));
            let conn = counter.track(round * 100 + i);
            assert!(r
                .close_async("staged", timeout, staged_close(conn, rx, stages))
                .is_queued());
        }
        // Drive the runtime a random number of steps, then shut it down mid-flight.
        let steps = rng.random_range(0..10);
        let advance = Duration::from_millis(rng.random_range(0..25));
        rt.block_on(async {
            for _ in 0..steps {
                tokio::task::yield_now().await;
            }
            // The paused clock jumps ahead: some closes reach their timeout.
            tokio::time::sleep(advance).await;
        });
        drop(rt);
        let s = monitor.stats();
        assert_eq!(s.closes_in_flight, 0, "round {round}");
        assert_eq!(
            s.closes_started,
            s.closes_completed + s.closes_timed_out + s.closes_cancelled,
            "round {round}: every close ended one way"
        );
        assert_eq!(counter.alive(), 0, "round {round}: a connection leaked");
        seen[0] += s.closes_completed;
        seen[1] += s.closes_timed_out;
        seen[2] += s.closes_cancelled;
        // Refused afterwards, never panics: the runtime is gone.
        let late = counter.track(0);
        let d = r.close_async("late", Duration::from_millis(1), async move { drop(late) });
        assert!(!matches!(d, Deferred::HandedBack(..)));
        assert_eq!(counter.alive(), 0, "round {round}: the late close leaked");
        drop(gates);
        // Nothing in flight: shutdown flushes at once.
        assert!(r.shutdown(EVENTUALLY).flushed);
    }
    // The random stopping points covered every way a close can end.
    assert!(
        seen.iter().all(|&n| n > 0),
        "completed/timed out/cancelled: {seen:?}"
    );
}

#[test]
fn a_flusher_aborted_at_any_point_leaves_no_waiter_behind() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xf105);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let r = quiet("close-flush-abort")
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(async {
        let mut rx2 = rx.clone();
        r.close_async("held", Duration::from_secs(3600), async move {
            let _ = rx2.wait_for(|v| *v).await;
        });
        for _ in 0..30 {
            let flusher = {
                let r = r.clone();
                tokio::spawn(async move { r.flush_async(Duration::from_secs(60)).await })
            };
            for _ in 0..rng.random_range(0..4) {
                tokio::task::yield_now().await;
            }
            flusher.abort();
            let _ = flusher.await;
            assert_eq!(r.stats().waiting_flushes, 0);
        }
        tx.send(true).unwrap();
        r.flush_async(EVENTUALLY).await.unwrap();
    });
    assert_eq!(r.stats().closes_completed, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_on_the_runtime_does_not_wait_for_closes() {
    let r = quiet("close-drop-on-rt")
        .runtime(tokio::runtime::Handle::current())
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let monitor = r.monitor();
    let counter = DropCounter::new();
    let conn = counter.track(());
    r.close_async("hung", Duration::from_secs(3600), async move {
        let _conn = conn;
        std::future::pending::<()>().await;
    });
    r.defer(counter.track(()));
    // Blocking this (the only) runtime thread while waiting for the close would wait the
    // whole shutdown timeout for nothing: the close cannot progress until we return.
    drop(r);
    let report = monitor.stats().shutdown.expect("shut down");
    assert!(report.flushed, "the queued drop ran");
    assert_eq!(report.closes_outstanding, 1);
    assert_eq!(counter.dropped(), 1);
    // The close still ends at its own timeout, on the runtime; the connection goes with it.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    assert_eq!(counter.dropped(), 2);
    assert_eq!(monitor.stats().closes_timed_out, 1);
}
