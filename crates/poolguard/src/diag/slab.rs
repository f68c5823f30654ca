//! The slab behind the checkout trackers (the object pool's hold tracker and the
//! connection pool's leak tracker): values in reusable slots, so a checkout registers
//! with one push or one slot reuse and unregisters by its index, in O(1), without hashing.
//!
//! Not synchronised: each user keeps it under its own lock.

/// Values in numbered slots; a freed slot is reused by the next insert.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

// `#[inline]`: called on checkout paths from code generic over the pooled type, compiled in
// the user's crate.
#[allow(dead_code)] // `len` and `iter` serve the connection pool's tracker.
impl<T> Slab<T> {
    /// Stores `v`; its slot index (a freed slot first).
    #[inline]
    pub(crate) fn insert(&mut self, v: T) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(v);
                i
            }
            None => {
                self.slots.push(Some(v));
                self.slots.len() - 1
            }
        }
    }

    /// Takes the value out of slot `i` (`None` if it is free or was never used).
    #[inline]
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        self.live -= 1;
        Some(v)
    }

    /// The value in slot `i` (`None` if it is free or was never used).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i)?.as_ref()
    }

    /// Values stored.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The values stored, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// The values stored, in slot order, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten()
    }
}

#[cfg(all(test, not(poolguard_loom)))]
mod tests {
    use super::Slab;

    #[test]
    fn slots_are_reused_and_removal_is_by_index() {
        let mut s = Slab::default();
        let (a, b, c) = (s.insert("a"), s.insert("b"), s.insert("c"));
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.remove(b), Some("b"));
        assert_eq!(s.remove(b), None, "a freed slot is empty");
        assert_eq!(s.remove(99), None, "an unknown slot is empty");
        assert_eq!(s.len(), 2);
        assert_eq!(s.insert("d"), 1, "the freed slot is reused");
        for v in s.iter_mut() {
            *v = if *v == "d" { "D" } else { *v };
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), ["a", "D", "c"]);
        assert_eq!(s.len(), 3);
    }
}
