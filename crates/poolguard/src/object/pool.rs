//! The public front: [`Pool`], [`PoolGuard`] and [`Refused`], thin types over the engine
//! (`engine.rs`, `trim.rs`). All of `Pool`'s public API is the one `impl` block below.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Builder, Config};
use super::engine::Inner;
use super::hold::{HoldStart, HoldTracker};
use super::layout::Layout;
use super::owned::OwnedPoolGuard;
use super::stats::{Counters, LongHold, PoolStats, TrimCause, TrimTrace};
use super::trimmer::Trimmer;
use super::Recycle;
use crate::diag::{Finding, PrometheusWriter};

/// A bounded, self-trimming object pool. Cheap to clone (all clones share one pool).
///
/// ```
/// use poolguard::object::Pool;
///
/// let pool = Pool::builder(|| Vec::<u8>::with_capacity(4096))
///     .max_idle(256)
///     .max_object_bytes(64 * 1024)
///     .build()?;
/// {
///     let mut buf = pool.get();
///     buf.extend_from_slice(b"hello");
/// } // reset (cleared) and returned here
/// assert!(pool.get().is_empty());
/// # Ok::<(), poolguard::object::BuildError>(())
/// ```
pub struct Pool<T: Recycle + Send + 'static> {
    pub(super) inner: Arc<Inner<T>>,
}

impl<T: Recycle + Send + 'static> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Recycle + Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why a returned object was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscardReason {
    /// It reported more heap bytes than `max_object_bytes`.
    Oversized,
    /// `Recycle::reset` returned false.
    RefusedByReset,
    /// `Recycle::reset` panicked (the object was dropped, the pool is unharmed).
    ResetPanicked,
    /// Every tier was at its cap.
    OverCap,
}

/// A [`Pool::put`] that was refused: the reason, and the object back (reset) unless its
/// reset panicked.
#[non_exhaustive]
pub struct Refused<T> {
    /// Why it was refused.
    pub reason: DiscardReason,
    /// The object, handed back to the caller (`None` if its reset panicked).
    pub object: Option<T>,
}

impl<T> fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("reason", &self.reason)
            .field("object", &self.object.as_ref().map(|_| "..."))
            .finish()
    }
}

/// A checked-out object; returns it to the pool (reset) when dropped.
///
/// The guard borrows its pool; to hand an object to another thread, move the guard within a
/// scope (`std::thread::scope`), check it out with [`Pool::get_owned`] (a guard that holds
/// the pool), or [`detach`](Self::detach) it and [`put`](Pool::put) it back.
pub struct PoolGuard<'a, T: Recycle + Send + 'static> {
    pool: &'a Pool<T>,
    /// `Some` until the guard is dropped or detached.
    obj: Option<Box<T>>,
    hold: Option<HoldStart>,
}

impl<T: Recycle + Send + fmt::Debug + 'static> fmt::Debug for PoolGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&self.obj).finish()
    }
}

impl<T: Recycle + Send + 'static> Deref for PoolGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> DerefMut for PoolGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> PoolGuard<'_, T> {
    /// Takes the object out of the pool for good (it will not be returned).
    pub fn detach(mut self) -> T {
        self.end_hold();
        Counters::add(&self.pool.inner.counters.detached, 1);
        match self.obj.take() {
            Some(o) => *o,
            None => unreachable!("a live guard always holds its object"),
        }
    }

    fn end_hold(&mut self) {
        if let (Some(start), Some(t)) = (self.hold.take(), &self.pool.inner.hold) {
            t.end(start, &self.pool.inner.name);
        }
    }
}

impl<T: Recycle + Send + 'static> Drop for PoolGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.hold.is_some() {
            self.end_hold();
        }
        if let Some(o) = self.obj.take() {
            let inner = &self.pool.inner;
            if let Err((reason, Some(o))) = inner.give_back(o) {
                // Only an oversized object is worth a reclaimer job: it is the big drop.
                let offload = reason == DiscardReason::Oversized;
                inner.dispose(vec![(o, 0)], offload);
            }
        }
    }
}

