//! Credentials that change: a provider the pool calls before every connect (an IAM token,
//! a secrets manager), and the rotation it detects.
//!
//! * The provider runs in the connect task, before `Manager::connect_with`, under
//!   `credentials_timeout`, contained like a hook (an error, a panic or a timeout fails that
//!   connect with [`Error::Credentials`](super::Error::Credentials), counted, fed to the
//!   breaker). It never runs under the pool lock.
//! * Each answer is reduced to a keyed fingerprint (SipHash with this process's random
//!   keys, of the answer's `version` when it has one, else of its user and password): the
//!   pool keeps the proven credentials themselves only inside [`Secret`], and compares
//!   fingerprints.
//! * An answer whose fingerprint differs from the proven one is a rotation: exactly one
//!   connect (the probe) uses it while every other connect keeps the proven credentials.
//!   When the probe succeeds the new credentials become the proven ones, and the
//!   connections opened with older ones retire gradually: at most `max_concurrent_opens`
//!   at a time, each closed only when the pool can open its replacement at once (none
//!   while the breaker is open), idle ones first and held ones when they come back. When
//!   the probe fails the pool keeps serving with the proven credentials, reports it (a
//!   counter, a warning, a doctor finding) and probes again later, backing off.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Secret;

/// What a connect authenticates with: a user (optional: Redis' default user, a token-only
/// backend) and a password or token, kept in a [`Secret`].
///
/// `version` identifies the credentials' generation when the secret itself changes at every
/// call but every answer stays valid (a signed IAM token): give a stable version (the
/// secret's version id, a role name) and only a change of version counts as a rotation.
/// Without a version, a change of user or password is a rotation.
///
/// ```
/// use poolguard::conn::Credentials;
/// let c = Credentials::new("app", "s3cret").with_version("v2");
/// assert_eq!(c.user(), Some("app"));
/// assert_eq!(c.password().expose(), "s3cret");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: Option<String>,
    password: Secret,
    version: Option<String>,
}

impl Credentials {
    /// A user and its password (or token).
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self {
            user: Some(user.into()),
            password: password.into(),
            version: None,
        }
    }

    /// A password (or token) alone: the backend's default user.
    pub fn password_only(password: impl Into<Secret>) -> Self {
        Self {
            user: None,
            password: password.into(),
            version: None,
        }
    }

    /// Sets the generation these credentials belong to (see the type's documentation). It
    /// shows in `Debug`, so it must not be a secret.
    #[must_use]
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password or token.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// The generation, if set.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The keyed fingerprint the pool compares (never shown anywhere).
    fn fingerprint(&self, keys: &RandomState) -> u64 {
        let mut h = keys.build_hasher();
        match &self.version {
            Some(v) => {
                1u8.hash(&mut h);
                v.hash(&mut h);
            }
            None => {
                0u8.hash(&mut h);
                self.user.hash(&mut h);
                self.password.expose().hash(&mut h);
            }
        }
        h.finish()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password)
            .field("version", &self.version)
            .finish()
    }
}

/// Why a provider could not give credentials: a message of your own. It reaches logs,
/// errors and the doctor, so it must not hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    message: String,
}

impl CredentialsError {
    /// An error with this message (anything `Display`, for example the secrets manager's
    /// error).
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

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CredentialsError {}

/// The future a provider returns: boxed, `Send`, owning what it needs.
pub type CredentialsFuture =
    Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send>>;

/// Gives the credentials for the next connect. Called once per connect, on the connect's
/// task, under `credentials_timeout`; it may be dropped at any await point (make it
/// cancel-safe). A closure `Fn() -> impl Future<Output = Result<Credentials,
/// CredentialsError>>` is a provider.
pub trait CredentialsProvider: Send + Sync + 'static {
    /// The credentials to connect with now.
    fn credentials(&self) -> CredentialsFuture;
}

impl<F, Fut> CredentialsProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credentials, CredentialsError>> + Send + 'static,
{
    fn credentials(&self) -> CredentialsFuture {
        Box::pin(self())
    }
}

