//! An async connection pool generic over a [`Manager`]: every wait bounded, fair FIFO
//! handoff, leak detection with call sites, a circuit breaker, and errors that say why.
//!
//! ```no_run
//! # async fn demo<M: poolguard::conn::Manager>(manager: M) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use poolguard::conn::Pool;
//!
//! let pool = Pool::builder(manager)
//!     .max_size(16)
//!     .min_idle(2)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .leak_threshold(Some(Duration::from_secs(30)))
//!     .build()?;
//! let conn = pool.get().await?; // Deref/DerefMut to M::Connection
//! drop(conn); // back to the pool (or to the oldest waiter)
//! println!("{:?}", pool.status());
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! * [`Pool`] is a cheap, clonable handle; [`PooledConnection`] is the checked-out
//!   connection, which goes back on drop. All state sits behind one lock that is never held
//!   across an await. A thread's usual checkout cycle does not take it: the thread reuses
//!   the connection it returned last from a small per-thread lane (a lock and a cache line
//!   of its own), which the pool lock drains whenever it needs the whole picture (waiting
//!   callers, close, pause, eviction, maintenance, status).
//! * Callers only ever wait on the pool. Connections are opened on background tasks and
//!   handed to the oldest waiter; returns go to the oldest waiter before the idle list.
//! * Every connection is owned by exactly one guard at every await point, so cancellation
//!   loses nothing: dropping a `get` future or a holder's task at any point neither leaks a
//!   connection nor loses a slot.

mod acquire;
mod breaker;
mod cancel;
mod config;
#[cfg(feature = "serde")]
pub mod config_serde;
mod control;
mod credentials;
mod diagnose;
mod doctor;
mod engine;
mod error;
mod failover;
mod guard;
mod hooks;
mod internals;
mod lanes;
mod leak;
mod maintenance;
mod manager;
mod nested;
mod pool;
mod register;
mod release;
mod secret;
mod stats;

pub use breaker::BreakerState;
pub use config::{
    BuildError, Builder, Config, IdleOrder, MAX_DURATION, MAX_FAILOVER_BURST, MAX_SIZE,
    MAX_WAITERS, MIN_MAINTENANCE_INTERVAL,
};
pub use control::{ConnMetrics, PauseMode};
pub use credentials::{
    Credentials, CredentialsError, CredentialsFault, CredentialsFuture, CredentialsProvider,
};
pub use error::{Error, Holder, Phase, TimeoutSnapshot};
pub use guard::{OwnedPooledConnection, PooledConnection};
pub use hooks::{HookError, HookFailure, HookFault, HookFuture, HookName, HookStats};
pub use manager::{Classify, ErrorClass, Manager};
pub use pool::Pool;
pub use pool::StartError;
pub use secret::Secret;
pub use stats::{CloseReason, StatsSnapshot, Status};
