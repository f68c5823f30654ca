//! One interface over every engine's diagnostics: [`Diagnose`].
//!
//! An object pool, a reclaimer and a connection pool each implement it, so a service (or a
//! registry of live pools) can hold them as `Arc<dyn Diagnose>` or `Weak<dyn Diagnose>` and
//! render them all the same way: name, kind, a snapshot of the figures, the doctor's
//! findings and Prometheus text.
//!
//! ```
//! use poolguard::diag::{Diagnose, Kind, PrometheusWriter};
//! use poolguard::object::Pool;
//! use poolguard::reclaim::Reclaimer;
//!
//! let pool = Pool::builder(String::new).name("strings").build()?;
//! let reclaimer = Reclaimer::builder().name("drops").build()?;
//! let all: Vec<&dyn Diagnose> = vec![&pool, &reclaimer];
//! let mut w = PrometheusWriter::new();
//! for d in &all {
//!     println!("{} ({:?}): {} findings", d.name(), d.kind(), d.findings().len());
//!     d.write_metrics(&mut w);
//! }
//! assert_eq!(all[1].kind(), Kind::Reclaimer);
//! assert!(w.finish().contains("reclaimer=\"drops\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "conn")]
use crate::conn::{Holder, StatsSnapshot, Status};
#[cfg(feature = "object")]
use crate::object::PoolStats;
#[cfg(feature = "reclaim")]
use crate::reclaim::ReclaimStats;

use super::{Finding, PrometheusWriter};

/// Which engine a [`Diagnose`] implementor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Kind {
    /// A [`crate::object::Pool`].
    ObjectPool,
    /// A [`crate::reclaim::Reclaimer`].
    Reclaimer,
    /// A [`crate::conn::Pool`].
    ConnectionPool,
}

impl Kind {
    /// The kind as a stable snake_case word (`object_pool`, `reclaimer`, `connection_pool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ObjectPool => "object_pool",
            Self::Reclaimer => "reclaimer",
            Self::ConnectionPool => "connection_pool",
        }
    }
}

/// The figures of one engine at one moment.
///
/// With the `serde` feature, a snapshot (and everything in it) implements
/// `serde::Serialize`: the variant is an externally tagged snake_case key
/// (`{"object_pool": {...}}`, `{"reclaimer": {...}}`, `{"connection_pool": {"status": ...,
/// "stats": ...}}`), every field keeps its Rust name (snake_case), every duration is a number
/// of seconds (`f64`), a histogram is `{count, sum, mean, max, p50, p95, p99}` (seconds) and
/// a call site is the string `file:line:column`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
// A snapshot is a short-lived value taken for one report, never stored in bulk: boxing the
// connection pool's figures would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Snapshot {
    /// An object pool's stats.
    #[cfg(feature = "object")]
    ObjectPool(PoolStats),
    /// A reclaimer's stats.
    #[cfg(feature = "reclaim")]
    Reclaimer(ReclaimStats),
    /// A connection pool's state now, its totals and who holds its connections.
    #[cfg(feature = "conn")]
    #[non_exhaustive]
    ConnectionPool {
        /// The pool right now.
        status: Status,
        /// Totals since it was built.
        stats: StatsSnapshot,
        /// The checked-out connections, oldest first (`conn::Pool::holders`).
        holders: Vec<Holder>,
    },
}

/// What every engine tells about itself. Object safe: hold implementors as
/// `&dyn Diagnose`, `Arc<dyn Diagnose>` or `Weak<dyn Diagnose>`.
pub trait Diagnose: Send + Sync {
    /// The engine's name (the one given to its builder, or its default label).
    fn name(&self) -> String;
    /// Which engine it is.
    fn kind(&self) -> Kind;
    /// Its figures now.
    fn snapshot(&self) -> Snapshot;
    /// The doctor's findings now (what is wrong, the evidence, the fix).
    fn findings(&self) -> Vec<Finding>;
    /// Appends its figures to a Prometheus text writer (each series labelled with the name).
    fn write_metrics(&self, w: &mut PrometheusWriter);
}