/// How a provider call failed: a typed connect error of phase
/// [`Phase::Credentials`](super::Phase::Credentials). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsFault {
    /// The provider returned an error.
    #[error("credentials provider failed: {0}")]
    Failed(CredentialsError),
    /// The provider panicked; the panic's message.
    #[error("credentials provider panicked: {0}")]
    Panicked(String),
    /// The provider did not answer within `credentials_timeout`.
    #[error("credentials provider timed out after {0:?}")]
    TimedOut(Duration),
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

/// Calls `provider` under `limit`, catching a panic in the call or in its future.
pub(crate) async fn call(
    provider: &dyn CredentialsProvider,
    limit: Duration,
) -> Result<Credentials, CredentialsFault> {
    let mut fut = match std::panic::catch_unwind(AssertUnwindSafe(|| provider.credentials())) {
        Ok(f) => f,
        Err(p) => return Err(CredentialsFault::Panicked(panic_message(&*p))),
    };
    let caught = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(r)) => std::task::Poll::Ready(Ok(r)),
            Err(p) => std::task::Poll::Ready(Err(panic_message(&*p))),
        }
    });
    match tokio::time::timeout(limit, caught).await {
        Ok(Ok(Ok(c))) => Ok(c),
        Ok(Ok(Err(e))) => Err(CredentialsFault::Failed(e)),
        Ok(Err(msg)) => Err(CredentialsFault::Panicked(msg)),
        Err(_) => Err(CredentialsFault::TimedOut(limit)),
    }
}

/// What one connect uses: the credentials, the generation its connection will belong to,
/// and whether it is the rotation's probe.
#[derive(Debug)]
pub(crate) struct Use {
    pub(crate) credentials: Credentials,
    pub(crate) gen: u64,
    pub(crate) probe: Option<u64>,
}

/// The rotation state; lives under the pool lock (in `Internals`).
#[derive(Debug)]
pub(crate) struct Rotation {
    keys: RandomState,
    /// The proven credentials and their fingerprint (`None` before the first connect).
    current: Option<(u64, Credentials)>,
    /// The generation of `current`: connections of a lower one retire.
    pub(crate) gen: u64,
    /// A probe connect is running.
    probing: bool,
    /// No new probe before this (after a failed one).
    next_probe: Option<Instant>,
    /// Failed probes since the last success (drives the backoff).
    pub(crate) probe_failures: u32,
    /// The last failed probe's error text, while the rotation is pending (the doctor).
    pub(crate) probe_fault: Option<String>,
    /// The last provider failure, until the provider answers again (the doctor).
    pub(crate) provider_fault: Option<String>,
    /// Old-credential connections retired whose replacement is not planned yet.
    pub(crate) owed: usize,
    /// At most this many retirements in progress at once (`max_concurrent_opens`).
    pub(crate) max_swaps: usize,
}

impl Rotation {
    pub(crate) fn new(max_swaps: usize) -> Self {
        Self {
            keys: RandomState::new(),
            current: None,
            gen: 0,
            probing: false,
            next_probe: None,
            probe_failures: 0,
            probe_fault: None,
            provider_fault: None,
            owed: 0,
            max_swaps,
        }
    }

    /// Decides what a connect uses, given the provider's answer `fresh`.
    pub(crate) fn choose(&mut self, fresh: Credentials, now: Instant) -> Use {
        self.provider_fault = None;
        let fp = fresh.fingerprint(&self.keys);
        match &self.current {
            None => Use {
                credentials: fresh,
                gen: self.gen,
                probe: None,
            },
            Some((cur, _)) if *cur == fp => {
                // The rotation was withdrawn (or never happened): nothing pending.
                self.probe_fault = None;
                self.next_probe = None;
                self.probe_failures = 0;
                // Same generation: the fresh answer (a token renewed within it).
                Use {
                    credentials: fresh,
                    gen: self.gen,
                    probe: None,
                }
            }
            Some((_, proven)) => {
                if !self.probing && self.next_probe.is_none_or(|t| now >= t) {
                    self.probing = true;
                    Use {
                        credentials: fresh,
                        gen: self.gen + 1,
                        probe: Some(fp),
                    }
                } else {
                    Use {
                        credentials: proven.clone(),
                        gen: self.gen,
                        probe: None,
                    }
                }
            }
        }
    }

