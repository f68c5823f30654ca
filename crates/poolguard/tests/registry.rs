//! The registry holds every kind of engine weakly: registered by its handle, read while it
//! lives, gone from every answer once its last handle is dropped.

use std::sync::Arc;

use poolguard::conn;
use poolguard::diag::{Diagnose, Kind, Registry, Snapshot};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;

fn names(r: &Registry) -> Vec<String> {
    r.entries().iter().map(|e| e.name()).collect()
}

#[tokio::test]
async fn every_kind_registers_by_handle_and_leaves_when_dropped() {
    let registry = Registry::new();
    let object = object::Pool::builder(Vec::<u8>::new)
        .name("reg-object")
        .build()
        .expect("object pool");
    let reclaimer = Reclaimer::builder()
        .name("reg-reclaim")
        .build()
        .expect("reclaimer");
    let conn = conn::Pool::builder(NoopManager)
        .name("reg-conn")
        .build()
        .expect("conn pool");
    assert!(registry.register(&object));
    assert!(registry.register(&reclaimer));
    assert!(registry.register(&conn));
    // Another handle on the same engine is the same engine.
    assert!(!registry.register(&conn.clone()));
    assert!(!registry.clone().register(&object.clone()));
    assert_eq!(names(&registry), ["reg-object", "reg-reclaim", "reg-conn"]);

    drop(object.get());
    drop(conn.get().await.expect("a connection"));
    let snaps = registry.snapshots();
    assert_eq!(snaps.len(), 3);
    for (name, kind, snap) in &snaps {
        match (kind, snap) {
            (Kind::ObjectPool, Snapshot::ObjectPool(s)) => assert_eq!(s.gets, 1, "{name}"),
            (Kind::Reclaimer, Snapshot::Reclaimer(s)) => assert_eq!(s.name, "reg-reclaim"),
            (Kind::ConnectionPool, Snapshot::ConnectionPool { stats, .. }) => {
                assert_eq!(stats.gets, 1, "{name}")
            }
            other => panic!("{name}: kind and snapshot disagree: {other:?}"),
        }
    }
    for f in registry.findings() {
        assert!(f.pool.starts_with("reg-"), "{f:?}");
    }
    let text = registry.prometheus();
    for label in [
        "pool=\"reg-object\"",
        "reclaimer=\"reg-reclaim\"",
        "pool=\"reg-conn\"",
    ] {
        assert!(text.contains(label), "{label} missing from:\n{text}");
    }

    // A clone of a connection pool keeps it registered; the last handle takes it away (the
    // pool closes, though its state outlives it while it shuts down).
    let conn2 = conn.clone();
    drop(conn);
    assert_eq!(registry.len(), 3);
    drop(conn2);
    assert_eq!(names(&registry), ["reg-object", "reg-reclaim"]);
    assert!(!registry.prometheus().contains("reg-conn"));

    drop(object);
    assert_eq!(names(&registry), ["reg-reclaim"]);
    // A monitor does not keep a reclaimer registered by its handle.
    let monitor = reclaimer.monitor();
    drop(reclaimer);
    assert!(registry.is_empty());
    assert_eq!(registry.prometheus(), "");
    assert_eq!(monitor.name(), "reg-reclaim");
}

#[tokio::test]
async fn a_registration_keeps_nothing_alive_and_reads_arcs_of_any_diagnose() {
    let registry = Registry::new();
    let pool: Arc<dyn Diagnose> = Arc::new(
        object::Pool::builder(String::new)
            .name("reg-arc")
            .build()
            .expect("object pool"),
    );
    assert!(registry.register_arc(&pool));
    assert!(!registry.register_arc(&pool));
    assert_eq!(Arc::strong_count(&pool), 1, "the registry holds it weakly");
    assert_eq!(names(&registry), ["reg-arc"]);
    drop(pool);
    assert!(registry.entries().is_empty());
}

#[test]
fn a_reclaimer_registered_by_its_monitor_stays_while_a_monitor_lives() {
    let registry = Registry::new();
    let reclaimer = Reclaimer::builder()
        .name("reg-monitored")
        .build()
        .expect("reclaimer");
    let monitor = reclaimer.monitor();
    assert!(registry.register(&monitor));
    assert!(
        !registry.register(&reclaimer),
        "the monitor and its reclaimer are one engine"
    );
    drop(reclaimer);
    let snaps = registry.snapshots();
    assert_eq!(snaps.len(), 1);
    match &snaps[0].2 {
        Snapshot::Reclaimer(s) => assert!(s.shutdown.is_some(), "read after the shutdown"),
        other => panic!("{other:?}"),
    }
    drop(monitor);
    assert!(registry.is_empty());
}

#[test]
fn a_registry_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Registry>();
}
