//! Two generations per shared stack: `primary` (returned since the last trim cycle) and
//! `victim` (survived one cycle unused). A cycle frees the victim generation and demotes the
//! primary one in O(1) (two `Vec` moves), so an object unused for two cycles is freed and a
//! trim holds a shard's lock for a constant time whatever the number of retained objects.
//!
//! The caps are checked on every insert against both generations together; when the caps
//! are reached, an insert first evicts victims (the byte budget frees the oldest objects
//! before refusing a fresh one).

/// An object with the heap bytes it was charged at insert (so accounting never re-asks it).
pub(crate) type Entry<T> = (Box<T>, usize);

/// Which generation a popped object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gen {
    Primary,
    Victim,
}

/// The contents of one shared stack. Every field may only be accessed under the shard's lock.
pub(crate) struct Generations<T> {
    primary: Vec<Entry<T>>,
    victim: Vec<Entry<T>>,
    primary_bytes: usize,
    victim_bytes: usize,
    /// Most objects this stack may hold (both generations together).
    cap_objects: usize,
    /// Most heap bytes this stack may hold (both generations together).
    cap_bytes: usize,
    /// Gets served from `primary`.
    pub(crate) hits_primary: u64,
    /// Gets served from `victim`.
    pub(crate) hits_victim: u64,
    /// Victims evicted by the byte/object budget to make room for a fresher object.
    pub(crate) evicted: u64,
}

impl<T> Generations<T> {
    pub(crate) fn new(cap_objects: usize, cap_bytes: usize) -> Self {
        Self {
            primary: Vec::new(),
            victim: Vec::new(),
            primary_bytes: 0,
            victim_bytes: 0,
            cap_objects,
            cap_bytes,
            hits_primary: 0,
            hits_victim: 0,
            evicted: 0,
        }
    }

    /// Objects held (both generations).
    pub(crate) fn len(&self) -> usize {
        self.primary.len() + self.victim.len()
    }

    /// Heap bytes held (both generations).
    pub(crate) fn bytes(&self) -> usize {
        self.primary_bytes + self.victim_bytes
    }

    /// Objects and heap bytes of the primary generation.
    pub(crate) fn primary_held(&self) -> (usize, usize) {
        (self.primary.len(), self.primary_bytes)
    }

    /// Objects and heap bytes of the victim generation.
    pub(crate) fn victim_held(&self) -> (usize, usize) {
        (self.victim.len(), self.victim_bytes)
    }

    /// The freshest object: primary first (LIFO, cache-warm), then victim.
    pub(crate) fn pop(&mut self) -> Option<(Entry<T>, Gen)> {
        if let Some(e) = self.primary.pop() {
            self.primary_bytes -= e.1;
            self.hits_primary += 1;
            return Some((e, Gen::Primary));
        }
        let e = self.victim.pop()?;
        self.victim_bytes -= e.1;
        self.hits_victim += 1;
        Some((e, Gen::Victim))
    }

    /// A spare for the caller's per-thread cell, taken with the same lock as a [`pop`]: the
    /// freshest object if it reports at most `max_bytes`. Not counted as a hit (the get
    /// that later finds it in the cell counts as a local hit).
    ///
    /// [`pop`]: Self::pop
    pub(crate) fn pop_spare(&mut self, max_bytes: usize) -> Option<Entry<T>> {
        if self.primary.last().is_some_and(|e| e.1 <= max_bytes) {
            let e = self.primary.pop()?;
            self.primary_bytes -= e.1;
            return Some(e);
        }
        if self.primary.is_empty() && self.victim.last().is_some_and(|e| e.1 <= max_bytes) {
            let e = self.victim.pop()?;
            self.victim_bytes -= e.1;
            return Some(e);
        }
        None
    }

    fn fits(&self, bytes: usize) -> bool {
        self.len() < self.cap_objects && self.bytes().saturating_add(bytes) <= self.cap_bytes
    }

    /// Makes room for `bytes` by evicting victims into `evicted`; false if it cannot.
    fn make_room(&mut self, bytes: usize, evicted: &mut Vec<Entry<T>>) -> bool {
        if bytes > self.cap_bytes || self.cap_objects == 0 {
            return false;
        }
        while !self.fits(bytes) {
            // Evict the oldest victim (the bottom of the stack).
            if self.victim.is_empty() {
                return false;
            }
            let e = self.victim.swap_remove(0);
            self.victim_bytes -= e.1;
            self.evicted += 1;
            evicted.push(e);
        }
        true
    }

