//! Nested acquires: a task that waits for a second connection from a pool while it already
//! holds one of the same pool (a connection cached per task, then a "new transaction" that
//! takes another). With `max_size` such tasks holding one each, every one waits for a
//! connection only another of them can return: the pool is deadlocked until the acquire
//! timeout.
//!
//! Detected on the wait path only (a get that found no idle connection): the fast path
//! records the checking-out task in the holder's slot (one thread-local read) and nothing
//! else. The waiting get then walks the holders for one its own task holds. Each distinct
//! pair of call sites (the held connection's, the waiting get's) is kept, with a count, up to
//! [`MAX_PAIRS`]; later pairs are counted in the total only.

use std::panic::Location;

/// Distinct call-site pairs kept (the count covers every nested acquire).
pub(crate) const MAX_PAIRS: usize = 16;

/// One pair of call sites seen nesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NestedPair {
    /// Where the task took the connection it still holds.
    pub(crate) held: &'static Location<'static>,
    /// Where it then waited for another.
    pub(crate) waiting: &'static Location<'static>,
    /// Times this pair was seen.
    pub(crate) count: u64,
}

/// Every nested acquire seen (under the pool lock, in `Internals`).
#[derive(Debug, Default)]
pub(crate) struct Nested {
    /// Nested acquires seen in total.
    pub(crate) total: u64,
    pairs: Vec<NestedPair>,
}

impl Nested {
    /// Counts one; returns whether this pair of sites is new (its event is emitted once).
    pub(crate) fn note(
        &mut self,
        held: &'static Location<'static>,
        waiting: &'static Location<'static>,
    ) -> bool {
        self.total += 1;
        if let Some(p) = self
            .pairs
            .iter_mut()
            .find(|p| p.held == held && p.waiting == waiting)
        {
            p.count += 1;
            return false;
        }
        if self.pairs.len() < MAX_PAIRS {
            self.pairs.push(NestedPair {
                held,
                waiting,
                count: 1,
            });
            true
        } else {
            false
        }
    }

    /// The pairs seen, most frequent first.
    pub(crate) fn pairs(&self) -> Vec<NestedPair> {
        let mut v = self.pairs.clone();
        v.sort_by_key(|p| std::cmp::Reverse(p.count));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn pairs_are_counted_once_each_and_capped() {
        let (a, b) = (here(), here());
        let mut n = Nested::default();
        assert!(n.note(a, b), "a new pair");
        assert!(!n.note(a, b), "seen before");
        assert!(n.note(b, a), "the reverse is another pair");
        assert_eq!(n.total, 3);
        assert_eq!(n.pairs()[0].count, 2, "most frequent first");
        let sites: Vec<&'static Location<'static>> = (0..MAX_PAIRS).map(|_| here()).collect();
        // All from one line: the same location, so one more pair only.
        for s in &sites {
            n.note(s, a);
        }
        assert_eq!(n.pairs().len(), 3);
        assert_eq!(n.total, 3 + MAX_PAIRS as u64);
    }
}
