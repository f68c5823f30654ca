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
}

/// The shared atomics behind [`PgStats`], plus the statement-cache epoch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bumped by `invalidate_statements`; a cache that saw an older value empties itself.
    pub(crate) statement_epoch: AtomicU64,
    pub(crate) statements_reprepared: AtomicU64,
    pub(crate) statement_caches_cleared: AtomicU64,
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
        }
    }
}
