//! poolguard: pooling that cannot silently hurt the service that uses it.
//!
//! * [`object`]: an object pool (`sync.Pool` done right): per-thread caching, victim-generation
//!   trimming, hard caps, mandatory reset on return, byte accounting.
//! * [`reclaim`]: a bounded, watched queue that runs expensive drops and async closes off the
//!   hot path (the finalizer queue done right).
//! * [`conn`]: an async connection pool generic over a [`conn::Manager`], with fair waiting,
//!   bounded timeouts, leak detection and a circuit breaker.
//! * [`diag`]: the shared diagnostics vocabulary: histograms, cycle traces, Prometheus text,
//!   a registry of every live engine.
//!
//! See [`architecture`] for the invariants, the data flow and the lock order.
//!
//! # Cargo features
//!
//! | Feature | Default | What it enables | Brings |
//! |---|---|---|---|
//! | `object` | yes | [`object`], the object pool (implies `reclaim`: a pool can hand its big drops to a reclaimer) | — |
//! | `reclaim` | yes | [`reclaim`], the reclaimer: drops on its own threads | — |
//! | `tokio` | with `conn` | with `reclaim`, the reclaimer's async closes: `Reclaimer::close_async`, `flush_async`, `Builder::runtime` | tokio (`rt`, `sync`, `time`) |
//! | `conn` | yes | [`conn`], the async connection pool (implies `tokio`) | tokio (`rt`, `sync`, `time`, `macros`), fastrand |
//! | `bytes` | no | `Recycle` for `bytes::BytesMut` (implies `object`) | bytes |
//! | `serde` | no | `Serialize` for every diagnostics snapshot; `Deserialize` for [`conn::Config`] (durations as `"30s"`, unknown keys refused) and `conn::Config::from_env` | serde, humantime |
//! | `metrics` | no | `diag::facade`: a bridge from a [`diag::Registry`] of engines to the [`metrics`](https://docs.rs/metrics) facade (OpenTelemetry's `db.client.connection.*` names); with `tokio`, `Registry::spawn_metrics_bridge` | metrics |
//!
//! Only the object pool, without tokio:
//!
//! ```toml
//! poolguard = { version = "0.1", default-features = false, features = ["object"] }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// Denied everywhere; allowed only in the per-thread tier (`object::local`), see there.
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]
// With only some engines compiled, parts of the shared internals (labels, deadlines, the
// reclaimer's close bookkeeping) have no caller; the full build checks them.
#![cfg_attr(
    not(all(feature = "object", feature = "reclaim", feature = "conn")),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "tokio")]
pub(crate) mod close_task;
pub(crate) mod deadline;
pub(crate) mod sync;

#[cfg(feature = "conn")]
#[cfg_attr(docsrs, doc(cfg(feature = "conn")))]
pub mod conn;
pub mod diag;
#[cfg(feature = "object")]
#[cfg_attr(docsrs, doc(cfg(feature = "object")))]
pub mod object;
#[cfg(feature = "reclaim")]
#[cfg_attr(docsrs, doc(cfg(feature = "reclaim")))]
pub mod reclaim;

/// How poolguard is built: the crates, each module's invariants, the data flow of every
/// engine and the order in which its locks are taken. (A documentation page; it has no items.)
#[doc = include_str!("../ARCHITECTURE.md")]
pub mod architecture {}

/// The crate README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
