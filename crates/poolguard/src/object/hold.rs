//! Hold tracking: checkouts held longer than a threshold are reported with their call site,
//! while they are still held and again (counted) when they come back.
//!
//! Off by default and then free: the pool has no tracker, the guard carries `None` and its
//! drop tests one branch. When on, `get()` (which is `#[track_caller]`) stamps the guard with
//! the clock and the caller's `Location` and registers the checkout in a registry of
//! outstanding checkouts (a few mutex-protected slabs, picked by thread index, so checkouts
//! on different threads rarely share a lock); the return frees the slot and compares the
//! elapsed time with the threshold. A trim cycle scans the registry and reports each checkout
//! held past the threshold once through `tracing`, so an object that is never returned — the
//! seed's "long-lived object put in a pool" misuse at its worst — is still named.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::diag::slab::Slab;
use crate::sync::pl::Mutex;
use crossbeam_utils::CachePadded;

use super::config::Clock;
use super::local::thread_index;
use super::stats::LongHold;

const RECENT: usize = 16;
/// Registry slabs (a power of two).
const SLABS: usize = 8;

/// Where and when a tracked checkout started, and its registry slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldStart {
    at: Duration,
    site: &'static Location<'static>,
    slab: usize,
    slot: usize,
}

/// An outstanding checkout.
#[derive(Debug)]
struct Live {
    at: Duration,
    site: &'static Location<'static>,
    /// Already reported by a scan (each checkout is reported once).
    reported: bool,
}

pub(crate) struct HoldTracker {
    threshold: Duration,
    clock: Clock,
    pub(crate) long_holds: AtomicU64,
    recent: Mutex<VecDeque<LongHold>>,
    live: Box<[CachePadded<Mutex<Slab<Live>>>]>,
}

impl HoldTracker {
    pub(crate) fn new(threshold: Duration, clock: Clock) -> Self {
        Self {
            threshold,
            clock,
            long_holds: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            live: (0..SLABS).map(|_| CachePadded::default()).collect(),
        }
    }

    pub(crate) fn start(&self, site: &'static Location<'static>) -> HoldStart {
        let at = (self.clock)();
        let slab = thread_index().unwrap_or(0) & (SLABS - 1);
        let slot = self.live[slab].lock().insert(Live {
            at,
            site,
            reported: false,
        });
        HoldStart {
            at,
            site,
            slab,
            slot,
        }
    }

    /// Called when the checkout ends (return or detach).
    pub(crate) fn end(&self, start: HoldStart, pool: &str) {
        let reported = self.live[start.slab]
            .lock()
            .remove(start.slot)
            .is_some_and(|l| l.reported);
        let held = (self.clock)().saturating_sub(start.at);
        if held <= self.threshold {
            return;
        }
        self.long_holds.fetch_add(1, Relaxed);
        if !reported {
            tracing::warn!(
                target: "poolguard::object::hold",
                pool,
                site = %start.site,
                held_s = held.as_secs_f64(),
                threshold_s = self.threshold.as_secs_f64(),
                "pooled object held longer than the threshold: long-lived objects should not come from a pool"
            );
        }
        let mut r = self.recent.lock();
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(LongHold {
            site: start.site,
            held,
            still_held: false,
        });
    }

    pub(crate) fn recent(&self) -> Vec<LongHold> {
        self.recent.lock().iter().cloned().collect()
    }

    /// Checkouts held past the threshold right now, longest first; with `mark`, those not
    /// reported yet are marked reported and also returned separately.
    fn collect(&self, mark: bool) -> (Vec<LongHold>, Vec<LongHold>) {
        let now = (self.clock)();
        let (mut all, mut fresh) = (Vec::new(), Vec::new());
        for slab in self.live.iter() {
            let mut s = slab.lock();
            for live in s.iter_mut() {
                let held = now.saturating_sub(live.at);
                if held <= self.threshold {
                    continue;
                }
                let h = LongHold {
                    site: live.site,
                    held,
                    still_held: true,
                };
                if mark && !live.reported {
                    live.reported = true;
                    fresh.push(h.clone());
                }
                all.push(h);
            }
        }
        all.sort_by_key(|h| std::cmp::Reverse(h.held));
        (all, fresh)
    }

    /// Checkouts held past the threshold right now, longest first.
    pub(crate) fn outstanding(&self) -> Vec<LongHold> {
        self.collect(false).0
    }

    /// Reports (once each, as a `tracing` warning) the checkouts held past the threshold
    /// that were not reported yet. Called by trim cycles. Returns how many were new.
    pub(crate) fn scan(&self, pool: &str) -> usize {
        let (_, fresh) = self.collect(true);
        for h in &fresh {
            tracing::warn!(
                target: "poolguard::object::hold",
                pool,
                site = %h.site,
                held_s = h.held.as_secs_f64(),
                threshold_s = self.threshold.as_secs_f64(),
                "pooled object still held past the threshold (maybe never returned): long-lived objects should not come from a pool"
            );
        }
        fresh.len()
    }
}
