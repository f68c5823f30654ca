//! The events and spans the pools emit carry the fields production tracing needs: a span per
//! connection checkout (pool, wait, outcome), the pool's name on every event, durations as
//! seconds in `_s` fields, the acquire-timeout event at the configured level, and trim cycles
//! as structured fields.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::conn::Pool;
use poolguard::object;
use poolguard_testkit::sim::{Behavior, Faults, Op, SimManager};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, PartialEq)]
enum V {
    F64(f64),
    U64(u64),
    I64(i64),
    Bool(bool),
    Str(String),
}

#[derive(Debug, Default, Clone)]
struct Fields(BTreeMap<String, V>);

impl Visit for Fields {
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().into(), V::F64(v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), V::U64(v));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), V::I64(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), V::Bool(v));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), V::Str(v.into()));
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), V::Str(format!("{v:?}")));
    }
}

impl Fields {
    fn str(&self, k: &str) -> Option<&str> {
        match self.0.get(k) {
            Some(V::Str(s)) => Some(s),
            _ => None,
        }
    }
    fn f64(&self, k: &str) -> Option<f64> {
        match self.0.get(k) {
            Some(V::F64(v)) => Some(*v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Ev {
    level: Level,
    target: String,
    fields: Fields,
}

#[derive(Debug, Clone)]
struct ClosedSpan {
    name: &'static str,
    fields: Fields,
}

#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Ev>>>,
    spans: Arc<Mutex<Vec<ClosedSpan>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<Fields>() {
                values.record(f);
            }
        }
    }
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        self.events.lock().unwrap().push(Ev {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: f,
        });
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.spans.lock().unwrap().push(ClosedSpan {
                name: span.name(),
                fields,
            });
        }
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let c = Capture::default();
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(c.clone()));
    (c, guard)
}

impl Capture {
    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
    fn find(&self, message_part: &str) -> Vec<Ev> {
        self.events()
            .into_iter()
            .filter(|e| {
                e.fields
                    .str("message")
                    .is_some_and(|m| m.contains(message_part))
            })
            .collect()
    }
    fn get_spans(&self) -> Vec<ClosedSpan> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == "poolguard.conn.get")
            .cloned()
            .collect()
    }
}

