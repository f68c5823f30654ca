//! Nested acquires: a task that waits for a second connection from the pool while it holds
//! one (a connection cached per task, then a "new transaction" on the same pool). Counted on
//! the wait path only, reported once per pair of call sites, and named by the doctor with
//! both sites.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{Error, Pool};
use poolguard::diag::{PrometheusWriter, Severity};
use poolguard_testkit::sim::SimManager;
use tokio::sync::{mpsc, Barrier};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

fn pool(max: usize) -> Pool<SimManager> {
    Pool::builder(SimManager::new())
        .name(format!("nested-{max}"))
        .max_size(max)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .expect("valid")
}

/// `max` tasks each hold one connection, then (all holding) each take a second: the
/// deadlock. Returns the lines of the two `get` calls.
async fn deadlock(p: &Pool<SimManager>, max: usize) -> (u32, u32) {
    let lines = Arc::new(Mutex::new((0, 0)));
    let all_hold = Arc::new(Barrier::new(max));
    let (done_tx, mut done_rx) = mpsc::channel(max);
    for _ in 0..max {
        let (p, all_hold, done_tx, lines) = (
            p.clone(),
            Arc::clone(&all_hold),
            done_tx.clone(),
            Arc::clone(&lines),
        );
        tokio::spawn(async move {
            let outer = p.get().await.expect("the first connection");
            let outer_line = line!() - 1;
            all_hold.wait().await;
            let inner = p.get().await;
            let inner_line = line!() - 1;
            *lines.lock() = (outer_line, inner_line);
            let timed_out = matches!(inner, Err(Error::Timeout(_)));
            drop(outer);
            done_tx.send(timed_out).await.expect("the test waits");
        });
    }
    for _ in 0..max {
        assert!(
            done_rx.recv().await.expect("a task's result"),
            "every inner get times out: the pool is deadlocked"
        );
    }
    let l = *lines.lock();
    l
}

#[tokio::test(start_paused = true)]
async fn tasks_that_hold_one_and_wait_for_another_are_counted_and_named() {
    let p = pool(2);
    // Hold the pool exhausted from the test itself while the doctor reads it: one task
    // holds a connection and waits (nested) for the second, which the test holds.
    let (outer_line, inner_line) = deadlock(&p, 2).await;
    let t = p.stats();
    assert_eq!(t.nested_acquires, 2, "both inner gets were nested");
    assert_eq!(t.timed_out, 2);

    let findings = p.doctor();
    let f = &findings[0];
    assert_eq!(f.code, "conn.nested-acquire", "{findings:#?}");
    let file = file!();
    assert!(
        f.message.contains(&format!("held at {file}:{outer_line}:")),
        "names the held connection's site: {}",
        f.message
    );
    assert!(
        f.message
            .contains(&format!("waiting at {file}:{inner_line}:")),
        "names the waiting get's site: {}",
        f.message
    );
    assert!(f.message.contains("(2 times)"), "{}", f.message);
    // Nothing is held now: a warning, not critical.
    assert_eq!(f.severity, Severity::Warning);

    let mut w = PrometheusWriter::new();
    p.write_prometheus(&mut w);
    let text = w.finish();
    assert!(
        text.contains("poolguard_conn_nested_acquires_total{pool=\"nested-2\"} 2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_finding_is_critical_while_the_pool_is_exhausted() {
    let p = pool(1);
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let p2 = p.clone();
    let task = tokio::spawn(async move {
        let outer = p2.get().await.expect("first");
        held_tx.send(()).expect("the test waits");
        // The nested get waits; the pool (size 1) is exhausted meanwhile.
        let inner = p2.get();
        tokio::pin!(inner);
        tokio::select! {
            _ = &mut inner => panic!("no connection can come: this task holds the only one"),
            _ = release_rx => {}
        }
        drop(outer);
    });
    held_rx.await.expect("held");
    // Wait for the nested get to queue (an event: the pool's waiter count).
    while p.status().waiters == 0 {
        tokio::task::yield_now().await;
    }
    let f = &p.doctor()[0];
    assert_eq!(f.code, "conn.nested-acquire");
    assert_eq!(f.severity, Severity::Critical, "{f}");
    release_tx.send(()).expect("task waits");
    task.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_nested_get_served_by_an_idle_connection_is_not_seen() {
    // The fast path does not look: with room in the pool nothing deadlocks.
    let p = Pool::builder(SimManager::new())
        .max_size(3)
        .min_idle(3)
        .build()
        .expect("valid");
    while p.status().idle < 3 {
        tokio::task::yield_now().await;
    }
    let a = p.get().await.expect("a");
    let b = p.get().await.expect("b, from idle");
    assert_eq!(p.stats().waited, 0);
    assert_eq!(p.stats().nested_acquires, 0);
    assert!(p.doctor().iter().all(|f| f.code != "conn.nested-acquire"));
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn another_task_waiting_is_not_nested() {
    let p = pool(1);
    let held = p.get().await.expect("the test's task holds it");
    let p2 = p.clone();
    // A different task waits for the only connection: ordinary contention.
    let other = tokio::spawn(async move { p2.get().await.map(|c| c.id()) });
    while p.status().waiters == 0 {
        tokio::task::yield_now().await;
    }
    drop(held);
    other.await.expect("join").expect("served on return");
    assert_eq!(
        p.stats().waited,
        2,
        "the first get waited for a connect, the other task for the return"
    );
    assert_eq!(p.stats().nested_acquires, 0);
}

#[tokio::test(start_paused = true)]
async fn a_connection_handed_to_a_waiter_is_recorded_as_that_tasks() {
    // Task A waits (not nested) and is handed a connection on return; then it waits again
    // while holding that one: nested, with the hand-over's site as the held one.
    let p = pool(1);
    let held = p.get().await.expect("held by the test");
    let p2 = p.clone();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let first = p2.get().await.expect("handed over");
        got_tx.send(()).expect("test waits");
        let second = p2.get().await;
        assert!(matches!(second, Err(Error::Timeout(_))));
        drop(first);
    });
    while p.status().waiters == 0 {
        tokio::task::yield_now().await;
    }
    drop(held);
    got_rx.await.expect("handed over");
    task.await.expect("join");
    assert_eq!(p.stats().nested_acquires, 1);
}

/// Records every event's fields as one line.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line(format!("{} ", event.metadata().level()));
        event.record(&mut line);
        self.0.lock().push(line.0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_warning_names_both_sites_once_per_pair() {
    // A global subscriber (tracing caches callsite interest process-wide); the events are
    // told apart by the pool's name.
    let cap = Capture::default();
    let _ =
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(cap.clone()));
    let p = Pool::builder(SimManager::new())
        .name("nested-events")
        .max_size(2)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    // Twice the same deadlock: the same two sites each time.
    let (outer, inner) = deadlock(&p, 2).await;
    let again = deadlock(&p, 2).await;
    assert_eq!((outer, inner), again);
    assert_eq!(p.stats().nested_acquires, 4);
    let lines: Vec<String> = cap
        .0
        .lock()
        .iter()
        .filter(|l| l.contains("nested-events") && l.contains("nested acquire"))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "once per pair of sites: {lines:#?}");
    let file = file!();
    assert!(lines[0].starts_with("WARN"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("held_at={file}:{outer}:")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!("waiting_at={file}:{inner}:")),
        "{}",
        lines[0]
    );
}
