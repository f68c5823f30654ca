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
use tokio_postgres::SimpleQueryMessage;

use crate::error::Error;

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
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum StatementMode {
    /// Named prepared statements, cached per connection: for PostgreSQL itself and for
    /// session-pooling proxies.
    #[default]
    Named,
    /// For transaction-pooling proxies (PgBouncer `pool_mode=transaction`; see
    /// [`detect`](Self::detect)): the statement
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

impl StatementMode {
    /// Asks the server at the first host of `config` whether it is a transaction-pooling
    /// PgBouncer: connects to its admin console (database `pgbouncer`, same user and password,
    /// within `connect_timeout`, 10 s without one) and reads the pool mode of `config`'s
    /// database (`SHOW DATABASES`, else the default from `SHOW CONFIG`). `transaction` or
    /// `statement` pooling gives [`Unnamed`](Self::Unnamed); `session` pooling, and a server
    /// with no such database (PostgreSQL itself), give [`Named`](Self::Named).
    ///
    /// The user must be allowed on the console (PgBouncer's `admin_users` or `stats_users`);
    /// otherwise, or when nothing answers, the error says so and the mode is best set
    /// explicitly. The console is reached without TLS (PgBouncer's console does not need it;
    /// a connection string with `sslmode=require` is refused by the connect).
    pub async fn detect(config: &tokio_postgres::Config) -> Result<StatementMode, Error> {
        let want = config.get_dbname().unwrap_or_default().to_owned();
        let want = if want.is_empty() {
            config.get_user().unwrap_or_default().to_owned()
        } else {
            want
        };
        let mut console = config.clone();
        console.dbname("pgbouncer");
        let limit = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(std::time::Duration::from_secs(10));
        let addr = describe_first(config);
        let timeout = |during| Error::ConnectTimeout {
            addr: addr.clone(),
            during,
            timeout: limit,
        };
        let connected = tokio::time::timeout(limit, console.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| timeout("the PgBouncer admin console connect"))?;
        let (client, conn) = match connected {
            Ok(c) => c,
            // PostgreSQL itself: no database called pgbouncer.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {
                return Ok(StatementMode::Named)
            }
            Err(e) => return Err(e.into()),
        };
        let task = tokio::spawn(conn);
        let ask = async {
            let rows = client.simple_query("SHOW DATABASES").await?;
            let mut mode = rows.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) if r.get("name") == Some(want.as_str()) => {
                    r.get("pool_mode").map(str::to_owned)
                }
                _ => None,
            });
            if mode.as_deref().is_none_or(str::is_empty) {
                let rows = client.simple_query("SHOW CONFIG").await?;
                mode = rows.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(r) if r.get("key") == Some("pool_mode") => {
                        r.get("value").map(str::to_owned)
                    }
                    _ => None,
                });
            }
            Ok::<_, Error>(mode)
        };
        let mode = tokio::time::timeout(limit, ask)
            .await
            .map_err(|_| timeout("the PgBouncer admin console query"));
        drop(client);
        task.abort();
        match mode??.as_deref() {
            Some("transaction" | "statement") => Ok(StatementMode::Unnamed),
            Some("session") => Ok(StatementMode::Named),
            other => Err(Error::Connect {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the PgBouncer admin console reported no known pool_mode ({other:?}); \
                         set the statement mode explicitly"
                    ),
                ),
            }),
        }
    }
}

/// `host:port` of the first host, for messages.
fn describe_first(config: &tokio_postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(h) => crate::config::describe_host(h, port),
        None => format!("(no host):{port}"),
    }
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