impl<T: Recycle + Send + 'static> Pool<T> {
    /// A builder around `factory`, the function called on a miss (Go's `New`).
    pub fn builder(factory: impl Fn() -> T + Send + Sync + 'static) -> Builder<T> {
        Builder::new(factory)
    }

    pub(crate) fn from_builder(b: Builder<T>) -> Self {
        Self {
            inner: Arc::new(Inner::new(b)),
        }
    }

    /// Checks out an object: the calling thread's cached one, else one from the shared
    /// stacks, else a new one from the factory. Returned (reset) when the guard drops.
    #[track_caller]
    #[inline]
    pub fn get(&self) -> PoolGuard<'_, T> {
        let obj = self.inner.take();
        // `Location::caller()` is a constant here (track_caller); read it outside the closure,
        // which would otherwise report this file.
        let site = Location::caller();
        let hold = self.inner.hold.as_ref().map(|h| h.start(site));
        PoolGuard {
            pool: self,
            obj: Some(obj),
            hold,
        }
    }

    /// Checks out an object like [`get`](Self::get), behind a guard that holds a handle to
    /// the pool instead of borrowing it: `'static`, so it can move into a spawned thread or
    /// task. Dropping it resets and returns the object the same way.
    ///
    /// ```
    /// use poolguard::object::Pool;
    ///
    /// let pool = Pool::builder(Vec::<u8>::new).build()?;
    /// let mut buf = pool.get_owned();
    /// std::thread::spawn(move || buf.extend_from_slice(b"off thread")).join().unwrap();
    /// assert_eq!(pool.stats().returns, 1);
    /// # Ok::<(), poolguard::object::BuildError>(())
    /// ```
    #[track_caller]
    pub fn get_owned(&self) -> OwnedPoolGuard<T> {
        OwnedPoolGuard::checkout(self)
    }

    /// Gives the pool an object obtained elsewhere (e.g. from [`PoolGuard::detach`] on
    /// another thread). It is reset first; when refused it is handed back with the reason,
    /// and the discard is counted.
    pub fn put(&self, obj: T) -> Result<(), Refused<T>> {
        self.inner
            .give_back(Box::new(obj))
            .map_err(|(reason, o)| Refused {
                reason,
                object: o.map(|b| *b),
            })
    }

    /// Runs one trim cycle now: frees what was unused since the previous cycle, demotes the
    /// rest (including the objects cached by the calling thread and by threads that exited).
    /// A live thread's cached object is aged by the cycle at that thread's next use of the
    /// pool (until then it keeps at most that one object). Concurrent gets and puts wait at
    /// most for one shard's O(1) generation swap.
    pub fn trim(&self) -> TrimTrace {
        match self.inner.trim_cycle(TrimCause::Manual, false) {
            Some(t) => t,
            None => unreachable!("a blocking trim always runs"),
        }
    }

    pub(crate) fn trim_background(&self) -> TrimTrace {
        match self.inner.trim_cycle(TrimCause::Background, false) {
            Some(t) => t,
            None => unreachable!("a blocking trim always runs"),
        }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner<T>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(w: &std::sync::Weak<Inner<T>>) -> Option<Self> {
        w.upgrade().map(|inner| Self { inner })
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How the caps were split between the tiers when the pool was built (see [`Layout`]
    /// for the formula).
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// The pool's label (unless named: the type's short name and a sequence number, e.g.
    /// `Vec<u8>-1`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// Checkouts held past `hold_threshold` right now, longest first, with their call sites
    /// (empty when hold tracking is off). Unlike the stats' `recent_long_holds`, these have
    /// not come back — maybe they never will. Trim cycles report each once via `tracing`.
    pub fn long_holds(&self) -> Vec<LongHold> {
        self.inner
            .hold
            .as_ref()
            .map_or_else(Vec::new, HoldTracker::outstanding)
    }

    /// Diagnoses misuse from the current stats: long holds, oversized discards, low hit
    /// rate, threads that only put, resets that refuse, returns refused at the caps.
    pub fn doctor(&self) -> Vec<Finding> {
        super::doctor::diagnose(&self.stats(), self.config())
    }

    /// Appends the pool's stats to a Prometheus text writer.
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        self.stats().write_prometheus(w);
    }

    /// Starts a background trimmer that runs a cycle every `interval` (an object unused for
    /// two intervals is freed). It stops when the returned handle is dropped.
    ///
    /// An interval below [`MIN_TRIM_INTERVAL`](super::MIN_TRIM_INTERVAL) (10 ms) is raised to it, with a `tracing`
    /// warning: cycles back to back would only burn a core. `Duration::MAX` means "never on
    /// its own" (the thread waits until the handle is dropped).
    pub fn trimmer(&self, interval: Duration) -> Trimmer {
        Trimmer::start(self, interval)
    }
}
