//! Reclaimer: the finalizer queue done right.
//!
//! Rust drops a value on the thread that lets it go, so dropping a map of a million entries
//! or a connection that must say goodbye to its server lands on the hot path. A
//! [`Reclaimer`] moves those drops to a few worker threads, without the flaw of Go's
//! single finalizer goroutine (and of crates that defer drops to one thread behind an
//! unbounded queue): one blocking drop cannot stall the others, and the queue cannot grow
//! without bound.
//!
//! * [`Reclaimer::defer`] queues a value to be dropped on a worker. It never blocks on a job
//!   and never grows the queue past its capacity: when full, the value is dropped on the
//!   caller (default, counted) or handed back ([`WhenFull`]).
//! * [`Reclaimer::close_async`] runs an async close (a connection's goodbye) on the tokio
//!   runtime given to the builder, under a timeout, with a bounded number in flight.
//! * A watchdog reports a job running past `slow_threshold` while it still runs (stats,
//!   `tracing` warning, [`Builder::on_watchdog`]), and retires a worker whose job
//!   runs past `stuck_threshold`, starting a replacement within `max_threads`.
//! * [`Reclaimer::flush`] waits for everything deferred before the call. Dropping the last
//!   handle shuts down: flush within `shutdown_timeout`, drop the rest on the dropping
//!   thread (counted), join the threads.
//!
//! There is no global reclaimer: the handle is explicit and clonable, and one reclaimer may
//! serve many pools. Threads are owned by the handles and stop when the last one is dropped.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use poolguard::reclaim::Reclaimer;
//!
//! let reclaimer = Reclaimer::builder().workers(2).capacity(1024).build()?;
//! let big: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
//! reclaimer.defer_labelled("cache-generation", big); // dropped on a worker
//! reclaimer.flush(Duration::from_secs(1))?;
//! assert_eq!(reclaimer.stats().completed, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "tokio")]
mod close;
mod config;
mod doctor;
mod metrics;
mod queue;
mod reclaimer;
mod register;
mod shutdown;
mod stats;
mod watchdog;
mod worker;

pub use config::{
    BuildError, Builder, Config, WhenFull, MAX_CAPACITY, MAX_CLOSES_IN_FLIGHT, MAX_THREADS,
    MIN_THRESHOLD,
};
pub use queue::Refusal;
pub use reclaimer::{Deferred, FlushTimeout, ReclaimMonitor, Reclaimer};
pub use stats::{LabelStats, ReclaimStats, ShutdownReport, SlowJob, WatchdogEvent, WatchdogKind};
