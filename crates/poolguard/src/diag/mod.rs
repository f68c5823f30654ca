//! Diagnostics shared by every pool: latency histograms, doctor findings and the
//! Prometheus text format.
//!
//! Each pool type keeps its own counters; this module only gives them one vocabulary, so that
//! a service can render every pool it owns the same way: hold them in a [`Registry`] (weakly)
//! and read them all at once, as Prometheus text or (feature `metrics`) through the
//! [`metrics`](https://docs.rs/metrics) facade with the `facade` module's `MetricsBridge`.

mod diagnose;
mod doctor;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod facade;
mod histogram;
pub(crate) mod labels;
mod name;
mod prometheus;
pub(crate) mod registry;
pub(crate) mod slab;

#[cfg(feature = "serde")]
pub(crate) use diagnose::ser;
pub use diagnose::{Diagnose, Kind, Snapshot};
pub use doctor::{Finding, Severity};
#[cfg(feature = "metrics")]
pub use facade::MetricsBridge;
#[cfg(all(feature = "metrics", feature = "tokio"))]
pub use facade::{BridgeError, BridgeTask};
pub use histogram::{Bucket, Histogram, HistogramSnapshot};
pub use name::{validate_name, NameError, MAX_NAME_BYTES};
pub use prometheus::PrometheusWriter;
pub use registry::{Register, Registry};
