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
//!   with a request still unanswered (a cancelled query) first waits for the answer, which
//!   decides; a clean one costs no round trip and skips the pool's reset task.
//! - **Dead connections are evicted.** Errors are classified by SQLSTATE ([`classify`]):
//!   57P01 (terminated by an administrator), 57P02, 57P03 and class 08 are fatal; so are I/O
//!   and protocol errors. `is_broken` checks the client and the connection task on every
//!   return.
//! - **The connection task is owned.** Dropping a [`PgConnection`] aborts the task driving its
//!   socket; the pool's close path ends it politely first.
//! - **Connect errors say what is wrong**: a refused port, a wrong password (28P01), an
//!   unknown role (28000) or database (3D000) each have their own message, never a timeout.
//!
//! # Prepared statements
//!
//! tokio-postgres statements belong to one server session. [`PgConnection::prepare_cached`]
//! keeps a per-connection cache (bounded by
//! [`statement_cache_capacity`](PostgresManagerBuilder::statement_cache_capacity)), so a
//! statement is prepared once per connection, not once per borrow. [`RecyclingMethod::Clean`]
//! runs `DISCARD ALL`, which deallocates them, and empties the cache with it.
//!
//! # TLS
//!
//! Plaintext by default. With the `tls` feature, pass any tokio-postgres TLS connector to
//! [`PostgresManagerBuilder::tls`]; the manager negotiates TLS itself, below the socket tap
//! (which needs the plaintext), so channel binding (`SCRAM-SHA-256-PLUS`) is not offered.
//! Without a connector, `sslmode=require` is refused by the builder with an explanation.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

mod config;
mod connection;
mod error;
mod manager;
mod tap;
#[cfg(feature = "tls")]
mod tls;

pub use config::{BuildError, PostgresConfig, PostgresManagerBuilder, RecyclingMethod};
pub use connection::PgConnection;
pub use error::{classify, is_restarting, Error};
pub use manager::PostgresManager;
pub use tokio_postgres;
