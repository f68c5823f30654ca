//! Redis (redis-rs) manager for poolguard's connection pool.
//!
//! ```no_run
//! use poolguard_redis::RedisManager;
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = RedisManager::new("redis://127.0.0.1:6379/0")?;
//! # let _ = manager; Ok(()) }
//! ```
//!
//! # What the manager guarantees
//!
//! - **Validation proves the replies are in step**: `PING n` with a counter must come back
//!   as `n`.
//! - **No session state reaches the next borrower.** [`RedisConnection`] sees every command
//!   it sends and tracks `MULTI`, `WATCH` and `SELECT`; on return it sends `DISCARD`,
//!   `UNWATCH` or `SELECT db` only when needed (a clean connection costs no round trip). A
//!   `MULTI` whose `EXEC` was cancelled mid-flight counts as open. Commands whose state
//!   cannot be undone cheaply (`SUBSCRIBE`, `MONITOR`, `CLIENT REPLY`, `HELLO`, `AUTH`...)
//!   evict the connection on return.
//! - **A cancelled command never reaches the next borrower.** A command whose caller gave up
//!   before its reply arrived (a `tokio::time::timeout` around `BLPOP k 0`, `XREAD BLOCK`,
//!   `WAIT`, or a `GET` cut off mid-reply) leaves the server blocked in it or still sending;
//!   anything sent next would queue behind it. The connection counts requests sent against
//!   replies received and is evicted on return while a reply is owed.
//! - **Optional command deadline**: [`RedisManagerBuilder::query_timeout`] bounds every
//!   command (blocking ones get their own block time on top); an expired command fails with a
//!   timeout error and evicts its connection. Without it, wrap calls in `tokio::time::timeout`.
//! - **Fatal errors are recognised** ([`classify`]): I/O, timeouts, unparsable replies,
//!   authentication failures and `READONLY` (a failover made the node a replica) evict, on
//!   any command, whether or not the caller reports them.
//! - **No password is printed**: the manager's `Debug` and [`RedisManager::address`] show
//!   `redis://user:***@host:port/db`; errors and tracing events never carry the URL's
//!   password. [`redact_url`] masks any connection URL the same way, for your own logs.
//! - **Connect errors say what is wrong**: a refused port, a wrong password and an untrusted
//!   TLS certificate ([`Error::Tls`]) have their own messages, never a timeout.
//! - **Credentials that change**: with a credentials provider on the pool
//!   (`Builder::credentials`), every connect authenticates (`AUTH`) with the provider's user
//!   and password instead of the URL's; `WRONGPASS` and `NOAUTH` count as authentication
//!   failures, which the pool's doctor names first when they open its breaker.
//! - **A connection the server closed is never handed out**: the connection notices the end of
//!   its socket by itself (no command needed), and the pool discards it at its next checkout or
//!   return ([`RedisConnection::is_closed`]).
//!
//! # Connections
//!
//! Each pooled connection is redis-rs's `MultiplexedConnection`, used by one borrower at a
//! time, over a socket the manager opens from the connection info:
//!
//! - the URL's database, user name, password and `protocol=resp3` apply (`HELLO 3`);
//! - TCP: `TCP_NODELAY` is always on; a keepalive and `TCP_USER_TIMEOUT` (Linux) set with
//!   `ConnectionInfo::set_tcp_settings` apply (redis-rs's linger setting has no getter and is
//!   not applied);
//! - `rediss://` needs the `tls` feature (rustls, `ring` provider). The system's CA
//!   certificates are trusted unless `RedisManagerBuilder::tls_root_ca` or
//!   `RedisManagerBuilder::tls_config` say otherwise; `#insecure` is refused.
//!   `ConnectionAddr::TcpTls`'s own `tls_params` are not read: give them to the builder.
//! - Pub/Sub: a subscribed connection cannot be pooled; [`RedisManager::pubsub`] opens a
//!   dedicated one with the same settings.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod connect;
mod connection;
mod deadline;
mod error;
mod manager;
mod redact;
mod session;
#[cfg(feature = "serde")]
mod settings;
mod tls;

pub use connection::RedisConnection;
pub use error::{classify, failover_class, Error};
pub use manager::{BuildError, RedisManager, RedisManagerBuilder};
pub use redact::redact_url;
pub use redis;
#[cfg(feature = "serde")]
pub use settings::RedisSettings;

/// The crate README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
