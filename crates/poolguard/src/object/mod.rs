//! Object pool: `sync.Pool` done right.
//!
//! A [`Pool`] hands out objects through a guard that resets and returns them on drop. It
//! never retains more than its caps (`max_idle` objects, `max_idle_bytes` heap bytes, and no
//! object over `max_object_bytes`), frees what stays unused for two trim cycles, and explains
//! itself: [`PoolStats`], gctrace-like [`TrimTrace`]s, hold tracking, [`Pool::doctor`] and
//! Prometheus text.
//!
//! ```
//! use poolguard::object::Pool;
//!
//! let pool = Pool::builder(|| String::with_capacity(256)).name("strings").build()?;
//! let mut s = pool.get();
//! s.push_str("scratch");
//! drop(s);
//! let trace = pool.trim();
//! println!("{trace}"); // pool strings trim #1 (manual): retained ...
//! assert_eq!(pool.stats().returns, 1);
//! # Ok::<(), poolguard::object::BuildError>(())
//! ```
//!
//! # Implementation
//!
//! Three tiers, all owned by the pool (never by a thread):
//!
//! * **local**: one cached object per thread, which only that thread touches: a get or a
//!   return that hits it costs no atomic read-modify-write and no lock. A trim empties the
//!   cells of threads that exited; a live thread applies the trims it missed at its next use
//!   of the pool. So a thread that stays alive but stops using a pool keeps at most one
//!   object there (of at most the cell's byte share, [`Layout::cell_bytes`]) until it uses
//!   the pool again or exits (a thread that starts later may inherit the cell of one that
//!   exited, object included): `local_slots x cell_bytes` per pool at most.
//! * **shared**: `shards` mutex-protected stacks; a thread starts at its home shard and walks
//!   the others, so returns from another thread are found.
//! * **victim**: each shard keeps two generations; a trim frees the victim one and demotes the
//!   primary one in O(1) under the shard's lock, then drops the freed batch outside every lock.
//!
//! The caps are split between the tiers when the pool is built (each cell may hold one object
//! of at most its share of the bytes, each shard its share of both caps), so the sum can never
//! exceed the configured caps and no global counter sits on the hot path. [`Layout`] gives
//! the formula; [`Pool::layout`] and [`PoolStats::layout`] show each tier's effective cap, and
//! `build()` warns (through `tracing`) when a tier's share cannot hold an object of
//! `max_object_bytes`.

mod config;
mod doctor;
mod engine;
mod hold;
mod layout;
// The one module with `unsafe` code (the owner-only per-thread slots); see its docs.
#[allow(unsafe_code)]
mod local;
mod metrics;
mod owned;
mod pool;
mod recycle;
mod register;
mod shared;
mod stats;
mod trim;
mod trimmer;
mod victim;

pub use config::{
    BuildError, Builder, Config, DEFAULT_MAX_IDLE, DEFAULT_MAX_IDLE_BYTES,
    DEFAULT_MAX_OBJECT_BYTES, MAX_IDLE, MAX_LOCAL_SLOTS, MAX_SHARDS,
};
pub use layout::Layout;
pub use owned::OwnedPoolGuard;
pub use pool::{DiscardReason, Pool, PoolGuard, Refused};
pub use recycle::Recycle;
pub use stats::{Discards, LongHold, PoolStats, Retained, RetainedByTier, TrimCause, TrimTrace};
pub use trimmer::{Trimmer, MIN_TRIM_INTERVAL};
