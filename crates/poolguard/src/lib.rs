//! poolguard: pooling that cannot silently hurt the service that uses it.
//!
//! * [`object`]: an object pool (`sync.Pool` done right): per-thread caching, victim-generation
//!   trimming, hard caps, mandatory reset on return, byte accounting.
//! * [`reclaim`]: a bounded, watched queue that runs expensive drops and async closes off the
//!   hot path (the finalizer queue done right).
//! * [`conn`]: an async connection pool generic over a [`conn::Manager`], with fair waiting,
//!   bounded timeouts, leak detection and a circuit breaker.
//! * [`diag`]: the shared diagnostics vocabulary: histograms, cycle traces, Prometheus text.
//!
//! See `ARCHITECTURE.md` at the repository root for the invariants and the data flow.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

pub(crate) mod deadline;
pub(crate) mod sync;

pub mod conn;
pub mod diag;
pub mod object;
pub mod reclaim;
