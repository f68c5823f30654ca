//! The circuit breaker: after `threshold` consecutive connect or validation failures the
//! pool stops waiting for a dead backend and fails `get` at once; half-open probes follow on
//! a jittered, doubling backoff, and the first success closes it again.
//!
//! Probe schedule. The first probe comes `base` after the breaker opens (default 25 ms) and
//! each failed probe doubles the wait, up to `max`; every wait is jittered (up to 50 %
//! shorter, never longer), so pools that opened together do not probe together. A short
//! start costs little (one connect per probe; callers fail fast meanwhile) and is what lets a
//! brief outage, such as a server restart with its port closed for a moment, end without the
//! breaker adding a long backoff. While the manager recognises a *restart signature* in the
//! failures (`Manager::is_restarting`: PostgreSQL "shutting down"/"starting up", Redis
//! `LOADING`), and for [`RESTART_WINDOW`] after the last one, no wait exceeds
//! [`RESTART_PROBE`]: the server said it is coming back, so the breaker adds at most that to
//! recovery. A long outage without such a signature backs off to `max` as before.
//!
//! The breaker is plain state under the pool's lock; it never sleeps or spawns. Probes are
//! ordinary opens that the engine launches when `admit` says the backoff has passed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state, as reported by `status()` and error snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Normal operation (or the breaker is disabled).
    Closed,
    /// The backend is considered down: `get` fails fast unless an idle connection is at hand.
    Open,
    /// A probe connection is allowed; its outcome closes or re-opens the breaker. One `get`
    /// waits for it; the others fail fast as when open.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

/// What the breaker lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go ahead (wait for a connection).
    Pass,
    /// Fail fast; the next probe is due in this long.
    Reject(Duration),
}

/// While restart signatures are seen (and this long after the last one), probes come at
/// most [`RESTART_PROBE`] apart.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// The longest wait between probes while the backend is restarting.
pub(crate) const RESTART_PROBE: Duration = Duration::from_millis(100);

/// `d` shortened by a random fraction of up to a half: in `(d / 2, d]`.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 - 0.5 * fastrand::f64())
}

/// Breaker state; lives under the pool lock.
#[derive(Debug)]
pub(crate) struct Breaker<E> {
    threshold: Option<u32>,
    base: Duration,
    max: Duration,
    backoff: Duration,
    state: State,
    /// Consecutive failures since the last success.
    pub(crate) failures: u32,
    /// Validation errors since the last success (noted, not counted as failures).
    pub(crate) noted: u32,
    /// When the last restart signature was seen (cleared by a success).
    restart_at: Option<Instant>,
    /// The last backend error (kept as the cause of `Unavailable`).
    pub(crate) last_error: Option<Arc<E>>,
    /// `phase: message` of the last failure, errors and timeouts alike (for snapshots).
    pub(crate) last_text: Option<String>,
    /// The pool's name, for the breaker's own events.
    pool: Arc<str>,
}

impl<E> Breaker<E> {
    /// Names the pool in the breaker's own events (`breaker half-open`).
    pub(crate) fn for_pool(mut self, pool: &str) -> Self {
        self.pool = pool.into();
        self
    }