    /// Inserts into the primary generation, evicting victims if needed; hands the entry back
    /// when the caps leave no room.
    pub(crate) fn push(
        &mut self,
        e: Entry<T>,
        evicted: &mut Vec<Entry<T>>,
    ) -> Result<(), Entry<T>> {
        if !self.make_room(e.1, evicted) {
            return Err(e);
        }
        self.primary_bytes += e.1;
        self.primary.push(e);
        Ok(())
    }

    /// Inserts into the primary generation only if the caps leave room as things are (never
    /// evicts); hands the entry back otherwise.
    pub(crate) fn push_if_fits(&mut self, e: Entry<T>) -> Result<(), Entry<T>> {
        if !self.fits(e.1) {
            return Err(e);
        }
        self.primary_bytes += e.1;
        self.primary.push(e);
        Ok(())
    }

    /// Inserts straight into the victim generation (a trim demoting a per-thread object);
    /// never evicts, hands the entry back when there is no room.
    pub(crate) fn push_victim(&mut self, e: Entry<T>) -> Result<(), Entry<T>> {
        if !self.fits(e.1) {
            return Err(e);
        }
        self.victim_bytes += e.1;
        self.victim.push(e);
        Ok(())
    }

    /// One trim cycle: returns the victim generation (to be freed outside the lock) and
    /// demotes the primary one. O(1).
    pub(crate) fn rotate(&mut self) -> Vec<Entry<T>> {
        let dead = std::mem::replace(&mut self.victim, std::mem::take(&mut self.primary));
        self.victim_bytes = std::mem::replace(&mut self.primary_bytes, 0);
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: u32, bytes: usize) -> Entry<u32> {
        (Box::new(v), bytes)
    }

    #[test]
    fn caps_refuse_then_evict_victims() {
        let mut g = Generations::new(2, 100);
        let mut ev = Vec::new();
        assert!(g.push(e(1, 40), &mut ev).is_ok());
        assert!(g.push(e(2, 40), &mut ev).is_ok());
        assert_eq!(*g.push(e(3, 1), &mut ev).unwrap_err().0, 3, "object cap");
        assert!(g.push(e(4, 101), &mut ev).is_err(), "larger than the stack");
        let dead = g.rotate();
        assert!(dead.is_empty());
        assert_eq!((g.len(), g.bytes()), (2, 80));
        // Full of victims: a fresh object evicts the oldest victim.
        assert!(g.push(e(5, 30), &mut ev).is_ok());
        assert_eq!(ev.len(), 1);
        assert_eq!(*ev[0].0, 1);
        assert_eq!((g.len(), g.bytes()), (2, 70));
        assert_eq!(g.evicted, 1);
    }

    #[test]
    fn two_cycles_free_an_unused_object() {
        let mut g = Generations::new(10, 1000);
        let mut ev = Vec::new();
        g.push(e(1, 10), &mut ev).expect("room");
        assert!(g.rotate().is_empty(), "first cycle only demotes");
        assert_eq!(g.len(), 1);
        let dead = g.rotate();
        assert_eq!(dead.len(), 1, "second cycle frees");
        assert_eq!((g.len(), g.bytes()), (0, 0));
    }

    #[test]
    fn pop_prefers_primary_and_counts_victim_hits() {
        let mut g = Generations::new(10, 1000);
        let mut ev = Vec::new();
        g.push(e(1, 10), &mut ev).expect("room");
        let _ = g.rotate();
        g.push(e(2, 20), &mut ev).expect("room");
        let (a, ga) = g.pop().expect("a");
        assert_eq!((*a.0, ga), (2, Gen::Primary));
        let (b, gb) = g.pop().expect("b");
        assert_eq!((*b.0, gb), (1, Gen::Victim));
        assert!(g.pop().is_none());
        assert_eq!((g.hits_primary, g.hits_victim), (1, 1));
        assert!(g.push_victim(e(3, 5)).is_ok());
        assert_eq!((g.len(), g.bytes()), (1, 5));
    }
}
