//! [`PgTransaction`]: a `tokio_postgres::Transaction` that prepares through its connection's
//! statement cache.

use std::fmt;
use std::ops::Deref;

use tokio_postgres::{Statement, Transaction};

use crate::statement_cache::StatementCache;

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
}

impl fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTransaction")
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl<'a> PgTransaction<'a> {
    pub(crate) fn new(tx: Transaction<'a>, statements: &'a StatementCache) -> Self {
        PgTransaction { tx, statements }
    }

    /// Prepares `sql` once per connection, as
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached) does, sharing its
    /// cache.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        crate::connection::prepare_cached(self.tx.client(), self.statements, sql).await
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
