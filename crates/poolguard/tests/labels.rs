//! Labels: every unnamed pool and reclaimer gets a distinct default, and a second live pool
//! taking a label already in use is warned about once through `tracing`; a label freed by
//! dropping the last handle can be taken again without a warning.

use std::io::Write;
use std::sync::{Arc, Mutex};

use poolguard::conn;
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::SimManager;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn warnings(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("poolguard::diag::labels"))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `f` with a subscriber capturing warnings on this thread.
fn capture<R>(f: impl FnOnce() -> R) -> (R, Captured) {
    let out = Captured::default();
    let writer = out.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let r = tracing::subscriber::with_default(sub, f);
    (r, out)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

#[test]
fn unnamed_pools_and_reclaimers_get_distinct_defaults_without_warnings() {
    let (labels, out) = capture(|| {
        let a = object::Pool::builder(Vec::<u8>::new).build().unwrap();
        let b = object::Pool::builder(Vec::<u8>::new).build().unwrap();
        let ra = Reclaimer::builder().build().unwrap();
        let rb = Reclaimer::builder().build().unwrap();
        let rt = runtime();
        let (ca, cb) = rt.block_on(async {
            let ca = conn::Pool::builder(SimManager::new()).build().unwrap();
            let cb = conn::Pool::builder(SimManager::new()).build().unwrap();
            (ca.config().name.clone(), cb.config().name.clone())
        });
        (
            [a.name().to_owned(), b.name().to_owned()],
            [ra.stats().name.to_string(), rb.stats().name.to_string()],
            [ca, cb],
        )
    });
    let (objects, reclaimers, conns) = labels;
    assert_ne!(objects[0], objects[1]);
    assert_ne!(reclaimers[0], reclaimers[1]);
    assert_ne!(conns[0], conns[1]);
    for o in &objects {
        assert!(o.starts_with("Vec<u8>-"), "{o}");
    }
    for r in &reclaimers {
        assert!(r.starts_with("reclaim-"), "{r}");
    }
    for c in &conns {
        // The manager type's short name and a sequence number.
        assert!(c.starts_with("SimManager-"), "{c}");
    }
    assert!(out.warnings().is_empty(), "{:?}", out.warnings());
}

#[test]
fn a_second_live_object_pool_under_one_name_is_warned_about_once() {
    let ((), out) = capture(|| {
        let a = object::Pool::builder(Vec::<u8>::new)
            .name("shared-name")
            .build()
            .unwrap();
        let b = object::Pool::builder(Vec::<u8>::new)
            .name("shared-name")
            .build()
            .unwrap();
        // Clones are the same pool: no warning, and the label stays taken until the last one.
        let a2 = a.clone();
        drop(a);
        drop(b);
        drop(a2);
        // Free again: a new pool may take it silently.
        let _c = object::Pool::builder(Vec::<u8>::new)
            .name("shared-name")
            .build()
            .unwrap();
    });
    let w = out.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("\"shared-name\"") && w[0].contains("object pool"),
        "{w:?}"
    );
}

#[test]
fn a_second_live_connection_pool_under_one_label_is_warned_about_once() {
    let ((), out) = capture(|| {
        runtime().block_on(async {
            let a = conn::Pool::builder(SimManager::new())
                .name("pg-main")
                .build()
                .unwrap();
            let a2 = a.clone();
            let b = conn::Pool::builder(SimManager::new())
                .name("pg-main")
                .build()
                .unwrap();
            drop(b);
            drop(a);
            // `a2` still holds the first pool: its label is still live.
            let c = conn::Pool::builder(SimManager::new())
                .name("pg-main")
                .build()
                .unwrap();
            drop(c);
            drop(a2);
            let _d = conn::Pool::builder(SimManager::new())
                .name("pg-main")
                .build()
                .unwrap();
        })
    });
    let w = out.warnings();
    assert_eq!(w.len(), 2, "b and c each met a live pg-main: {w:?}");
    assert!(w.iter().all(|l| l.contains("connection pool")), "{w:?}");
}

#[test]
fn a_second_live_reclaimer_under_one_name_is_warned_about() {
    let ((), out) = capture(|| {
        let a = Reclaimer::builder().name("drops").build().unwrap();
        let b = Reclaimer::builder().name("drops").build().unwrap();
        drop(b);
        drop(a);
        let _c = Reclaimer::builder().name("drops").build().unwrap();
    });
    let w = out.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("reclaimer"), "{w:?}");
}
