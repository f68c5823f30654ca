//! [`Registry`]: every live pool of a service in one place, held weakly.

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Diagnose, Finding, Kind, PrometheusWriter, Snapshot};

/// The registration machinery: public items in a private module, so the engines' handles
/// can implement [`Register`] while no other crate can.
#[allow(unreachable_pub)]
mod sealed {
    use crate::diag::Diagnose;

    /// Implemented by poolguard's engines only.
    pub trait Sealed {
        /// The weak registration of this engine.
        fn source(&self) -> Box<dyn Source>;
    }

    /// What an engine's registration keeps: a weak way back to it.
    pub trait Source: Send + Sync {
        /// A handle to read the engine through, or `None` once it is gone (its last handle
        /// dropped). The handle is held only while it is read.
        fn upgrade(&self) -> Option<Box<dyn Diagnose>>;
        /// The address of the engine's shared state: the same engine registered twice is
        /// kept once.
        fn addr(&self) -> usize;
        /// What does not change over the engine's life, read once at registration.
        fn facts(&self) -> Facts {
            Facts::default()
        }
    }

    /// Settings an engine keeps for life that its snapshot does not carry.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Facts {
        /// A connection pool's `min_idle`.
        pub min_idle: Option<usize>,
    }
}
pub(crate) use sealed::{Facts, Sealed, Source};

/// A poolguard engine that a [`Registry`] can hold weakly by its handle: a
/// [`conn::Pool`](crate::conn::Pool), an [`object::Pool`](crate::object::Pool) or a
/// [`Reclaimer`](crate::reclaim::Reclaimer), or a
/// [`ReclaimMonitor`](crate::reclaim::ReclaimMonitor) (registered by a monitor, a reclaimer
/// stays registered while some monitor lives, as a monitor outlives its reclaimer). Any other
/// [`Diagnose`] type registers through an `Arc`: [`Registry::register_arc`].
pub trait Register: Diagnose + Sealed {}

impl<T: Diagnose + Sealed> Register for T {}

/// A registration from an `Arc`: any [`Diagnose`] type.
struct ArcSource<T: ?Sized>(Weak<T>);

/// An upgraded [`ArcSource`].
struct Strong<T: ?Sized>(Arc<T>);

impl<T: Diagnose + ?Sized> Diagnose for Strong<T> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn kind(&self) -> Kind {
        self.0.kind()
    }
    fn snapshot(&self) -> Snapshot {
        self.0.snapshot()
    }
    fn findings(&self) -> Vec<Finding> {
        self.0.findings()
    }
    fn write_metrics(&self, w: &mut PrometheusWriter) {
        self.0.write_metrics(w);
    }
}

impl<T: Diagnose + ?Sized + 'static> Source for ArcSource<T> {
    fn upgrade(&self) -> Option<Box<dyn Diagnose>> {
        self.0
            .upgrade()
            .map(|a| Box::new(Strong(a)) as Box<dyn Diagnose>)
    }
    fn addr(&self) -> usize {
        self.0.as_ptr() as *const () as usize
    }
}

struct Entry {
    id: u64,
    source: Arc<dyn Source>,
    facts: Facts,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    list: Vec<Entry>,
}

/// An engine read through the registry: what the metrics bridge iterates over.
pub(crate) struct Live {
    /// Stable for the registration (keys the bridge's memory of earlier ticks).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) id: u64,
    pub(crate) engine: Box<dyn Diagnose>,
    /// Read by the metrics bridge only.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) facts: Facts,
}

