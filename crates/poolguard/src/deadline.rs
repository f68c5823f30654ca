//! Deadlines that never overflow: `now + d` panics when `d` is absurdly large
//! (`Duration::MAX` passed as "wait forever"); these clamp it to a century instead.

use std::time::{Duration, Instant};

/// Further than any real wait, near enough that adding it to a monotonic clock cannot overflow.
const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `now + d`, clamped to a century.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now + FAR)
}

/// The same for tokio's (possibly paused) clock.
#[cfg(feature = "tokio")]
pub(crate) fn after_tokio(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now + FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_clamp_instead_of_panicking() {
        assert!(after(Duration::MAX) > Instant::now() + Duration::from_secs(50 * 365 * 86_400));
        let t = after(Duration::from_millis(5));
        assert!(t <= Instant::now() + Duration::from_millis(5));
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
    }
}
