//! The one place that chooses between the real primitives and `loom`'s.
//!
//! The concurrent structures that loom checks import their atomics, mutexes, condition
//! variables and `Arc` from here, never from `std`, `parking_lot` or `crossbeam` directly, so
//! `RUSTFLAGS="--cfg poolguard_loom"` swaps every one of them (see `scripts/loom.sh`):
//!
//! * `atomic`, `Mutex`, `MutexGuard`, `Arc`, `thread`: `std`'s (the shared tier's shards);
//! * [`pl`]: `parking_lot`'s `Mutex`, `MutexGuard`, `Condvar` and `RwLock` (the trim and hold
//!   locks, the reclaimer's queue); under loom, shims over loom's types with the same API;
//! * [`UnsafeCell`]: the per-thread slots (the crate's one `unsafe` module); under loom,
//!   loom's, which reports any two accesses not ordered by happens-before.
//!
//! In a normal build every name is a plain re-export of the real type: no wrapper, no cost.
//! Process-wide statics (the thread-index free list, the live-label registry) keep the real
//! types, because loom's cannot live in a static; no model races them.
#![allow(unused_imports, dead_code)]

#[cfg(poolguard_loom)]
pub(crate) use loom::sync::{atomic, Arc, Mutex, MutexGuard};
#[cfg(poolguard_loom)]
pub(crate) use loom::thread;
#[cfg(poolguard_loom)]
pub(crate) use std::sync::TryLockError;

#[cfg(not(poolguard_loom))]
pub(crate) use std::sync::{atomic, Arc, Mutex, MutexGuard, TryLockError};
#[cfg(not(poolguard_loom))]
pub(crate) use std::thread;

#[cfg(poolguard_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's closure API (`with_mut`), so the per-thread cells
/// compile against either; no cost.
#[cfg(not(poolguard_loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(poolguard_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(std::cell::UnsafeCell::new(v))
    }
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// `parking_lot`'s lock API.
#[cfg(not(poolguard_loom))]
pub(crate) mod pl {
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
}

/// `parking_lot`'s lock API over loom's primitives (poisoning ignored, timeouts not
/// modelled: a timed wait is an untimed one, so a model that would time out deadlocks and
/// loom reports it).
#[cfg(poolguard_loom)]
pub(crate) mod pl {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::time::Instant;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// `Option` only so that [`Condvar::wait`] can move the inner guard out and back.
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
        }
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(g) => Some(MutexGuard(Some(g))),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(MutexGuard(Some(e.into_inner()))),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            match &self.0 {
                Some(g) => g,
                None => unreachable!("a guard holds its lock outside a wait"),
            }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            match &mut self.0 {
                Some(g) => g,
                None => unreachable!("a guard holds its lock outside a wait"),
            }
        }
    }

    /// Whether a timed wait timed out (never, under loom).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(self) -> bool {
            self.0
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, g: &mut MutexGuard<'_, T>) {
            let Some(inner) = g.0.take() else {
                unreachable!("a guard holds its lock outside a wait")
            };
            g.0 = Some(self.0.wait(inner).unwrap_or_else(PoisonError::into_inner));
        }
        pub(crate) fn wait_until<T>(
            &self,
            g: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            self.wait(g);
            WaitTimeoutResult(false)
        }
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::RwLock::new(v))
        }
        pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }
        pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
