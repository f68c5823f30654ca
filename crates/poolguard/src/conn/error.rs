//! What can go wrong, named by phase, with the cause kept.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::credentials::CredentialsFault;
use super::hooks::{HookFailure, HookName};
use super::stats::Status;

/// The step of a connection's life an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for a connection from the pool.
    Wait,
    /// `Manager::connect`.
    Connect,
    /// `Manager::validate`.
    Validate,
    /// `Manager::reset`.
    Reset,
    /// The credentials provider, before a connect.
    Credentials,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Wait => "wait",
            Phase::Connect => "connect",
            Phase::Validate => "validate",
            Phase::Reset => "reset",
            Phase::Credentials => "credentials",
        })
    }
}

/// One checked-out connection, as seen by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Where `Pool::get` was called.
    pub site: &'static Location<'static>,
    /// How long it has been held.
    pub held: Duration,
    /// Already reported as a leak.
    pub leaked: bool,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} held {:.1?}", self.site, self.held)?;
        if self.leaked {
            f.write_str(" (leak)")?;
        }
        Ok(())
    }
}

/// The pool as it was when an acquire timed out: enough to tell exhaustion from a leak
/// from a dead backend in one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutSnapshot {
    /// The pool's name.
    pub name: String,
    /// How long the caller waited.
    pub waited: Duration,
    /// The pool when the caller gave up. Its `waiters` counts the other callers still
    /// waiting (this one had left the queue).
    pub status: Status,
    /// The longest holders, oldest first (at most three).
    pub longest_holders: Vec<Holder>,
}

impl fmt::Display for TimeoutSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        write!(
            f,
            "pool `{}` gave no connection within {:.1?}: size {}/{} (idle {}, in use {}, opening {}), {} other waiters, breaker {}",
            self.name,
            self.waited,
            s.size,
            s.max_size,
            s.idle,
            s.in_use,
            s.opening,
            s.waiters,
            s.breaker
        )?;
        if s.paused {
            f.write_str(", paused")?;
        }
        match &s.last_error {
            Some(e) => write!(f, ", last backend error: {e}")?,
            None => f.write_str(", no backend error")?,
        }
        if !self.longest_holders.is_empty() {
            f.write_str("; longest holders: ")?;
            for (i, h) in self.longest_holders.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{h}")?;
            }
        }
        Ok(())
    }
}

/// An error from [`Pool::get`](super::Pool::get).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E: std::error::Error + 'static> {
    /// No connection within `acquire_timeout`; the snapshot says why.
    #[error("acquire timed out: {0}")]
    Timeout(Box<TimeoutSnapshot>),
    /// Opening the connection this caller waited for took longer than `connect_timeout`.
    #[error("{phase} timed out after {after:?}")]
    PhaseTimeout {
        /// Which step.
        phase: Phase,
        /// Its limit.
        after: Duration,
    },
    /// The backend refused (wrong password, refused port, ...).
    #[error("backend error during {phase}: {source}")]
    Backend {
        /// Which step.
        phase: Phase,
        /// The backend's error.
        source: Arc<E>,
    },
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
    /// The pool is paused with [`PauseMode::FailFast`](super::PauseMode::FailFast): no
    /// connection is handed out until [`Pool::resume`](super::Pool::resume).
    #[error("the pool is paused (fail fast): no connection until it is resumed")]
    Paused,
    /// Too many callers are already waiting (`max_waiters`): shed load instead of queueing.
    #[error("pool overloaded: {waiters} callers already waiting (max_waiters {max_waiters})")]
    Overloaded {
        /// Callers waiting.
        waiters: usize,
        /// The limit.
        max_waiters: usize,
    },
    /// The circuit breaker is open: the backend failed repeatedly; failing fast.
    #[error("backend unavailable (breaker open after {failures} consecutive failures, {}); last error: {}", display_retry(.retry_in), display_last(.last_error))]
    Unavailable {
        /// Consecutive failures seen.
        failures: u32,
        /// Time until the next half-open probe (zero: a probe is running now).
        retry_in: Duration,
        /// The error that opened it (or the last one since).
        last_error: Option<Arc<E>>,
    },
    /// A lifecycle hook failed: `after_connect` on the connection this caller waited for
    /// (the connect counts as failed), or, for [`Pool::ready`](super::Pool::ready), on a
    /// warm-up connection.
    #[error("{0}")]
    Hook(HookFailure),
    /// The credentials provider failed, panicked or hung before the connect this caller
    /// waited for (or, for [`Pool::ready`](super::Pool::ready), a warm-up connect): phase
    /// [`Phase::Credentials`]; the connect counts as failed. Never holds a secret.
    #[error("{0}")]
    Credentials(CredentialsFault),
    /// [`Pool::try_get`](super::Pool::try_get) found no idle connection (it never waits).
    #[error("no idle connection now (try_get does not wait; use get or get_timeout to wait)")]
    WouldBlock,
}

