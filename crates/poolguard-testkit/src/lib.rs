//! Test support shared by poolguard's tests, benches and lab (not published).
//!
//! Drop counters and outage drills live here, and the simulated backends and fault-injecting
//! TCP proxy of the published `poolguard-faults` crate are re-exported, so that the tests of
//! every crate, the benches and `poolguard lab` exercise the same harness.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

#[cfg(feature = "browser")]
#[cfg_attr(docsrs, doc(cfg(feature = "browser")))]
pub mod browser;
pub mod drops;
pub mod outage;
#[cfg(target_os = "linux")]
pub mod tcp;
/// The simulator and the fault proxy live in the published `poolguard-faults` crate; they
/// are re-exported here so every test keeps one import path.
pub use poolguard_faults::{proxy, sim};

/// The README's code blocks, compiled and run as doctests (`cargo test -p poolguard-testkit
/// --doc`; the PostgreSQL and Redis ones use the servers `scripts/services.sh` starts).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
