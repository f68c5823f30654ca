//! Automatic soft-evict on a failover signature (`Config::failover_burst`, off by default).
//!
//! The manager names the failover class of an error ([`Manager::failover_class`]: PostgreSQL
//! 57P01 `admin_shutdown` or 25006 `read_only_sql_transaction`, Redis `READONLY`); the pool
//! feeds every such error it meets (a fatal `PooledConnection::report`, a failed validation,
//! connect or reset) to [`Watch::observe`], under the state lock. `burst` errors of one class
//! within `window` trigger one `soft_evict_all`; then nothing triggers for `cooldown`, so a
//! sustained outage does not evict in a loop (the refill is paced as every soft-evict's).
//!
//! Off, the pool has no `Watch` and asks the manager nothing: the paths that meet errors
//! test one `Option` in the configuration; the get and return paths do not change at all.
//!
//! [`Manager::failover_class`]: super::Manager::failover_class

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The most distinct classes tracked at once; a new one replaces the one seen longest ago.
/// The shipped managers have two or three.
const MAX_CLASSES: usize = 8;

/// A failover signature seen: the burst that triggered the soft-evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Triggered {
    /// The class the manager named.
    pub(crate) class: &'static str,
    /// Errors of that class in the burst (the configured `burst`).
    pub(crate) count: usize,
    /// From the burst's first error to its last.
    pub(crate) within: Duration,
    /// When it triggered.
    pub(crate) at: Instant,
    /// Where the error that completed the burst was met (`report`, `validate`...).
    pub(crate) phase: &'static str,
}

/// The burst detector (plain data under the state lock; no clock read of its own).
#[derive(Debug)]
pub(crate) struct Watch {
    burst: usize,
    window: Duration,
    cooldown: Duration,
    /// Per class, the times of its recent errors, oldest first (at most `burst`).
    classes: Vec<(&'static str, VecDeque<Instant>)>,
    /// No trigger before this (the cooldown after the last one).
    quiet_until: Option<Instant>,
    /// The last trigger, for the doctor.
    pub(crate) last: Option<Triggered>,
    /// Signature errors met during a cooldown (not counted toward a burst).
    pub(crate) in_cooldown: u64,
}

impl Watch {
    /// `burst` is validated by `build()` (1 to `MAX_FAILOVER_BURST`).
    pub(crate) fn new(burst: u32, window: Duration, cooldown: Duration) -> Self {
        Self {
            burst: burst.max(1) as usize,
            window,
            cooldown,
            classes: Vec::new(),
            quiet_until: None,
            last: None,
            in_cooldown: 0,
        }
    }

    /// One error of `class` at `now`; `Some` when it completes a burst (the caller then
    /// soft-evicts, once).
    pub(crate) fn observe(
        &mut self,
        class: &'static str,
        now: Instant,
        phase: &'static str,
    ) -> Option<Triggered> {
        if self.quiet_until.is_some_and(|t| now < t) {
            self.in_cooldown += 1;
            return None;
        }
        let i = match self.classes.iter().position(|(c, _)| *c == class) {
            Some(i) => i,
            None => {
                if self.classes.len() == MAX_CLASSES {
                    // Replace the class whose newest error is the oldest.
                    let stalest = self
                        .classes
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, times))| times.back().copied())
                        .map_or(0, |(i, _)| i);
                    self.classes.swap_remove(stalest);
                }
                self.classes.push((class, VecDeque::new()));
                self.classes.len() - 1
            }
        };
        let times = &mut self.classes[i].1;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() > self.burst {
            times.pop_front();
        }
        if times.len() < self.burst {
            return None;
        }
        let first = times.front().copied().unwrap_or(now);
        let t = Triggered {
            class,
            count: times.len(),
            within: now.saturating_duration_since(first),
            at: now,
            phase,
        };
        // Every class starts over after a soft-evict: the connections they came from are gone.
        self.classes.clear();
        self.quiet_until = Some(crate::deadline::add_tokio(now, self.cooldown));
        self.last = Some(t.clone());
        Some(t)
    }

    /// The configured window and cooldown (for the doctor).
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_burst_of_one_class_within_the_window_triggers_once() {
        let t0 = Instant::now();
        let mut w = Watch::new(3, secs(10), secs(60));
        assert!(w.observe("read-only", t0, "report").is_none());
        assert!(w.observe("read-only", t0 + secs(1), "report").is_none());
        let t = w
            .observe("read-only", t0 + secs(2), "validate")
            .expect("the third within 10 s");
        assert_eq!(
            (t.class, t.count, t.within, t.phase),
            ("read-only", 3, secs(2), "validate")
        );
        assert_eq!(w.last, Some(t));
    }

    #[test]
    fn errors_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut w = Watch::new(3, secs(10), secs(60));
        w.observe("a", t0, "report");
        w.observe("a", t0 + secs(1), "report");
        assert!(
            w.observe("a", t0 + secs(12), "report").is_none(),
            "two fell out"
        );
        assert!(w.observe("a", t0 + secs(13), "report").is_none());
        assert!(w.observe("a", t0 + secs(14), "report").is_some());
    }

    #[test]
    fn mixed_classes_do_not_add_up() {
        let t0 = Instant::now();
        let mut w = Watch::new(3, secs(10), secs(60));
        for (i, class) in ["a", "b", "a", "b", "c"].into_iter().enumerate() {
            assert!(w.observe(class, t0 + secs(i as u64), "report").is_none());
        }
        assert!(
            w.observe("b", t0 + secs(5), "report").is_some(),
            "the third b"
        );
    }

    #[test]
    fn the_cooldown_suppresses_and_then_a_new_burst_triggers_again() {
        let t0 = Instant::now();
        let mut w = Watch::new(2, secs(10), secs(30));
        w.observe("a", t0, "report");
        assert!(w.observe("a", t0, "report").is_some());
        for i in 0..10 {
            assert!(w.observe("a", t0 + secs(i), "report").is_none());
        }
        assert_eq!(w.in_cooldown, 10);
        assert!(
            w.observe("a", t0 + secs(30), "report").is_none(),
            "starts over"
        );
        assert!(w.observe("a", t0 + secs(31), "report").is_some());
    }

    #[test]
    fn more_classes_than_tracked_replace_the_stalest() {
        let t0 = Instant::now();
        let mut w = Watch::new(2, secs(100), secs(1));
        for i in 0..MAX_CLASSES + 4 {
            let class: &'static str = Box::leak(format!("c{i}").into_boxed_str());
            assert!(w.observe(class, t0 + secs(i as u64), "report").is_none());
        }
        assert_eq!(w.classes.len(), MAX_CLASSES);
        assert!(
            w.classes.iter().all(|(c, _)| *c != "c0"),
            "the stalest went"
        );
    }
}
