//! [`OwnedPoolGuard`]: a checked-out object that holds its pool (a clone of the handle)
//! instead of borrowing it, so it is `'static` and can move into a spawned thread or task.
//! Same return path as [`PoolGuard`](super::PoolGuard): reset, caps, refusals disposed.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;

use super::hold::HoldStart;
use super::pool::{DiscardReason, Pool};
use super::stats::Counters;
use super::Recycle;

/// A checked-out object that owns a handle to its pool ([`Pool::get_owned`]); returns the
/// object to the pool (reset) when dropped, exactly like [`PoolGuard`](super::PoolGuard).
///
/// It is `'static`, so it can be moved into `std::thread::spawn` or `tokio::spawn`. The pool
/// (its shared state) lives at least as long as the guard.
pub struct OwnedPoolGuard<T: Recycle + Send + 'static> {
    pool: Pool<T>,
    /// `Some` until the guard is dropped or detached.
    obj: Option<Box<T>>,
    hold: Option<HoldStart>,
}

impl<T: Recycle + Send + fmt::Debug + 'static> fmt::Debug for OwnedPoolGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedPoolGuard").field(&self.obj).finish()
    }
}

impl<T: Recycle + Send + 'static> Deref for OwnedPoolGuard<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> DerefMut for OwnedPoolGuard<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.obj {
            Some(o) => o,
            None => unreachable!("a live guard always holds its object"),
        }
    }
}

impl<T: Recycle + Send + 'static> OwnedPoolGuard<T> {
    #[track_caller]
    pub(super) fn checkout(pool: &Pool<T>) -> Self {
        let obj = pool.inner.take();
        let site = Location::caller();
        let hold = pool.inner.hold.as_ref().map(|h| h.start(site));
        Self {
            pool: pool.clone(),
            obj: Some(obj),
            hold,
        }
    }

    /// The pool this object came from (and returns to).
    pub fn pool(&self) -> &Pool<T> {
        &self.pool
    }

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

impl<T: Recycle + Send + 'static> Drop for OwnedPoolGuard<T> {
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
