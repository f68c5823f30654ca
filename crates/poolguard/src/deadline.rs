//! Deadlines that never overflow: `now + d` panics when `d` is absurdly large
//! (`Duration::MAX` passed as "wait forever"); these clamp it to a century instead.
//!
//! Every `instant + duration` in the crate goes through here, so `Duration::MAX` means
//! "as long as it takes" and `Duration::ZERO` means "now" (a deadline already reached).

use std::time::{Duration, Instant};

/// Further than any real wait, near enough that adding it to a monotonic clock cannot overflow.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `at + d`, clamped to a century (and to `at` itself if even that would overflow).
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

/// `now + d`, clamped to a century.
pub(crate) fn after(d: Duration) -> Instant {
    add(Instant::now(), d)
}

/// [`add`] for tokio's (possibly paused) clock.
#[cfg(feature = "tokio")]
#[inline]
pub(crate) fn add_tokio(at: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

/// The same for tokio's (possibly paused) clock.
#[cfg(feature = "tokio")]
pub(crate) fn after_tokio(d: Duration) -> tokio::time::Instant {
    add_tokio(tokio::time::Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_clamp_instead_of_panicking() {
        assert!(after(Duration::MAX) > Instant::now() + Duration::from_secs(50 * 365 * 86_400));
        let t = after(Duration::from_millis(5));
        assert!(t <= Instant::now() + Duration::from_millis(5));
        let now = Instant::now();
        assert_eq!(add(now, Duration::ZERO), now);
        assert!(add(add(now, Duration::MAX), Duration::MAX) > now);
    }

    #[cfg(feature = "tokio")]
    #[tokio::test(start_paused = true)]
    async fn tokio_clock_too() {
        let now = tokio::time::Instant::now();
        assert!(after_tokio(Duration::MAX) > now + Duration::from_secs(50 * 365 * 86_400));
        assert_eq!(
            after_tokio(Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(add_tokio(now, Duration::ZERO), now);
    }
}
