//! Lifecycle hooks: user code the pool runs at three points of a connection's life, each
//! under its own deadline, each contained (a hook that fails, panics or hangs costs its
//! connection, never the pool), each counted.
//!
//! * `after_connect`: once per new connection, before anyone sees it. Failure closes the
//!   connection and counts as a connect failure (the breaker sees it).
//! * `before_acquire`: on every checkout, just before the caller gets the connection.
//!   Failure (a rejection) closes the connection and the get tries the next one, within its
//!   own deadline.
//! * `after_release`: on every healthy return while the pool is open, on a task. Failure
//!   closes the connection instead of keeping it.
//!
//! The hooks are `Option`s in `Shared`: with none set, the get and return paths pay one
//! branch each.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The future a hook returns: boxed, `Send`, borrowing the connection.
pub type HookFuture<'c> = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'c>>;

/// A hook: an async function of the connection.
pub(crate) type HookFn<C> = dyn for<'c> Fn(&'c mut C) -> HookFuture<'c> + Send + Sync;

/// Why a hook refused a connection: a message of your own. It reaches logs, errors and the
/// doctor, so it must not hold a secret.
///
/// ```
/// use poolguard::conn::HookError;
/// let e = HookError::new("replica is read-only");
/// assert_eq!(e.to_string(), "replica is read-only");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookError {
    message: String,
}

impl HookError {
    /// A refusal with this message (anything `Display`, for example a backend error).
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HookError {}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HookName {
    /// Run once per new connection.
    AfterConnect,
    /// Run on every checkout.
    BeforeAcquire,
    /// Run on every healthy return while the pool is open.
    AfterRelease,
}

impl HookName {
    /// Every hook, in the order of [`StatsSnapshot::hooks`](super::StatsSnapshot::hooks).
    pub const ALL: [HookName; 3] = [
        HookName::AfterConnect,
        HookName::BeforeAcquire,
        HookName::AfterRelease,
    ];

    /// The hook's name as set on the builder (`after_connect`...; the Prometheus label).
    pub fn as_str(self) -> &'static str {
        match self {
            HookName::AfterConnect => "after_connect",
            HookName::BeforeAcquire => "before_acquire",
            HookName::AfterRelease => "after_release",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a hook run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookFault {
    /// The hook returned an error (it refused the connection).
    Refused(HookError),
    /// The hook panicked; the panic's message.
    Panicked(String),
    /// The hook did not finish within its timeout.
    TimedOut(Duration),
}

/// A hook that failed, as an error: which hook and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{hook} hook {fault}")]
#[non_exhaustive]
pub struct HookFailure {
    /// Which hook.
    pub hook: HookName,
    /// How it failed.
    pub fault: HookFault,
}

impl fmt::Display for HookFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookFault::Refused(e) => write!(f, "refused: {e}"),
            HookFault::Panicked(m) => write!(f, "panicked: {m}"),
            HookFault::TimedOut(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

/// The hooks set on a builder.
pub(crate) struct Hooks<C> {
    pub(crate) after_connect: Option<Box<HookFn<C>>>,
    pub(crate) before_acquire: Option<Box<HookFn<C>>>,
    pub(crate) after_release: Option<Box<HookFn<C>>>,
    /// The credentials provider (`credentials.rs`), called before every connect.
    pub(crate) credentials: Option<super::credentials::Provider>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Self {
            after_connect: None,
            before_acquire: None,
            after_release: None,
            credentials: None,
        }
    }
}

impl<C> Hooks<C> {
    pub(crate) fn names(&self) -> Vec<&'static str> {
        [
            (self.after_connect.is_some(), HookName::AfterConnect),
            (self.before_acquire.is_some(), HookName::BeforeAcquire),
            (self.after_release.is_some(), HookName::AfterRelease),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, h)| h.as_str())
        .collect()
    }
}

/// Per-hook counters (relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct HookCounters {
    runs: AtomicU64,
    refused: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
}

/// One hook's totals since the pool was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookStats {
    /// Times it ran.
    pub runs: u64,
    /// Runs that returned an error (the connection was closed).
    pub refused: u64,
    /// Runs that panicked (contained; the connection was closed).
    pub panicked: u64,
    /// Runs cut off by the hook's timeout (the connection was closed).
    pub timed_out: u64,
}

impl HookStats {
    /// Runs that panicked or hung: a bug in the hook, not a decision.
    pub fn faults(&self) -> u64 {
        self.panicked + self.timed_out
    }
}

