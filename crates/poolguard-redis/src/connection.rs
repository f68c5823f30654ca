//! The pooled Redis connection: a multiplexed redis-rs connection that tracks the session
//! state its borrowers leave behind.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};
use tokio::task::JoinHandle;

use crate::deadline;
use crate::session::Session;

/// A pooled Redis connection. Use it with redis-rs as usual (`cmd(..).query_async(&mut *conn)`,
/// `AsyncCommands`): it implements [`redis::aio::ConnectionLike`].
///
/// It deliberately does not hand out the inner `MultiplexedConnection` (a clone would outlive
/// the borrow and bypass the session tracking that keeps `MULTI`/`WATCH`/`SELECT` from
/// reaching the next borrower).
///
/// The multiplexed connection's driver task, which owns the socket, is owned by it: it is
/// aborted when the connection is dropped.
pub struct RedisConnection {
    inner: MultiplexedConnection,
    pub(crate) session: Session,
    /// The manager's `query_timeout`.
    query_timeout: Option<Duration>,
    driver: DriverGuard,
}

/// Aborts the driver task (which owns the socket) when the connection is dropped.
struct DriverGuard(JoinHandle<()>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("db", &self.inner.get_db())
            .field("session", &self.session)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
    }
}

fn name_of(cmd: &Cmd) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(b) => Some(b),
        _ => None,
    });
    (args.next(), args.next())
}

impl RedisConnection {
    pub(crate) fn new(
        inner: MultiplexedConnection,
        driver: JoinHandle<()>,
        query_timeout: Option<Duration>,
    ) -> Self {
        RedisConnection {
            inner,
            session: Session::default(),
            query_timeout,
            driver: DriverGuard(driver),
        }
    }

    /// Whether the connection is gone: the server closed it (`CLIENT KILL`, a restart, its
    /// idle `timeout`) or its socket failed. The pool asks this on every checkout and
    /// return and discards a closed connection; it is cheap (no round trip).
    ///
    /// It turns true as soon as the connection's background task has read the end of the
    /// stream, which happens on its own, without a command being sent.
    pub fn is_closed(&self) -> bool {
        self.driver.0.is_finished()
    }

    /// Waits until the connection is gone (see [`is_closed`](Self::is_closed)): a way to
    /// notice, while holding a connection without using it, that the server dropped it.
    /// It never ends for a healthy connection: bound it with `tokio::time::timeout` or a
    /// `select!`.
    pub async fn closed(&mut self) {
        if !self.driver.0.is_finished() {
            // Cancel-safe: the handle stays put, and is not polled again once finished.
            let _ = (&mut self.driver.0).await;
        }
    }

    /// Marks the connection failed when a request's outcome is a fatal error: a client-side
    /// error, or an error reply from the server (which redis-rs hands back as a value, and
    /// turns into an `Err` only when the caller converts the reply).
    fn note(&mut self, result: &redis::RedisResult<Value>) {
        self.note_values(result.as_ref().map(std::slice::from_ref));
    }

    fn note_values(&mut self, result: Result<&[Value], &redis::RedisError>) {
        match result {
            Err(e) => self.note_error(e),
            Ok(values) => {
                for v in values {
                    // A reply, or the replies of a transaction (`EXEC`).
                    let nested = match v {
                        Value::Array(items) => items.as_slice(),
                        _ => &[],
                    };
                    for v in std::iter::once(v).chain(nested) {
                        if let Value::ServerError(se) = v {
                            self.note_error(&redis::RedisError::from(se.clone()));
                        }
                    }
                }
            }
        }
    }

    fn note_error(&mut self, e: &redis::RedisError) {
        if crate::error::classify(e) == poolguard::conn::ErrorClass::Fatal {
            if crate::error::is_read_only(e) && !self.session.failed {
                tracing::warn!(
                    "redis connection evicted: the server is a read-only replica (READONLY); \
                     after a failover, the URL must lead to the new primary"
                );
            }
            self.session.failed = true;
        }
    }

    /// A request outran its `query_timeout` deadline `limit`: its reply is still owed (left
    /// counted in `unanswered`), and the connection is marked failed; both evict it.
    fn timed_out(&mut self, what: &str, limit: Duration) -> redis::RedisError {
        self.session.failed = true;
        deadline::timed_out(what, limit, self.query_timeout.unwrap_or(limit))
    }

    /// Runs a command on the inner connection without session tracking (the manager's own
    /// PING/DISCARD/UNWATCH/SELECT).
    pub(crate) async fn raw(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        self.inner.req_packed_command(cmd).await
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (name, sub) = name_of(cmd);
        if let Some(name) = name {
            self.session.before(name, sub);
        }
        Box::pin(async move {
            // Counted from the first poll (an unpolled future sends nothing) until the reply
            // is in; a cancelled caller leaves it counted.
            self.session.unanswered = self.session.unanswered.saturating_add(1);
            let limit = deadline::deadline(self.query_timeout, [cmd]);
            let request = self.inner.req_packed_command(cmd);
            let result = match limit {
                Some(limit) => match tokio::time::timeout(limit, request).await {
                    Ok(r) => r,
                    Err(_) => {
                        let what = name.map(|n| String::from_utf8_lossy(n).to_ascii_uppercase());
                        return Err(self.timed_out(what.as_deref().unwrap_or("a command"), limit));
                    }
                },
                None => request.await,
            };
            self.session.unanswered -= 1;
            self.note(&result);
            if let Some(name) = name {
                // An error reply is an answer too (EXECABORT ends the transaction); an I/O
                // error is not, but then the connection is evicted anyway.
                self.session.answered(name);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        for cmd in pipeline.cmd_iter() {
            if let (Some(name), sub) = name_of(cmd) {
                self.session.before(name, sub);
            }
        }
        Box::pin(async move {
            self.session.unanswered = self.session.unanswered.saturating_add(1);
            let limit = deadline::deadline(self.query_timeout, pipeline.cmd_iter());
            let request = self.inner.req_packed_commands(pipeline, offset, count);
            let result = match limit {
                Some(limit) => match tokio::time::timeout(limit, request).await {
                    Ok(r) => r,
                    Err(_) => {
                        let what =
                            format!("a pipeline of {} commands", pipeline.cmd_iter().count());
                        return Err(self.timed_out(&what, limit));
                    }
                },
                None => request.await,
            };
            self.session.unanswered -= 1;
            self.note_values(result.as_deref());
            if result.is_ok() {
                for cmd in pipeline.cmd_iter() {
                    if let (Some(name), sub) = name_of(cmd) {
                        self.session.before(name, sub);
                        self.session.answered(name);
                    }
                }
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
