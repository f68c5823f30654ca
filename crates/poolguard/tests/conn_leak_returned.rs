//! A hold longer than `leak_threshold` is always reported: by maintenance while it is still
//! out, or, when it comes back between two maintenance passes, on its return ("leaked for X,
//! now returned"). Holds under the threshold are never reported.

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
    fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
            .collect()
    }
}

/// Six holds of `hold`, one after the other, on a pool with a 1 s leak threshold whose
/// maintenance runs every 5 s (longer than a hold).
async fn six_holds(label: &str, hold: Duration) -> Pool<SimManager> {
    let p = Pool::builder(SimManager::new())
        .name(label)
        .leak_threshold(Some(Duration::from_secs(1)))
        .maintenance_interval(Duration::from_secs(5))
        .build()
        .expect("valid");
    for _ in 0..6 {
        let c = p.get().await.expect("get");
        tokio::time::sleep(hold).await;
        drop(c);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p
}

#[tokio::test(start_paused = true)]
async fn every_hold_past_the_threshold_is_reported_and_none_under_it() {
    // The only test in this binary, with a global subscriber: tracing caches callsite
    // interest process-wide, so a scoped subscriber racing other tests would miss events.
    let cap = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(cap.clone()))
        .expect("first subscriber");

    let over = six_holds("over", Duration::from_millis(1300)).await;
    let s = over.stats();
    assert_eq!(s.leaks, 6, "every 1.3 s hold is a leak: {s:?}");
    assert_eq!(s.unleaked, 6, "and all came back");
    let events = cap.matching(&["WARN", "connection leak", "pool=over"]);
    assert_eq!(events.len(), 6, "one warning per hold: {events:#?}");
    for e in &events {
        assert!(e.contains("conn_leak_returned.rs"), "names the site: {e}");
        assert!(
            !e.contains("Some("),
            "the threshold is printed as a duration: {e}"
        );
        assert!(e.contains("1s"), "{e}");
    }
    let returned = cap.matching(&["connection leak", "pool=over", "now returned"]);
    assert!(!returned.is_empty(), "{events:#?}");
    assert!(
        over.doctor().iter().all(|f| f.code != "conn.leak"),
        "none is still out"
    );

    let under = six_holds("under", Duration::from_millis(900)).await;
    assert_eq!(under.stats().leaks, 0);
    assert!(cap.matching(&["connection leak", "pool=under"]).is_empty());

    // Still out: reported by the next maintenance pass, within one interval of the threshold.
    let out = Pool::builder(SimManager::new())
        .name("out")
        .leak_threshold(Some(Duration::from_secs(1)))
        .maintenance_interval(Duration::from_secs(5))
        .build()
        .expect("valid");
    let c = out.get().await.expect("get");
    // Past the threshold at 1 s; the first pass runs at 5 s.
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert_eq!(out.stats().leaks, 0, "no pass yet");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(out.stats().leaks, 1, "the pass at 5 s reported it");
    let still = cap.matching(&["connection leak", "pool=out", "still out"]);
    assert_eq!(still.len(), 1, "{still:?}");
    drop(c);
    let s = out.stats();
    assert_eq!((s.leaks, s.unleaked), (1, 1), "not reported twice: {s:?}");
}
