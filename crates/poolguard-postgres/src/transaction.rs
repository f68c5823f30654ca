//! [`PgTransaction`]: a `tokio_postgres::Transaction` that prepares through its connection's
//! statement cache.

use std::fmt;
use std::ops::Deref;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement, Transaction};

use crate::statement_cache::{prepare_cached, run_cached, StatementCache};
use crate::tap::TapState;

/// A transaction on a pooled connection, from [`PgConnection::transaction`](crate::PgConnection::transaction).
///
/// It dereferences to [`tokio_postgres::Transaction`] (queries, savepoints, `COPY`...), and
/// adds [`prepare_cached`](Self::prepare_cached) on the connection's statement cache:
/// statements prepared inside a transaction are session objects, not rolled back with it,
/// so they stay cached after it ends. Dropping it without [`commit`](Self::commit) rolls
/// back.
pub struct PgTransaction<'a> {
    tx: Transaction<'a>,
    statements: &'a StatementCache,
    tap: &'a TapState,
}

impl fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTransaction")
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl<'a> PgTransaction<'a> {
    pub(crate) fn new(
        tx: Transaction<'a>,
        statements: &'a StatementCache,
        tap: &'a TapState,
    ) -> Self {
        PgTransaction {
            tx,
            statements,
            tap,
        }
    }

    /// Prepares `sql` once per connection, as
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached) does, sharing its
    /// cache.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        prepare_cached(self.tx.client(), self.statements, sql).await
    }

    /// Runs `sql` through the statement cache, as
    /// [`PgConnection::query_cached`](crate::PgConnection::query_cached) does. Inside a
    /// transaction a rejected (stale) statement aborts the transaction, so there is no
    /// retry: the error is returned, the statement is dropped from the cache, and a retry of
    /// the whole transaction prepares it afresh.
    pub async fn query_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let client = self.tx.client();
        run_cached(client, self.statements, self.tap, sql, |st| async move {
            client.query(&st, params).await
        })
        .await
    }

    /// [`query_cached`](Self::query_cached) returning the row count.
    pub async fn execute_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let client = self.tx.client();
        run_cached(client, self.statements, self.tap, sql, |st| async move {
            client.execute(&st, params).await
        })
        .await
    }

    /// Commits (`COMMIT`).
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.tx.commit().await
    }

    /// Rolls back (`ROLLBACK`).
    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.tx.rollback().await
    }
}

impl<'a> Deref for PgTransaction<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl std::ops::DerefMut for PgTransaction<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