/// Every registered pool, connection pool and reclaimer of a service, held weakly.
///
/// * Registering keeps nothing alive and adds nothing to the engine's own paths: the
///   registry stores a weak reference, and reads the engine only when asked (a snapshot,
///   the findings, the Prometheus text, a metrics tick), through the engine's ordinary
///   `status`/`stats` calls.
/// * An engine whose last handle is dropped disappears from every answer.
/// * Cheap to share: a clone is another handle on the same registry (`Send + Sync`).
///
/// While it is being read, the registry holds a handle to each live engine; when the last
/// other handle goes away during that read, the engine shuts down at the end of the read on
/// the reading thread (a connection pool starts closing its connections, an object pool
/// drops what it retained). A reclaimer is read through its monitor and always shuts down on
/// the thread that drops its last handle.
///
/// ```
/// use poolguard::diag::Registry;
/// use poolguard::object::Pool;
///
/// let registry = Registry::new();
/// let pool = Pool::builder(Vec::<u8>::new).name("buffers").build()?;
/// registry.register(&pool);
/// assert!(registry.prometheus().contains("pool=\"buffers\""));
/// drop(pool);
/// assert!(registry.is_empty()); // a dropped pool leaves the registry by itself
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Entries>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("registered", &self.inner.lock().list.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a poolguard engine by its handle (a `&conn::Pool`, `&object::Pool` or
    /// `&Reclaimer`). Returns `false` when that engine was already registered (it is kept
    /// once).
    pub fn register<P: Register + ?Sized>(&self, engine: &P) -> bool {
        self.add(engine.source())
    }

    /// Registers any [`Diagnose`] type held in an `Arc` (weakly: when the last `Arc` is
    /// dropped, it leaves the registry). Returns `false` when it was already registered.
    pub fn register_arc<T: Diagnose + ?Sized + 'static>(&self, engine: &Arc<T>) -> bool {
        self.add(Box::new(ArcSource(Arc::downgrade(engine))))
    }

    fn add(&self, source: Box<dyn Source>) -> bool {
        let facts = source.facts();
        let addr = source.addr();
        let source: Arc<dyn Source> = Arc::from(source);
        let mut e = self.inner.lock();
        let handles = Self::prune(&mut e.list);
        // The address is only compared among live entries: a dead engine's memory may be
        // reused by a new one.
        let fresh = !e.list.iter().any(|x| x.source.addr() == addr);
        if fresh {
            e.next_id += 1;
            let id = e.next_id;
            e.list.push(Entry { id, source, facts });
        }
        drop(e);
        drop(handles);
        fresh
    }

    /// Takes the dead entries out (dropping a weak reference runs no engine code). The
    /// handles it upgraded to tell the live ones are returned, to be dropped after the lock
    /// is released: one may be an engine's last, whose drop starts its shutdown.
    fn prune(list: &mut Vec<Entry>) -> Vec<Box<dyn Diagnose>> {
        let mut handles = Vec::new();
        list.retain(|e| match e.source.upgrade() {
            Some(h) => {
                handles.push(h);
                true
            }
            None => false,
        });
        handles
    }

    /// The live engines, in registration order (read outside the registry's lock).
    pub(crate) fn live(&self) -> Vec<Live> {
        let sources: Vec<(u64, Arc<dyn Source>, Facts)> = self
            .inner
            .lock()
            .list
            .iter()
            .map(|e| (e.id, Arc::clone(&e.source), e.facts))
            .collect();
        let mut gone = false;
        let live: Vec<Live> = sources
            .into_iter()
            .filter_map(|(id, s, facts)| match s.upgrade() {
                Some(engine) => Some(Live { id, engine, facts }),
                None => {
                    gone = true;
                    None
                }
            })
            .collect();
        if gone {
            let mut e = self.inner.lock();
            let handles = Self::prune(&mut e.list);
            drop(e);
            drop(handles);
        }
        live
    }

    /// Handles to the live engines, in registration order. Holding them keeps the engines
    /// alive: read them and let them go.
    pub fn entries(&self) -> Vec<Box<dyn Diagnose>> {
        self.live().into_iter().map(|l| l.engine).collect()
    }

    /// How many registered engines are alive.
    pub fn len(&self) -> usize {
        self.live().len()
    }

    /// No registered engine is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name, kind and figures of every live engine.
    pub fn snapshots(&self) -> Vec<(String, Kind, Snapshot)> {
        self.live()
            .into_iter()
            .map(|l| (l.engine.name(), l.engine.kind(), l.engine.snapshot()))
            .collect()
    }

    /// The doctor's findings of every live engine (each names its engine in `pool`).
    pub fn findings(&self) -> Vec<Finding> {
        self.live()
            .into_iter()
            .flat_map(|l| l.engine.findings())
            .collect()
    }

    /// Appends the Prometheus text of every live engine.
    pub fn write_metrics(&self, w: &mut PrometheusWriter) {
        for l in self.live() {
            l.engine.write_metrics(w);
        }
    }

    /// The Prometheus text of every live engine.
    pub fn prometheus(&self) -> String {
        let mut w = PrometheusWriter::new();
        self.write_metrics(&mut w);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str);

    impl Diagnose for Fake {
        fn name(&self) -> String {
            self.0.to_owned()
        }
        fn kind(&self) -> Kind {
            Kind::ObjectPool
        }
        fn snapshot(&self) -> Snapshot {
            unimplemented!("not read by these tests")
        }
        fn findings(&self) -> Vec<Finding> {
            Vec::new()
        }
        fn write_metrics(&self, w: &mut PrometheusWriter) {
            w.gauge("fake_up", "Up.", &[("pool", self.0)], 1.0);
        }
    }

    #[test]
    fn arcs_register_once_and_leave_when_dropped() {
        let r = Registry::new();
        let a = Arc::new(Fake("a"));
        let b: Arc<dyn Diagnose> = Arc::new(Fake("b"));
        assert!(r.register_arc(&a));
        assert!(!r.register_arc(&a), "the same engine twice");
        assert!(r.register_arc(&b));
        let names: Vec<String> = r.entries().iter().map(|e| e.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let text = r.clone().prometheus();
        assert!(text.contains("fake_up{pool=\"a\"} 1") && text.contains("fake_up{pool=\"b\"} 1"));
        drop(a);
        let names: Vec<String> = r.entries().iter().map(|e| e.name()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(r.inner.lock().list.len(), 1, "the dead entry was pruned");
        drop(b);
        assert!(r.is_empty());
    }
}
