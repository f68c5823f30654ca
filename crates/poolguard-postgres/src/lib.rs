//! PostgreSQL (tokio-postgres) manager for poolguard's connection pool.
//!
//! ```no_run
//! use poolguard_postgres::{PostgresManager, RecyclingMethod};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = PostgresManager::builder("host=127.0.0.1 user=postgres dbname=app")
//!     .recycling(RecyclingMethod::Fast)
//!     .application_name("billing")
//!     .build()?;
//! # let _ = manager; Ok(()) }
//! ```
//!
//! # What the manager guarantees
//!
//! - **No transaction crosses borrows.** Every connection's socket goes through a tap that
//!   follows the protocol's framing and records the transaction status byte of each
//!   `ReadyForQuery`, and counts the requests written. On return, a connection that is in a
//!   transaction (raw `BEGIN` included) gets `ROLLBACK` before anyone else may have it; one
//!   with a request still unanswered (a query abandoned by a timed-out caller) first waits
//!   for the answer, which decides; a clean one costs no round trip and skips the pool's
//!   reset task.
//! - **No session state crosses borrows.** The same tap reads the SQL sent and the server's
//!   reports of changed settings; a borrower's `SET`, `SET ROLE`, `SET SESSION AUTHORIZATION`,
//!   `set_config`, `LISTEN`, session advisory locks, `PREPARE`, temporary tables and `WITH
//!   HOLD` cursors are undone on return, those kinds only, in one round trip
//!   ([`SessionChange`], [`PostgresManager::session_stats`]). A clean session still costs
//!   nothing.
//! - **An abandoned query stops on the server.** When the answer does not come at once, the
//!   reset sends PostgreSQL's `CancelRequest` (repeated until the answer comes, within
//!   `reset_timeout`): the query ends with 57014, the backend is idle again, and the
//!   connection is reused without waiting the query out. Cancels are counted in
//!   [`PostgresManager::stats`]. [`PgConnection::set_statement_timeout`] sets a per-borrow
//!   `statement_timeout` that the reset undoes.
//! - **Dead connections are evicted.** Errors are classified by SQLSTATE ([`classify`]):
//!   57P01 (terminated by an administrator), 57P02, 57P03, class 08 and 25006 (read-only:
//!   the server was demoted by a failover) are fatal; so are I/O and protocol errors. `is_broken` checks the client and the connection task on every
//!   return.
//! - **The connection task is owned.** Dropping a [`PgConnection`] aborts the task driving its
//!   socket; the pool's close path ends it politely first.
//! - **No password is ever printed.** The manager's and its config's `Display` show the
//!   settings as a connection string with `password=***`; `Debug`, errors and tracing events
//!   never carry the password; a connection string that does not parse is reported by key,
//!   without its password. [`redact_connection_string`] masks a connection string given by a
//!   user (URL or `key=value`) before it is logged.
//! - **Several hosts, as tokio-postgres does it.** `host=a,b port=5433,5432` (with
//!   `hostaddr`, Unix sockets and `load_balance_hosts=random`) tries each host, and each
//!   address a name resolves to, in order; with `target_session_attrs=read-write` (or
//!   `read-only`) a host whose session does not match is skipped, so a pool keeps connecting
//!   to the primary across a failover. When no host is usable the error lists every attempt
//!   ([`Error::AllHostsFailed`]; one host: [`Error::ReadOnly`], [`Error::Connect`]...).
//! - **TCP options apply as in tokio-postgres.** `keepalives` (on by default),
//!   `keepalives_idle` (default 2 h), `keepalives_interval`, `keepalives_retries` and
//!   `tcp_user_timeout` are set on the socket ([`PgConnection::tcp_options`] reads them
//!   back), so a silently dead peer is found by the kernel too, not only by validation.
//!   `connect_timeout` bounds each attempt as a whole (TCP connect, TLS, startup and
//!   authentication, the `target_session_attrs` check), per address, as libpq does: a host
//!   that accepts the connection but never answers is left for the next one
//!   ([`Error::ConnectTimeout`]).
//! - **Queries can have a deadline.** With
//!   [`query_timeout`](PostgresManagerBuilder::query_timeout), a request that waits longer
//!   for its answer is cancelled on the server (a cancel request) and its connection closed
//!   at once, so the caller gets an error on time even from a frozen server, and the pool
//!   never reuses the connection. Without it, `tokio::time::timeout` around a query bounds
//!   the caller; see the option's documentation for what happens to the connection then.
//! - **Connect errors say what is wrong**: a refused port, a wrong password (28P01), an
//!   unknown role (28000) or database (3D000) each have their own message, never a timeout.
//! - **Credentials that change**: with a credentials provider on the pool
//!   (`Builder::credentials`, for an IAM token or a secrets manager), every connect uses the
//!   provider's user and password instead of the connection string's; 28P01 and 28000 count
//!   as authentication failures, which the pool's doctor names first when they open its
//!   breaker.
//!
//! # Prepared statements
//!
//! tokio-postgres statements belong to one server session. [`PgConnection::prepare_cached`]
//! keeps a per-connection cache (bounded by
//! [`statement_cache_capacity`](PostgresManagerBuilder::statement_cache_capacity)), so a
//! statement is prepared once per connection, not once per borrow. [`RecyclingMethod::Clean`]
//! runs `DISCARD ALL`, which deallocates them, and empties the cache with it.
//!
//! Behind a transaction-pooling proxy (PgBouncer `pool_mode=transaction`) named statements
//! break: use [`StatementMode::Unnamed`] and `query_typed` / `simple_query`.
//!
//! A schema change makes cached statements stale: the server answers SQLSTATE 0A000
//! ("cached plan must not change result type") to every later execution, and 26000 to a
//! statement that was deallocated. [`PgConnection::query_cached`] and
//! [`PgConnection::execute_cached`] heal that: they drop the rejected statement, prepare it
//! again and retry once (only outside a transaction block, where the rejected statement ran
//! nothing), counted in [`PgStats::statements_reprepared`]. Whatever call received such an
//! error, the connection's next `prepare_cached` prepares afresh. After a migration,
//! [`invalidate_statements`] empties every connection's cache (idle and held).
//! [`PgConnection::transaction`] gives a transaction with the same cached calls, and
//! [`ReportPg::report_pg`] reports a `tokio_postgres::Error` to the pool without consuming it.
//!
//! # TLS
//!
//! Plaintext by default. With the `tls` feature, pass any tokio-postgres TLS connector to
//! `PostgresManagerBuilder::tls`; the manager negotiates TLS itself, below the socket tap
//! (which needs the plaintext), so channel binding (`SCRAM-SHA-256-PLUS`) is not offered.
//! Without a connector, `sslmode=require` is refused by the builder with an explanation.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod cancel;
mod config;
mod connection;
mod conninfo;
mod error;
mod manager;
mod pgbouncer;
mod report;
mod session_state;
#[cfg(feature = "serde")]
mod settings;
mod statement_cache;
mod stats;
mod tap;
#[cfg(feature = "tls")]
mod tls;
mod transaction;

pub use config::{BuildError, PostgresConfig, PostgresManagerBuilder, RecyclingMethod};
pub use connection::{PgConnection, TcpOptions};
pub use conninfo::redact_connection_string;
pub use error::{classify, failover_class, is_restarting, Error};
pub use manager::PostgresManager;
pub use pgbouncer::StatementMode;
pub use report::ReportPg;
pub use session_state::{SessionChange, SessionStats};
#[cfg(feature = "serde")]
pub use settings::PostgresSettings;
pub use stats::PgStats;
pub use tokio_postgres;
pub use transaction::PgTransaction;

/// Empties the statement cache of every connection of `pool` (idle ones now, held ones at
/// their next `prepare_cached`), for use after a migration changed the schema under cached
/// statements. Same as `pool.manager().invalidate_statements()`.
pub fn invalidate_statements(pool: &poolguard::conn::Pool<PostgresManager>) {
    pool.manager().invalidate_statements();
}

/// The crate README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
