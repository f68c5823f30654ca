//! [`ReportPg`]: report a `tokio_postgres::Error` to the pool without giving it up.

use poolguard::conn::{ErrorClass, PooledConnection};

use crate::error::{classify, failover_class};
use crate::manager::PostgresManager;

/// Reports a query's `tokio_postgres::Error` to the pool, as
/// [`PooledConnection::report`] does for the manager's own error type, and leaves the error
/// with the caller (to return, log or match on).
///
/// ```no_run
/// use poolguard::conn::Pool;
/// use poolguard_postgres::{PostgresManager, ReportPg};
///
/// # async fn demo(pool: Pool<PostgresManager>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = pool.get().await?;
/// if let Err(e) = conn.simple_query("SELECT 1").await {
///     conn.report_pg(&e); // a fatal error closes the connection when `conn` is dropped
///     return Err(e.into());
/// }
/// # Ok(()) }
/// ```
pub trait ReportPg {
    /// Classifies `error` with [`classify`]; when it is [`ErrorClass::Fatal`] the connection
    /// is closed instead of reused when the guard is dropped (and, with the pool's
    /// `failover_burst` on, a [`failover_class`] error counts toward the automatic
    /// soft-evict). Returns the classification.
    fn report_pg(&mut self, error: &tokio_postgres::Error) -> ErrorClass;
}

impl ReportPg for PooledConnection<PostgresManager> {
    fn report_pg(&mut self, error: &tokio_postgres::Error) -> ErrorClass {
        self.report_classified(classify(error), failover_class(error))
    }
}
