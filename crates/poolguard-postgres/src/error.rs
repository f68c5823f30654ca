//! Errors of the PostgreSQL manager and their classification for the pool.

use std::fmt;
use std::io;

use poolguard::conn::ErrorClass;
use tokio_postgres::error::SqlState;

/// An error from the PostgreSQL manager: connecting, validating, resetting or a query the
/// application reports to the pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error, or the protocol failed (see [`Error::code`]).
    #[error("{}", DescribePg(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No TCP (or Unix socket) connection could be opened to any configured host.
    #[error("cannot connect to PostgreSQL at {addr}: {source} (is the server running and listening there?)")]
    Connect {
        /// The last address tried.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// TLS could not be set up (handshake failed, certificate rejected, or the server refused
    /// TLS while `sslmode=require`).
    #[error("TLS with PostgreSQL at {addr} failed: {reason}")]
    Tls {
        /// The host.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// `target_session_attrs=read-write` was asked for and this host is read-only (a
    /// standby, typically after a failover). With several hosts, the next one is tried
    /// first; this error is returned only when none is left.
    #[error("PostgreSQL at {addr} is read-only but target_session_attrs=read-write was requested (list the primary, or several hosts: host=a,b port=5432,5432)")]
    ReadOnly {
        /// The read-only host.
        addr: String,
    },
    /// `target_session_attrs=read-only` was asked for and this host accepts writes.
    #[error(
        "PostgreSQL at {addr} accepts writes but target_session_attrs=read-only was requested"
    )]
    NotReadOnly {
        /// The read-write host.
        addr: String,
    },
    /// One attempt took longer than the connection string's `connect_timeout`.
    #[error("connecting to PostgreSQL at {addr} timed out after {timeout:?} (connect_timeout) during {during}")]
    ConnectTimeout {
        /// The address tried.
        addr: String,
        /// What was under way: the TCP connect, TLS negotiation, the startup handshake...
        during: &'static str,
        /// The configured `connect_timeout`.
        timeout: std::time::Duration,
    },
    /// Several hosts (or addresses) were configured and none could be used; every attempt
    /// is listed, in the order tried.
    #[error("no PostgreSQL host could be used: {}", DescribeAttempts(.attempts))]
    AllHostsFailed {
        /// Each address tried and why it was not used.
        attempts: Vec<(String, Error)>,
    },
    /// A statement of [`init_sql`](crate::PostgresManagerBuilder::init_sql) failed on a new
    /// connection (or after a reset); the connection is not used.
    #[error("init_sql statement #{index} ({head}) failed: {}", DescribePg(.source))]
    InitSql {
        /// Its position in `init_sql`, from 1.
        index: usize,
        /// Its first words (`SET search_path ...`): never its whole text, which may hold a
        /// secret.
        head: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server ended the session (a FATAL error or a closed socket) while the connection
    /// was being reset.
    #[error(
        "the server ended the session (FATAL error or closed socket); the connection is discarded"
    )]
    SessionEnded,
    /// [`PgConnection::set_statement_timeout`](crate::PgConnection::set_statement_timeout)
    /// was given more than PostgreSQL accepts; nothing was sent.
    #[error("statement_timeout {requested:?} is longer than PostgreSQL accepts (at most 2147483647 ms, about 24.8 days); pass None for no limit")]
    StatementTimeoutTooLong {
        /// The duration asked for.
        requested: std::time::Duration,
    },
    /// The session was still inside a transaction after `ROLLBACK`.
    #[error("the connection was still inside a transaction after ROLLBACK; it is discarded")]
    StillInTransaction,
}

impl Error {
    /// The SQLSTATE code of a server error, if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Error::Postgres(e) | Error::InitSql { source: e, .. } => e.code(),
            Error::AllHostsFailed { attempts } => attempts.last().and_then(|(_, e)| e.code()),
            _ => None,
        }
    }

    /// What this error means for the connection it came from.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Postgres(e) => classify(e),
            Error::Connect { .. }
            | Error::Tls { .. }
            | Error::ReadOnly { .. }
            | Error::NotReadOnly { .. }
            | Error::ConnectTimeout { .. }
            | Error::AllHostsFailed { .. }
            | Error::SessionEnded
            | Error::InitSql { .. }
            | Error::StillInTransaction => ErrorClass::Fatal,
            Error::StatementTimeoutTooLong { .. } => ErrorClass::Transient,
        }
    }

    /// The failover class of this error (see [`failover_class`]); also `read_only` for
    /// [`Error::ReadOnly`], a connect that found only read-only hosts.
    pub fn failover_class(&self) -> Option<&'static str> {
        match self {
            Error::Postgres(e) | Error::InitSql { source: e, .. } => failover_class(e),
            Error::ReadOnly { .. } => Some(READ_ONLY),
            Error::AllHostsFailed { attempts } => {
                attempts.last().and_then(|(_, e)| e.failover_class())
            }
            _ => None,
        }
    }

    /// Whether the server refused the credentials: SQLSTATE 28P01 `invalid_password` or
    /// 28000 `invalid_authorization_specification` (unknown role, no `pg_hba.conf` entry).
    pub fn is_auth_failure(&self) -> bool {
        self.code()
            .is_some_and(|c| matches!(c.code(), "28P01" | "28000"))
    }

    /// Whether the server said it is restarting (see [`is_restarting`]).
    pub fn is_restarting(&self) -> bool {
        matches!(self, Error::Postgres(e) | Error::InitSql { source: e, .. } if is_restarting(e))
    }
}

