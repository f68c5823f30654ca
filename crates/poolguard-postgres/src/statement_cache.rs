//! The per-connection cache of prepared statements behind
//! [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached), and its healing.
//!
//! The cache sits behind a `parking_lot` mutex that is only ever held for a map operation,
//! never across an await, so statements can be prepared through `&self` (and from a
//! transaction, which borrows the client mutably). Preparing happens outside the lock: two
//! callers preparing the same SQL at once both prepare it and the second insert wins.
//!
//! # Staleness
//!
//! A cached statement goes stale when the schema under it changes: the server then answers
//! 0A000 ("cached plan must not change result type") on every execution, or 26000 when the
//! statement was deallocated (`DEALLOCATE ALL`). Three things heal it:
//!
//! - the tap counts those error responses on the socket, whatever call made them; a cache
//!   that finds the count moved empties itself before its next lookup, so the next
//!   `prepare_cached` prepares afresh;
//! - the manager's epoch ([`invalidate_statements`](crate::invalidate_statements)): a cache
//!   that finds it moved empties itself too (on its next lookup, held connections included);
//! - the `*_cached` calls ([`run_cached`]) re-prepare and retry once, outside a transaction
//!   block, where nothing ran.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_postgres::{Client, Statement};

use crate::stats::Counters;
use crate::tap::{TapState, TxStatus};

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Statement>,
    /// The manager's epoch when the map was last emptied.
    epoch: u64,
    /// The tap's stale-statement error count when the map was last emptied.
    stale_errors: u64,
}

/// A bounded map from SQL text to its prepared statement; full means emptied (the statements
/// are recreated on their next use, which is cheaper than tracking recency on every hit).
#[derive(Debug)]
pub(crate) struct StatementCache {
    inner: Mutex<Inner>,
    capacity: usize,
    counters: Arc<Counters>,
    tap: Arc<TapState>,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize, counters: Arc<Counters>, tap: Arc<TapState>) -> Self {
        let inner = Inner {
            map: HashMap::new(),
            epoch: counters.statement_epoch.load(Ordering::Acquire),
            stale_errors: tap.stale_statement_errors(),
        };
        StatementCache {
            inner: Mutex::new(inner),
            capacity,
            counters,
            tap,
        }
    }

    /// Empties the map if the manager's epoch or the tap's stale count moved; returns the
    /// old statements so they are dropped outside the lock.
    fn refresh(&self, inner: &mut Inner) -> Option<HashMap<String, Statement>> {
        let epoch = self.counters.statement_epoch.load(Ordering::Acquire);
        let stale = self.tap.stale_statement_errors();
        if inner.epoch == epoch && inner.stale_errors == stale {
            return None;
        }
        inner.epoch = epoch;
        inner.stale_errors = stale;
        if inner.map.is_empty() {
            return None;
        }
        Counters::bump(&self.counters.statement_caches_cleared);
        Some(std::mem::take(&mut inner.map))
    }

    pub(crate) fn get(&self, sql: &str) -> Option<Statement> {
        let (found, old) = {
            let mut inner = self.inner.lock();
            let old = self.refresh(&mut inner);
            (inner.map.get(sql).cloned(), old)
        };
        drop(old);
        found
    }

    pub(crate) fn insert(&self, sql: &str, statement: &Statement) {
        if self.capacity == 0 {
            return;
        }
        let old = {
            let mut inner = self.inner.lock();
            let mut old = self.refresh(&mut inner);
            if inner.map.len() >= self.capacity && !inner.map.contains_key(sql) {
                old = Some(std::mem::take(&mut inner.map));
            }
            inner.map.insert(sql.to_owned(), statement.clone());
            old
        };
        drop(old);
    }

    /// Forgets the statement of `sql` (the server rejected it).
    pub(crate) fn remove(&self, sql: &str) {
        let old = self.inner.lock().map.remove(sql);
        drop(old);
    }

    pub(crate) fn len(&self) -> usize {
        let (len, old) = {
            let mut inner = self.inner.lock();
            let old = self.refresh(&mut inner);
            (inner.map.len(), old)
        };
        drop(old);
        len
    }

    pub(crate) fn clear(&self) {
        // Dropped outside the lock: the last handle of a statement queues its `Close`.
        let old = std::mem::take(&mut self.inner.lock().map);
        drop(old);
    }
}

/// The cache lookup, else a prepare (outside the cache's lock) and an insert.
pub(crate) async fn prepare_cached(
    client: &Client,
    cache: &StatementCache,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(s) = cache.get(sql) {
        return Ok(s);
    }
    let statement = client.prepare(sql).await?;
    cache.insert(sql, &statement);
    Ok(statement)
}

/// Whether the server rejected the statement itself, before running anything: 26000
/// (`invalid_sql_statement_name`: the statement was deallocated) or the 0A000 the plan
/// cache raises when a statement's result type changed under it (recognised by the
/// server routine, or the message in servers that do not report one).
pub(crate) fn is_stale_statement(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    match db.code().code() {
        "26000" => true,
        "0A000" => {
            db.routine() == Some("RevalidateCachedQuery")
                || db
                    .message()
                    .contains("cached plan must not change result type")
        }
        _ => false,
    }
}

/// Prepares `sql` through the cache and runs `run` with the statement. When the server
/// rejects a stale statement ([`is_stale_statement`]) the entry is dropped and, if the
/// session was idle outside a transaction block before the call (`retry`; then nothing ran
/// and nothing was aborted), the statement is prepared again and `run` retried once.
/// Inside a transaction the error is returned (the transaction is aborted; retrying it is
/// the caller's decision), and the next `prepare_cached` of `sql` prepares afresh.
pub(crate) async fn run_cached<'a, T, F, Fut>(
    client: &'a Client,
    cache: &'a StatementCache,
    tap: &TapState,
    sql: &'a str,
    run: F,
) -> Result<T, tokio_postgres::Error>
where
    F: Fn(Statement) -> Fut,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let retry = tap.status() == TxStatus::Idle;
    let statement = prepare_cached(client, cache, sql).await?;
    match run(statement).await {
        Err(e) if is_stale_statement(&e) => {
            cache.remove(sql);
            if !retry {
                return Err(e);
            }
            tracing::debug!(error = %e, "cached statement rejected by the server; preparing it again");
            let statement = prepare_cached(client, cache, sql).await?;
            Counters::bump(&cache.counters.statements_reprepared);
            run(statement).await
        }
        r => r,
    }
}
