//! Every engine renders through the one diagnostics trait, and (feature `serde`) serializes
//! its snapshot with stable field names.

use std::sync::Arc;

use poolguard::conn;
use poolguard::diag::{Diagnose, Kind, PrometheusWriter, Snapshot};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;

struct Three {
    object: object::Pool<Vec<u8>>,
    reclaimer: Reclaimer,
    conn: conn::Pool<NoopManager>,
}

async fn three(tag: &str) -> Three {
    let object = object::Pool::builder(Vec::<u8>::new)
        .name(format!("diag-object-{tag}"))
        .build()
        .expect("object pool");
    let reclaimer = Reclaimer::builder()
        .name(format!("diag-reclaim-{tag}"))
        .build()
        .expect("reclaimer");
    let conn = conn::Pool::builder(NoopManager)
        .name(format!("diag-conn-{tag}"))
        .build()
        .expect("conn pool");
    // Some traffic, so the figures are not all zero.
    drop(object.get());
    let _ = reclaimer.defer(vec![0u8; 16]);
    drop(conn.get().await.expect("a connection"));
    Three {
        object,
        reclaimer,
        conn,
    }
}

#[tokio::test]
async fn every_engine_renders_through_dyn_diagnose() {
    let t = three("dyn").await;
    let all: Vec<Arc<dyn Diagnose>> = vec![
        Arc::new(t.object.clone()),
        Arc::new(t.reclaimer.clone()),
        Arc::new(t.conn.clone()),
    ];
    let expect = [
        (
            "diag-object-dyn",
            Kind::ObjectPool,
            "pool=\"diag-object-dyn\"",
        ),
        (
            "diag-reclaim-dyn",
            Kind::Reclaimer,
            "reclaimer=\"diag-reclaim-dyn\"",
        ),
        (
            "diag-conn-dyn",
            Kind::ConnectionPool,
            "pool=\"diag-conn-dyn\"",
        ),
    ];
    for (d, (name, kind, label)) in all.iter().zip(expect) {
        assert_eq!(d.name(), name);
        assert_eq!(d.kind(), kind);
        let mut w = PrometheusWriter::new();
        d.write_metrics(&mut w);
        let text = w.finish();
        assert!(text.contains(label), "{name}'s metrics name it: {text}");
        // Findings are per pool: each one names this pool.
        for f in d.findings() {
            assert_eq!(f.pool, name);
        }
        let snap = d.snapshot();
        match (kind, &snap) {
            (Kind::ObjectPool, Snapshot::ObjectPool(s)) => assert_eq!(s.gets, 1),
            (Kind::Reclaimer, Snapshot::Reclaimer(s)) => assert_eq!(s.name, name),
            (Kind::ConnectionPool, Snapshot::ConnectionPool { stats, .. }) => {
                assert_eq!(stats.gets, 1)
            }
            _ => panic!("{name}: snapshot of the wrong kind: {snap:?}"),
        }
    }
    // A weak handle works too (what a registry of live pools holds).
    let weak = Arc::downgrade(&all[0]);
    assert_eq!(weak.upgrade().map(|d| d.kind()), Some(Kind::ObjectPool));
}

#[test]
fn a_reclaimer_with_findings_reports_them_through_the_trait() {
    // A full queue that drops inline: the doctor has something to say.
    let r = Reclaimer::builder()
        .name("diag-reclaim-full")
        .workers(1)
        .capacity(1)
        .build()
        .expect("reclaimer");
    let (block, wait) = std::sync::mpsc::channel::<()>();
    struct Blocker(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);
    impl Drop for Blocker {
        fn drop(&mut self) {
            let _ = self.0.lock().map(|r| r.recv());
        }
    }
    let _ = r.defer(Blocker(std::sync::Mutex::new(wait)));
    for _ in 0..8 {
        let _ = r.defer(0u64);
    }
    let d: &dyn Diagnose = &r;
    assert!(r.stats().inline_drops > 0);
    let findings = d.findings();
    assert!(!findings.is_empty(), "inline drops are a finding");
    assert!(findings.iter().all(|f| f.pool == "diag-reclaim-full"));
    drop(block);
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn snapshots_serialize_with_stable_field_names() {
    let t = three("serde").await;
    let _ = t.object.trim();
    let json = |d: &dyn Diagnose| serde_json::to_value(d.snapshot()).expect("serializes");

    let o = json(&t.object);
    let s = &o["object_pool"];
    assert_eq!(s["name"], "diag-object-serde");
    assert_eq!(s["gets"], 1);
    for k in [
        "hits_local",
        "misses",
        "returns",
        "retained_bytes",
        "trim_pauses",
    ] {
        assert!(s.get(k).is_some(), "object snapshot has `{k}`: {s}");
    }
    assert!(s["layout"]["shards"].is_u64());
    assert!(s["discards"]["over_cap"].is_u64());
    let trace = &s["recent_trims"][0];
    assert_eq!(trace["cause"], "manual");
    assert!(trace["took"].is_f64(), "durations are seconds: {trace}");
    assert!(s["trim_pauses"]["p99"].is_f64());

    let r = json(&t.reclaimer);
    let s = &r["reclaimer"];
    assert_eq!(s["name"], "diag-reclaim-serde");
    for k in [
        "capacity",
        "deferred",
        "completed",
        "inline_drops",
        "queue_wait",
        "labels",
    ] {
        assert!(s.get(k).is_some(), "reclaimer snapshot has `{k}`: {s}");
    }
    assert!(s["queue_wait"]["count"].is_u64());

    let c = json(&t.conn);
    let s = &c["connection_pool"];
    assert_eq!(s["status"]["breaker"], "closed");
    assert!(s["status"]["max_size"].is_u64());
    assert_eq!(s["stats"]["gets"], 1);
    assert!(s["stats"]["closed"].is_object());
    assert!(s["stats"]["wait_time"]["max"].is_f64());
}