impl HookCounters {
    pub(crate) fn snapshot(&self) -> HookStats {
        HookStats {
            runs: self.runs.load(Relaxed),
            refused: self.refused.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// Runs `hook` on `conn` under `limit`, catching a panic in the call or in the future.
/// `counters` counts the run and its fault (a timeout only when `count_timeout`: a run cut
/// short by the caller's own deadline says nothing about the hook).
pub(crate) async fn run<C>(
    hook: &HookFn<C>,
    conn: &mut C,
    limit: Duration,
    counters: &HookCounters,
    count_timeout: bool,
) -> Result<(), HookFault> {
    counters.runs.fetch_add(1, Relaxed);
    let res = match std::panic::catch_unwind(AssertUnwindSafe(move || {
        let conn = conn; // moved into the call: the closure is `FnOnce`
        hook(conn)
    })) {
        Err(p) => Err(HookFault::Panicked(panic_message(&*p))),
        Ok(mut fut) => {
            // The future is boxed (`Unpin`): each poll is wrapped, so a panic anywhere in
            // the hook ends here as an error, and dropping this future drops the hook's.
            let caught = std::future::poll_fn(|cx| {
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                    Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                    Ok(std::task::Poll::Ready(r)) => std::task::Poll::Ready(Ok(r)),
                    Err(p) => std::task::Poll::Ready(Err(panic_message(&*p))),
                }
            });
            match tokio::time::timeout(limit, caught).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(HookFault::Refused(e)),
                Ok(Err(msg)) => Err(HookFault::Panicked(msg)),
                Err(_) => Err(HookFault::TimedOut(limit)),
            }
        }
    };
    match &res {
        Ok(()) => {}
        Err(HookFault::Refused(_)) => {
            counters.refused.fetch_add(1, Relaxed);
        }
        Err(HookFault::Panicked(_)) => {
            counters.panicked.fetch_add(1, Relaxed);
        }
        Err(HookFault::TimedOut(_)) => {
            if count_timeout {
                counters.timed_out.fetch_add(1, Relaxed);
            }
        }
    }
    res
}

impl<M: super::Manager> super::Builder<M> {
    /// Runs `hook` once on every new connection, before it is handed out or made idle (for
    /// example `SET search_path`, `SET application_name`), under
    /// [`after_connect_timeout`](super::Config::after_connect_timeout).
    ///
    /// An error, a panic or a timeout closes the connection (reason `hook`) and counts as a
    /// failed connect: the caller waiting for it gets [`Error::Hook`](super::Error::Hook), and
    /// the breaker counts it like any other connect failure.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::{HookError, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new())
    ///     .after_connect(|conn| Box::pin(async move {
    ///         // a real backend: conn.batch_execute("SET search_path TO app").await
    ///         if conn.id() > 1_000 { return Err(HookError::new("too many connections")); }
    ///         Ok(())
    ///     }))
    ///     .build()?;
    /// let conn = pool.get().await?;
    /// drop(conn);
    /// assert_eq!(pool.stats().hooks[0].runs, 1); // once per new connection
    /// # Ok(()) }
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut M::Connection) -> HookFuture<'c> + Send + Sync + 'static,
    {
        self.hooks.after_connect = Some(Box::new(hook));
        self
    }

    /// Runs `hook` on every checkout, just before the caller gets the connection, under
    /// [`before_acquire_timeout`](super::Config::before_acquire_timeout) (and never past the
    /// get's own deadline). An error, a panic or a timeout rejects the connection: it is
    /// closed (reason `hook`) and the get tries the next one, within its deadline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::{HookError, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new())
    ///     .before_acquire(|conn| Box::pin(async move {
    ///         // Only connection 0 is refused; the get then tries the next one.
    ///         if conn.id() == 0 { Err(HookError::new("not this one")) } else { Ok(()) }
    ///     }))
    ///     .build()?;
    /// let conn = pool.get().await?;
    /// assert_eq!(conn.id(), 1);
    /// assert_eq!(pool.stats().hooks[1].refused, 1);
    /// # Ok(()) }
    /// ```
    pub fn before_acquire<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut M::Connection) -> HookFuture<'c> + Send + Sync + 'static,
    {
        self.hooks.before_acquire = Some(Box::new(hook));
        self
    }

    /// Runs `hook` on every healthy return while the pool is open, on a task (the
    /// returning caller never waits for it), under
    /// [`after_release_timeout`](super::Config::after_release_timeout), before the
    /// manager's reset. An error, a panic or a timeout closes the connection (reason `hook`)
    /// instead of keeping it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::{HookError, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let pool = Pool::builder(SimManager::new())
    ///     .after_release(|_conn| Box::pin(async move {
    ///         Err(HookError::new("keep no connection"))
    ///     }))
    ///     .build()?;
    /// drop(pool.get().await?);
    /// tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the hook's task runs
    /// assert_eq!(pool.status().size, 0);
    /// # Ok(()) }
    /// ```
    pub fn after_release<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut M::Connection) -> HookFuture<'c> + Send + Sync + 'static,
    {
        self.hooks.after_release = Some(Box::new(hook));
        self
    }
}
