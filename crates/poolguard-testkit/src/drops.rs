//! Drop counting: prove that every value is dropped exactly once.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

/// Counts creations and drops of the [`Tracked`] values it made.
#[derive(Debug, Default, Clone)]
pub struct DropCounter {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    created: AtomicU64,
    dropped: AtomicU64,
}

impl DropCounter {
    /// A fresh counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracked value carrying `payload`.
    pub fn track<T>(&self, payload: T) -> Tracked<T> {
        self.inner.created.fetch_add(1, SeqCst);
        Tracked {
            payload,
            counts: Arc::clone(&self.inner),
        }
    }

    /// How many tracked values were made.
    pub fn created(&self) -> u64 {
        self.inner.created.load(SeqCst)
    }

    /// How many were dropped.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(SeqCst)
    }

    /// How many are still alive (`created - dropped`).
    pub fn alive(&self) -> u64 {
        self.created() - self.dropped()
    }
}

/// A value whose drop is counted by the [`DropCounter`] that made it.
#[derive(Debug)]
pub struct Tracked<T> {
    /// The value carried.
    pub payload: T,
    counts: Arc<Counts>,
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_drop_once() {
        let c = DropCounter::new();
        let a = c.track(1);
        let b = c.track(2);
        assert_eq!(c.alive(), 2);
        drop(a);
        assert_eq!((c.created(), c.dropped(), c.alive()), (2, 1, 1));
        drop(b);
        assert_eq!(c.alive(), 0);
    }
}
