//! The one async-close engine, shared by the reclaimer's `close_async` and the connection
//! pool's closes: a close future run as a task on a tokio runtime, under its own timeout,
//! with its bookkeeping in a guard that ends exactly once however the task ends.
//!
//! # Cancel safety
//!
//! The caller's [`CloseEnd`] is wrapped in a guard created before the task is spawned and
//! moved into it: when the close completes, times out, or its task is dropped unfinished
//! (the runtime shut down, or was already shut down at `spawn`), the guard's `Drop` calls
//! [`CloseEnd::end`] once with the outcome. The future itself is dropped by the task, so
//! whatever it owns (the connection) is dropped exactly once.

use std::future::Future;
use std::time::Duration;

/// How a close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Dropped unfinished by its runtime.
    Cancelled,
    /// The close future finished within its timeout.
    Completed,
    /// Cut at its timeout (the future, and what it owned, dropped).
    TimedOut,
}

/// A close's bookkeeping: counts, in-flight sets, wake-ups.
pub(crate) trait CloseEnd: Send + 'static {
    /// Called exactly once, when the close ended.
    fn end(&mut self, outcome: Outcome);
}

struct Guard<E: CloseEnd> {
    end: E,
    outcome: Outcome,
}

impl<E: CloseEnd> Drop for Guard<E> {
    fn drop(&mut self) {
        self.end.end(self.outcome);
    }
}

/// Spawns `fut` on `rt` under `timeout`; `end` learns how it ended.
pub(crate) fn spawn<F, E>(rt: &tokio::runtime::Handle, timeout: Duration, fut: F, end: E)
where
    F: Future<Output = ()> + Send + 'static,
    E: CloseEnd,
{
    let mut guard = Guard {
        end,
        outcome: Outcome::Cancelled,
    };
    // The guard moves into the task before it is spawned: if the runtime is already shut
    // down, `spawn` drops the task, and with it the guard and the future.
    drop(rt.spawn(async move {
        guard.outcome = match tokio::time::timeout(timeout, fut).await {
            Ok(()) => Outcome::Completed,
            Err(_) => Outcome::TimedOut,
        };
        drop(guard);
    }));
}

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Record(Arc<Mutex<Vec<Outcome>>>);

    impl CloseEnd for Record {
        fn end(&mut self, outcome: Outcome) {
            self.0.lock().expect("not poisoned").push(outcome);
        }
    }

    #[test]
    fn every_close_ends_once_with_its_outcome() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let h = tokio::runtime::Handle::current();
            spawn(
                &h,
                Duration::from_secs(1),
                async {},
                Record(Arc::clone(&seen)),
            );
            spawn(
                &h,
                Duration::from_secs(1),
                std::future::pending(),
                Record(Arc::clone(&seen)),
            );
            // Still running when the runtime goes: cancelled.
            spawn(
                &h,
                Duration::from_secs(3600),
                std::future::pending(),
                Record(Arc::clone(&seen)),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            [Outcome::Completed, Outcome::TimedOut]
        );
        drop(rt);
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            [Outcome::Completed, Outcome::TimedOut, Outcome::Cancelled]
        );
    }
}
