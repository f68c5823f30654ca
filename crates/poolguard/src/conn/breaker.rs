//! The circuit breaker: after `threshold` consecutive connect or validation failures the
//! pool stops waiting for a dead backend and fails `get` at once; half-open probes follow on
//! a doubling backoff, and the first success closes it again.
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
    /// A probe connection is allowed; its outcome closes or re-opens the breaker.
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
    /// The last backend error (kept as the cause of `Unavailable`).
    pub(crate) last_error: Option<Arc<E>>,
    /// `phase: message` of the last failure, errors and timeouts alike (for snapshots).
    pub(crate) last_text: Option<String>,
}

impl<E> Breaker<E> {
    pub(crate) fn new(threshold: Option<u32>, base: Duration, max: Duration) -> Self {
        Self {
            threshold,
            base,
            max,
            backoff: base,
            state: State::Closed,
            failures: 0,
            noted: 0,
            last_error: None,
            last_text: None,
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
                tracing::info!("breaker half-open: probing the backend");
                Admit::Pass
            }
            State::Open { until } => Admit::Reject(until - now),
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
        self.backoff = self.base;
        let was = self.state;
        self.state = State::Closed;
        !matches!(was, State::Closed)
    }

    /// A connect or validation failed. Returns true when this opened the breaker.
    pub(crate) fn on_failure(&mut self, now: Instant, error: Option<Arc<E>>, text: String) -> bool {
        self.failures = self.failures.saturating_add(1);
        if error.is_some() {
            self.last_error = error;
        }
        self.last_text = Some(text);
        let Some(threshold) = self.threshold else {
            return false;
        };
        let open = match self.state {
            State::HalfOpen => true,
            State::Closed => self.failures >= threshold,
            State::Open { .. } => false,
        };
        if open {
            self.state = State::Open {
                until: crate::deadline::add_tokio(now, self.backoff),
            };
            self.backoff = (self.backoff * 2).min(self.max);
        }
        open
    }

    /// Records an error as the last one seen without counting it as a failure.
    pub(crate) fn note(&mut self, error: Arc<E>, text: String) {
        self.noted = self.noted.saturating_add(1);
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

    #[test]
    fn opens_after_threshold_and_backs_off() {
        let mut b: Breaker<std::io::Error> =
            Breaker::new(Some(3), Duration::from_secs(1), Duration::from_secs(4));
        let t0 = Instant::now();
        assert!(!b.on_failure(t0, None, "x".into()));
        assert!(!b.on_failure(t0, None, "x".into()));
        assert!(b.on_failure(t0, None, "x".into()));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(t0), Admit::Reject(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admit::Pass);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.open_limit(t1), 1);
        // failed probe: open again with a doubled backoff
        assert!(b.on_failure(t1, None, "x".into()));
        assert_eq!(b.admit(t1), Admit::Reject(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.admit(t2), Admit::Pass);
        assert!(b.on_failure(t2, None, "x".into()));
        assert_eq!(b.admit(t2), Admit::Reject(Duration::from_secs(4)));
        let t3 = t2 + Duration::from_secs(4);
        assert_eq!(b.admit(t3), Admit::Pass);
        assert!(b.on_failure(t3, None, "x".into()));
        // capped at max
        assert_eq!(b.admit(t3), Admit::Reject(Duration::from_secs(4)));
        assert!(b.on_success());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures, 0);
    }

    #[test]
    fn disabled_never_opens() {
        let mut b: Breaker<std::io::Error> =
            Breaker::new(None, Duration::from_secs(1), Duration::from_secs(4));
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!b.on_failure(t, None, "x".into()));
        }
        assert_eq!(b.admit(t), Admit::Pass);
    }
}
