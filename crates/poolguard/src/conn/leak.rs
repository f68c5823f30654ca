//! Who holds what: the call site and checkout time of every checked-out connection.
//!
//! A slab under the pool lock (the crate's one slab, `diag::Slab`, shared with the object
//! pool's hold tracker): checkout stores `(site, since)` in a free slot and the guard keeps
//! the slot index, so return is O(1). Recording costs one slot write under a lock the
//! pool takes anyway, so it is always on: the acquire-timeout snapshot can name the longest
//! holders even when leak detection is off. Leak detection runs in two places: the
//! `leak_threshold` scan of every maintenance pass (connections still out), and the return
//! path (a hold past the threshold that no pass saw, reported as it comes back). Abandonment
//! runs only in maintenance.

use std::panic::Location;
use std::time::Duration;

use tokio::time::Instant;

use super::error::Holder;
use crate::diag::slab::Slab;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    pub(crate) site: &'static Location<'static>,
    pub(crate) since: Instant,
    /// Reported once as a leak (an "unleaked" report follows on return).
    pub(crate) leaked: bool,
    /// Abandoned by maintenance: no longer counted in `size`; closed on return.
    pub(crate) abandoned: bool,
    /// The tokio task that checked it out (`None` outside a task): read only by the wait
    /// path, to notice a task waiting for a second connection while it holds this one.
    pub(crate) task: Option<tokio::task::Id>,
}

/// The holds, in a [`Slab`]: the guard keeps its slot index.
#[derive(Debug, Default)]
pub(crate) struct Holders {
    slab: Slab<Hold>,
}

// `#[inline]`: called on every get and return from code generic over the manager, which is
// compiled in the user's crate; without it each is an out-of-line call there.
impl Holders {
    #[inline]
    pub(crate) fn insert(
        &mut self,
        site: &'static Location<'static>,
        since: Instant,
        task: Option<tokio::task::Id>,
    ) -> usize {
        self.slab.insert(Hold {
            site,
            since,
            leaked: false,
            abandoned: false,
            task,
        })
    }

    /// The call site of the oldest connection `task` holds (abandoned ones excluded: they
    /// no longer count against the pool). Walks every holder: the wait path only.
    pub(crate) fn held_by(&self, task: tokio::task::Id) -> Option<&'static Location<'static>> {
        self.slab
            .iter()
            .filter(|h| h.task == Some(task) && !h.abandoned)
            .min_by_key(|h| h.since)
            .map(|h| h.site)
    }

    /// Whether `slot` holds a hold that is neither leaked nor abandoned.
    #[inline]
    pub(crate) fn is_plain(&self, slot: usize) -> bool {
        self.slab
            .get(slot)
            .is_some_and(|h| !h.leaked && !h.abandoned)
    }

    #[inline]
    pub(crate) fn remove(&mut self, slot: usize) -> Option<Hold> {
        self.slab.remove(slot)
    }

    /// Checked out, abandoned ones included.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Hold> {
        self.slab.iter_mut()
    }

    /// The `n` longest holders, oldest first.
    pub(crate) fn longest(&self, now: Instant, n: usize) -> Vec<Holder> {
        let mut all: Vec<&Hold> = self.slab.iter().collect();
        all.sort_by_key(|h| h.since);
        all.into_iter()
            .take(n)
            .map(|h| Holder {
                site: h.site,
                held: now.saturating_duration_since(h.since),
                leaked: h.leaked,
            })
            .collect()
    }
}

/// Whether a hold of `held` is a leak under `threshold` (the one rule for the scan and the
/// return path).
#[inline]
pub(crate) fn is_leak(held: Duration, threshold: Duration) -> bool {
    held >= threshold
}

/// What a maintenance scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) leaks: Vec<(&'static Location<'static>, Duration)>,
    pub(crate) abandoned: Vec<(&'static Location<'static>, Duration)>,
}

/// Marks leaks and abandoned holds; returns what changed (for events and counters).
pub(crate) fn scan(
    holders: &mut Holders,
    now: Instant,
    leak_threshold: Option<Duration>,
    abandon_timeout: Option<Duration>,
) -> Scan {
    let mut out = Scan::default();
    if leak_threshold.is_none() && abandon_timeout.is_none() {
        return out;
    }
    for h in holders.iter_mut() {
        let held = now.saturating_duration_since(h.since);
        if let Some(t) = leak_threshold {
            if !h.leaked && is_leak(held, t) {
                h.leaked = true;
                out.leaks.push((h.site, held));
            }
        }
        if let Some(t) = abandon_timeout {
            if !h.abandoned && held >= t {
                h.abandoned = true;
                out.abandoned.push((h.site, held));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_leaks_reported_once() {
        let t0 = Instant::now();
        let mut h = Holders::default();
        let a = h.insert(Location::caller(), t0, None);
        let b = h.insert(Location::caller(), t0 + Duration::from_secs(1), None);
        assert_eq!(h.len(), 2);
        let s = scan(
            &mut h,
            t0 + Duration::from_secs(5),
            Some(Duration::from_secs(5)),
            None,
        );
        assert_eq!(s.leaks.len(), 1, "only the 5 s hold is a leak");
        let s = scan(
            &mut h,
            t0 + Duration::from_secs(6),
            Some(Duration::from_secs(5)),
            None,
        );
        assert_eq!(s.leaks.len(), 1, "the first is not reported twice");
        assert!(h.remove(a).is_some_and(|x| x.leaked));
        assert!(h.remove(a).is_none());
        let c = h.insert(Location::caller(), t0, None);
        assert_eq!(c, a, "free slot reused");
        let longest = h.longest(t0 + Duration::from_secs(2), 3);
        assert_eq!(longest.len(), 2);
        assert_eq!(longest[0].held, Duration::from_secs(2));
        let _ = b;
    }
}
