//! Test support shared by poolguard's tests, benches and lab (not published).
//!
//! Drop counters, simulated backends and a fault-injecting TCP proxy live here so that the
//! tests of every crate, the benches and `poolguard lab` exercise the same harness.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod drops;
pub mod outage;
pub mod proxy;
pub mod sim;

/// The README's code blocks, compiled and run as doctests (`cargo test -p poolguard-testkit
/// --doc`; the PostgreSQL and Redis ones use the servers `scripts/services.sh` starts).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