fn display_retry(retry_in: &Duration) -> String {
    if retry_in.is_zero() {
        "a probe is running".to_owned()
    } else {
        format!("next probe in {retry_in:.1?}")
    }
}

fn display_last<E: fmt::Display>(e: &Option<Arc<E>>) -> String {
    match e {
        Some(e) => e.to_string(),
        None => "timeout".to_owned(),
    }
}

/// The acquire-timeout event, at the configured level (`None`: not logged). Target
/// `poolguard::conn`; fields `pool`, `waited_s`, `size`, `max_size`, `idle`, `in_use`,
/// `opening`, `waiters`, `breaker`; the message is the snapshot's text.
pub(crate) fn log_timeout(level: Option<tracing::Level>, snap: &TimeoutSnapshot) {
    use tracing::Level;
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(
                target: "poolguard::conn",
                $lvl,
                pool = %snap.name,
                waited_s = snap.waited.as_secs_f64(),
                size = snap.status.size,
                max_size = snap.status.max_size,
                idle = snap.status.idle,
                in_use = snap.status.in_use,
                opening = snap.status.opening,
                waiters = snap.status.waiters,
                breaker = %snap.status.breaker,
                "{snap}"
            )
        };
    }
    match level {
        None => {}
        Some(Level::ERROR) => at!(Level::ERROR),
        Some(Level::WARN) => at!(Level::WARN),
        Some(Level::INFO) => at!(Level::INFO),
        Some(Level::DEBUG) => at!(Level::DEBUG),
        Some(_) => at!(Level::TRACE),
    }
}

impl<E: std::error::Error + 'static> Error<E> {
    /// The phase this error belongs to.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Error::Timeout(_) => Some(Phase::Wait),
            Error::PhaseTimeout { phase, .. } | Error::Backend { phase, .. } => Some(*phase),
            Error::Hook(f) if f.hook == HookName::AfterConnect => Some(Phase::Connect),
            Error::Credentials(_) => Some(Phase::Credentials),
            _ => None,
        }
    }

    /// A stable snake_case word for the variant (`timeout`, `phase_timeout`, `backend`,
    /// `closed`, `paused`, `overloaded`, `unavailable`, `hook`, `credentials`, `would_block`): the `outcome`
    /// of a get in traces.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::PhaseTimeout { .. } => "phase_timeout",
            Error::Backend { .. } => "backend",
            Error::Closed => "closed",
            Error::Paused => "paused",
            Error::Overloaded { .. } => "overloaded",
            Error::Unavailable { .. } => "unavailable",
            Error::Hook(_) => "hook",
            Error::Credentials(_) => "credentials",
            Error::WouldBlock => "would_block",
        }
    }

    /// The acquire-timeout snapshot, if this is one.
    pub fn snapshot(&self) -> Option<&TimeoutSnapshot> {
        match self {
            Error::Timeout(s) => Some(s),
            _ => None,
        }
    }
}
