//! Server-side cancel: the `CancelRequest` machinery, and the reset's wait for an abandoned
//! request, which cancels it on the server instead of waiting for it to finish.
//!
//! A caller that drops a query future (a request timeout, an aborted task) leaves the
//! request running on the server; the connection comes back with it unanswered. The reset
//! ([`settle`]) waits a moment for the answer, then sends a `CancelRequest` and keeps
//! waiting; the cancelled request ends with 57014 and a `ReadyForQuery`, after which the
//! reset goes on as for any returned connection (rollback if a transaction is open) and the
//! connection is reused. The server ignores a cancel that arrives while the backend is
//! between requests (the abandoned one may still be in the client's queue), so the cancel is
//! repeated, with growing pauses, until the answer comes; the pool's `reset_timeout` bounds
//! the whole wait, and a connection still unanswered then is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::NoTls;

use crate::connection::PgConnection;
use crate::error::Error;
use crate::manager::Target;
use crate::stats::Counters;
use crate::tap::TxStatus;

/// How long the reset waits for an unanswered request before cancelling it.
const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest pause between two cancels of the same abandoned request.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// What it takes to cancel a connection's running request: its backend key and address.
#[derive(Clone)]
pub(crate) struct Canceller {
    pub(crate) token: tokio_postgres::CancelToken,
    pub(crate) target: Target,
    pub(crate) addr: String,
    pub(crate) deadline: Duration,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller")
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Canceller {
    /// Sends a `CancelRequest` for the connection's backend on a new socket to the same
    /// address and waits for the server to close that socket (it has then signalled the
    /// backend), within the deadline. Counted in the manager's stats.
    pub(crate) async fn send(&self) -> Result<(), Error> {
        let r = match tokio::time::timeout(self.deadline, self.send_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectTimeout {
                addr: self.addr.clone(),
                during: "the cancel request",
                timeout: self.deadline,
            }),
        };
        match &r {
            Ok(()) => Counters::bump(&self.counters.cancels_sent),
            Err(_) => Counters::bump(&self.counters.cancel_failures),
        }
        r
    }

    async fn send_unbounded(&self) -> Result<(), Error> {
        let io_error = |source| Error::Connect {
            addr: self.addr.clone(),
            source,
        };
        match &self.target {
            Target::Tcp(a) => {
                let mut s = TcpStream::connect(a).await.map_err(io_error)?;
                self.token.cancel_query_raw(&mut s, NoTls).await?;
                drain(&mut s).await;
            }
            Target::Unix(p) => {
                let mut s = UnixStream::connect(p).await.map_err(io_error)?;
                self.token.cancel_query_raw(&mut s, NoTls).await?;
                drain(&mut s).await;
            }
        }
        Ok(())
    }

    /// [`send`](Self::send) from a task of its own (bounded by the deadline), so nobody
    /// waits for it.
    pub(crate) fn spawn(self) {
        tokio::spawn(async move {
            match self.send().await {
                Ok(()) => tracing::debug!(addr = %self.addr, "cancel request sent"),
                Err(e) => tracing::warn!(addr = %self.addr, error = %e, "cancel request failed"),
            }
        });
    }
}

/// Reads until the server closes the cancel socket (it sends nothing); a read error also
/// means it is gone.
async fn drain<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 64];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Waits until every request sent on `conn` is answered, then returns the status; a request
/// still unanswered after a moment is cancelled on the server (again, with growing pauses,
/// until its answer comes). The caller bounds the whole wait (the pool's `reset_timeout`).
pub(crate) async fn settle(conn: &PgConnection, counters: &Counters) -> TxStatus {
    let mut wait = FIRST_WAIT;
    loop {
        if let Ok(status) = tokio::time::timeout(wait, conn.settled_tx_status()).await {
            return status;
        }
        Counters::bump(&counters.cancels_on_return);
        match conn.canceller().send().await {
            Ok(()) => {
                tracing::debug!(addr = %conn.addr(), "returned with a request in flight: cancel request sent")
            }
            Err(e) => {
                tracing::warn!(addr = %conn.addr(), error = %e, "returned with a request in flight: cancel request failed")
            }
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}