    pub(crate) fn new(threshold: Option<u32>, base: Duration, max: Duration) -> Self {
        Self {
            threshold,
            base,
            max,
            backoff: base,
            state: State::Closed,
            failures: 0,
            noted: 0,
            restart_at: None,
            last_error: None,
            last_text: None,
            pool: "".into(),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Whether a caller may wait; moves Open to HalfOpen once the backoff has passed.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed | State::HalfOpen => Admit::Pass,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                tracing::info!(pool = %self.pool, "breaker half-open: probing the backend");
                Admit::Pass
            }
            State::Open { until } => Admit::Reject(until - now),
        }
    }

    /// [`admit`](Self::admit) for a `get` with no idle connection at hand, `waiting` callers
    /// already queued. Half-open, one caller waits for the probe (and gets its outcome);
    /// the others fail fast like when open, so a probe that hangs (a dead node) holds up one
    /// caller, not every caller until `connect_timeout`.
    pub(crate) fn admit_caller(&mut self, now: Instant, waiting: usize) -> Admit {
        match self.admit(now) {
            Admit::Pass if matches!(self.state, State::HalfOpen) && waiting > 0 => {
                Admit::Reject(Duration::ZERO)
            }
            a => a,
        }
    }

    /// How many opens may run at once under the current state (`usize::MAX`: no limit).
    pub(crate) fn open_limit(&mut self, now: Instant) -> usize {
        match self.admit(now) {
            Admit::Reject(_) => 0,
            Admit::Pass if matches!(self.state, State::HalfOpen) => 1,
            Admit::Pass => usize::MAX,
        }
    }

    /// A connect or validation succeeded. Returns true when this closed an open breaker.
    pub(crate) fn on_success(&mut self) -> bool {
        self.failures = 0;
        self.noted = 0;
        self.restart_at = None;
        self.backoff = self.base;
        let was = self.state;
        self.state = State::Closed;
        !matches!(was, State::Closed)
    }

    /// A connect or validation failed (`restart`: with a restart signature). Returns true
    /// when this opened the breaker.
    pub(crate) fn on_failure(
        &mut self,
        now: Instant,
        error: Option<Arc<E>>,
        text: String,
        restart: bool,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        if error.is_some() {
            self.last_error = error;
        }
        self.last_text = Some(text);
        if restart {
            self.restart_at = Some(now);
        }
        let Some(threshold) = self.threshold else {
            return false;
        };
        let open = match self.state {
            State::HalfOpen => true,
            State::Closed => self.failures >= threshold,
            State::Open { .. } => false,
        };
        if open {
            let wait = jittered(self.next_wait(now));
            self.state = State::Open {
                until: crate::deadline::add_tokio(now, wait),
            };
            self.backoff = self.backoff.saturating_mul(2).min(self.max);
        }
        open
    }

    /// The (unjittered) wait before the next probe: the backoff, capped at
    /// [`RESTART_PROBE`] while the backend is restarting.
    fn next_wait(&self, now: Instant) -> Duration {
        let restarting = self
            .restart_at
            .is_some_and(|at| now.saturating_duration_since(at) <= RESTART_WINDOW);
        if restarting {
            self.backoff.min(RESTART_PROBE)
        } else {
            self.backoff
        }
    }

    /// Records an error as the last one seen without counting it as a failure (`restart`:
    /// it is a restart signature, which keeps the next probes close together).
    pub(crate) fn note(&mut self, now: Instant, error: Arc<E>, text: String, restart: bool) {
        self.noted = self.noted.saturating_add(1);
        if restart {
            self.restart_at = Some(now);
        }
        self.last_error = Some(error);
        self.last_text = Some(text);
    }

    /// Time until the next probe, when open.
    pub(crate) fn retry_in(&self, now: Instant) -> Duration {
        match self.state {
            State::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject_in(b: &mut Breaker<std::io::Error>, now: Instant) -> Duration {
        match b.admit(now) {
            Admit::Reject(d) => d,
            Admit::Pass => panic!("expected the breaker to be open"),
        }
    }

    /// Asserts `d` is `nominal` jittered: in `[nominal / 2, nominal]`.
    fn assert_jittered(d: Duration, nominal: Duration) {
        assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
    }

    #[test]
    fn opens_after_threshold_and_backs_off() {
        let s = Duration::from_secs(1);
        let mut b: Breaker<std::io::Error> = Breaker::new(Some(3), s, 4 * s);
        let t0 = Instant::now();
        assert!(!b.on_failure(t0, None, "x".into(), false));
        assert!(!b.on_failure(t0, None, "x".into(), false));
        assert!(b.on_failure(t0, None, "x".into(), false));
        assert_eq!(b.state(), BreakerState::Open);
        let wait = reject_in(&mut b, t0);
        assert_jittered(wait, s);
        let t1 = t0 + wait;
        assert_eq!(b.admit(t1), Admit::Pass);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.open_limit(t1), 1);
        // failed probe: open again with a doubled backoff
        assert!(b.on_failure(t1, None, "x".into(), false));
        let wait = reject_in(&mut b, t1);
        assert_jittered(wait, 2 * s);
        let t2 = t1 + wait;
        assert_eq!(b.admit(t2), Admit::Pass);
        assert!(b.on_failure(t2, None, "x".into(), false));
        let wait = reject_in(&mut b, t2);
        assert_jittered(wait, 4 * s);
        let t3 = t2 + wait;
        assert_eq!(b.admit(t3), Admit::Pass);
        assert!(b.on_failure(t3, None, "x".into(), false));
        // capped at max
        assert_jittered(reject_in(&mut b, t3), 4 * s);
        assert!(b.on_success());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures, 0);
    }

    #[test]
    fn restart_signatures_keep_probes_short_for_a_while() {
        let s = Duration::from_secs(1);
        let mut b: Breaker<std::io::Error> = Breaker::new(Some(1), s, 30 * s);
        let mut now = Instant::now();
        assert!(b.on_failure(now, None, "starting up".into(), true));
        for i in 0..20 {
            let wait = reject_in(&mut b, now);
            assert!(wait <= RESTART_PROBE, "probe {i}: {wait:?}");
            now += wait;
            assert_eq!(b.admit(now), Admit::Pass);
            // Restart signatures, then refused connects: still short within the window.
            assert!(b.on_failure(now, None, "x".into(), i < 3));
        }
        // Past the window after the last signature: the doubled backoff applies again.
        let later = now + RESTART_WINDOW + s;
        assert_eq!(b.admit(later), Admit::Pass);
        assert!(b.on_failure(later, None, "x".into(), false));
        assert_jittered(reject_in(&mut b, later), 30 * s);
        // A validation error with the signature counts too; a success forgets it.
        b.note(now, Arc::new(std::io::Error::other("x")), "x".into(), true);
        assert!(b.restart_at.is_some());
        b.on_success();
        assert!(b.restart_at.is_none());
    }

    #[test]
    fn disabled_never_opens() {
        let mut b: Breaker<std::io::Error> =
            Breaker::new(None, Duration::from_secs(1), Duration::from_secs(4));
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!b.on_failure(t, None, "x".into(), true));
        }
        assert_eq!(b.admit(t), Admit::Pass);
    }
}
