//! The one place that chooses between `std` and `loom` primitives.
//!
//! Concurrent structures that loom checks (the object pool's sharded two-generation stacks in
//! `object::shared`) import their atomics, mutexes and `Arc` from here, never from `std`
//! directly, so `RUSTFLAGS="--cfg poolguard_loom"` swaps every one of them (see `scripts/loom.sh`).
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
