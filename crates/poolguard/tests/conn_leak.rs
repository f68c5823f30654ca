//! Items 5 and 6: leak detection with call sites, and abandonment (maintenance only).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{CloseReason, Pool};
use poolguard_testkit::sim::SimManager;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

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

impl Capture {
    fn matching(&self, needle: &str) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_leak_is_reported_once_with_its_site_and_unleaked_on_return() {
    let cap = Capture::default();
    let _g = tracing::subscriber::set_default(tracing_subscriber::registry().with(cap.clone()));
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .leak_threshold(Some(Duration::from_secs(5)))
        .build()
        .expect("valid");
    let c = p.get().await.expect("get"); // this line is the leak site
    let line = line!() - 1;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(p.stats().leaks, 0, "not before the threshold");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.stats().leaks, 1);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(p.stats().leaks, 1, "reported once");
    let warn = cap.matching("connection leak");
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].starts_with("WARN"), "{}", warn[0]);
    assert!(
        warn[0].contains(&format!("conn_leak.rs:{line}")),
        "names the site: {}",
        warn[0]
    );
    let finding = p.doctor();
    assert!(
        finding.iter().any(|f| f.code == "conn.leak"),
        "doctor: {finding:?}"
    );
    drop(c);
    assert_eq!(p.stats().unleaked, 1);
    assert_eq!(cap.matching("unleaked").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_leak_reports_when_off() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone()).build().expect("valid");
    let c = p.get().await.expect("get");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(p.stats().leaks, 0);
    assert_eq!(p.status().in_use, 1);
    assert_eq!(p.status().abandoned, 0, "abandonment is off by default");
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_connection_frees_its_place_and_is_closed_on_return() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .leak_threshold(Some(Duration::from_secs(5)))
        .abandon_timeout(Some(Duration::from_secs(10)))
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .expect("valid");
    let long_tx = p.get().await.expect("get");
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let c = p2.get().await.expect("a replacement");
        (c.id(), start.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (id, waited) = waiter.await.expect("join");
    assert_ne!(id, long_tx.id(), "a replacement was opened");
    assert!(
        waited <= Duration::from_secs(11),
        "served once abandoned, waited {waited:?}"
    );
    let s = p.status();
    assert_eq!(s.abandoned, 1);
    assert!(s.size <= 1);
    // The long transaction was never interrupted: it still has its connection...
    assert_eq!(p.stats().abandoned, 1);
    drop(long_tx); // ...and it is closed, not reused, when it comes back.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(p.stats().closed_by(CloseReason::Abandoned), 1);
    assert_eq!(p.status().abandoned, 0);
}