/// Everything one engine tells about itself at one moment: its name, kind, snapshot and the
/// doctor's findings. With the `serde` feature it serializes as
/// `{"name": ..., "kind": "connection_pool", "snapshot": {...}, "findings": [...]}` (the
/// snapshot as described at [`Snapshot`], each finding with `severity`, `code`, `pool`,
/// `message`, `fix`), so a status endpoint is one `serde_json` call over the pools it owns.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use poolguard::diag::Report;
/// use poolguard::object::Pool;
///
/// let pool = Pool::builder(String::new).name("strings").build()?;
/// let json = serde_json::to_value(Report::of(&pool))?;
/// assert_eq!(json["name"], "strings");
/// assert_eq!(json["kind"], "object_pool");
/// assert_eq!(json["snapshot"]["object_pool"]["gets"], 0);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Report {
    /// [`Diagnose::name`].
    pub name: String,
    /// [`Diagnose::kind`].
    pub kind: Kind,
    /// [`Diagnose::snapshot`].
    pub snapshot: Snapshot,
    /// [`Diagnose::findings`].
    pub findings: Vec<Finding>,
}

impl Report {
    /// Takes `d`'s name, kind, snapshot and findings now.
    pub fn of(d: &(impl Diagnose + ?Sized)) -> Self {
        Self {
            name: d.name(),
            kind: d.kind(),
            snapshot: d.snapshot(),
            findings: d.findings(),
        }
    }
}

/// Serializers for the `serde` feature: durations as seconds, call sites as text.
#[cfg(feature = "serde")]
pub(crate) mod ser {
    use std::panic::Location;
    use std::time::Duration;

    use serde::ser::SerializeStruct;
    use serde::{Serialize, Serializer};

    use crate::diag::HistogramSnapshot;

    pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn site<S: Serializer>(
        l: &&'static Location<'static>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(l)
    }

    impl Serialize for HistogramSnapshot {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("HistogramSnapshot", 7)?;
            st.serialize_field("count", &self.count())?;
            st.serialize_field("sum", &self.sum().as_secs_f64())?;
            st.serialize_field("mean", &self.mean().as_secs_f64())?;
            st.serialize_field("max", &self.max().as_secs_f64())?;
            st.serialize_field("p50", &self.p50().as_secs_f64())?;
            st.serialize_field("p95", &self.p95().as_secs_f64())?;
            st.serialize_field("p99", &self.p99().as_secs_f64())?;
            st.end()
        }
    }
}

#[cfg(feature = "object")]
impl<T: crate::object::Recycle + Send + 'static> Diagnose for crate::object::Pool<T> {
    fn name(&self) -> String {
        crate::object::Pool::name(self).to_owned()
    }
    fn kind(&self) -> Kind {
        Kind::ObjectPool
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::ObjectPool(self.stats())
    }
    fn findings(&self) -> Vec<Finding> {
        self.doctor()
    }
    fn write_metrics(&self, w: &mut PrometheusWriter) {
        self.write_prometheus(w);
    }
}

#[cfg(feature = "reclaim")]
impl Diagnose for crate::reclaim::Reclaimer {
    fn name(&self) -> String {
        crate::reclaim::Reclaimer::name(self).to_owned()
    }
    fn kind(&self) -> Kind {
        Kind::Reclaimer
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::Reclaimer(self.stats())
    }
    fn findings(&self) -> Vec<Finding> {
        self.doctor()
    }
    fn write_metrics(&self, w: &mut PrometheusWriter) {
        self.write_prometheus(w);
    }
}

#[cfg(feature = "reclaim")]
impl Diagnose for crate::reclaim::ReclaimMonitor {
    fn name(&self) -> String {
        crate::reclaim::ReclaimMonitor::name(self).to_owned()
    }
    fn kind(&self) -> Kind {
        Kind::Reclaimer
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::Reclaimer(self.stats())
    }
    fn findings(&self) -> Vec<Finding> {
        self.doctor()
    }
    fn write_metrics(&self, w: &mut PrometheusWriter) {
        self.stats().write_prometheus(w);
    }
}
