//! Hold tracking: checkouts held longer than a threshold are reported with their call site.
//!
//! Off by default and then free: the guard carries `None` and its drop tests one branch.
//! When on, `get()` (which is `#[track_caller]`) stamps the guard with the clock and the
//! caller's `Location`; the return compares the elapsed time with the threshold. This is the
//! seed's "long-lived object put in a pool" misuse: an object held for seconds should not
//! come from a pool at all.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use super::builder::Clock;
use super::stats::LongHold;

const RECENT: usize = 16;

/// Where and when a tracked checkout started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldStart {
    at: Duration,
    site: &'static Location<'static>,
}

pub(crate) struct HoldTracker {
    threshold: Duration,
    clock: Clock,
    pub(crate) long_holds: AtomicU64,
    recent: Mutex<VecDeque<LongHold>>,
}

impl HoldTracker {
    pub(crate) fn new(threshold: Duration, clock: Clock) -> Self {
        Self {
            threshold,
            clock,
            long_holds: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    pub(crate) fn start(&self, site: &'static Location<'static>) -> HoldStart {
        HoldStart {
            at: (self.clock)(),
            site,
        }
    }

    /// Called when the checkout ends (return or detach).
    pub(crate) fn end(&self, start: HoldStart, pool: &str) {
        let held = (self.clock)().saturating_sub(start.at);
        if held <= self.threshold {
            return;
        }
        self.long_holds.fetch_add(1, Relaxed);
        tracing::warn!(
            target: "poolguard::object::hold",
            pool,
            site = %start.site,
            held_ms = held.as_secs_f64() * 1e3,
            threshold_ms = self.threshold.as_secs_f64() * 1e3,
            "pooled object held longer than the threshold: long-lived objects should not come from a pool"
        );
        let mut r = self.recent.lock();
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(LongHold {
            site: start.site,
            held,
        });
    }

    pub(crate) fn recent(&self) -> Vec<LongHold> {
        self.recent.lock().iter().cloned().collect()
    }
}
