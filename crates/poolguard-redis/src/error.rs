//! Errors of the Redis manager and their classification for the pool.

use poolguard::conn::ErrorClass;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// An error from the Redis manager (connecting, validating, resetting) or from a command the
/// application reports to the pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// redis-rs reported an error.
    #[error("{}", describe(.0))]
    Redis(#[from] RedisError),
    /// The address kind is not supported by this build (TLS without the `tls` feature).
    #[error("unsupported Redis address {0}: this build of poolguard-redis speaks plain TCP and Unix sockets; enable its `tls` feature for rediss://, or use redis:// or redis+unix://")]
    Unsupported(String),
    /// The TLS handshake failed: the server's certificate is not signed by a trusted CA, does
    /// not name the host, or the server does not speak TLS on that port.
    #[error("TLS handshake with {address} failed: {source}; check that the server's certificate is signed by a CA the manager trusts (RedisManagerBuilder::tls_root_ca) and names that host, and that the port is the server's TLS port")]
    Tls {
        /// The server, password masked.
        address: String,
        /// What rustls reported.
        #[source]
        source: std::io::Error,
    },
    /// A command of [`init_commands`](crate::RedisManagerBuilder::init_commands) failed on
    /// a new connection; the connection is not used.
    #[error("init command #{index} ({name}) failed: {}", describe(.source))]
    InitCommand {
        /// Its position in `init_commands`, from 1.
        index: usize,
        /// The command's name (`CLIENT`): never its arguments, which may hold a secret.
        name: String,
        /// What Redis answered.
        #[source]
        source: RedisError,
    },
    /// `PING n` was not answered with `n`: the replies are out of step with the requests.
    #[error("Redis answered PING {sent} with {got:?}: replies are out of step; the connection is discarded")]
    PingMismatch {
        /// The counter sent.
        sent: u64,
        /// What came back.
        got: String,
    },
}

impl Error {
    /// What this error means for the connection it came from.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Redis(e) => classify(e),
            Error::PingMismatch { .. }
            | Error::Unsupported(_)
            | Error::Tls { .. }
            | Error::InitCommand { .. } => ErrorClass::Fatal,
        }
    }

    /// The failover class of this error (see [`failover_class`]).
    pub fn failover_class(&self) -> Option<&'static str> {
        match self {
            Error::Redis(e) => failover_class(e),
            _ => None,
        }
    }

    /// Whether the server refused the credentials: `WRONGPASS` (wrong user or password, or
    /// the user is disabled) or `NOAUTH` (a password is required), during the connect's
    /// `AUTH` or an init command.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Error::Redis(e) | Error::InitCommand { source: e, .. } => is_auth_failure(e),
            _ => false,
        }
    }

    /// Whether the server said it is restarting: `LOADING` (loading its dataset after a
    /// start). The pool's breaker then probes again within 100 ms instead of backing off.
    pub fn is_restarting(&self) -> bool {
        matches!(self, Error::Redis(e) if e.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading) || e.code() == Some("LOADING"))
    }
}

/// Classifies a redis-rs error: [`ErrorClass::Fatal`] when the connection it came from must
/// not be reused.
///
/// Fatal: I/O errors (reset, refused, broken pipe, end of stream) and timeouts (a reply may
/// still be on its way), unparsable replies, authentication failures, `READONLY` (the node
/// became a replica: after a failover, reconnect to find the new primary), and anything
/// redis-rs itself calls unrecoverable. Transient: every other server error (`WRONGTYPE`,
/// `ERR` for a bad command, `EXECABORT`, `NOSCRIPT`, `LOADING`, `BUSY`...) and client-side
/// type conversion errors.
pub fn classify(error: &RedisError) -> ErrorClass {
    let fatal_kind = matches!(
        error.kind(),
        ErrorKind::Io
            | ErrorKind::Parse
            | ErrorKind::AuthenticationFailed
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(ServerErrorKind::ReadOnly)
    );
    if fatal_kind
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
    {
        ErrorClass::Fatal
    } else {
        ErrorClass::Transient
    }
}

fn describe(e: &RedisError) -> String {
    let hint = if e.is_connection_refusal() {
        " (connection refused: is Redis running and listening on that address?)"
    } else if e.kind() == ErrorKind::AuthenticationFailed
        || e.code() == Some("WRONGPASS")
        || e.to_string().contains("WRONGPASS")
    {
        " (wrong user name or password: check the credentials in the Redis URL)"
    } else if e.is_timeout() {
        " (no answer in time: the server or the network is stalled)"
    } else if is_read_only(e) {
        " (connected to a replica: after a failover this node no longer takes writes; the \
         connection is discarded, and the URL must lead to the new primary, e.g. a name or \
         proxy that follows failovers)"
    } else {
        ""
    };
    format!("Redis: {e}{hint}")
}

/// The failover class of a redis-rs error, for the pool's automatic soft-evict
/// (`failover_burst`): `READONLY` when the node answered that it is a replica (a former
/// primary after a failover). `None` for every other error.
pub fn failover_class(error: &RedisError) -> Option<&'static str> {
    is_read_only(error).then_some("READONLY")
}

/// `WRONGPASS` / `NOAUTH`, or redis-rs's own authentication failure.
fn is_auth_failure(e: &RedisError) -> bool {
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
    {
        return true;
    }
    let text = e.to_string();
    text.contains("WRONGPASS") || text.contains("NOAUTH")
}

/// `READONLY`: the node is a replica (typically a former primary after a failover).
pub(crate) fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// A command's name (its first argument, upper-cased) for naming it in an error.
pub(crate) fn command_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_uppercase(),
        _ => "(unnamed)".to_owned(),
    }
}