    /// A connect with `used` succeeded. Returns `true` when it was the probe: the new
    /// credentials are now the proven ones and older connections retire.
    pub(crate) fn succeeded(&mut self, used: Use) -> bool {
        match used.probe {
            Some(fp) => {
                self.probing = false;
                self.current = Some((fp, used.credentials));
                self.gen = used.gen.max(self.gen + 1);
                self.next_probe = None;
                self.probe_failures = 0;
                self.probe_fault = None;
                true
            }
            None => {
                if self.current.is_none() {
                    let fp = used.credentials.fingerprint(&self.keys);
                    self.current = Some((fp, used.credentials));
                }
                false
            }
        }
    }

    /// The probe failed (or was cancelled: `text` `None`): the proven credentials stay;
    /// the next probe waits a doubling backoff (`base` to `max`).
    pub(crate) fn probe_failed(
        &mut self,
        text: Option<String>,
        now: Instant,
        base: Duration,
        max: Duration,
    ) {
        self.probing = false;
        if let Some(text) = text {
            self.probe_failures = self.probe_failures.saturating_add(1);
            let backoff = base
                .saturating_mul(1u32 << self.probe_failures.min(20))
                .min(max);
            self.next_probe = Some(crate::deadline::add_tokio(now, backoff));
            self.probe_fault = Some(text);
        }
    }

    /// Whether another old-credential connection may retire now, with `opening` connects
    /// in progress.
    pub(crate) fn may_retire(&self, opening: usize) -> bool {
        self.gen > 0 && opening + self.owed < self.max_swaps
    }
}

/// The provider, as the pool holds it.
pub(crate) type Provider = Arc<dyn CredentialsProvider>;

impl<M: super::Manager> super::Builder<M> {
    /// Calls `provider` before every connect for the credentials to connect with (an IAM
    /// token, a secrets manager), under
    /// [`credentials_timeout`](super::Config::credentials_timeout). A changed answer is
    /// proven by one probe connect before any other connect uses it; then the connections
    /// opened with the old credentials retire gradually, at most `max_concurrent_opens` at
    /// a time and never while the breaker is open. A failed probe keeps the old
    /// credentials in use (reported by the doctor as `conn.credentials-rotation`).
    ///
    /// The manager must accept credentials ([`Manager::accepts_credentials`]), else
    /// `build()` refuses.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poolguard::conn::{Credentials, CredentialsError, Pool};
    /// use poolguard_testkit::sim::SimManager;
    ///
    /// let built = Pool::builder(SimManager::new())
    ///     .credentials(|| async { Ok::<_, CredentialsError>(Credentials::new("app", "token")) })
    ///     .build();
    /// // The simulator ignores credentials, so the pool refuses to pretend it uses them.
    /// assert_eq!(built.unwrap_err().field, "credentials");
    /// # Ok(()) }
    /// ```
    ///
    /// [`Manager::accepts_credentials`]: super::Manager::accepts_credentials
    pub fn credentials(mut self, provider: impl CredentialsProvider) -> Self {
        self.hooks.credentials = Some(Arc::new(provider));
        self
    }
}

/// Ends a probe run by `Pool::refresh_credentials` without a verdict if it is dropped.
struct ProbeGuard<'a, M: super::Manager> {
    shared: &'a super::engine::Shared<M>,
    armed: bool,
}

impl<M: super::Manager> Drop for ProbeGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            let cfg = &self.shared.cfg;
            self.shared.lock().rotation.probe_failed(
                None,
                Instant::now(),
                cfg.breaker_backoff,
                cfg.breaker_max_backoff,
            );
        }
    }
}

