//! Counters of the PostgreSQL manager, shared with every connection it opened.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the manager's connections did that the pool's own statistics do not show
/// ([`PostgresManager::stats`](crate::PostgresManager::stats)); monotonic counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PgStats {
    /// Statements prepared again, and their request retried, by the self-healing
    /// `*_cached` calls after the server rejected the cached one (0A000 "cached plan must
    /// not change result type", 26000 "prepared statement does not exist").
    pub statements_reprepared: u64,
    /// Connection statement caches emptied: after [`invalidate_statements`](crate::invalidate_statements),
    /// or after the server rejected one of their statements.
    pub statement_caches_cleared: u64,
    /// Times [`invalidate_statements`](crate::invalidate_statements) was called.
    pub invalidations: u64,
    /// `CancelRequest`s delivered: by the reset for a connection returned with a request in
    /// flight, by `query_timeout`, and by [`PgConnection::cancel_query`](crate::PgConnection::cancel_query).
    pub cancels_sent: u64,
    /// `CancelRequest`s that could not be delivered (no connection to the server, or no
    /// answer within the deadline).
    pub cancel_failures: u64,
    /// Cancels the reset attempted for connections returned with a request still running
    /// (an abandoned query); each is also counted as sent or failed.
    pub cancels_on_return: u64,
}

/// The shared atomics behind [`PgStats`], plus the statement-cache epoch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bumped by `invalidate_statements`; a cache that saw an older value empties itself.
    pub(crate) statement_epoch: AtomicU64,
    pub(crate) statements_reprepared: AtomicU64,
    pub(crate) statement_caches_cleared: AtomicU64,
    pub(crate) cancels_sent: AtomicU64,
    pub(crate) cancel_failures: AtomicU64,
    pub(crate) cancels_on_return: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PgStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PgStats {
            statements_reprepared: get(&self.statements_reprepared),
            statement_caches_cleared: get(&self.statement_caches_cleared),
            invalidations: self.statement_epoch.load(Ordering::Acquire),
            cancels_sent: get(&self.cancels_sent),
            cancel_failures: get(&self.cancel_failures),
            cancels_on_return: get(&self.cancels_on_return),
        }
    }
}