/// Whether a tokio-postgres error is a restart signature: SQLSTATE 57P01 `admin_shutdown`,
/// 57P02 `crash_shutdown` or 57P03 `cannot_connect_now` ("the database system is starting
/// up" / "is shutting down" during connect). The pool's breaker then probes again within
/// 100 ms instead of backing off.
pub fn is_restarting(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    matches!(db.code().code(), "57P01" | "57P02" | "57P03")
        || [
            "the database system is starting up",
            "the database system is shutting down",
        ]
        .iter()
        .any(|m| db.message().starts_with(m))
}

const READ_ONLY: &str = "read_only";

/// The failover class of a tokio-postgres error, for the pool's automatic soft-evict
/// (`failover_burst`): `admin_shutdown` for SQLSTATE 57P01 (the server is shutting down or
/// the backend was terminated: a switchover stops the old primary), `read_only` for 25006
/// `read_only_sql_transaction` ("cannot execute ... in a read-only transaction": the server
/// was demoted, or is a standby). `None` for every other error.
pub fn failover_class(error: &tokio_postgres::Error) -> Option<&'static str> {
    match error.code()? {
        c if *c == SqlState::ADMIN_SHUTDOWN => Some("admin_shutdown"),
        c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => Some(READ_ONLY),
        _ => None,
    }
}

/// Classifies a tokio-postgres error: [`ErrorClass::Fatal`] when the connection it came from
/// must not be reused.
///
/// Fatal: SQLSTATE class 08 (connection exception), 57P01 `admin_shutdown` (the backend was
/// terminated, e.g. `pg_terminate_backend`, or the server is shutting down), 57P02
/// `crash_shutdown`, 57P03 `cannot_connect_now`, class 28 (authentication) and 3D000 (no such
/// database, both only at connect), the closed connection, and every error without a
/// SQLSTATE that is not a client-side conversion error (I/O, protocol desync, TLS).
/// 25006 `read_only_sql_transaction` too: the signature of a failover (the server was demoted
/// or is a standby). A transaction the application itself opened `READ ONLY` also gets it;
/// evicting that connection costs only a reconnect.
///
/// Transient: every other SQLSTATE (syntax, constraint, serialization failure, statement
/// timeout 57014...) and client-side conversion errors (`ToSql`/`FromSql`, wrong column,
/// wrong row count): the connection is fine.
///
/// tokio-postgres does not expose its error kinds; errors without a SQLSTATE are recognised by
/// their fixed messages, and anything unrecognised is Fatal, the safe default.
pub fn classify(error: &tokio_postgres::Error) -> ErrorClass {
    if error.is_closed() {
        return ErrorClass::Fatal;
    }
    // A write refused because the server is read-only: a primary demoted, or a standby
    // promoted elsewhere, under the pool (a failover). The session will not accept writes
    // again; a new connection (with `target_session_attrs=read-write`) finds the primary.
    if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
        return ErrorClass::Fatal;
    }
    if let Some(code) = error.code() {
        let c = code.code();
        return if c.starts_with("08")
            || c.starts_with("28")
            || matches!(c, "57P01" | "57P02" | "57P03" | "3D000")
        {
            ErrorClass::Fatal
        } else {
            ErrorClass::Transient
        };
    }
    let text = error.to_string();
    const CLIENT_SIDE: [&str; 6] = [
        "error serializing parameter",
        "error deserializing column",
        "invalid column",
        "query returned an unexpected number of",
        "expected ",
        "invalid configuration",
    ];
    if CLIENT_SIDE.iter().any(|p| text.starts_with(p)) {
        ErrorClass::Transient
    } else {
        ErrorClass::Fatal
    }
}

/// Display of a tokio-postgres error that always shows the SQLSTATE and says what to fix for
/// the connect-time errors people actually hit.
struct DescribePg<'a>(&'a tokio_postgres::Error);

impl fmt::Display for DescribePg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(db) = self.0.as_db_error() else {
            write!(f, "PostgreSQL: {}", self.0)?;
            if let Some(source) = std::error::Error::source(self.0) {
                write!(f, ": {source}")?;
            }
            return Ok(());
        };
        write!(
            f,
            "PostgreSQL {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        )?;
        let hint = match db.code().code() {
            "28P01" => Some("wrong password: check the password in the connection string"),
            "28000" => Some("authentication rejected: check the user name and pg_hba.conf"),
            "3D000" => Some("unknown database: create it or fix dbname in the connection string"),
            "57P01" => Some("the backend was terminated by an administrator or a shutdown"),
            "57P03" => Some("the server is starting up or shutting down; retry shortly"),
            "53300" => Some("too many connections: lower max_size or raise max_connections"),
            "25006" => Some(
                "the server is read-only, as after a failover: the connection is discarded; \
                 list every host with target_session_attrs=read-write to reach the primary",
            ),
            _ => None,
        };
        if let Some(hint) = hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// `addr: error; addr: error` for [`Error::AllHostsFailed`].
struct DescribeAttempts<'a>(&'a [(String, Error)]);

impl fmt::Display for DescribeAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (addr, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{}] {addr}: {e}", i + 1)?;
        }
        Ok(())
    }
}

/// The first word of a statement and, when it is a plain keyword or name, the second
/// (`SET search_path ...`), for naming it in an error: never a literal, which may be a secret.
pub(crate) fn statement_head(sql: &str) -> String {
    let plain = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    let mut words = sql.split_whitespace();
    let mut out = String::new();
    if let Some(first) = words.next().filter(|w| plain(w)) {
        out.push_str(first);
        if let Some(second) = words.next() {
            if plain(second) {
                out.push(' ');
                out.push_str(second);
                if words.next().is_some() {
                    out.push_str(" ...");
                }
            } else {
                out.push_str(" ...");
            }
        }
    } else {
        out.push_str("...");
    }
    out
}
