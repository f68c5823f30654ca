//! Item 5: the leak report is a `tracing` warning naming the call site, reported once, and an
//! "unleaked" event follows when the connection comes back.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::Pool;
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
    // The only test in this binary, with a global subscriber: tracing caches callsite
    // interest process-wide, so a scoped subscriber racing other tests would miss events.
    let cap = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(cap.clone()))
        .expect("first subscriber");
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
        warn[0].contains(&format!("conn_leak_events.rs:{line}")),
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