impl<M: super::Manager> super::Pool<M> {
    /// Asks the credentials provider now, without waiting for the next connect (call it
    /// when the secret store says the secret changed, or on a timer). When the answer
    /// changed, one probe connect proves it at once (outside `max_size`; the connection
    /// is kept if there is room, closed otherwise), and on success the connections opened
    /// with the old credentials start retiring, paced as after any rotation. Returns
    /// whether a rotation was proven by this call: `false` when the answer is unchanged,
    /// no provider is set, or a probe is already running or backing off after a failure.
    ///
    /// Bounded by `credentials_timeout` plus `connect_timeout`; dropping the future ends
    /// the probe without a verdict (the next connect may probe again).
    ///
    /// # Errors
    /// [`Error::Credentials`](super::Error::Credentials) when the provider fails; the
    /// probe's own failure ([`Error::Backend`](super::Error::Backend) or
    /// [`Error::PhaseTimeout`](super::Error::PhaseTimeout), phase `connect`), after which
    /// the old credentials stay in use; [`Error::Closed`](super::Error::Closed).
    pub async fn refresh_credentials(&self) -> Result<bool, super::Error<M::Error>> {
        use std::sync::atomic::Ordering::Relaxed;
        let shared = &self.shared;
        let Some(provider) = &shared.hooks.credentials else {
            return Ok(false);
        };
        if shared.lock().is_closed() {
            return Err(super::Error::Closed);
        }
        shared.stats.credentials_calls.fetch_add(1, Relaxed);
        let fresh = match call(&**provider, shared.cfg.credentials_timeout).await {
            Ok(c) => c,
            Err(fault) => {
                shared.stats.credentials_failures.fetch_add(1, Relaxed);
                shared.lock().rotation.provider_fault = Some(fault.to_string());
                tracing::warn!(pool = %shared.cfg.name, error = %fault, "credentials provider failed (refresh)");
                return Err(super::Error::Credentials(fault));
            }
        };
        let used = shared.lock().rotation.choose(fresh, Instant::now());
        if used.probe.is_none() {
            return Ok(false);
        }
        let mut guard = ProbeGuard {
            shared,
            armed: true,
        };
        let limit = shared.cfg.connect_timeout;
        let creds = used.credentials.clone();
        let res = tokio::time::timeout(limit, shared.manager.connect_with(creds)).await;
        let now = Instant::now();
        guard.armed = false;
        let raw = match res {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => {
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                let auth = shared.manager.is_auth_failure(&e);
                if auth {
                    shared.stats.auth_failures.fetch_add(1, Relaxed);
                }
                tracing::warn!(pool = %shared.cfg.name, error = %e, auth, "credential rotation: the probe connect with the new credentials failed; the proven credentials stay in use");
                shared.probe_failed(format!("connect: {e}"), now);
                return Err(super::Error::Backend {
                    phase: super::Phase::Connect,
                    source: Arc::new(e),
                });
            }
            Err(_) => {
                shared.stats.connect_failures.fetch_add(1, Relaxed);
                tracing::warn!(pool = %shared.cfg.name, timeout_s = limit.as_secs_f64(), "credential rotation: the probe connect with the new credentials timed out; the proven credentials stay in use");
                shared.probe_failed(format!("connect: timed out after {limit:?}"), now);
                return Err(super::Error::PhaseTimeout {
                    phase: super::Phase::Connect,
                    after: limit,
                });
            }
        };
        shared.stats.created.fetch_add(1, Relaxed);
        let id = shared.next_id.fetch_add(1, Relaxed);
        let gen = used.gen;
        let (adopted, life, epoch, old, opens) = {
            let mut st = shared.lock();
            st.rotation.succeeded(used);
            st.rotated();
            let adopted = st.adopt();
            let old = st.retire_old_idle();
            shared.begin_closes(old.len() + usize::from(!adopted));
            let min_idle = st.min_idle();
            let opens = shared.plan(&mut st, now, min_idle);
            (adopted, st.lifetimes(), st.epoch(), old, opens)
        };
        shared.stats.rotations.fetch_add(1, Relaxed);
        tracing::info!(pool = %shared.cfg.name, conn = id, generation = gen, max_at_once = shared.cfg.max_concurrent_opens, "credentials rotated: the new credentials were proven by a probe connect; connections opened with the old ones retire gradually");
        let mut conn =
            super::internals::Conn::new(raw, id, now, &shared.cfg, life, epoch, shared.bypass);
        conn.cold.cred_gen = gen;
        if adopted {
            shared.deliver(conn, now);
        } else {
            shared.close_conn(conn, super::CloseReason::Surplus);
        }
        for c in old {
            shared.close_conn(c, super::CloseReason::Rotated);
        }
        shared.spawn_opens(opens);
        Ok(true)
    }
}
