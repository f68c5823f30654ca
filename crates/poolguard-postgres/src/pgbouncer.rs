//! Transaction-pooling proxies (PgBouncer `pool_mode=transaction` and the like): the statement
//! mode, and the findings for session-scoped features used through such a proxy.
//!
//! # Implementation details
//!
//! Behind a transaction-pooling proxy, each transaction may run on a different server
//! session. A named prepared statement lives in one server session, so tokio-postgres's
//! `prepare`/`query(&str, ..)` (which name their statements `s0`, `s1`, ...) break: the
//! statement is missing (26000) or already exists (42P05) on the server the next message
//! reaches. Unnamed statements are parsed, bound and executed in one `Sync` batch, so they
//! stay on one server. Session state (`SET`, `LISTEN`, ...) is likewise left on whichever
//! server session ran it: it cannot be reset from the client, only reported.

use poolguard::diag::{Finding, Severity};

use crate::connection::PgConnection;
use crate::session_state::{SessionChange, SessionCounters, SessionStats};

/// On return under [`StatementMode::Unnamed`]: counts the named statements and the session
/// state the borrower used, and forgets them (no reset can reach the right server session).
pub(crate) fn on_return(counters: &SessionCounters, conn: &mut PgConnection) {
    counters.named_statements(conn.take_named_parses());
    let dirty = conn.session_dirty();
    if dirty != 0 {
        counters.record(dirty, false);
        conn.session_reset_done(false);
    }
}

/// How statements are sent, for the server or proxy the pool talks to. See
/// [`PostgresManagerBuilder::statement_mode`](crate::PostgresManagerBuilder::statement_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StatementMode {
    /// Named prepared statements, cached per connection: for PostgreSQL itself and for
    /// session-pooling proxies.
    #[default]
    Named,
    /// For transaction-pooling proxies (PgBouncer `pool_mode=transaction`): the statement
    /// cache is off (`statement_cache_capacity` is forced to 0), and the application sends
    /// unnamed statements only: `query_typed`/`query_typed_raw` (parameter types given, one
    /// round trip), `simple_query`/`batch_execute`. Named statements (`prepare`,
    /// `prepare_cached`, `query("...", ..)` with an SQL string) fail there with 26000
    /// `prepared statement "s0" does not exist` or 42P05 `... already exists`; the tap counts
    /// the ones sent ([`SessionStats::named_statements`]). Session state (`SET` without
    /// `LOCAL`, `LISTEN`, advisory locks, temporary tables, `PREPARE`) cannot be reset on such
    /// a proxy; it is counted instead, and [`PostgresManager::findings`] reports both.
    ///
    /// [`PostgresManager::findings`]: crate::PostgresManager::findings
    Unnamed,
}

/// The doctor findings for `stats` under `mode`, for the pool labelled `pool`.
pub(crate) fn findings(mode: StatementMode, stats: &SessionStats, pool: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if mode != StatementMode::Unnamed {
        return out;
    }
    if stats.named_statements > 0 {
        out.push(Finding::new(
            Severity::Warning,
            "postgres.named-statements-on-transaction-pool",
            pool,
            format!(
                "{} named prepared statement(s) were sent through a transaction-pooling proxy; \
                 each may fail with 26000 (does not exist) or 42P05 (already exists)",
                stats.named_statements
            ),
            "use query_typed / simple_query instead of prepare, prepare_cached or query(\"..\")",
        ));
    }
    let used: Vec<String> = stats
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} x{n}", describe(k)))
        .collect();
    if !used.is_empty() {
        out.push(Finding::new(
            Severity::Warning,
            "postgres.session-state-on-transaction-pool",
            pool,
            format!(
                "session-scoped features were used through a transaction-pooling proxy, where \
                 they reach other clients' transactions or vanish: {}",
                used.join(", ")
            ),
            "use SET LOCAL / set_config(.., true), pg_advisory_xact_lock and ON COMMIT DROP \
             inside transactions, or a session-pooled connection for LISTEN and PREPARE",
        ));
    }
    out
}

fn describe(kind: SessionChange) -> &'static str {
    match kind {
        SessionChange::Setting => "SET without LOCAL",
        SessionChange::Role => "SET ROLE / SESSION AUTHORIZATION",
        SessionChange::Listen => "LISTEN",
        SessionChange::AdvisoryLock => "session advisory lock",
        SessionChange::PreparedStatement => "PREPARE",
        SessionChange::TempTable => "temporary table",
        SessionChange::HoldCursor => "WITH HOLD cursor",
    }
}
