//! Diagnostics shared by every pool: latency histograms, doctor findings and the
//! Prometheus text format (every family exported is listed in [`metrics`]).
//!
//! Each pool type keeps its own counters; this module only gives them one vocabulary, so that
//! a service can render every pool it owns the same way.

mod diagnose;
mod doctor;
mod histogram;
pub(crate) mod labels;
pub mod metrics;
mod name;
mod prometheus;
pub(crate) mod slab;

#[cfg(feature = "serde")]
pub(crate) use diagnose::ser;
pub use diagnose::{Diagnose, Kind, Report, Snapshot};
pub use doctor::{Finding, Severity};
pub use histogram::{Histogram, HistogramSnapshot, BUCKET_EDGES};
pub use name::{validate_name, NameError, MAX_NAME_BYTES};
pub use prometheus::{render, PrometheusWriter, CONTENT_TYPE};