/// Every event of poolguard names its pool (or reclaimer); no duration is a Debug string.
fn assert_every_event_names_its_pool(c: &Capture) {
    let events = c.events();
    assert!(!events.is_empty());
    for e in events.iter().filter(|e| e.target.starts_with("poolguard")) {
        assert!(
            e.fields.str("pool").is_some() || e.fields.str("reclaimer").is_some(),
            "event without its pool's name: {e:?}"
        );
        for (k, v) in &e.fields.0 {
            if k.ends_with("_s") {
                assert!(matches!(v, V::F64(_)), "{k} is not seconds as f64: {e:?}");
            }
            if let V::Str(s) = v {
                let looks_like_duration = s.ends_with("ms") || s.ends_with("µs");
                assert!(
                    k == "message" || !looks_like_duration,
                    "{k} is a Debug duration: {e:?}"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_get_runs_in_a_span_with_pool_wait_and_outcome() {
    let (c, _g) = capture();
    let m = SimManager::new();
    m.latency(Op::Connect, Duration::from_millis(20));
    let p = Pool::builder(m.clone())
        .name("traced-get")
        .acquire_timeout(Duration::from_millis(100))
        .max_size(1)
        .build()
        .expect("pool");
    let held = p.get().await.expect("first get");
    // The pool is full: the next get waits 100 ms and times out.
    let err = p.get().await.expect_err("times out");
    assert_eq!(err.code(), "timeout");
    drop(held);
    let spans = c.get_spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    for s in &spans {
        assert_eq!(s.fields.str("pool"), Some("traced-get"), "{s:?}");
    }
    assert_eq!(spans[0].fields.str("outcome"), Some("ok"));
    assert_eq!(spans[0].fields.f64("wait_s"), Some(0.02), "{:?}", spans[0]);
    assert_eq!(spans[1].fields.str("outcome"), Some("timeout"));
    assert_eq!(spans[1].fields.f64("wait_s"), Some(0.1), "{:?}", spans[1]);

    // The timeout event: DEBUG by default, structured.
    let t: Vec<_> = c
        .find("gave no connection within")
        .into_iter()
        .filter(|e| e.fields.f64("waited_s").is_some())
        .collect();
    assert_eq!(t.len(), 1, "{:?}", c.events());
    assert_eq!(t[0].level, Level::DEBUG);
    assert_eq!(t[0].fields.str("pool"), Some("traced-get"));
    assert_eq!(t[0].fields.f64("waited_s"), Some(0.1));
    assert_eq!(t[0].fields.0.get("max_size"), Some(&V::U64(1)));
    assert_every_event_names_its_pool(&c);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_event_level_is_configurable() {
    for (level, expect) in [
        (Some(Level::WARN), Some(Level::WARN)),
        (Some(Level::INFO), Some(Level::INFO)),
        (None, None),
    ] {
        let (c, _g) = capture();
        let m = SimManager::new();
        m.set(Op::Connect, Behavior::Hang);
        let p = Pool::builder(m)
            .name("traced-timeout-level")
            .acquire_timeout(Duration::from_millis(50))
            .connect_timeout(Duration::from_secs(5))
            .timeout_log_level(level)
            .build()
            .expect("pool");
        assert!(p.get().await.is_err());
        let got: Vec<Level> = c
            .events()
            .iter()
            .filter(|e| e.fields.f64("waited_s").is_some())
            .map(|e| e.level)
            .collect();
        assert_eq!(got, expect.into_iter().collect::<Vec<_>>(), "{level:?}");
        p.close();
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_events_name_the_pool() {
    let (c, _g) = capture();
    let m = SimManager::new();
    m.set_refuse(true);
    let p = Pool::builder(m.clone())
        .name("traced-breaker")
        .breaker_threshold(Some(1))
        .breaker_backoff(Duration::from_millis(25))
        .build()
        .expect("pool");
    assert!(p.get().await.is_err());
    m.set_refuse(false);
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(p.get().await.expect("the probe succeeds"));
    let open = c.find("breaker open");
    assert_eq!(open.len(), 1, "{:?}", c.events());
    assert!(open[0].fields.f64("retry_in_s").is_some(), "{open:?}");
    let half = c.find("breaker half-open");
    assert_eq!(half.len(), 1, "{:?}", c.events());
    assert_eq!(half[0].fields.str("pool"), Some("traced-breaker"));
    assert_eq!(c.find("breaker closed").len(), 1);
    assert_every_event_names_its_pool(&c);
}

#[test]
fn trim_cycles_are_structured_events_and_the_gctrace_line() {
    let (c, _g) = capture();
    let p = object::Pool::builder(Vec::<u8>::new)
        .name("traced-trim")
        .build()
        .expect("pool");
    let mut v = p.get();
    v.reserve(4096);
    drop(v);
    let trace = p.trim();
    let t = c
        .events()
        .into_iter()
        .find(|e| e.target == "poolguard::object::trim")
        .expect("a trim event");
    assert_eq!(t.level, Level::INFO);
    let f = &t.fields;
    assert_eq!(f.str("pool"), Some("traced-trim"));
    assert_eq!(f.str("message"), Some(trace.to_string().as_str()));
    assert_eq!(f.str("cause"), Some("manual"));
    assert_eq!(f.0.get("cycle"), Some(&V::U64(trace.cycle)));
    assert_eq!(
        f.0.get("before_objects"),
        Some(&V::U64(trace.before.0 as u64))
    );
    assert_eq!(
        f.0.get("freed_bytes"),
        Some(&V::U64(trace.freed_bytes as u64))
    );
    assert_eq!(f.f64("took_s"), Some(trace.took.as_secs_f64()));
    assert_eq!(f.f64("max_pause_s"), Some(trace.max_pause.as_secs_f64()));
    assert_every_event_names_its_pool(&c);
}
